"""microprice: the size-weighted mid over the top levels of one depth snapshot, and its deviation
from the mid in basis points.

The formula is docs/STRATEGIES.md "microprice", exactly. Like orderbook_skew the kernel is a plain
typed loop with no validation: the decoder guarantees sorted, uncrossed sides with positive prices
and non-negative quantities, the registry parameters inside their ranges.

Decisions beyond the spec (also in tests/reference.py):
- ``Q_bid + Q_ask`` below ``min_total_volume`` or equal to 0, an empty side, or a non-positive
  mid (impossible after decoding) give no signal;
- the comparisons are strict: a deviation equal to a threshold does not signal, a spread equal to
  ``max_spread_bps`` still does;
- the deviation is at most half the spread (``|deviation_bps| ≤ spread_bps / 2``): a symbol whose
  half spread is below the threshold can never signal;
- ``out`` is written only when the result is a signal.
"""

from __future__ import annotations

from numba import njit

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_METADATA, OUT_PRICE
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import ASK, BID, PRICE, QTY
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "microprice"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
TOP_LEVELS = param_index(_ID, "top_levels")
BUY_THRESHOLD_BPS = param_index(_ID, "buy_threshold_bps")
SELL_THRESHOLD_BPS = param_index(_ID, "sell_threshold_bps")
MAX_SPREAD_BPS = param_index(_ID, "max_spread_bps")
MIN_TOTAL_VOLUME = param_index(_ID, "min_total_volume")
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
CAP = CONFIDENCE_CAP


@njit(cache=True, error_model="numpy")
def microprice(levels, bid_count, ask_count, params, out):
    """Judge one depth snapshot; return ACTION_BUY, ACTION_SELL or ACTION_NONE.

    ``levels[side, i, PRICE|QTY]`` as for orderbook_skew (only the first ``bid_count`` /
    ``ask_count`` rows are read). On a signal ``out`` gets confidence, price (best bid on buy,
    best ask on sell), current price (mid), the indicators microprice, deviation_bps, imbalance,
    spread_bps, bid_volume, ask_volume and the metadata top_bid, top_ask.
    """
    if bid_count <= 0 or ask_count <= 0:
        return ACTION_NONE
    top_levels = int(params[TOP_LEVELS])
    n_bid = min(top_levels, bid_count)
    n_ask = min(top_levels, ask_count)
    bid_volume = 0.0
    for i in range(n_bid):
        bid_volume += levels[BID, i, QTY]
    ask_volume = 0.0
    for i in range(n_ask):
        ask_volume += levels[ASK, i, QTY]
    volume = bid_volume + ask_volume
    if volume < params[MIN_TOTAL_VOLUME] or volume == 0.0:
        return ACTION_NONE

    best_bid = levels[BID, 0, PRICE]
    best_ask = levels[ASK, 0, PRICE]
    mid = (best_bid + best_ask) / 2.0
    if mid <= 0.0:
        return ACTION_NONE
    spread_bps = (best_ask - best_bid) / mid * 10_000.0
    if spread_bps > params[MAX_SPREAD_BPS]:
        return ACTION_NONE
    micro = (best_ask * bid_volume + best_bid * ask_volume) / volume
    deviation_bps = (micro - mid) / mid * 10_000.0

    buy_threshold = params[BUY_THRESHOLD_BPS]
    sell_threshold = params[SELL_THRESHOLD_BPS]
    if deviation_bps > buy_threshold:
        action = ACTION_BUY
        threshold = buy_threshold
        price = best_bid
    elif deviation_bps < sell_threshold:
        action = ACTION_SELL
        threshold = -sell_threshold
        price = best_ask
    else:
        return ACTION_NONE
    base = params[BASE_CONFIDENCE]
    excess = min(1.0, (abs(deviation_bps) - threshold) / threshold)
    confidence = min(CAP, base + (CAP - base) * excess)

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = mid
    out[OUT_INDICATORS] = micro
    out[OUT_INDICATORS + 1] = deviation_bps
    out[OUT_INDICATORS + 2] = (bid_volume - ask_volume) / volume
    out[OUT_INDICATORS + 3] = spread_bps
    out[OUT_INDICATORS + 4] = bid_volume
    out[OUT_INDICATORS + 5] = ask_volume
    out[OUT_METADATA] = best_bid
    out[OUT_METADATA + 1] = best_ask
    return action
