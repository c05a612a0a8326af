"""Judge a batch of events with the strategy kernels, each on its own data.

One jitted call per batch: for every event, read the ring entry the event names (a seqlock copy
for a book, a cursor check for trade and ticker windows), run the enabled kernel with the
symbol's parameter row, and append a *candidate* (kernel output row + event index, strategy,
action). Data overwritten since the event was written is counted as an overrun, never judged.
The confidence floor and cool-down are applied afterwards by :mod:`rtsig.signals`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.orderbook_skew import orderbook_skew
from kernels.output import OUT_OLDEST_POSITION, OUT_WIDTH, RESULT_OVERRUN
from kernels.ticker_velocity import ticker_velocity
from kernels.trade_momentum import trade_momentum
from rtsig import codes
from rtsig import counters as C
from rtsig.layout import DEPTH_LEVELS
from rtsig.registry import strategy_number
from rtsig.seqlock import acquire_fence, release_fence

S_SKEW = strategy_number("orderbook_skew")
S_MOMENTUM = strategy_number("trade_momentum")
S_VELOCITY = strategy_number("ticker_velocity")

CANDIDATE_DTYPE = np.dtype([
    ("event_index", "i8"),
    ("strategy", "i4"),
    ("action", "i4"),
], align=True)


@njit(cache=True, error_model="numpy")
def evaluate_events(events, first, count, book_meta, book_levels, market, trades, tickers,
                    params, enabled, counters, cand_info, cand_rows):
    """Evaluate ``events[first:first+count]`` (indices taken modulo ``len(events)``).

    ``params[symbol, strategy, :]`` are the kernels' parameter arrays; ``enabled[strategy]`` the
    switches. Candidates go to ``cand_info`` / ``cand_rows`` (capacity ≥ count); returns how many.
    """
    ring = events.shape[0]
    book_ring = book_meta.shape[1]
    trade_cap = trades.shape[1]
    ticker_cap = tickers.shape[1]
    levels = np.empty((2, DEPTH_LEVELS, 2), dtype=np.float64)
    out = np.empty(OUT_WIDTH, dtype=np.float64)
    n_cand = 0
    for j in range(count):
        idx = (first + j) % ring
        ev = events[idx]
        sid = ev.symbol
        pos = ev.position
        kind = ev.kind
        action = codes.ACTION_NONE
        strategy = -1
        overrun = False
        if kind == codes.KIND_DEPTH:
            if enabled[S_SKEW]:
                strategy = S_SKEW
                slot = pos & (book_ring - 1)
                seq1 = book_meta[sid, slot].seq
                acquire_fence()
                nb = book_meta[sid, slot].bid_count
                na = book_meta[sid, slot].ask_count
                for side in range(2):
                    n_side = nb if side == 0 else na
                    for k in range(n_side):
                        levels[side, k, 0] = book_levels[sid, slot, side, k, 0]
                        levels[side, k, 1] = book_levels[sid, slot, side, k, 1]
                acquire_fence()
                seq2 = book_meta[sid, slot].seq
                if seq1 != 2 * pos + 2 or seq2 != seq1:
                    overrun = True
                else:
                    action = orderbook_skew(levels, nb, na, params[sid, S_SKEW], out)
        elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
            if enabled[S_MOMENTUM]:
                strategy = S_MOMENTUM
                action = trade_momentum(trades[sid], pos, params[sid, S_MOMENTUM], out)
                acquire_fence()
                if market[sid].trade_begin - trade_cap > np.int64(out[OUT_OLDEST_POSITION]):
                    overrun = True
        elif kind == codes.KIND_TICKER:
            if enabled[S_VELOCITY]:
                strategy = S_VELOCITY
                lowest = max(np.int64(0), market[sid].ticker_begin - ticker_cap)
                if pos < lowest:
                    overrun = True
                else:
                    action = ticker_velocity(tickers[sid], pos, lowest, params[sid, S_VELOCITY], out)
                    acquire_fence()
                    if action == RESULT_OVERRUN:
                        overrun = True
                    elif market[sid].ticker_begin - ticker_cap > np.int64(out[OUT_OLDEST_POSITION]):
                        overrun = True
        # tell the ingest this entry may be reused (backpressure; see rtsig.decode)
        release_fence()
        if kind == codes.KIND_DEPTH:
            market[sid].book_done = pos + 1
        elif kind == codes.KIND_TICKER:
            market[sid].ticker_done = pos + 1
        else:
            market[sid].trade_done = pos + 1
        if strategy < 0:
            continue
        if overrun:
            counters[C.OVERRUNS] += 1
            continue
        counters[C.EVALUATED_BASE + strategy] += 1
        if action == codes.ACTION_BUY or action == codes.ACTION_SELL:
            cand_info[n_cand].event_index = idx
            cand_info[n_cand].strategy = strategy
            cand_info[n_cand].action = action
            for k in range(OUT_WIDTH):
                cand_rows[n_cand, k] = out[k]
            n_cand += 1
    return n_cand


def new_candidate_buffers(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.zeros(capacity, dtype=CANDIDATE_DTYPE),
            np.zeros((capacity, OUT_WIDTH), dtype=np.float64))
