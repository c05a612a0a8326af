"""Market metrics of order-book snapshots (docs/CONTRACT.md §4), for many books in one call.

Plain NumPy, no Numba: only the supervisor (the once-a-second pressure sample of every symbol)
and the web processes (one book per ``/depth`` request, every book for ``/summary``) need these
figures, and keeping Numba out of those processes saves ~70 MiB of resident memory in each
(docs/PERFORMANCE-notes.md). Vectorised over the books, a sample of 1,000 symbols costs about a
millisecond.

B and A are the quantities summed over all stored levels of each side. Each book gets one
float64 row in the order of ``DEPTH_METRIC_NAMES``; whatever cannot be computed (an empty side, a
zero total, a zero quantity sum) is NaN, never an error. Sums over an empty side are 0, counts
are the stored level counts. The strongest level of a side is the one with the largest quantity;
a tie goes to the level nearest the top.
"""

from __future__ import annotations

import numpy as np

from rtsig.layout import ASK, BID, PRICE, QTY

DEPTH_METRIC_NAMES: tuple[str, ...] = (
    "bid_volume", "ask_volume", "imbalance_ratio", "buy_pressure", "sell_pressure", "net_pressure",
    "total_liquidity", "bid_depth_5", "ask_depth_5", "bid_depth_10", "ask_depth_10",
    "best_bid", "best_ask", "spread_abs", "spread_bps", "mid_price",
    "vwap_bid", "vwap_ask", "vwap_spread",
    "strongest_bid_price", "strongest_bid_volume", "strongest_ask_price", "strongest_ask_volume",
    "bid_levels", "ask_levels",
)
DEPTH_METRICS_WIDTH = len(DEPTH_METRIC_NAMES)
DM = {name: i for i, name in enumerate(DEPTH_METRIC_NAMES)}
"""Column of each depth metric, by name."""

_SIDES = ((BID, "bid"), (ASK, "ask"))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is not positive."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0.0)
    return out


def depth_metrics(levels: np.ndarray, bid_counts: np.ndarray, ask_counts: np.ndarray) -> np.ndarray:
    """Metrics of N books: ``levels[n, side, i, PRICE|QTY]``, of which the first ``bid_counts[n]``
    bid rows and ``ask_counts[n]`` ask rows are read; returns float64 ``(N, DEPTH_METRICS_WIDTH)``."""
    levels = np.asarray(levels, dtype=np.float64)
    n_books, _, depth, _ = levels.shape
    out = np.empty((n_books, DEPTH_METRICS_WIDTH), dtype=np.float64)
    index = np.arange(depth)
    volumes = {}
    for side, name in _SIDES:
        count = np.asarray(bid_counts if side == BID else ask_counts, dtype=np.int64).reshape(n_books)
        stored = index[None, :] < count[:, None]
        price = np.where(stored, levels[:, side, :, PRICE], 0.0)
        quantity = np.where(stored, levels[:, side, :, QTY], 0.0)
        volume = quantity.sum(axis=1)
        volumes[side] = volume
        out[:, DM[f"{name}_volume"]] = volume
        out[:, DM[f"{name}_depth_5"]] = quantity[:, :5].sum(axis=1)
        out[:, DM[f"{name}_depth_10"]] = quantity[:, :10].sum(axis=1)
        out[:, DM[f"{name}_levels"]] = count
        out[:, DM[f"vwap_{name}"]] = _ratio((price * quantity).sum(axis=1), volume)
        has_levels = count > 0
        out[:, DM[f"best_{name}"]] = np.where(has_levels, levels[:, side, 0, PRICE], np.nan)
        # argmax returns the first maximum: a tie goes to the level nearest the top
        strongest = np.where(stored, levels[:, side, :, QTY], -np.inf).argmax(axis=1)
        rows = np.arange(n_books)
        out[:, DM[f"strongest_{name}_price"]] = np.where(has_levels, levels[rows, side, strongest, PRICE], np.nan)
        out[:, DM[f"strongest_{name}_volume"]] = np.where(has_levels, levels[rows, side, strongest, QTY], np.nan)
    bid_volume, ask_volume = volumes[BID], volumes[ASK]
    total = bid_volume + ask_volume
    out[:, DM["total_liquidity"]] = total
    buy = _ratio(100.0 * bid_volume, total)
    sell = _ratio(100.0 * ask_volume, total)
    out[:, DM["imbalance_ratio"]] = _ratio(bid_volume - ask_volume, total)
    out[:, DM["buy_pressure"]] = buy
    out[:, DM["sell_pressure"]] = sell
    out[:, DM["net_pressure"]] = buy - sell
    best_bid, best_ask = out[:, DM["best_bid"]], out[:, DM["best_ask"]]  # NaN for an empty side
    mid = (best_bid + best_ask) / 2.0
    spread = best_ask - best_bid
    out[:, DM["spread_abs"]] = spread
    out[:, DM["mid_price"]] = mid
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, DM["spread_bps"]] = np.where(mid != 0.0, spread / mid * 10_000.0, np.nan)
    out[:, DM["vwap_spread"]] = out[:, DM["vwap_ask"]] - out[:, DM["vwap_bid"]]
    return out
