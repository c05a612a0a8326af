"""Slow, obvious versions of ``rtsig evaluate``'s metrics (rtsig/evaluation/metrics.py).

Plain Python loops over plain lists, written from docs/EVALUATION.md, never from the fast code.
"""

from __future__ import annotations

import math
import statistics


def price_at(path: list[tuple[int, float]], t: int) -> float | None:
    """The newest price with time ≤ t (later in the list wins a tie), else None."""
    found = None
    for time_ms, price in sorted(path, key=lambda x: x[0]):
        if time_ms <= t:
            found = price
    return found


def outcome(signal: dict, path: list[tuple[int, float]], horizon_ms: int,
            end_ms: int | None = None) -> tuple[float | None, str | None]:
    """(signed return in bps or None when unscored, 'stop' / 'take' / 'none' or None)."""
    if not path:
        return None, None
    t0 = signal["metadata"]["event_time"]
    last = max(t for t, _ in path)
    if end_ms is not None:
        last = min(last, end_ms)
    entry = price_at(path, t0)
    if entry is None or t0 + horizon_ms > last:
        return None, None
    exit_ = price_at(path, t0 + horizon_ms)
    sign = 1 if signal["action"] == "buy" else -1
    signed = sign * (exit_ / entry - 1) * 10_000
    touched = "none"
    for t, p in sorted(path, key=lambda x: x[0]):  # stable: list order inside a millisecond
        if not (t0 < t <= t0 + horizon_ms):
            continue
        if sign > 0:
            stop, take = p <= signal["stop_loss"], p >= signal["take_profit"]
        else:
            stop, take = p >= signal["stop_loss"], p <= signal["take_profit"]
        if stop:
            touched = "stop"
            break
        if take:
            touched = "take"
            break
    return signed, touched


def average_ranks(xs: list[float]) -> list[float]:
    out = []
    for x in xs:
        below = sum(1 for y in xs if y < x)
        equal = sum(1 for y in xs if y == x)
        out.append(below + (equal + 1) / 2)
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    a, b = average_ranks(xs), average_ranks(ys)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return None
    return cov / math.sqrt(va * vb)


def group(signals: list[dict], paths: dict, horizon_ms: int, end_ms: int | None = None) -> dict:
    """The figures of one group of signals at one horizon."""
    scored = []
    for s in signals:
        key = (s["symbol"], s["metadata"].get("market", "spot"))
        r, touched = outcome(s, paths.get(key, []), horizon_ms, end_ms)
        if r is not None:
            scored.append((s["confidence"], r, touched))
    n = len(scored)
    returns = [r for _, r, _ in scored]
    return {
        "signals": len(signals),
        "scored": n,
        "hit_rate": sum(1 for r in returns if r > 0) / n if n else None,
        "mean_bps": sum(returns) / n if n else None,
        "median_bps": statistics.median(returns) if n else None,
        "rank_ic": spearman([c for c, _, _ in scored], returns),
        "stop_first": sum(1 for *_, t in scored if t == "stop") / n if n else None,
        "take_first": sum(1 for *_, t in scored if t == "take") / n if n else None,
    }
