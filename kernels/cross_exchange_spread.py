"""cross_exchange_spread: the gap between Binance spot and another venue's price of one symbol.

The formula is docs/STRATEGIES.md "cross_exchange_spread". The venue table
``venue_quotes[symbol, venue, (bid, ask, ts)]`` holds each venue's newest quote as of the event
being judged: the worker that owns the symbol updates it in event order (Binance spot from each
spot book, Binance USD-M futures from each futures book the ingest mirrors as a quote, the other
venues from the quotes feed), so the table a worker judges with is exactly the offline run's.

Decisions beyond the spec (also in tests/reference.py):
- Binance's own quote (the newest spot book) is subject to ``max_quote_age_seconds`` like the
  others: a signal against a stale book would trade at a price that is gone;
- a venue's quote counts when ``t − ts ≤ max_quote_age_seconds · 1000`` (a quote stamped after
  the trigger counts too), with ``t`` the triggering quote's event time;
- ties of |spread| go to the venue whose name sorts first (bytewise);
- ``quantity = floor(max_position_size / price · 10⁸) / 10⁸`` in float64.
"""

from __future__ import annotations

import math

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
)
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import QUOTE_ASK, QUOTE_BID, QUOTE_TIME, VENUE_BINANCE
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "cross_exchange_spread"
SPREAD_THRESHOLD = param_index(_ID, "spread_threshold_percent")
MAX_POSITION_SIZE = param_index(_ID, "max_position_size")
MAX_QUOTE_AGE = param_index(_ID, "max_quote_age_seconds")
CAP = CONFIDENCE_CAP


@njit(cache=True)
def name_before(names, a, b):
    """Venue ``a``'s name sorts before venue ``b``'s (bytewise; names are zero-padded)."""
    for k in range(names.shape[1]):
        if names[a, k] != names[b, k]:
            return names[a, k] < names[b, k]
    return False


@njit(cache=True, error_model="numpy")
def cross_exchange_spread(table, t_ms, params, venue_names, out):
    """Judge a symbol's venue table ``table[venue, (bid, ask, ts)]`` (NaN bid: no quote) at event
    time ``t_ms``; ACTION_BUY/SELL/NONE. On a signal ``out`` gets confidence, price (Binance
    best ask on a buy, best bid on a sell), current price (Binance mid), the indicators
    spread_percent, binance_mid, venue_mid, the quantity and the chosen venue's number."""
    max_age_ms = params[MAX_QUOTE_AGE] * 1000.0
    b_bid = table[VENUE_BINANCE, QUOTE_BID]
    b_ask = table[VENUE_BINANCE, QUOTE_ASK]
    if not b_bid > 0.0 or t_ms - table[VENUE_BINANCE, QUOTE_TIME] > max_age_ms:
        return ACTION_NONE
    binance_mid = (b_bid + b_ask) / 2.0
    best = -1
    best_spread = 0.0
    best_mid = 0.0
    for v in range(1, table.shape[0]):
        bid = table[v, QUOTE_BID]
        if not bid > 0.0 or t_ms - table[v, QUOTE_TIME] > max_age_ms:
            continue
        mid = (bid + table[v, QUOTE_ASK]) / 2.0
        spread = (mid - binance_mid) / binance_mid * 100.0
        if best < 0 or abs(spread) > abs(best_spread) or (
                abs(spread) == abs(best_spread) and name_before(venue_names, v, best)):
            best, best_spread, best_mid = v, spread, mid
    threshold = params[SPREAD_THRESHOLD]
    if best < 0 or not abs(best_spread) >= threshold:
        return ACTION_NONE
    if best_spread > 0.0:
        action, price = ACTION_BUY, b_ask
    else:
        action, price = ACTION_SELL, b_bid
    out[OUT_CONFIDENCE] = min(CAP, 0.60 + 0.35 * min(1.0, (abs(best_spread) - threshold) / threshold))
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = binance_mid
    out[OUT_INDICATORS] = best_spread
    out[OUT_INDICATORS + 1] = binance_mid
    out[OUT_INDICATORS + 2] = best_mid
    out[OUT_QUANTITY] = math.floor(params[MAX_POSITION_SIZE] / price * 1e8) / 1e8
    out[OUT_CODE] = best
    out[OUT_OLDEST_POSITION] = 0
    out[OUT_FEED_POSITION] = -1
    return action
