"""Scoring signals against what the market did next (docs/EVALUATION.md has the definitions).

For a signal at event time ``t0`` on a price series ``p`` (the symbol's tape, :mod:`.tape`):

* ``entry = p(t0)``, the newest price with event time ≤ ``t0`` (the triggering event included);
* for a horizon ``h``: ``exit = p(t0 + h)`` the same way, and the *signed return*
  ``sign · (exit / entry − 1) · 10 000`` bps, ``sign`` = +1 for buy, −1 for sell. A horizon that
  ends after the symbol's last price on the tape (or after ``end_ms``: a train window's end) is
  *unscored* — the data cannot say — and left out of every figure but ``signals``;
* a *hit* is a signed return > 0 (a flat price is not a hit);
* *first touch*: over the prices with event time in ``(t0, t0 + h]``, whether the signal's own
  ``stop_loss`` (buy: p ≤ stop_loss; sell: p ≥ stop_loss) or ``take_profit`` (buy: p ≥
  take_profit; sell: p ≤ take_profit) is reached first, or neither;
* *rank IC*: Spearman's correlation (average ranks for ties) between confidence and signed return
  over the scored signals of a group; None with fewer than 3 or when either side is constant.

Everything here is NumPy over arrays; ``tests/evaluation_reference.py`` is the slow version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rtsig.evaluation.tape import Series

TOUCH_NONE, TOUCH_TAKE, TOUCH_STOP = 0, 1, -1
ALL = "*"
"""The symbol (or strategy) of a group that takes every symbol (strategy)."""
CONFIDENCE_EDGES = (0.0, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001)
"""Confidence buckets of the hit-rate plot: [lo, hi); the last holds the cap, 0.95."""


@dataclass
class Outcomes:
    """One row per signal; ``returns_bps[i, k]`` is NaN where horizon k is unscored."""

    strategy: np.ndarray  # str
    symbol: np.ndarray  # str
    market: np.ndarray  # str
    sign: np.ndarray  # +1 buy, -1 sell
    confidence: np.ndarray
    event_ms: np.ndarray
    entry: np.ndarray
    returns_bps: np.ndarray  # (n, horizons)
    touch: np.ndarray  # (n, horizons): TOUCH_*
    horizons_ms: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.sign)

    def select(self, mask: np.ndarray) -> Outcomes:
        return Outcomes(self.strategy[mask], self.symbol[mask], self.market[mask], self.sign[mask],
                        self.confidence[mask], self.event_ms[mask], self.entry[mask],
                        self.returns_bps[mask], self.touch[mask], self.horizons_ms)


def score(signals: Sequence[dict], series: dict[tuple[str, str], Series | None],
          horizons_ms: Sequence[int], end_ms: int | None = None) -> Outcomes:
    """Outcomes of ``signals`` (published signal objects) on ``series[(symbol, market)]``."""
    n, n_h = len(signals), len(horizons_ms)
    horizons = np.asarray(horizons_ms, dtype=np.int64)
    strategy = np.array([s["strategy_id"] for s in signals], dtype=object)
    symbol = np.array([s["symbol"] for s in signals], dtype=object)
    market = np.array([s["metadata"].get("market", "spot") for s in signals], dtype=object)
    sign = np.array([1 if s["action"] == "buy" else -1 for s in signals], dtype=np.int8)
    confidence = np.array([float(s["confidence"]) for s in signals], dtype=np.float64)
    event_ms = np.array([int(s["metadata"]["event_time"]) for s in signals], dtype=np.int64)
    stop = np.array([float(s["stop_loss"]) for s in signals], dtype=np.float64)
    take = np.array([float(s["take_profit"]) for s in signals], dtype=np.float64)
    entry = np.full(n, np.nan)
    returns = np.full((n, n_h), np.nan)
    touch = np.zeros((n, n_h), dtype=np.int8)
    keys = list(zip(symbol.tolist(), market.tolist()))
    for key in set(keys):
        path = series.get(key)
        if path is None or len(path.times_ms) == 0:
            continue
        rows = np.array([i for i, k in enumerate(keys) if k == key], dtype=np.int64)
        t, p = path.times_ms, path.prices
        last = int(t[-1]) if end_ms is None else min(int(t[-1]), int(end_ms))
        i0 = np.searchsorted(t, event_ms[rows], side="right") - 1
        has_entry = i0 >= 0
        entry[rows[has_entry]] = p[i0[has_entry]]
        for k, h in enumerate(horizons.tolist()):
            t1 = event_ms[rows] + h
            i1 = np.searchsorted(t, t1, side="right") - 1
            ok = has_entry & (t1 <= last)
            r = rows[ok]
            returns[r, k] = sign[r] * (p[i1[ok]] / p[i0[ok]] - 1.0) * 1e4
            for row, a, b in zip(r.tolist(), i0[ok].tolist(), i1[ok].tolist()):
                touch[row, k] = _first_touch(p[a + 1:b + 1], int(sign[row]), stop[row], take[row])
    return Outcomes(strategy, symbol, market, sign, confidence, event_ms, entry, returns, touch,
                    tuple(int(h) for h in horizons_ms))


def _first_touch(window: np.ndarray, sign: int, stop: float, take: float) -> int:
    if len(window) == 0:
        return TOUCH_NONE
    if sign > 0:
        stop_hit, take_hit = window <= stop, window >= take
    else:
        stop_hit, take_hit = window >= stop, window <= take
    s = int(np.argmax(stop_hit)) if stop_hit.any() else len(window)
    t = int(np.argmax(take_hit)) if take_hit.any() else len(window)
    if s == t == len(window):
        return TOUCH_NONE
    return TOUCH_STOP if s <= t else TOUCH_TAKE


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    out = np.empty(len(x), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for a, b in zip(starts.tolist(), ends.tolist()):
        out[order[a:b]] = (a + 1 + b) / 2.0
    return out


def rank_ic(confidence: np.ndarray, returns: np.ndarray) -> float | None:
    """Spearman's rho of confidence and signed return; None when it is not defined."""
    if len(returns) < 3:
        return None
    a, b = ranks(confidence), ranks(returns)
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den == 0.0:
        return None
    return float((a * b).sum() / den)


def group_metrics(o: Outcomes, k: int) -> dict:
    """The figures of one group at horizon index ``k``."""
    r = o.returns_bps[:, k]
    scored = np.isfinite(r)
    rs, n = r[scored], int(scored.sum())
    touch = o.touch[scored, k]
    return {
        "signals": len(o),
        "scored": n,
        "hit_rate": float((rs > 0).mean()) if n else None,
        "mean_bps": float(rs.mean()) if n else None,
        "median_bps": float(np.median(rs)) if n else None,
        "rank_ic": rank_ic(o.confidence[scored], rs),
        "stop_first": float((touch == TOUCH_STOP).mean()) if n else None,
        "take_first": float((touch == TOUCH_TAKE).mean()) if n else None,
    }


def _groups(o: Outcomes) -> Iterable[tuple[str, str, str, np.ndarray]]:
    """(strategy, symbol, market, mask): each strategy over all symbols, then per symbol."""
    for strategy in sorted(set(o.strategy.tolist())):
        mine = o.strategy == strategy
        yield strategy, ALL, ALL, mine
        pairs = sorted(set(zip(o.symbol[mine].tolist(), o.market[mine].tolist())))
        for symbol, market in pairs:
            yield strategy, symbol, market, mine & (o.symbol == symbol) & (o.market == market)


def summarize(o: Outcomes) -> list[dict]:
    """Per strategy (all symbols, then each symbol) and horizon: :func:`group_metrics`."""
    rows = []
    for strategy, symbol, market, mask in _groups(o):
        sub = o.select(mask)
        for k, h in enumerate(o.horizons_ms):
            rows.append({"strategy": strategy, "symbol": symbol, "market": market,
                         "horizon_s": h / 1000, **group_metrics(sub, k)})
    return rows


def confidence_buckets(o: Outcomes, edges: Sequence[float] = CONFIDENCE_EDGES) -> list[dict]:
    """Per strategy and horizon, per confidence bucket ``[lo, hi)``: scored signals, hit rate and
    mean signed return."""
    rows = []
    for strategy in sorted(set(o.strategy.tolist())):
        mine = o.strategy == strategy
        for k, h in enumerate(o.horizons_ms):
            r = o.returns_bps[:, k]
            for lo, hi in zip(edges[:-1], edges[1:]):
                pick = mine & np.isfinite(r) & (o.confidence >= lo) & (o.confidence < hi)
                n = int(pick.sum())
                if n == 0:
                    continue
                rows.append({"strategy": strategy, "horizon_s": h / 1000, "lo": lo,
                             "hi": min(hi, 1.0), "scored": n,
                             "hit_rate": float((r[pick] > 0).mean()),
                             "mean_bps": float(r[pick].mean())})
    return rows


def cumulative(o: Outcomes, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per strategy: (event times, cumulative signed return in bps) of its scored signals at
    horizon index ``k``, in event-time order."""
    out = {}
    for strategy in sorted(set(o.strategy.tolist())):
        pick = (o.strategy == strategy) & np.isfinite(o.returns_bps[:, k])
        if not pick.any():
            continue
        t, r = o.event_ms[pick], o.returns_bps[pick, k]
        order = np.argsort(t, kind="stable")
        out[strategy] = (t[order], np.cumsum(r[order]))
    return out
