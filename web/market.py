"""Market metrics from the live order books in shared memory (the ``/api/v1/metrics`` routes).

Every figure comes from the depth metrics (:mod:`rtsig.depth`) of a
seqlock-consistent copy of a symbol's newest book; history comes from the per-second pressure
ring the supervisor fills (:mod:`rtsig.pressure`). Values that cannot be computed (an empty
side) are null.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import numpy as np

from rtsig.depth import DM
from rtsig.layout import IMBALANCE, PRESSURE
from rtsig.pressure import book_metrics, every_book_metrics, history, trend
from rtsig.store import Store
from web import types as T
from web.envelope import not_found

TIMEFRAMES_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
TREND_WINDOW_S = 300
"""The window of the per-symbol ``trend`` in ``/metrics/all``."""
INTERPRETATION_THRESHOLD = 20.0
TREND_WORDS: dict[str, T.Trend] = {"rising": "bullish", "falling": "bearish", "stable": "neutral"}
"""The seed's words for the direction of the pressure trend (net pressure rising is bullish)."""
TRENDS = tuple(TREND_WORDS.values())


def _num(value: float, digits: int = 8) -> float | None:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def iso_ms(epoch_s: float) -> str:
    return (datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


def interpretation(net_pressure: float) -> T.Trend:
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
        assert sid is not None  # a book was found for it
        return sid, name, found[0], found[1]

    def depth(self, symbol: str) -> T.DepthMetrics:
        _, name, m, meta = self._metrics(symbol)
        return self._depth(name, m, meta)

    def _depth(self, name: str, m: np.ndarray, meta) -> T.DepthMetrics:
        receipt_s = int(meta["receipt_ns"]) / 1e9
        net = m[DM["net_pressure"]]
        return T.DepthMetrics(
            symbol=name,
            timestamp=iso_ms(receipt_s),
            imbalance=T.Imbalance(ratio=_num(m[DM["imbalance_ratio"]]),
                                  percent=_num(m[DM["imbalance_ratio"]] * 100.0, 6),
                                  bid_volume=_num(m[DM["bid_volume"]]),
                                  ask_volume=_num(m[DM["ask_volume"]])),
            pressure=T.PressureFigures(
                buy_pressure=_num(m[DM["buy_pressure"]], 6), sell_pressure=_num(m[DM["sell_pressure"]], 6),
                net_pressure=_num(net, 6),
                interpretation=interpretation(net) if math.isfinite(net) else "neutral"),
            liquidity=T.Liquidity(total=_num(m[DM["total_liquidity"]]),
                                  bid_depth_5=_num(m[DM["bid_depth_5"]]),
                                  ask_depth_5=_num(m[DM["ask_depth_5"]]),
                                  bid_depth_10=_num(m[DM["bid_depth_10"]]),
                                  ask_depth_10=_num(m[DM["ask_depth_10"]])),
            spread=T.Spread(best_bid=_num(m[DM["best_bid"]]), best_ask=_num(m[DM["best_ask"]]),
                            spread_abs=_num(m[DM["spread_abs"]]),
                            spread_bps=_num(m[DM["spread_bps"]], 6),
                            mid_price=_num(m[DM["mid_price"]])),
            vwap=T.Vwap(bid=_num(m[DM["vwap_bid"]]), ask=_num(m[DM["vwap_ask"]]),
                        spread=_num(m[DM["vwap_spread"]])),
            order_book_quality=T.BookQuality(
                bid_levels=int(m[DM["bid_levels"]]), ask_levels=int(m[DM["ask_levels"]]),
                total_levels=int(m[DM["bid_levels"]] + m[DM["ask_levels"]]),
                age_ms=max(0, round((self.clock() - receipt_s) * 1000))),
            strongest_levels=T.StrongestLevels(
                bid=T.Level(price=_num(m[DM["strongest_bid_price"]]),
                            volume=_num(m[DM["strongest_bid_volume"]])),
                ask=T.Level(price=_num(m[DM["strongest_ask_price"]]),
                            volume=_num(m[DM["strongest_ask_volume"]]))),
        )

    def pressure(self, symbol: str, timeframe: T.Timeframe, max_points: int) -> T.PressureMetrics:
        sid, name, m, _ = self._metrics(symbol)
        span = TIMEFRAMES_S[timeframe]
        seconds, rows = history(self.store, sid, self.clock(), span)
        pressure = rows[:, PRESSURE]
        direction, strength = trend(seconds, pressure)
        picked = _downsample(len(seconds), max_points)
        return T.PressureMetrics(
            symbol=name, timeframe=timeframe, timeframe_seconds=span,
            summary=T.PressureSummary(
                avg_pressure=_num(pressure.mean(), 6) if len(pressure) else None,
                max_pressure=_num(pressure.max(), 6) if len(pressure) else None,
                min_pressure=_num(pressure.min(), 6) if len(pressure) else None,
                current_pressure=_num(m[DM["net_pressure"]], 6),
                trend=TREND_WORDS[direction], trend_strength=float(strength)),
            total_data_points=int(len(seconds)),
            returned_data_points=int(len(picked)),
            pressure_history=[T.PressurePoint(iso_ms(seconds[i]), _num(rows[i, PRESSURE], 6)) for i in picked],
            imbalance_history=[T.ImbalancePoint(iso_ms(seconds[i]), _num(rows[i, IMBALANCE], 8))
                               for i in picked],
        )

    # ----- every symbol
    def rows(self) -> list[T.SymbolMetrics]:
        """One summary row per symbol that has a book."""
        out = []
        now = self.clock()
        sids, metrics, receipt_ns = every_book_metrics(self.store)
        for sid, m, received_ns in zip(sids.tolist(), metrics, receipt_ns.tolist()):
            seconds, rows = history(self.store, sid, now, TREND_WINDOW_S)
            out.append(T.SymbolMetrics(
                symbol=self.store.symbol_name(sid),
                timestamp=iso_ms(received_ns / 1e9),
                net_pressure=_num(m[DM["net_pressure"]], 6),
                buy_pressure=_num(m[DM["buy_pressure"]], 6),
                sell_pressure=_num(m[DM["sell_pressure"]], 6),
                imbalance_ratio=_num(m[DM["imbalance_ratio"]]),
                imbalance_percent=_num(m[DM["imbalance_ratio"]] * 100.0, 6),
                spread_bps=_num(m[DM["spread_bps"]], 6),
                total_liquidity=_num(m[DM["total_liquidity"]]),
                mid_price=_num(m[DM["mid_price"]]),
                trend=TREND_WORDS[trend(seconds, rows[:, PRESSURE])[0]],
            ))
        return out

    def summary(self) -> T.MarketSummary:
        rows = self.rows()
        nets = [r.net_pressure for r in rows if r.net_pressure is not None]
        moods = [interpretation(n) for n in nets]

        def mean(key: str) -> float | None:
            values = [getattr(r, key) for r in rows if getattr(r, key) is not None]
            return _num(sum(values) / len(values), 6) if values else None

        def ranked(key: str) -> list[T.SymbolMetrics]:
            present = [r for r in rows if getattr(r, key) is not None]
            return sorted(present, key=lambda r: (-getattr(r, key), r.symbol))[:5]

        return T.MarketSummary(
            symbols_tracked=len(rows),
            market_sentiment=T.Sentiment(
                bullish_symbols=moods.count("bullish"), bearish_symbols=moods.count("bearish"),
                neutral_symbols=len(rows) - moods.count("bullish") - moods.count("bearish"),
                avg_net_pressure=mean("net_pressure"), avg_imbalance_ratio=mean("imbalance_ratio")),
            liquidity=T.MarketLiquidity(avg_spread_bps=mean("spread_bps"),
                                        total_liquidity=_num(sum(r.total_liquidity or 0.0 for r in rows))),
            top_pressure_symbols=T.TopPressure(
                highest_buy_pressure=[T.BuyPressureRank(r.symbol, r.buy_pressure, r.net_pressure)
                                      for r in ranked("buy_pressure")],
                highest_sell_pressure=[T.SellPressureRank(r.symbol, r.sell_pressure, r.net_pressure)
                                       for r in ranked("sell_pressure")]),
        )

    def all(self, q: T.MarketAllQuery) -> T.MarketAll:
        rows = self.rows()
        if q.symbols:
            wanted = {s.strip().upper() for s in q.symbols.split(",") if s.strip()}
            rows = [r for r in rows if r.symbol in wanted]
        if q.min_pressure is not None:
            rows = [r for r in rows if r.net_pressure is not None and r.net_pressure >= q.min_pressure]
        if q.max_pressure is not None:
            rows = [r for r in rows if r.net_pressure is not None and r.net_pressure <= q.max_pressure]
        if q.trend:
            rows = [r for r in rows if r.trend == q.trend]
        key = {"symbol": "symbol", "pressure": "net_pressure", "imbalance": "imbalance_ratio",
               "liquidity": "total_liquidity"}[q.sort_by]
        present = [r for r in rows if getattr(r, key) is not None]
        missing = [r for r in rows if getattr(r, key) is None]  # nulls last, whatever the order
        present.sort(key=lambda r: (getattr(r, key), r.symbol), reverse=q.sort_order == "desc")
        rows = present + missing
        page = rows[q.offset:q.offset + q.limit]
        return T.MarketAll(symbols=page, pagination=T.Pagination(
            total=len(rows), limit=q.limit, offset=q.offset, has_next=q.offset + len(page) < len(rows)))


def _downsample(n: int, max_points: int) -> list[int]:
    """At most ``max_points`` evenly spaced indices of ``n`` points, the newest always kept."""
    if n <= max_points:
        return list(range(n))
    step = n / max_points
    picked = sorted({min(n - 1, int(round(n - 1 - k * step))) for k in range(max_points)})
    return picked
