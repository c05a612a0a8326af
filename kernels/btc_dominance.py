"""btc_dominance: rotation between Bitcoin and alt-coins from BTC's share of the market cap.

The formula is docs/STRATEGIES.md "btc_dominance", exactly; the samples are the dominance feed's
(docs/CONTRACT.md §2c), kept in the store's ``dominance`` ring by the ingest in arrival order.

Decisions beyond the spec (also in tests/reference.py):
- "the newest earlier sample" is the newest by arrival among the samples before the current one
  (an aggregator's samples arrive in time order, so this is also the newest by ``ts``);
- the search looks back at most ``LOOKBACK`` samples (half the ring: the ingest may run that far
  ahead of the worker without overwriting what the event needs); at one sample a minute that is
  5.7 days, at one every five minutes the whole 168 h range;
- the price is BTCUSDT's newest Binance price when the sample arrived (snapshotted by the
  ingest); none → ``RESULT_NO_PRICE`` (a signal that cannot be priced, counted as ``no_price``).
"""

from __future__ import annotations

from numba import njit

from kernels.output import (
    OUT_CODE,
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_FEED_POSITION,
    OUT_INDICATORS,
    OUT_OLDEST_POSITION,
    OUT_PRICE,
    OUT_QUANTITY,
    RESULT_NO_PRICE,
)
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import DOMINANCE_RING
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "btc_dominance"
HIGH_THRESHOLD = param_index(_ID, "high_threshold")
LOW_THRESHOLD = param_index(_ID, "low_threshold")
CHANGE_THRESHOLD = param_index(_ID, "change_threshold")
WINDOW_HOURS = param_index(_ID, "window_hours")
CAP = CONFIDENCE_CAP
LOOKBACK = DOMINANCE_RING // 2
"""Samples searched for the window's past sample (the current one not included)."""
ROTATION_TO_BTC, ROTATION_TO_ALTS, ROTATION_MOMENTUM = 0, 1, 2


@njit(cache=True, error_model="numpy")
def btc_dominance(samples, position, params, out):
    """Judge the dominance sample at ring ``position``; ACTION_BUY/SELL/NONE or RESULT_NO_PRICE.

    ``samples`` is the ``dominance`` ring (``layout.DOMINANCE_DTYPE``); entries at positions
    ``position - LOOKBACK … position`` are read (``out[OUT_OLDEST_POSITION]`` is the oldest, for
    the caller's overrun check). On a signal ``out`` gets confidence, price = current price =
    BTCUSDT's price, the indicators dominance, dominance_change, window_hours, the rotation code
    (0 to_btc, 1 to_alts, 2 momentum) and the sample's position.
    """
    mask = samples.shape[0] - 1
    current = samples[position & mask]
    t = current.ts_ms
    dominance = current.dominance
    window_hours = params[WINDOW_HOURS]
    cutoff = t - int(window_hours) * 3_600_000
    lowest = max(0, position - LOOKBACK)
    out[OUT_OLDEST_POSITION] = position
    past = -1
    q = position - 1
    while q >= lowest:
        out[OUT_OLDEST_POSITION] = q
        if samples[q & mask].ts_ms <= cutoff:
            past = q
            break
        q -= 1
    if past < 0:
        return ACTION_NONE
    change = dominance - samples[past & mask].dominance
    change_threshold = params[CHANGE_THRESHOLD]
    if dominance > params[HIGH_THRESHOLD] and change > 0.0:
        action, confidence, rotation = ACTION_BUY, 0.80, ROTATION_TO_BTC
    elif dominance < params[LOW_THRESHOLD] and change < 0.0:
        action, confidence, rotation = ACTION_SELL, 0.75, ROTATION_TO_ALTS
    elif abs(change) >= change_threshold:
        action = ACTION_BUY if change > 0.0 else ACTION_SELL
        confidence = min(CAP, 0.60 + 0.35 * min(1.0, (abs(change) - change_threshold) / change_threshold))
        rotation = ROTATION_MOMENTUM
    else:
        return ACTION_NONE
    price = current.price
    if not price > 0.0:  # NaN: BTCUSDT had no Binance price when the sample arrived
        return RESULT_NO_PRICE
    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = price
    out[OUT_INDICATORS] = dominance
    out[OUT_INDICATORS + 1] = change
    out[OUT_INDICATORS + 2] = window_hours
    out[OUT_QUANTITY] = -1.0
    out[OUT_CODE] = rotation
    out[OUT_FEED_POSITION] = position
    return action
