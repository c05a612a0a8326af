"""trade_flow_imbalance: signed volume imbalance of aggressor trades over a time window.

The formula is docs/STRATEGIES.md "trade_flow_imbalance", exactly. The kernel reads one symbol's
trade ring (TRADE_DTYPE, power-of-two capacity C; position p lives in slot ``p & (C - 1)``), the
same ring trade_momentum reads, and does no validation: the caller checks afterwards that the
positions it read were not overwritten (``OUT_OLDEST_POSITION``), the registry keeps parameters
inside their ranges.

Decisions beyond the spec (also in tests/reference.py):
- the window is the last ``max_window_trades`` positions (the current one included), capped by the
  ring capacity C and by the trades stored so far; ``window_seconds`` then filters it trade by
  trade (a trade more than the window before the current trade's event time is left out,
  wherever it sits), as in trade_momentum. ``max_window_trades`` is at most 1000, the most the
  ingest keeps unread behind a worker (``Layout.lag_limits``), so a window never overruns under
  backpressure;
- ``span_seconds`` = (current event time − the earliest event time in the window) / 1000;
- Σq = 0 gives no signal; a threshold with |t| >= 1 never fires;
- ``OUT_OLDEST_POSITION`` is always written (the first position of the window before the time
  filter); the rest of ``out`` only on a signal.
"""

from __future__ import annotations

from numba import njit

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_OLDEST_POSITION, OUT_PRICE
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "trade_flow_imbalance"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
WINDOW_SECONDS = param_index(_ID, "window_seconds")
MAX_WINDOW_TRADES = param_index(_ID, "max_window_trades")
BUY_THRESHOLD = param_index(_ID, "buy_threshold")
SELL_THRESHOLD = param_index(_ID, "sell_threshold")
MIN_TRADES = param_index(_ID, "min_trades")
MIN_VOLUME = param_index(_ID, "min_volume")
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
CAP = CONFIDENCE_CAP


@njit(cache=True, error_model="numpy")
def trade_flow_imbalance(trades, position, params, out):
    """Judge the trade at ``position``; return ACTION_BUY, ACTION_SELL or ACTION_NONE.

    On a signal ``out`` gets confidence, price = current price = the current trade's price, the
    indicators imbalance, buy_volume, sell_volume, window_trades, span_seconds.
    """
    capacity = trades.shape[0]
    mask = capacity - 1
    window = int(params[MAX_WINDOW_TRADES])
    if window > capacity:
        window = capacity
    oldest = position - window + 1
    if oldest < 0:
        oldest = 0
    out[OUT_OLDEST_POSITION] = float(oldest)
    current = trades[position & mask]
    last_time_ms = current.event_time_ms
    window_ms = params[WINDOW_SECONDS] * 1000.0

    window_trades = 0
    earliest_ms = last_time_ms
    buy_volume = 0.0  # buyer-initiated (m false)
    sell_volume = 0.0  # seller-initiated (m true)
    for p in range(oldest, position + 1):  # oldest first: sums in the reference's order
        trade = trades[p & mask]
        if last_time_ms - trade.event_time_ms > window_ms:
            continue
        window_trades += 1
        if trade.event_time_ms < earliest_ms:
            earliest_ms = trade.event_time_ms
        if trade.is_buyer_maker != 0:
            sell_volume += trade.quantity
        else:
            buy_volume += trade.quantity
    volume = buy_volume + sell_volume
    if window_trades < int(params[MIN_TRADES]) or volume < params[MIN_VOLUME] or volume == 0.0:
        return ACTION_NONE
    imbalance = (buy_volume - sell_volume) / volume

    buy_threshold = params[BUY_THRESHOLD]
    sell_threshold = params[SELL_THRESHOLD]
    if imbalance > buy_threshold and abs(buy_threshold) < 1.0:
        action = ACTION_BUY
        threshold = abs(buy_threshold)
    elif imbalance < sell_threshold and abs(sell_threshold) < 1.0:
        action = ACTION_SELL
        threshold = abs(sell_threshold)
    else:
        return ACTION_NONE
    base = params[BASE_CONFIDENCE]
    confidence = min(CAP, base + (abs(imbalance) - threshold) / (1.0 - threshold) * (CAP - base))

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = current.price
    out[OUT_CURRENT_PRICE] = current.price
    out[OUT_INDICATORS] = imbalance
    out[OUT_INDICATORS + 1] = buy_volume
    out[OUT_INDICATORS + 2] = sell_volume
    out[OUT_INDICATORS + 3] = float(window_trades)
    out[OUT_INDICATORS + 4] = (last_time_ms - earliest_ms) / 1000.0
    return action
