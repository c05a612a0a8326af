"""Feed message bodies (docs/CONTRACT.md §2c): validated into records, bad ones counted by reason.

Feed messages are rare (a dominance sample a minute, a few quotes a second, tens of transfers a
second at most), so they are parsed in Python with orjson — no jitted path needed. Bytes in, a
record or a reason out; nothing here touches the store or the network.

- dominance: ``{"ts": ms, "btc_dominance": 57.31, "source": "coingecko"}``
- quotes: ``{"ts": ms, "venue": "coinbase", "symbol": "BTCUSDT", "bid": 50000.1, "ask": 50000.5}``
- onchain: ``{"ts": ms, "chain": "btc"|"eth", "txid": "…", "value": 120.5,
  "direction": "to_exchange"|"from_exchange"|"other", "exchange": "binance"|null}``

Numbers may be JSON numbers or decimal strings; ``ts`` is an integer (ms since the epoch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import orjson

from rtsig.layout import (
    CHAINS,
    DIRECTIONS,
    FEED_DOMINANCE,
    FEED_QUOTES,
    FEED_TRANSFERS,
    NAME_BYTES,
    SOURCE_BYTES,
    TXID_BYTES,
)

MAX_FEED_BYTES = 16 * 1024
"""A feed body longer than this is ``oversized`` (the largest valid one is a few hundred bytes)."""
MAX_PLAUSIBLE = 1e12
"""Prices and transfer values at or above this are ``bad_number`` (as for market data)."""

REASON_NOT_JSON = 1
REASON_NOT_OBJECT = 2
REASON_MISSING_FIELD = 3
REASON_BAD_FIELD = 4
REASON_BAD_NUMBER = 5
REASON_BAD_TIME = 6
REASON_BAD_SYMBOL = 7
REASON_BAD_CHAIN = 8
REASON_BAD_DIRECTION = 9
REASON_BAD_VENUE = 10
REASON_OVERSIZED = 11
REASON_NAMES = {
    REASON_NOT_JSON: "not_json",
    REASON_NOT_OBJECT: "not_object",
    REASON_MISSING_FIELD: "missing_field",
    REASON_BAD_FIELD: "bad_field",
    REASON_BAD_NUMBER: "bad_number",
    REASON_BAD_TIME: "bad_time",
    REASON_BAD_SYMBOL: "bad_symbol",
    REASON_BAD_CHAIN: "bad_chain",
    REASON_BAD_DIRECTION: "bad_direction",
    REASON_BAD_VENUE: "bad_venue",
    REASON_OVERSIZED: "oversized",
}
RESERVED_VENUES = frozenset({"binance", "binance_futures"})
"""Binance's venues come from its own books, never from the quotes feed (``bad_venue``)."""
_SYMBOL = re.compile(r"^[A-Z0-9]{2,24}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class FeedError(ValueError):
    """A feed body that breaks the contract; ``reason`` is one of REASON_*."""

    def __init__(self, reason: int, detail: str = "") -> None:
        super().__init__(f"{REASON_NAMES[reason]}{': ' + detail if detail else ''}")
        self.reason = reason


@dataclass(frozen=True)
class DominanceSample:
    ts_ms: int
    btc_dominance: float
    source: str


@dataclass(frozen=True)
class VenueQuote:
    ts_ms: int
    venue: str
    symbol: str
    bid: float
    ask: float


@dataclass(frozen=True)
class Transfer:
    ts_ms: int
    chain: int  # layout.CHAIN_*
    txid: str
    value: float
    direction: int  # layout.DIRECTION_*
    exchange: str | None


def parse(feed: int, body: bytes, receipt_ns: int, max_skew_ms: int):
    """The record of one feed body, or :class:`FeedError`. ``ts`` more than ``max_skew_ms``
    ahead of ``receipt_ns`` is ``bad_time`` (as for market data, docs/CONTRACT.md §2a)."""
    if len(body) > MAX_FEED_BYTES:
        raise FeedError(REASON_OVERSIZED, f"{len(body)} bytes")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FeedError(REASON_NOT_JSON) from None
    if not isinstance(obj, dict):
        raise FeedError(REASON_NOT_OBJECT)
    ts = _time(obj, receipt_ns, max_skew_ms)
    if feed == FEED_DOMINANCE:
        dominance = _number(obj, "btc_dominance")
        if not 0.0 <= dominance <= 100.0:
            raise FeedError(REASON_BAD_NUMBER, "btc_dominance outside 0-100")
        source = obj.get("source")
        if source is None:
            source = "unknown"
        elif not isinstance(source, str):
            raise FeedError(REASON_BAD_FIELD, "source")
        return DominanceSample(ts, dominance, _clip(source, SOURCE_BYTES))
    if feed == FEED_QUOTES:
        venue = _text(obj, "venue").strip().lower()
        if not _NAME.match(venue) or len(venue.encode()) > NAME_BYTES:
            raise FeedError(REASON_BAD_VENUE, repr(venue))
        if venue in RESERVED_VENUES:
            raise FeedError(REASON_BAD_VENUE, f"{venue} is rtsig's own (its books)")
        symbol = _text(obj, "symbol").strip().upper()
        if not _SYMBOL.match(symbol):
            raise FeedError(REASON_BAD_SYMBOL, repr(symbol))
        bid, ask = _price(obj, "bid"), _price(obj, "ask")
        if bid > ask:
            raise FeedError(REASON_BAD_NUMBER, "bid above ask")
        return VenueQuote(ts, venue, symbol, bid, ask)
    if feed == FEED_TRANSFERS:
        chain = _text(obj, "chain").strip().lower()
        if chain not in CHAINS:
            raise FeedError(REASON_BAD_CHAIN, repr(chain))
        direction = _text(obj, "direction").strip().lower()
        if direction not in DIRECTIONS:
            raise FeedError(REASON_BAD_DIRECTION, repr(direction))
        txid = _text(obj, "txid")
        if not txid or len(txid.encode()) > TXID_BYTES:
            raise FeedError(REASON_BAD_FIELD, "txid")
        value = _number(obj, "value")
        if not 0.0 <= value < MAX_PLAUSIBLE:
            raise FeedError(REASON_BAD_NUMBER, "value")
        exchange = obj.get("exchange")
        if exchange is not None:
            if not isinstance(exchange, str):
                raise FeedError(REASON_BAD_FIELD, "exchange")
            exchange = _clip(exchange.strip().lower(), NAME_BYTES) or None
        return Transfer(ts, CHAINS.index(chain), txid, value, DIRECTIONS.index(direction), exchange)
    raise ValueError(f"unknown feed {feed}")


def _time(obj: dict, receipt_ns: int, max_skew_ms: int) -> int:
    if "ts" not in obj or obj["ts"] is None:
        raise FeedError(REASON_MISSING_FIELD, "ts")
    ts = obj["ts"]
    if isinstance(ts, str) and ts.isdigit():
        ts = int(ts)
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise FeedError(REASON_BAD_FIELD, "ts must be an integer (ms)")
    if ts <= 0 or ts >= 1 << 62:
        raise FeedError(REASON_BAD_TIME, "ts")
    if ts - receipt_ns // 1_000_000 > max_skew_ms:
        raise FeedError(REASON_BAD_TIME, "ts ahead of the receipt time")
    return ts


def _text(obj: dict, key: str) -> str:
    if key not in obj or obj[key] is None:
        raise FeedError(REASON_MISSING_FIELD, key)
    value = obj[key]
    if not isinstance(value, str):
        raise FeedError(REASON_BAD_FIELD, key)
    return value


def _number(obj: dict, key: str) -> float:
    if key not in obj or obj[key] is None:
        raise FeedError(REASON_MISSING_FIELD, key)
    value = obj[key]
    if isinstance(value, bool):
        raise FeedError(REASON_BAD_FIELD, key)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise FeedError(REASON_BAD_NUMBER, key) from None
    elif not isinstance(value, (int, float)):
        raise FeedError(REASON_BAD_FIELD, key)
    value = float(value)
    if not math.isfinite(value):
        raise FeedError(REASON_BAD_NUMBER, key)
    return value


def _price(obj: dict, key: str) -> float:
    value = _number(obj, key)
    if not 0.0 < value < MAX_PLAUSIBLE:
        raise FeedError(REASON_BAD_NUMBER, key)
    return value


def _clip(text: str, n_bytes: int) -> str:
    """``text`` cut to at most ``n_bytes`` of UTF-8 (never inside a character)."""
    raw = text.encode()[:n_bytes]
    return raw.decode("utf-8", "ignore")
