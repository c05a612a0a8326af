"""The signal builder: kernel candidates → the signal objects of docs/CONTRACT.md §3.

Applies, in order, the market filter (``SIGNAL_MARKETS``), the global confidence floor
(``MIN_CONFIDENCE``) and the strategy's event-time cool-down (``min_signal_interval``; a suppressed
candidate does not restart it), then fills every field of the contract and serialises it with
orjson. Candidates are rare next to messages, so this runs in Python — but signals come in bursts
(one socket read can trigger dozens), and every microsecond here delays the rest of the burst, so
the per-signal path avoids NumPy scalars, ``uuid`` objects and ``strftime`` (about 35 → 15 µs per
signal; docs/PERFORMANCE-notes.md). The ``signal_id`` is derived from the input
(:func:`signal_id_for`), so a signal made again for the same input — a JetStream redelivery, a
replay, the offline run — has the same id.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

import numpy as np
import orjson

from kernels.output import (
    INDICATOR_NAMES,
    METADATA_NAMES,
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_INDICATORS,
    OUT_METADATA,
    OUT_PRICE,
)
from rtsig import codes
from rtsig import counters as C
from rtsig.params import ParameterTable
from rtsig.registry import REALTIME_IDS
from rtsig.settings import Settings

INTEGER_INDICATORS = frozenset({"window_trades", "window_hours"})


def strength(confidence: float) -> str:
    """``extreme`` ≥ 0.9, ``strong`` ≥ 0.7, ``medium`` ≥ 0.5, else ``weak``."""
    if confidence >= 0.9:
        return "extreme"
    if confidence >= 0.7:
        return "strong"
    if confidence >= 0.5:
        return "medium"
    return "weak"


def risk_levels(action: int, price: float, stop_loss_pct: float, take_profit_pct: float) -> tuple[float, float]:
    """``(stop_loss, take_profit)``: below/above the price for a buy, mirrored for a sell."""
    if action == codes.ACTION_BUY:
        return price * (1.0 - stop_loss_pct), price * (1.0 + take_profit_pct)
    return price * (1.0 + stop_loss_pct), price * (1.0 - take_profit_pct)


def price_decimals(*prices: float) -> int:
    """Decimal places of the most precise of ``prices`` in their shortest form (at most 12).

    The risk levels are rounded to the decimals of the prices that triggered the signal (the
    signal's ``price`` and ``current_price``), so ``stop_loss`` reads ``3434.03`` and not
    ``3434.0303000000004``. Binance pads price strings with zeros (``"3434.03000000"``), so they
    say nothing of the tick size. A price on a power-of-ten tick grid has at most the tick's
    decimals, so a level rounded to the price's decimals is on that grid too (when the price
    happens to end in zeros, coarser than the tick: 67000.1 gives levels in tenths).
    """
    places = 0
    for p in prices:
        text = repr(p)
        if "e" in text or "E" in text:
            text = f"{p:.12f}"
        dot = text.find(".")
        if dot >= 0:
            places = max(places, len(text.rstrip("0")) - dot - 1)
    return min(places, 12)


_iso_second: list = [None, ""]
"""The last whole second formatted by :func:`iso_utc_ms` and its text (formatted once a second)."""


def iso_utc_ms(epoch_ns: int) -> str:
    """``2024-01-01T00:00:00.000Z`` for an epoch time in nanoseconds."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    if seconds != _iso_second[0]:
        _iso_second[0], _iso_second[1] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_iso_second[1]}.{ns // 1_000_000:03d}Z"


SIGNAL_ID_NAMESPACE = bytes.fromhex("6f1c4e0a9b3d4e7f8a2b5c6d7e8f9012")
"""The UUID namespace of rtsig's signal ids (``uuid.uuid5(namespace, name)``, without objects)."""


def signal_id_for(message_id: str | None, strategy_id: str, action: str, symbol: str,
                  event_time_ms: int, market: str = "spot") -> str:
    """The signal's id, derived from its input, so that a signal made again for the same input
    (a JetStream redelivery, a replay, the offline run) has the same id: a name-based (version 5,
    RFC 4122) UUID of the input message id — or, for input without one, of the symbol and event
    time — with the strategy and the action. ``Nats-Msg-Id`` carries it for de-duplication."""
    key = message_id if message_id else f"{symbol}@{event_time_ms}"
    if market != "spot":  # the same id on both markets' subjects must not give one signal id
        key = f"{key}#{market}"
    raw = bytearray(hashlib.sha1(SIGNAL_ID_NAMESPACE + f"{key}:{strategy_id}:{action}".encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _number(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class SignalBuilder:
    """Turns candidates into signals for one process (its own counters and cool-down rows)."""

    def __init__(self, settings: Settings, params: ParameterTable, last_signal_ms: np.ndarray,
                 counters: np.ndarray, symbol_name: Callable[[int], str],
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.params = params
        self.last_signal_ms = last_signal_ms
        self.counters = counters
        self.symbol_name = symbol_name
        self.clock_ns = clock_ns
        self._names: dict[int, str] = {}
        """Symbol names by id (:meth:`forget` drops one whose id was given to a new symbol)."""
        self._subjects: dict[tuple[str, str], str] = {}

    def build(self, number: int, sid: int, action: int, row: np.ndarray, event_time_ms: int,
              message_id: str | None, market: str = "spot") -> dict | None:
        """The signal for one candidate, or None when its market is not in ``SIGNAL_MARKETS``,
        or the floor or the cool-down holds it back. ``market`` is the data's (``spot``/``usdm``)."""
        if market not in self.settings.signal_markets:
            self.counters[C.SIGNALS_OTHER_MARKET] += 1
            return None
        values = row.tolist()  # Python floats: no NumPy scalar per field
        confidence = values[OUT_CONFIDENCE]
        if confidence < self.settings.min_confidence:
            self.counters[C.SIGNALS_BELOW_CONFIDENCE] += 1
            return None
        side = 0 if action == codes.ACTION_BUY else 1
        interval_ms = self.params.interval_ms(sid, number)
        last = int(self.last_signal_ms[sid, number, side])
        if interval_ms > 0 and event_time_ms - last < interval_ms:
            self.counters[C.SIGNALS_COOLDOWN] += 1
            return None
        self.last_signal_ms[sid, number, side] = event_time_ms
        self.counters[C.signal_counter(number, action)] += 1
        C.observe_confidence(self.counters, number, confidence)

        strategy_id = REALTIME_IDS[number]
        price = values[OUT_PRICE]
        sl_pct, tp_pct = self.params.risk(sid, number)
        stop_loss, take_profit = risk_levels(action, price, sl_pct, tp_pct)
        places = price_decimals(price, values[OUT_CURRENT_PRICE])
        stop_loss, take_profit = round(stop_loss, places), round(take_profit, places)
        indicators = {}
        for k, field in enumerate(INDICATOR_NAMES[strategy_id]):
            value = values[OUT_INDICATORS + k]
            indicators[field] = int(value) if field in INTEGER_INDICATORS else _number(value)
        metadata: dict = {"strategy": strategy_id}
        for k, field in enumerate(METADATA_NAMES[strategy_id]):
            metadata[field] = _number(values[OUT_METADATA + k])
        metadata["strategy_config"] = self.params.config(sid, number).as_metadata()
        if message_id:
            metadata["message_id"] = message_id
        metadata["event_time"] = int(event_time_ms)
        metadata["market"] = market
        name = self._names.get(sid)
        if name is None:
            name = self._names[sid] = self.symbol_name(sid)
        return {
            "signal_id": signal_id_for(message_id, strategy_id, codes.ACTION_NAMES[action], name,
                                       event_time_ms, market),
            "strategy_id": strategy_id,
            "strategy": strategy_id,
            "source": self.settings.signal_source,
            "symbol": name,
            "action": codes.ACTION_NAMES[action],
            "confidence": confidence,
            "strength": strength(confidence),
            "price": price,
            "quantity": self.settings.signal_quantity,
            "current_price": values[OUT_CURRENT_PRICE],
            "timeframe": "tick",
            "order_type": "market",
            "time_in_force": "GTC",
            "stop_loss": stop_loss,
            "take_profit": take_profit,
            "stop_loss_pct": sl_pct,
            "take_profit_pct": tp_pct,
            "indicators": indicators,
            "metadata": metadata,
            "timestamp": iso_utc_ms(self.clock_ns()),
        }

    def forget(self, sid: int) -> None:
        """A symbol id was given to a new symbol (eviction): drop the old name."""
        self._names.pop(sid, None)

    def subject(self, signal: dict) -> str:
        """``NATS_PUBLISHER_TOPIC`` with its placeholders filled (cached per strategy and symbol)."""
        key = (signal["strategy_id"], signal["symbol"])
        subject = self._subjects.get(key)
        if subject is None:
            if len(self._subjects) > 65536:  # symbols come from the input: keep the cache bounded
                self._subjects.clear()
            subject = self._subjects[key] = self.settings.publisher_subject(*key)
        return subject


def serialize(signal: dict) -> bytes:
    """The signal as UTF-8 JSON (orjson)."""
    return orjson.dumps(signal)
