"""ticker_velocity: price velocity and acceleration over a window of 24 h ticker samples.

The formula is docs/STRATEGIES.md "ticker_velocity", exactly. The kernel reads one symbol's ticker
ring (TICKER_DTYPE, power-of-two capacity C; position p lives in slot ``p & (C - 1)``) and does no
validation: the caller guarantees that positions ``lowest_position .. position`` are in the ring,
that event times do not decrease with position, and that parameters are inside their ranges.

Decisions beyond the spec (also in tests/reference.py):
- samples are collected walking back from ``position`` and stop at the first entry older than the
  window (``E_current - E > time_window * 1000``; an entry exactly ``time_window`` old is in);
- if the walk reaches ``lowest_position`` with that entry still inside the window and
  ``lowest_position > 0``, older entries that might belong to the window were overwritten: the
  result is RESULT_OVERRUN, never a signal computed on a truncated window;
- "spanning at least time_window / 4 seconds" is inclusive (span == time_window / 4 is enough);
- the midpoint sample k is compared on integer milliseconds (|2·E_k − (E_first + E_last)|), so a
  tie is exact and goes to the earlier sample;
- a zero price or a zero time difference inside vel() (c_first = 0, c_k = 0, E_k equal to E_first
  or E_last) gives no signal instead of a division by zero;
- ``volume_change_percent`` is reported whatever ``volume_confirmation`` says; it is NaN only when
  ``v_first`` is not positive (and then a volume-confirmed signal is impossible);
- confidence is reported as the formula gives it (capped at 0.95 above, not floored below: the
  signal builder's MIN_CONFIDENCE floor drops low values);
- ``OUT_OLDEST_POSITION`` is always written: the oldest position read (the
  entry that ended the walk when one did), for the caller's overrun check; the rest of ``out`` only on a signal.
"""

from __future__ import annotations

import math

from numba import njit

from kernels.output import (
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_INDICATORS,
    OUT_OLDEST_POSITION,
    OUT_PRICE,
    RESULT_OVERRUN,
)
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "ticker_velocity"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
TIME_WINDOW = param_index(_ID, "time_window")
BUY_THRESHOLD = param_index(_ID, "buy_threshold")
SELL_THRESHOLD = param_index(_ID, "sell_threshold")
MIN_PRICE_CHANGE = param_index(_ID, "min_price_change")
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
ACCELERATION_WEIGHT = param_index(_ID, "acceleration_weight")
VOLUME_CONFIRMATION = param_index(_ID, "volume_confirmation")
MIN_VOLUME_CHANGE = param_index(_ID, "min_volume_change")
CAP = CONFIDENCE_CAP
MS_PER_MINUTE = 60_000.0




@njit(cache=True, error_model="numpy")
def _velocity(price_i, time_i_ms, price_j, time_j_ms):
    """vel(i, j) in % per minute; the caller ensures price_i != 0 and time_i_ms != time_j_ms."""
    return (price_j - price_i) / price_i * 100.0 / ((time_j_ms - time_i_ms) / MS_PER_MINUTE)


@njit(cache=True, error_model="numpy")
def ticker_velocity(tickers, position, lowest_position, params, out):
    """Judge the ticker at ``position``: ACTION_BUY, ACTION_SELL, ACTION_NONE or RESULT_OVERRUN.

    ``tickers`` is one symbol's ring (1-D TICKER_DTYPE array of power-of-two length); positions
    ``lowest_position .. position`` are readable. On a signal ``out`` gets confidence, price =
    current price = the current last price, the indicators velocity, acceleration,
    price_change_percent, time_window (the span used, s), volume_change_percent, and
    OUT_OLDEST_POSITION.
    """
    mask = tickers.shape[0] - 1
    last = tickers[position & mask]
    last_time_ms = last.event_time_ms
    window_ms = params[TIME_WINDOW] * 1000.0

    first = position
    oldest_read = position
    p = position - 1
    while p >= lowest_position:
        oldest_read = p
        if last_time_ms - tickers[p & mask].event_time_ms > window_ms:
            break
        first = p
        p -= 1
    out[OUT_OLDEST_POSITION] = float(oldest_read)
    if first == lowest_position and lowest_position > 0:
        return RESULT_OVERRUN
    if position - first + 1 < 3:
        return ACTION_NONE
    head = tickers[first & mask]
    first_time_ms = head.event_time_ms
    span_ms = last_time_ms - first_time_ms
    if span_ms * 4.0 < window_ms:  # span (s) < time_window / 4
        return ACTION_NONE

    first_price = head.last_price
    last_price = last.last_price
    if first_price == 0.0:
        return ACTION_NONE
    change = (last_price - first_price) / first_price * 100.0
    if abs(change) < params[MIN_PRICE_CHANGE]:
        return ACTION_NONE
    velocity = _velocity(first_price, first_time_ms, last_price, last_time_ms)

    # interior sample nearest the time midpoint; strict < keeps the earlier one on a tie
    k = first + 1
    twice_mid_ms = first_time_ms + last_time_ms
    best = abs(2 * tickers[k & mask].event_time_ms - twice_mid_ms)
    for q in range(first + 2, position):
        distance = abs(2 * tickers[q & mask].event_time_ms - twice_mid_ms)
        if distance < best:
            best = distance
            k = q
    middle = tickers[k & mask]
    middle_time_ms = middle.event_time_ms
    middle_price = middle.last_price
    if middle_price == 0.0 or middle_time_ms == first_time_ms or middle_time_ms == last_time_ms:
        return ACTION_NONE
    acceleration = (_velocity(middle_price, middle_time_ms, last_price, last_time_ms)
                    - _velocity(first_price, first_time_ms, middle_price, middle_time_ms))

    first_volume = head.base_volume
    if first_volume > 0.0:
        volume_change = (last.base_volume - first_volume) / first_volume * 100.0
    else:
        volume_change = math.nan
    if params[VOLUME_CONFIRMATION] != 0.0:
        if not (first_volume > 0.0 and volume_change >= params[MIN_VOLUME_CHANGE]):
            return ACTION_NONE

    buy_threshold = params[BUY_THRESHOLD]
    sell_threshold = params[SELL_THRESHOLD]
    if velocity > buy_threshold:
        action = ACTION_BUY
        direction = 1.0
        threshold = abs(buy_threshold)
    elif velocity < sell_threshold:
        action = ACTION_SELL
        direction = -1.0
        threshold = abs(sell_threshold)
    else:
        return ACTION_NONE
    confidence = min(CAP, params[BASE_CONFIDENCE]
                     + min(0.2, (abs(velocity) - threshold) / 10.0)
                     + params[ACCELERATION_WEIGHT]
                     * min(0.1, max(-0.1, direction * acceleration / 10.0)))

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = last_price
    out[OUT_CURRENT_PRICE] = last_price
    out[OUT_INDICATORS] = velocity
    out[OUT_INDICATORS + 1] = acceleration
    out[OUT_INDICATORS + 2] = change
    out[OUT_INDICATORS + 3] = span_ms / 1000.0
    out[OUT_INDICATORS + 4] = volume_change
    out[OUT_OLDEST_POSITION] = float(oldest_read)
    return action
