"""order_flow_imbalance: Cont–Kukanov–Stoikov order-flow imbalance (OFI) of consecutive best-level
snapshots, summed over a time window and normalised by the mean best-level depth.

The formula is docs/STRATEGIES.md "order_flow_imbalance", exactly. Where the state lives: OFI
needs the previous snapshot's best levels and a window of contributions, longer than the book
ring's 16 entries (``RTSIG_BOOK_RING``; 1.6 s of depth20@100ms). So the worker that owns a
symbol keeps them in the store (``ofi_state`` / ``ofi_history``, rtsig/layout.py), written only
by it, in event order, exactly like ``venue_quotes``: :func:`ofi_record` appends the current
book's contribution, then :func:`order_flow_imbalance` judges the window. Both are plain typed
loops with no validation (the decoder guarantees positive prices, non-negative quantities).

Decisions beyond the spec (also in tests/reference.py):
- the previous snapshot is the previous book of the symbol that this worker *judged* (a book
  counted as an overrun is skipped, so the next contribution spans both changes); the first book
  of a symbol (or the first after its id was given to another symbol) has no contribution;
- every book with both sides is recorded, whether the strategy is enabled or not, so that
  enabling it (or changing ``window_seconds``) acts on a full window at once;
- the window is the last min(count, OFI_HISTORY = 256) contributions, filtered one by one by
  ``t_current − t_n ≤ window_seconds · 1000`` (out-of-order event times cannot cut it short);
  at 10 books a second 256 contributions cover 25.6 s, so a longer ``window_seconds`` is cut
  to the newest 256 (``span_seconds`` shows what was used);
- the mean depth is the mean of ``(q_bid + q_ask) / 2`` of the window's snapshots; a mean depth
  of 0 gives no signal; comparisons are strict;
- ``out`` is written only when the result is a signal.
"""

from __future__ import annotations

from numba import njit

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_METADATA, OUT_PRICE
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import (
    OFI_CONTRIBUTION,
    OFI_COUNT,
    OFI_DEPTH,
    OFI_PREV_ASK,
    OFI_PREV_ASK_QTY,
    OFI_PREV_BID,
    OFI_PREV_BID_QTY,
    OFI_TIME,
)
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "order_flow_imbalance"
# Parameter positions, frozen into the compiled code (the cache is keyed by a source hash: rtsig/_jitcache.py).
WINDOW_SECONDS = param_index(_ID, "window_seconds")
BUY_THRESHOLD = param_index(_ID, "buy_threshold")
SELL_THRESHOLD = param_index(_ID, "sell_threshold")
MIN_UPDATES = param_index(_ID, "min_updates")
BASE_CONFIDENCE = param_index(_ID, "base_confidence")
CAP = CONFIDENCE_CAP


@njit(cache=True, error_model="numpy")
def ofi_record(state, history, best_bid, bid_qty, best_ask, ask_qty, t_ms):
    """Append the contribution ``e_n`` of this best-level snapshot (if there is a previous one)
    to ``history`` (shape (OFI_HISTORY, 3), a ring by contribution count) and make the snapshot
    the previous one in ``state`` (shape (OFI_STATE_WIDTH,)); a ``state`` of zeros means none."""
    prev_bid = state[OFI_PREV_BID]
    if prev_bid > 0.0:
        prev_ask = state[OFI_PREV_ASK]
        e = 0.0
        if best_bid >= prev_bid:
            e += bid_qty
        if best_bid <= prev_bid:
            e -= state[OFI_PREV_BID_QTY]
        if best_ask <= prev_ask:
            e -= ask_qty
        if best_ask >= prev_ask:
            e += state[OFI_PREV_ASK_QTY]
        n = int(state[OFI_COUNT])
        row = history[n & (history.shape[0] - 1)]
        row[OFI_TIME] = float(t_ms)
        row[OFI_CONTRIBUTION] = e
        row[OFI_DEPTH] = (bid_qty + ask_qty) / 2.0
        state[OFI_COUNT] = float(n + 1)
    state[OFI_PREV_BID] = best_bid
    state[OFI_PREV_BID_QTY] = bid_qty
    state[OFI_PREV_ASK] = best_ask
    state[OFI_PREV_ASK_QTY] = ask_qty


@njit(cache=True, error_model="numpy")
def order_flow_imbalance(state, history, t_ms, best_bid, best_ask, params, out):
    """Judge the window of contributions up to the current book (already recorded by
    :func:`ofi_record`); return ACTION_BUY, ACTION_SELL or ACTION_NONE.

    On a signal ``out`` gets confidence, price (best bid on buy, best ask on sell), current price
    (mid), the indicators ofi, ofi_normalized, mean_depth, updates, span_seconds and the metadata
    top_bid, top_ask.
    """
    count = int(state[OFI_COUNT])
    capacity = history.shape[0]
    n = min(count, capacity)
    window_ms = params[WINDOW_SECONDS] * 1000.0
    updates = 0
    ofi = 0.0
    depth_sum = 0.0
    earliest_ms = float(t_ms)
    mask = capacity - 1  # a power of two (layout.OFI_HISTORY): no division per entry
    t_now = float(t_ms)
    for k in range(count - n, count):  # oldest first: sums in the reference's order
        j = k & mask
        t_row = history[j, OFI_TIME]
        if t_now - t_row > window_ms:
            continue
        updates += 1
        ofi += history[j, OFI_CONTRIBUTION]
        depth_sum += history[j, OFI_DEPTH]
        if t_row < earliest_ms:
            earliest_ms = t_row
    if updates < int(params[MIN_UPDATES]) or depth_sum <= 0.0:
        return ACTION_NONE
    mean_depth = depth_sum / updates
    normalized = ofi / mean_depth

    buy_threshold = params[BUY_THRESHOLD]
    sell_threshold = params[SELL_THRESHOLD]
    if normalized > buy_threshold:
        action = ACTION_BUY
        threshold = buy_threshold
        price = best_bid
    elif normalized < sell_threshold:
        action = ACTION_SELL
        threshold = -sell_threshold
        price = best_ask
    else:
        return ACTION_NONE
    base = params[BASE_CONFIDENCE]
    excess = min(1.0, (abs(normalized) - threshold) / threshold)
    confidence = min(CAP, base + (CAP - base) * excess)

    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = (best_bid + best_ask) / 2.0
    out[OUT_INDICATORS] = ofi
    out[OUT_INDICATORS + 1] = normalized
    out[OUT_INDICATORS + 2] = mean_depth
    out[OUT_INDICATORS + 3] = float(updates)
    out[OUT_INDICATORS + 4] = (t_ms - earliest_ms) / 1000.0
    out[OUT_METADATA] = best_bid
    out[OUT_METADATA + 1] = best_ask
    return action
