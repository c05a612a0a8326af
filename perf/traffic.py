"""Realistic mixed Binance traffic for the perf harness, generated fast and deterministically.

Message ``seq`` is a depth20 snapshot, a trade or a 24 h ticker (8 : 11 : 1, as a busy Binance
feed mixes them) for symbol ``seq % n_symbols``; a third of the symbols use USD-M futures shapes.
Books are balanced (equal quantities, ratio 1) except the *triggering* ones, skewed 2 : 1 so that
order-book skew signals (in rtsig and in the seed's strategy alike); trades alternate sides at a
constant price and tickers do not move, so nothing else fires. ``signal_share`` is the fraction of
all messages that trigger.

Every message carries ``message_id = "lg" + ("T" | "N") + 12-digit seq``: the stamp that ties an
output (a signal, or the raw floor's republished copy) back to its input for latency.
"""

from __future__ import annotations

import orjson

KIND_CYCLE = ("depth",) * 8 + ("trade",) * 11 + ("ticker",)
DEPTH_SHARE = KIND_CYCLE.count("depth") / len(KIND_CYCLE)
TRIGGER_MARK = b"lgT"
BASE_TIME_MS = 1_730_462_400_000


def symbol_name(k: int) -> str:
    return f"S{k:04d}USDT"


def parse_seq(message_id: str | bytes) -> int:
    """The seq of a stamp ``lg?000000000123``."""
    return int(message_id[3:15])


class Traffic:
    def __init__(self, n_symbols: int = 100, signal_share: float = 0.02, futures_share: float = 1 / 3) -> None:
        if not 0 <= signal_share <= DEPTH_SHARE:
            raise ValueError(f"signal_share must be within [0, {DEPTH_SHARE}]")
        self.n_symbols = n_symbols
        self.trigger_per_mille = round(signal_share / DEPTH_SHARE * 1000)
        self.templates = [self._templates(k, k < n_symbols * futures_share) for k in range(n_symbols)]

    def _templates(self, k: int, futures: bool) -> dict[str, tuple[bytes, bytes]]:
        sym = symbol_name(k)
        low = sym.lower()
        price = 10.0 + k
        tick = price * 1e-5  # spread 0.002 %: inside every strategy's spread limit
        out = {}
        for name, bid_qty, ask_qty in (("depth", 5.0, 5.0), ("depth_trigger", 10.0, 5.0)):
            bids = [[f"{price - tick * (i + 1):.8f}", f"{bid_qty:.8f}"] for i in range(20)]
            asks = [[f"{price + tick * (i + 1):.8f}", f"{ask_qty:.8f}"] for i in range(20)]
            if futures:
                data = {"e": "depthUpdate", "E": BASE_TIME_MS, "T": BASE_TIME_MS, "s": sym,
                        "U": 4445146128295, "u": 4445146133983, "pu": 4445146127899, "b": bids, "a": asks}
            else:
                data = {"lastUpdateId": 165284515, "bids": bids, "asks": asks}
            out[name] = self._split(f"{low}@depth20@100ms", data)
        for side, maker in (("trade_buy", False), ("trade_sell", True)):
            if futures:
                data = {"e": "aggTrade", "E": BASE_TIME_MS, "a": 3422444173, "s": sym, "p": f"{price:.2f}",
                        "q": "0.500", "f": 8006170903, "l": 8006170903, "T": BASE_TIME_MS, "m": maker}
                stream = f"{low}@aggTrade"
            else:
                data = {"e": "trade", "E": BASE_TIME_MS, "s": sym, "t": 6720857582, "p": f"{price:.8f}",
                        "q": "0.50000000", "T": BASE_TIME_MS, "m": maker, "M": True}
                stream = f"{low}@trade"
            out[side] = self._split(stream, data)
        data = {"e": "24hrTicker", "E": BASE_TIME_MS, "s": sym, "p": "0.10", "P": "0.100", "w": f"{price:.8f}",
                "c": f"{price:.8f}", "Q": "0.00012000", "o": f"{price:.8f}", "h": f"{price + 1:.8f}",
                "l": f"{price - 1:.8f}", "v": "2109.00156000", "q": "199349.64212320",
                "O": BASE_TIME_MS - 86_400_000, "C": BASE_TIME_MS, "F": 2008166, "L": 2088364, "n": 80199}
        out["ticker"] = self._split(f"{low}@ticker", data)
        return out

    @staticmethod
    def _split(stream: str, data: dict) -> tuple[bytes, bytes]:
        body = orjson.dumps({"stream": stream, "data": data, "timestamp": "2024-11-01T12:00:00.125000Z",
                             "source": "binance-websocket", "version": "1.0", "message_id": "@@"})
        prefix, suffix = body.split(b'"@@"')
        return prefix + b'"', b'"' + suffix

    def triggers(self, seq: int) -> bool:
        cycle = seq // self.n_symbols
        return KIND_CYCLE[cycle % len(KIND_CYCLE)] == "depth" \
            and (cycle * 7919 + seq) % 1000 < self.trigger_per_mille

    def message(self, seq: int) -> bytes:
        """The ``seq``-th message (deterministic)."""
        templates = self.templates[seq % self.n_symbols]
        cycle = seq // self.n_symbols
        kind = KIND_CYCLE[cycle % len(KIND_CYCLE)]
        trigger = kind == "depth" and (cycle * 7919 + seq) % 1000 < self.trigger_per_mille
        if kind == "depth":
            prefix, suffix = templates["depth_trigger" if trigger else "depth"]
        elif kind == "trade":
            prefix, suffix = templates["trade_buy" if cycle % 2 else "trade_sell"]
        else:
            prefix, suffix = templates["ticker"]
        return b"%slg%s%012d%s" % (prefix, b"T" if trigger else b"N", seq, suffix)

    def marker(self, symbol: int, seq: int) -> bytes:
        """A triggering depth message for one symbol: its output proves the symbol is drained."""
        prefix, suffix = self.templates[symbol]["depth_trigger"]
        return b"%slgT%012d%s" % (prefix, seq, suffix)
