"""Market metrics from the live order books in shared memory (the ``/api/v1/metrics`` routes).

Every figure comes from the depth metrics (:mod:`rtsig.depth`) of a
seqlock-consistent copy of a symbol's newest book; history comes from the per-second pressure
ring the supervisor fills (:mod:`rtsig.pressure`). Values that cannot be computed (an empty
side) are null.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np

from rtsig.depth import DM
from rtsig.layout import IMBALANCE, PRESSURE
from rtsig.pressure import book_metrics, every_book_metrics, history, trend
from rtsig.store import Store
from web.envelope import not_found

TIMEFRAMES_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
TREND_WINDOW_S = 300
"""The window of the per-symbol ``trend`` in ``/metrics/all``."""
INTERPRETATION_THRESHOLD = 20.0
TREND_WORDS = {"rising": "bullish", "falling": "bearish", "stable": "neutral"}
"""The seed's words for the direction of the pressure trend (net pressure rising is bullish)."""
TRENDS = tuple(TREND_WORDS.values())


def _num(value: float, digits: int = 8) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def iso_ms(epoch_s: float) -> str:
    return (datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


def interpretation(net_pressure: float) -> str:
    if net_pressure > INTERPRETATION_THRESHOLD:
        return "bullish"
    if net_pressure < -INTERPRETATION_THRESHOLD:
        return "bearish"
    return "neutral"


class MarketView:
    """Read-only market metrics over a store; ``clock`` is wall time in seconds."""

    def __init__(self, store: Store, clock=time.time) -> None:
        self.store = store
        self.clock = clock

    # ----- one symbol
    def _metrics(self, symbol: str) -> tuple[int, str, np.ndarray, np.void]:
        name = symbol.strip().upper()
        sid = self.store.symbol_id(name)
        found = None if sid is None else book_metrics(self.store, sid)
        if found is None:
            raise not_found(f"no order book for symbol {symbol!r} yet (unknown or not seen)")
        return sid, name, found[0], found[1]

    def depth(self, symbol: str) -> dict:
        _, name, m, meta = self._metrics(symbol)
        return self._depth(name, m, meta)

    def _depth(self, name: str, m: np.ndarray, meta) -> dict:
        receipt_s = int(meta["receipt_ns"]) / 1e9
        net = m[DM["net_pressure"]]
        return {
            "symbol": name,
            "timestamp": iso_ms(receipt_s),
            "imbalance": {"ratio": _num(m[DM["imbalance_ratio"]]),
                          "percent": _num(m[DM["imbalance_ratio"]] * 100.0, 6),
                          "bid_volume": _num(m[DM["bid_volume"]]),
                          "ask_volume": _num(m[DM["ask_volume"]])},
            "pressure": {"buy_pressure": _num(m[DM["buy_pressure"]], 6),
                         "sell_pressure": _num(m[DM["sell_pressure"]], 6),
                         "net_pressure": _num(net, 6),
                         "interpretation": interpretation(net) if math.isfinite(net) else "neutral"},
            "liquidity": {"total": _num(m[DM["total_liquidity"]]),
                          "bid_depth_5": _num(m[DM["bid_depth_5"]]),
                          "ask_depth_5": _num(m[DM["ask_depth_5"]]),
                          "bid_depth_10": _num(m[DM["bid_depth_10"]]),
                          "ask_depth_10": _num(m[DM["ask_depth_10"]])},
            "spread": {"best_bid": _num(m[DM["best_bid"]]), "best_ask": _num(m[DM["best_ask"]]),
                       "spread_abs": _num(m[DM["spread_abs"]]),
                       "spread_bps": _num(m[DM["spread_bps"]], 6),
                       "mid_price": _num(m[DM["mid_price"]])},
            "vwap": {"bid": _num(m[DM["vwap_bid"]]), "ask": _num(m[DM["vwap_ask"]]),
                     "spread": _num(m[DM["vwap_spread"]])},
            "order_book_quality": {"bid_levels": int(m[DM["bid_levels"]]),
                                   "ask_levels": int(m[DM["ask_levels"]]),
                                   "total_levels": int(m[DM["bid_levels"]] + m[DM["ask_levels"]]),
                                   "age_ms": max(0, round((self.clock() - receipt_s) * 1000))},
            "strongest_levels": {
                "bid": {"price": _num(m[DM["strongest_bid_price"]]),
                        "volume": _num(m[DM["strongest_bid_volume"]])},
                "ask": {"price": _num(m[DM["strongest_ask_price"]]),
                        "volume": _num(m[DM["strongest_ask_volume"]])}},
        }

    def pressure(self, symbol: str, timeframe: str, max_points: int) -> dict:
        sid, name, m, _ = self._metrics(symbol)
        span = TIMEFRAMES_S[timeframe]
        seconds, rows = history(self.store, sid, self.clock(), span)
        pressure = rows[:, PRESSURE]
        direction, strength = trend(seconds, pressure)
        direction = TREND_WORDS[direction]
        picked = _downsample(len(seconds), max_points)
        return {
            "symbol": name, "timeframe": timeframe, "timeframe_seconds": span,
            "summary": {"avg_pressure": _num(pressure.mean(), 6) if len(pressure) else None,
                        "max_pressure": _num(pressure.max(), 6) if len(pressure) else None,
                        "min_pressure": _num(pressure.min(), 6) if len(pressure) else None,
                        "current_pressure": _num(m[DM["net_pressure"]], 6),
                        "trend": direction, "trend_strength": strength},
            "total_data_points": int(len(seconds)),
            "returned_data_points": int(len(picked)),
            "pressure_history": [{"timestamp": iso_ms(seconds[i]), "pressure": _num(rows[i, PRESSURE], 6)}
                                 for i in picked],
            "imbalance_history": [{"timestamp": iso_ms(seconds[i]),
                                   "imbalance": _num(rows[i, IMBALANCE], 8)} for i in picked],
        }

    # ----- every symbol
    def rows(self) -> list[dict]:
        """One summary row per symbol that has a book."""
        out = []
        now = self.clock()
        sids, metrics, receipt_ns = every_book_metrics(self.store)
        for sid, m, received_ns in zip(sids.tolist(), metrics, receipt_ns.tolist()):
            seconds, rows = history(self.store, sid, now, TREND_WINDOW_S)
            direction = TREND_WORDS[trend(seconds, rows[:, PRESSURE])[0]]
            out.append({
                "symbol": self.store.symbol_name(sid),
                "timestamp": iso_ms(received_ns / 1e9),
                "net_pressure": _num(m[DM["net_pressure"]], 6),
                "buy_pressure": _num(m[DM["buy_pressure"]], 6),
                "sell_pressure": _num(m[DM["sell_pressure"]], 6),
                "imbalance_ratio": _num(m[DM["imbalance_ratio"]]),
                "imbalance_percent": _num(m[DM["imbalance_ratio"]] * 100.0, 6),
                "spread_bps": _num(m[DM["spread_bps"]], 6),
                "total_liquidity": _num(m[DM["total_liquidity"]]),
                "mid_price": _num(m[DM["mid_price"]]),
                "trend": direction,
            })
        return out

    def summary(self) -> dict:
        rows = self.rows()
        nets = [r["net_pressure"] for r in rows if r["net_pressure"] is not None]
        moods = [interpretation(n) for n in nets]

        def mean(key: str) -> float | None:
            values = [r[key] for r in rows if r[key] is not None]
            return _num(sum(values) / len(values), 6) if values else None

        def top(key: str) -> list[dict]:
            ranked = sorted((r for r in rows if r[key] is not None), key=lambda r: (-r[key], r["symbol"]))
            return [{"symbol": r["symbol"], key: r[key], "net_pressure": r["net_pressure"]}
                    for r in ranked[:5]]

        return {
            "symbols_tracked": len(rows),
            "market_sentiment": {"bullish_symbols": moods.count("bullish"),
                                 "bearish_symbols": moods.count("bearish"),
                                 "neutral_symbols": len(rows) - moods.count("bullish") - moods.count("bearish"),
                                 "avg_net_pressure": mean("net_pressure"),
                                 "avg_imbalance_ratio": mean("imbalance_ratio")},
            "liquidity": {"avg_spread_bps": mean("spread_bps"),
                          "total_liquidity": _num(sum(r["total_liquidity"] or 0.0 for r in rows))},
            "top_pressure_symbols": {"highest_buy_pressure": top("buy_pressure"),
                                     "highest_sell_pressure": top("sell_pressure")},
        }

    def all(self, symbols: list[str] | None, min_pressure: float | None, max_pressure: float | None,
            trend_filter: str | None, sort_by: str, sort_order: str, limit: int, offset: int) -> dict:
        rows = self.rows()
        if symbols:
            wanted = {s.strip().upper() for s in symbols if s.strip()}
            rows = [r for r in rows if r["symbol"] in wanted]
        if min_pressure is not None:
            rows = [r for r in rows if r["net_pressure"] is not None and r["net_pressure"] >= min_pressure]
        if max_pressure is not None:
            rows = [r for r in rows if r["net_pressure"] is not None and r["net_pressure"] <= max_pressure]
        if trend_filter:
            rows = [r for r in rows if r["trend"] == trend_filter]
        key = {"symbol": "symbol", "pressure": "net_pressure", "imbalance": "imbalance_ratio",
               "liquidity": "total_liquidity"}[sort_by]
        present = [r for r in rows if r[key] is not None]
        missing = [r for r in rows if r[key] is None]  # nulls last, whatever the order
        present.sort(key=lambda r: (r[key], r["symbol"]), reverse=sort_order == "desc")
        rows = present + missing
        page = rows[offset:offset + limit]
        return {"symbols": page,
                "pagination": {"total": len(rows), "limit": limit, "offset": offset,
                               "has_next": offset + len(page) < len(rows)}}


def _downsample(n: int, max_points: int) -> list[int]:
    """At most ``max_points`` evenly spaced indices of ``n`` points, the newest always kept."""
    if n <= max_points:
        return list(range(n))
    step = n / max_points
    picked = sorted({min(n - 1, int(round(n - 1 - k * step))) for k in range(max_points)})
    return picked
