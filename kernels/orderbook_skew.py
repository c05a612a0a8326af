"""orderbook_skew: bid/ask volume imbalance over the top levels of one depth snapshot.

The formula is docs/STRATEGIES.md "orderbook_skew", exactly. The kernel is a plain typed loop with no
validation: the decoder guarantees sorted, uncrossed sides with positive prices and non-negative
quantities, and the registry guarantees parameters inside their ranges.

Decisions beyond the spec (also in tests/reference.py):
- a non-positive best bid (impossible after decoding) gives no signal instead of a division error;
- the comparisons are strict as written: ``spread_percent == min_spread_percent`` still signals,
  ``ratio == buy_threshold`` does not;
- ``out`` is written only when the result is a signal.
"""

from __future__ import annotations

from numba import njit

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_METADATA, OUT_PRICE
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import ASK, BID, PRICE, QTY
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "orderbook_skew"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
TOP_LEVELS = param_index(_ID, "top_levels")
BUY_THRESHOLD = param_index(_ID, "buy_threshold")
SELL_THRESHOLD = param_index(_ID, "sell_threshold")
MAX_SPREAD_PERCENT = param_index(_ID, "min_spread_percent")  # the widest allowed spread, in %
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
IMBALANCE_WEIGHT = param_index(_ID, "imbalance_weight")
SPREAD_WEIGHT = param_index(_ID, "spread_weight")
MIN_TOTAL_VOLUME = param_index(_ID, "min_total_volume")
CAP = CONFIDENCE_CAP




@njit(cache=True, error_model="numpy")
def _clamp(x, lo, hi):
    return min(hi, max(lo, x))


@njit(cache=True, error_model="numpy")
def orderbook_skew(levels, bid_count, ask_count, params, out):
    """Judge one depth snapshot; return ACTION_BUY, ACTION_SELL or ACTION_NONE.

    ``levels[side, i, PRICE|QTY]`` (float64, shape (2, DEPTH_LEVELS, 2)), bids best first
    (descending), asks best first (ascending); only the first ``bid_count`` / ``ask_count`` rows
    are read. ``params`` is the strategy's float64 array in registry order. On a signal ``out``
    gets confidence, price (best bid on buy, best ask on sell), current price (mid), the
    indicators bid_volume, ask_volume, ratio, spread_percent and the metadata top_bid, top_ask.
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
    if bid_volume + ask_volume < params[MIN_TOTAL_VOLUME] or ask_volume == 0.0:
        return ACTION_NONE

    best_bid = levels[BID, 0, PRICE]
    best_ask = levels[ASK, 0, PRICE]
    if best_bid <= 0.0:
        return ACTION_NONE
    ratio = bid_volume / ask_volume
    spread_percent = (best_ask - best_bid) / best_bid * 100.0
    max_spread_percent = params[MAX_SPREAD_PERCENT]
    if spread_percent > max_spread_percent:
        return ACTION_NONE

    buy_threshold = params[BUY_THRESHOLD]
    sell_threshold = params[SELL_THRESHOLD]
    if ratio > buy_threshold:
        action = ACTION_BUY
        imbalance = _clamp((ratio - buy_threshold) / buy_threshold, 0.0, 1.0)
        price = best_bid
    elif ratio < sell_threshold:
        action = ACTION_SELL
        imbalance = _clamp((sell_threshold - ratio) / sell_threshold, 0.0, 1.0)
        price = best_ask
    else:
        return ACTION_NONE

    tightness = _clamp(1.0 - spread_percent / max_spread_percent, 0.0, 1.0)
    base = params[BASE_CONFIDENCE]
    imbalance_weight = params[IMBALANCE_WEIGHT]
    spread_weight = params[SPREAD_WEIGHT]
    weight = imbalance_weight + spread_weight
    if weight == 0.0:
        confidence = base
    else:
        confidence = min(CAP, base + (CAP - base) * (imbalance_weight * imbalance
                                                     + spread_weight * tightness) / weight)

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = (best_bid + best_ask) / 2.0
    out[OUT_INDICATORS] = bid_volume
    out[OUT_INDICATORS + 1] = ask_volume
    out[OUT_INDICATORS + 2] = ratio
    out[OUT_INDICATORS + 3] = spread_percent
    out[OUT_METADATA] = best_bid
    out[OUT_METADATA + 1] = best_ask
    return action
