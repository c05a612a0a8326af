"""depth_metrics: the market metrics of one order-book snapshot (interfaces.md §4).

B and A are the quantities summed over all stored levels of each side. The kernel fills one
float64 row in the order of ``DEPTH_METRIC_NAMES`` and never raises: whatever cannot be computed
(an empty side, a zero total, a zero quantity sum) is NaN. Sums over an empty side are 0, counts
are the stored level counts. The strongest level of a side is the one with the largest quantity;
a tie goes to the level nearest the top.
"""

from __future__ import annotations

import math

from numba import njit

from kernels.output import DM
from rtsig.layout import ASK, BID, PRICE, QTY

# Columns, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
BID_VOLUME = DM["bid_volume"]
ASK_VOLUME = DM["ask_volume"]
IMBALANCE_RATIO = DM["imbalance_ratio"]
BUY_PRESSURE = DM["buy_pressure"]
SELL_PRESSURE = DM["sell_pressure"]
NET_PRESSURE = DM["net_pressure"]
TOTAL_LIQUIDITY = DM["total_liquidity"]
BID_DEPTH_5 = DM["bid_depth_5"]
ASK_DEPTH_5 = DM["ask_depth_5"]
BID_DEPTH_10 = DM["bid_depth_10"]
ASK_DEPTH_10 = DM["ask_depth_10"]
BEST_BID = DM["best_bid"]
BEST_ASK = DM["best_ask"]
SPREAD_ABS = DM["spread_abs"]
SPREAD_BPS = DM["spread_bps"]
MID_PRICE = DM["mid_price"]
VWAP_BID = DM["vwap_bid"]
VWAP_ASK = DM["vwap_ask"]
VWAP_SPREAD = DM["vwap_spread"]
STRONGEST_BID_PRICE = DM["strongest_bid_price"]
STRONGEST_BID_VOLUME = DM["strongest_bid_volume"]
STRONGEST_ASK_PRICE = DM["strongest_ask_price"]
STRONGEST_ASK_VOLUME = DM["strongest_ask_volume"]
BID_LEVELS = DM["bid_levels"]
ASK_LEVELS = DM["ask_levels"]




@njit(cache=True, error_model="numpy")
def _side(levels, side, count, out, volume_col, depth_5_col, depth_10_col, best_col, vwap_col,
          strongest_price_col, strongest_volume_col, levels_col):
    """Fill one side's columns; return its total quantity."""
    volume = 0.0
    notional = 0.0
    depth_5 = 0.0
    depth_10 = 0.0
    strongest = -1
    for i in range(count):
        quantity = levels[side, i, QTY]
        volume += quantity
        notional += levels[side, i, PRICE] * quantity
        if i < 5:
            depth_5 += quantity
        if i < 10:
            depth_10 += quantity
        if strongest < 0 or quantity > levels[side, strongest, QTY]:
            strongest = i
    out[volume_col] = volume
    out[depth_5_col] = depth_5
    out[depth_10_col] = depth_10
    out[levels_col] = float(count)
    if count > 0:
        out[best_col] = levels[side, 0, PRICE]
        out[strongest_price_col] = levels[side, strongest, PRICE]
        out[strongest_volume_col] = levels[side, strongest, QTY]
    else:
        out[best_col] = math.nan
        out[strongest_price_col] = math.nan
        out[strongest_volume_col] = math.nan
    out[vwap_col] = notional / volume if volume > 0.0 else math.nan
    return volume


@njit(cache=True, error_model="numpy")
def depth_metrics(levels, bid_count, ask_count, out):
    """Fill ``out`` (float64, DEPTH_METRICS_WIDTH) with the metrics of one snapshot.

    ``levels[side, i, PRICE|QTY]`` as for orderbook_skew; only the first ``bid_count`` /
    ``ask_count`` rows are read.
    """
    bid_volume = _side(levels, BID, bid_count, out, BID_VOLUME, BID_DEPTH_5, BID_DEPTH_10,
                       BEST_BID, VWAP_BID, STRONGEST_BID_PRICE, STRONGEST_BID_VOLUME, BID_LEVELS)
    ask_volume = _side(levels, ASK, ask_count, out, ASK_VOLUME, ASK_DEPTH_5, ASK_DEPTH_10,
                       BEST_ASK, VWAP_ASK, STRONGEST_ASK_PRICE, STRONGEST_ASK_VOLUME, ASK_LEVELS)
    total = bid_volume + ask_volume
    out[TOTAL_LIQUIDITY] = total
    if total > 0.0:
        buy_pressure = 100.0 * bid_volume / total
        sell_pressure = 100.0 * ask_volume / total
        out[IMBALANCE_RATIO] = (bid_volume - ask_volume) / total
        out[BUY_PRESSURE] = buy_pressure
        out[SELL_PRESSURE] = sell_pressure
        out[NET_PRESSURE] = buy_pressure - sell_pressure
    else:
        out[IMBALANCE_RATIO] = math.nan
        out[BUY_PRESSURE] = math.nan
        out[SELL_PRESSURE] = math.nan
        out[NET_PRESSURE] = math.nan

    if bid_count > 0 and ask_count > 0:
        best_bid = levels[BID, 0, PRICE]
        best_ask = levels[ASK, 0, PRICE]
        spread = best_ask - best_bid
        mid = (best_bid + best_ask) / 2.0
        out[SPREAD_ABS] = spread
        out[MID_PRICE] = mid
        out[SPREAD_BPS] = spread / mid * 10_000.0 if mid != 0.0 else math.nan
    else:
        out[SPREAD_ABS] = math.nan
        out[MID_PRICE] = math.nan
        out[SPREAD_BPS] = math.nan
    # NaN when either side's VWAP is NaN
    out[VWAP_SPREAD] = out[VWAP_ASK] - out[VWAP_BID]
