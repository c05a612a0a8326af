"""trade_momentum: weighted price move, trade size and order flow over a symbol's last trades.

The formula is docs/STRATEGIES.md "trade_momentum", exactly. The kernel reads one symbol's trade ring
(TRADE_DTYPE, power-of-two capacity C; position p lives in slot ``p & (C - 1)``) and does no
validation: the caller guarantees that the positions the window needs are still in the ring and
that parameters are inside their registry ranges.

Decisions beyond the spec (also in tests/reference.py):
- the window is the last ``momentum_window`` positions (the current one included), capped by the
  ring capacity C and by the number of trades stored so far; ``time_decay_seconds`` then filters
  it trade by trade (a trade whose event time is more than the decay before the current trade's is
  left out, wherever it sits), so out-of-order event times cannot cut the window short;
- ``p_first`` is the price of the oldest trade left in the window;
- a non-positive ``p_first`` (impossible after decoding), Σq = 0 (hence mean q = 0) and a zero sum
  of weights give no signal; a threshold with |t| >= 1 never fires (it cannot be exceeded, and the
  confidence formula would divide by zero);
- ``OUT_OLDEST_POSITION`` is always written: the oldest position read (the first position of the
  window before the time filter), for the caller's overrun check; the rest of ``out`` only on a
  signal.
"""

from __future__ import annotations

from numba import njit

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_OLDEST_POSITION, OUT_PRICE
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "trade_momentum"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
PRICE_WEIGHT = param_index(_ID, "price_weight")
QUANTITY_WEIGHT = param_index(_ID, "quantity_weight")
MAKER_WEIGHT = param_index(_ID, "maker_weight")
BUY_THRESHOLD = param_index(_ID, "buy_threshold")
SELL_THRESHOLD = param_index(_ID, "sell_threshold")
MIN_QUANTITY = param_index(_ID, "min_quantity")
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
TIME_DECAY_SECONDS = param_index(_ID, "time_decay_seconds")
MOMENTUM_WINDOW = param_index(_ID, "momentum_window")
PRICE_SCALE_BPS = param_index(_ID, "price_scale_bps")
CAP = CONFIDENCE_CAP




@njit(cache=True, error_model="numpy")
def trade_momentum(trades, position, params, out):
    """Judge the trade at ``position``; return ACTION_BUY, ACTION_SELL or ACTION_NONE.

    ``trades`` is one symbol's ring (1-D TRADE_DTYPE array of power-of-two length). A current
    trade smaller than ``min_quantity`` is not evaluated. On a signal ``out`` gets confidence,
    price = current price = the current trade's price, the indicators momentum, price_component,
    quantity_component, flow_component, window_trades, and OUT_OLDEST_POSITION.
    """
    capacity = trades.shape[0]
    mask = capacity - 1
    current = trades[position & mask]
    out[OUT_OLDEST_POSITION] = float(position)
    last_quantity = current.quantity
    if last_quantity < params[MIN_QUANTITY]:
        return ACTION_NONE

    window = int(params[MOMENTUM_WINDOW])
    if window > capacity:
        window = capacity
    oldest = position - window + 1
    if oldest < 0:
        oldest = 0
    out[OUT_OLDEST_POSITION] = float(oldest)
    last_time_ms = current.event_time_ms
    decay_ms = params[TIME_DECAY_SECONDS] * 1000.0

    window_trades = 0
    first_price = 0.0
    total_quantity = 0.0
    buy_quantity = 0.0  # buyer-initiated (m false)
    sell_quantity = 0.0  # seller-initiated (m true)
    for p in range(oldest, position + 1):  # oldest first: sums in the reference's order
        trade = trades[p & mask]
        if last_time_ms - trade.event_time_ms > decay_ms:
            continue
        if window_trades == 0:
            first_price = trade.price
        window_trades += 1
        quantity = trade.quantity
        total_quantity += quantity
        if trade.is_buyer_maker != 0:
            sell_quantity += quantity
        else:
            buy_quantity += quantity
    if window_trades < 2 or total_quantity == 0.0 or first_price <= 0.0:
        return ACTION_NONE
    price_weight = params[PRICE_WEIGHT]
    quantity_weight = params[QUANTITY_WEIGHT]
    maker_weight = params[MAKER_WEIGHT]
    weight = price_weight + quantity_weight + maker_weight
    if weight == 0.0:
        return ACTION_NONE

    last_price = current.price
    side = -1.0 if current.is_buyer_maker != 0 else 1.0
    price_c = min(1.0, max(-1.0, (last_price - first_price) / first_price * 10_000.0
                           / params[PRICE_SCALE_BPS]))
    mean_quantity = total_quantity / window_trades
    quantity_c = side * min(1.0, last_quantity / mean_quantity)
    flow_c = (buy_quantity - sell_quantity) / total_quantity
    momentum = (price_weight * price_c + quantity_weight * quantity_c
                + maker_weight * flow_c) / weight

    buy_threshold = params[BUY_THRESHOLD]
    sell_threshold = params[SELL_THRESHOLD]
    if momentum > buy_threshold and abs(buy_threshold) < 1.0:
        action = ACTION_BUY
        threshold = abs(buy_threshold)
    elif momentum < sell_threshold and abs(sell_threshold) < 1.0:
        action = ACTION_SELL
        threshold = abs(sell_threshold)
    else:
        return ACTION_NONE
    base = params[BASE_CONFIDENCE]
    confidence = min(CAP, base + (abs(momentum) - threshold) / (1.0 - threshold) * (CAP - base))

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = last_price
    out[OUT_CURRENT_PRICE] = last_price
    out[OUT_INDICATORS] = momentum
    out[OUT_INDICATORS + 1] = price_c
    out[OUT_INDICATORS + 2] = quantity_c
    out[OUT_INDICATORS + 3] = flow_c
    out[OUT_INDICATORS + 4] = float(window_trades)
    out[OUT_OLDEST_POSITION] = float(oldest)
    return action
