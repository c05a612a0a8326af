"""A reproducible synthetic Binance feed: depth20 snapshots, trades and 24 h tickers.

Used by the demo's sample feed, the end-to-end tests and the perf load generator. Each symbol
walks through market *regimes* — calm, a bullish burst, calm, a bearish burst — so that a few
minutes of data make every realtime strategy fire both ways with the default parameters:

* bursts skew the book (bid or ask quantities several times the other side) → orderbook_skew;
* bursts send runs of same-side trades of growing size at moving prices → trade_momentum;
* bursts move the price by about 1 %/min while volume grows → ticker_velocity.

Messages use the socket client's envelope (``stream``, ``data``, ``timestamp``, ``message_id``,
``source``, ``version``) with spot payload shapes; times are event times starting at
``start_ms``, so the same seed always gives the same bytes (message ids included).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
_START_PRICES = {"BTCUSDT": 67_000.0, "ETHUSDT": 3_400.0, "BNBUSDT": 590.0}
_TICKS = {"BTCUSDT": 0.01, "ETHUSDT": 0.01, "BNBUSDT": 0.01}
REGIMES = ("calm", "bull", "calm", "bear")
REGIME_SECONDS = 45


@dataclass
class _SymbolState:
    symbol: str
    price: float
    tick: float
    base_volume: float
    quote_volume: float
    open_price: float
    trade_id: int = 1
    update_id: int = 1_000_000
    phase_offset_s: int = 0
    rng: random.Random = field(default_factory=random.Random)


def _fmt(x: float, decimals: int = 8) -> str:
    return f"{x:.{decimals}f}"


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    t = _gmtime(seconds)
    return f"{t}.{millis:03d}000Z"


def _gmtime(seconds: int) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


class MarketSimulator:
    """Deterministic multi-symbol feed; iterate :meth:`messages` for encoded envelopes."""

    def __init__(self, symbols: tuple[str, ...] | list[str] = DEFAULT_SYMBOLS, seed: int = 7,
                 start_ms: int = 1_730_462_400_000, depth_interval_ms: int = 250,
                 trades_per_second: float = 8.0, ticker_interval_ms: int = 1000) -> None:
        self.rng = random.Random(seed)
        self.start_ms = start_ms
        self.depth_interval_ms = depth_interval_ms
        self.trades_per_second = trades_per_second
        self.ticker_interval_ms = ticker_interval_ms
        self.states = []
        for i, sym in enumerate(symbols):
            price = _START_PRICES.get(sym, 10.0 * (1 + self.rng.random() * 100))
            self.states.append(_SymbolState(
                symbol=sym, price=price, tick=_TICKS.get(sym, 0.0001),
                base_volume=2_000_000.0 / math.sqrt(price), quote_volume=0.0, open_price=price,
                phase_offset_s=(i * 7) % REGIME_SECONDS, rng=random.Random(seed * 1000 + i)))
        self._ids = random.Random(seed + 99)

    def regime(self, state: _SymbolState, t_ms: int) -> str:
        seconds = (t_ms - self.start_ms) // 1000 + state.phase_offset_s
        return REGIMES[(seconds // REGIME_SECONDS) % len(REGIMES)]

    def _message_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _envelope(self, stream: str, data: dict, t_ms: int) -> bytes:
        return orjson.dumps({"stream": stream, "data": data, "timestamp": _iso(t_ms),
                             "message_id": self._message_id(), "source": "binance-websocket",
                             "version": "1.0"})

    def _drift_per_ms(self, regime: str, price: float) -> float:
        # bursts move about 1.2 % per minute: well past ticker_velocity's 0.5 %/min threshold
        if regime == "bull":
            return price * 0.012 / 60_000
        if regime == "bear":
            return -price * 0.012 / 60_000
        return 0.0

    def _depth(self, st: _SymbolState, t_ms: int) -> bytes:
        regime = self.regime(st, t_ms)
        rng = st.rng
        half_spread = st.tick * (1 + rng.randrange(3))
        best_bid = round(st.price - half_spread, 8)
        best_ask = round(st.price + half_spread, 8)
        bid_boost = 4.0 if regime == "bull" else 1.0
        ask_boost = 4.0 if regime == "bear" else 1.0
        bids, asks = [], []
        scale = 50.0 / math.sqrt(st.price)
        for k in range(20):
            bq = scale * rng.uniform(0.5, 1.5) * (bid_boost if k < 5 else 1.0)
            aq = scale * rng.uniform(0.5, 1.5) * (ask_boost if k < 5 else 1.0)
            bids.append([_fmt(best_bid - k * st.tick * 2), _fmt(bq)])
            asks.append([_fmt(best_ask + k * st.tick * 2), _fmt(aq)])
        st.update_id += rng.randrange(5, 50)
        data = {"lastUpdateId": st.update_id, "bids": bids, "asks": asks}
        return self._envelope(f"{st.symbol.lower()}@depth20@100ms", data, t_ms)

    def _trade(self, st: _SymbolState, t_ms: int) -> bytes:
        regime = self.regime(st, t_ms)
        rng = st.rng
        if regime == "bull":
            buyer_initiated = rng.random() < 0.95
        elif regime == "bear":
            buyer_initiated = rng.random() < 0.05
        else:
            buyer_initiated = rng.random() < 0.5
        size = (20.0 / math.sqrt(st.price)) * rng.lognormvariate(0, 0.6)
        if regime != "calm":
            size *= 2.0
        price = round(st.price + (st.tick if buyer_initiated else -st.tick), 8)
        st.base_volume += size * 3
        st.quote_volume += size * price
        st.trade_id += 1
        data = {"e": "trade", "E": t_ms, "s": st.symbol, "t": st.trade_id, "p": _fmt(price),
                "q": _fmt(size), "T": t_ms, "m": not buyer_initiated, "M": True}
        return self._envelope(f"{st.symbol.lower()}@trade", data, t_ms)

    def _ticker(self, st: _SymbolState, t_ms: int) -> bytes:
        change = st.price - st.open_price
        data = {"e": "24hrTicker", "E": t_ms, "s": st.symbol, "p": _fmt(change),
                "P": _fmt(change / st.open_price * 100, 3), "w": _fmt(st.price),
                "x": _fmt(st.open_price), "c": _fmt(st.price), "Q": _fmt(0.01),
                "b": _fmt(st.price - st.tick), "B": _fmt(1.0), "a": _fmt(st.price + st.tick),
                "A": _fmt(1.0), "o": _fmt(st.open_price), "h": _fmt(max(st.price, st.open_price)),
                "l": _fmt(min(st.price, st.open_price)), "v": _fmt(st.base_volume),
                "q": _fmt(st.quote_volume), "O": t_ms - 86_400_000, "C": t_ms, "F": 1,
                "L": st.trade_id, "n": st.trade_id}
        return self._envelope(f"{st.symbol.lower()}@ticker", data, t_ms)

    def messages(self, duration_s: float) -> Iterator[tuple[int, bytes]]:
        """``(event_time_ms, message)`` in event-time order for ``duration_s`` seconds."""
        end_ms = self.start_ms + int(duration_s * 1000)
        step_ms = 10
        trade_prob = self.trades_per_second * step_ms / 1000
        t = self.start_ms
        while t < end_ms:
            for st in self.states:
                st.price = max(st.tick * 10, st.price + self._drift_per_ms(self.regime(st, t), st.price) * step_ms
                               + st.rng.gauss(0, st.price * 2e-6))
                st.price = round(round(st.price / st.tick) * st.tick, 8)
                if (t - self.start_ms) % self.depth_interval_ms == 0:
                    yield t, self._depth(st, t)
                if st.rng.random() < trade_prob:
                    yield t, self._trade(st, t)
                if (t - self.start_ms) % self.ticker_interval_ms == 0:
                    yield t, self._ticker(st, t)
            t += step_ms


def write_feed(path: str, duration_s: float = 180.0, symbols: tuple[str, ...] = DEFAULT_SYMBOLS,
               seed: int = 7) -> int:
    """Write a feed as JSON lines; returns the number of messages."""
    n = 0
    with open(path, "wb") as f:
        for _, message in MarketSimulator(symbols, seed).messages(duration_s):
            f.write(message + b"\n")
            n += 1
    return n


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write a reproducible synthetic Binance feed (JSON lines).")
    parser.add_argument("path")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS))
    args = parser.parse_args()
    n = write_feed(args.path, args.seconds, tuple(args.symbols.split(",")), args.seed)
    print(f"wrote {n} messages to {args.path}")


if __name__ == "__main__":
    main()
