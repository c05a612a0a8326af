"""Judge a batch of events with the strategy kernels, each on its own data.

One jitted call per batch: for every event, read the ring entry the event names (a seqlock copy
for a book, a cursor check for trade, ticker and feed windows), run the enabled kernels with the
symbol's parameter rows, and append a *candidate* (kernel output row + event index, strategy,
action). Data overwritten since the event was written is counted as an overrun, never judged.
The confidence floor and cool-down are applied afterwards by :mod:`rtsig.signals`.

Market-logic strategies (docs/CONTRACT.md §2c): a dominance sample or a transfer is judged on its
feed ring; a venue quote first updates the symbol's ``venue_quotes`` row (this worker is its only
writer, in event order), then cross_exchange_spread judges the row; a spot book does the same
for venue ``binance`` after orderbook_skew — so one book event can give two candidates.

Microstructure strategies (docs/STRATEGIES.md): microprice judges the book's copied levels;
every book with both sides first appends its order-flow contribution to the symbol's
``ofi_state`` / ``ofi_history`` (this worker is their only writer, in event order, like
``venue_quotes``), then order_flow_imbalance judges the window; trade_flow_imbalance judges the
trade ring beside trade_momentum. A spot book can give four candidates, a trade two.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels.btc_dominance import btc_dominance
from kernels.cross_exchange_spread import cross_exchange_spread
from kernels.microprice import microprice
from kernels.onchain_metrics import onchain_metrics
from kernels.order_flow_imbalance import ofi_record, order_flow_imbalance
from kernels.orderbook_skew import orderbook_skew
from kernels.output import OUT_OLDEST_POSITION, OUT_WIDTH, RESULT_NO_PRICE, RESULT_OVERRUN
from kernels.ticker_velocity import ticker_velocity
from kernels.trade_flow_imbalance import trade_flow_imbalance
from kernels.trade_momentum import trade_momentum
from rtsig import codes
from rtsig import counters as C
from rtsig.layout import (
    ASK,
    BID,
    CURSOR_BEGIN,
    DEPTH_LEVELS,
    KIND_DOMINANCE,
    KIND_QUOTE,
    KIND_TRANSFER_BTC,
    KIND_TRANSFER_ETH,
    PRICE,
    QTY,
    QUOTE_ASK,
    QUOTE_BID,
    QUOTE_TIME,
    RING_DOMINANCE,
    RING_QUOTES,
    RING_TRANSFERS_BTC,
    VENUE_BINANCE,
    VENUE_SPOT,
)
from rtsig.registry import strategy_number
from rtsig.seqlock import acquire_fence, release_fence

S_SKEW = strategy_number("orderbook_skew")
S_MOMENTUM = strategy_number("trade_momentum")
S_VELOCITY = strategy_number("ticker_velocity")
S_DOMINANCE = strategy_number("btc_dominance")
S_SPREAD = strategy_number("cross_exchange_spread")
S_ONCHAIN = strategy_number("onchain_metrics")
S_MICROPRICE = strategy_number("microprice")
S_OFI = strategy_number("order_flow_imbalance")
S_TRADE_FLOW = strategy_number("trade_flow_imbalance")
CANDIDATES_PER_EVENT = 4
"""A spot book can give an orderbook_skew, a microprice, an order_flow_imbalance and a
cross_exchange_spread candidate."""

CANDIDATE_DTYPE = np.dtype([
    ("event_index", "i8"),
    ("strategy", "i4"),
    ("action", "i4"),
], align=True)


@njit(cache=True, inline="always")
def _judged(counters, cand_info, cand_rows, n_cand, idx, strategy, action, out):
    """Count one judged event of ``strategy``; append a candidate for a buy or sell."""
    counters[C.EVALUATED_BASE + strategy] += 1
    if action == RESULT_NO_PRICE:
        counters[C.NO_PRICE] += 1
        return n_cand
    if action != codes.ACTION_BUY and action != codes.ACTION_SELL:
        return n_cand
    cand_info[n_cand].event_index = idx
    cand_info[n_cand].strategy = strategy
    cand_info[n_cand].action = action
    for k in range(OUT_WIDTH):
        cand_rows[n_cand, k] = out[k]
    return n_cand + 1


@njit(cache=True, inline="always")
def _has_other_venue(row):
    for v in range(1, row.shape[0]):
        if row[v, QUOTE_BID] > 0.0:
            return True
    return False


@njit(cache=True, error_model="numpy")
def evaluate_events(events, first, count, book_meta, book_levels, market, trades, tickers,
                    params, enabled, counters, cand_info, cand_rows, symbols, feed_cursors,
                    dominance, quotes, transfers, venue_quotes, venue_names, ofi_state,
                    ofi_history):
    """Evaluate ``events[first:first+count]`` (indices taken modulo ``len(events)``).

    ``params[symbol, strategy, :]`` are the kernels' parameter arrays; ``enabled[strategy]`` the
    switches. Candidates go to ``cand_info`` / ``cand_rows`` (capacity ≥ CANDIDATES_PER_EVENT ·
    count); returns how many.
    """
    ring = events.shape[0]
    book_ring = book_meta.shape[1]
    trade_cap = trades.shape[1]
    ticker_cap = tickers.shape[1]
    levels = np.empty((2, DEPTH_LEVELS, 2), dtype=np.float64)
    out = np.empty(OUT_WIDTH, dtype=np.float64)
    out_flow = np.empty(OUT_WIDTH, dtype=np.float64)  # trade_flow_imbalance beside trade_momentum
    n_cand = 0
    for j in range(count):
        idx = (first + j) % ring
        ev = events[idx]
        sid = ev.symbol
        pos = ev.position
        kind = ev.kind
        if kind == codes.KIND_DEPTH:
            spot = symbols[sid].venue == VENUE_SPOT
            skew = enabled[S_SKEW]
            micro = enabled[S_MICROPRICE]
            slot = pos & (book_ring - 1)
            seq1 = book_meta[sid, slot].seq
            acquire_fence()
            nb = book_meta[sid, slot].bid_count
            na = book_meta[sid, slot].ask_count
            if skew or micro:
                for side in range(2):
                    n_side = nb if side == 0 else na
                    for k in range(n_side):
                        levels[side, k, 0] = book_levels[sid, slot, side, k, 0]
                        levels[side, k, 1] = book_levels[sid, slot, side, k, 1]
            best_bid = book_levels[sid, slot, BID, 0, PRICE]
            best_ask = book_levels[sid, slot, ASK, 0, PRICE]
            bid_qty = book_levels[sid, slot, BID, 0, QTY]
            ask_qty = book_levels[sid, slot, ASK, 0, QTY]
            acquire_fence()
            seq2 = book_meta[sid, slot].seq
            release_fence()
            market[sid].book_done = pos + 1  # the ingest may reuse the entry (backpressure)
            if seq1 != 2 * pos + 2 or seq2 != seq1:
                if skew or spot or micro or enabled[S_OFI]:
                    counters[C.OVERRUNS] += 1
                continue
            if skew:
                action = orderbook_skew(levels, nb, na, params[sid, S_SKEW], out)
                n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_SKEW, action, out)
            if micro:
                action = microprice(levels, nb, na, params[sid, S_MICROPRICE], out)
                n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_MICROPRICE, action, out)
            if nb > 0 and na > 0:
                ofi_record(ofi_state[sid], ofi_history[sid], best_bid, bid_qty, best_ask, ask_qty,
                           ev.event_time_ms)
                if enabled[S_OFI]:
                    action = order_flow_imbalance(ofi_state[sid], ofi_history[sid], ev.event_time_ms,
                                                  best_bid, best_ask, params[sid, S_OFI], out)
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_OFI, action, out)
            if spot and nb > 0 and na > 0:
                row = venue_quotes[sid]
                row[VENUE_BINANCE, QUOTE_BID] = best_bid
                row[VENUE_BINANCE, QUOTE_ASK] = best_ask
                row[VENUE_BINANCE, QUOTE_TIME] = ev.event_time_ms
                if enabled[S_SPREAD] and _has_other_venue(row):
                    action = cross_exchange_spread(row, ev.event_time_ms, params[sid, S_SPREAD],
                                                   venue_names, out)
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_SPREAD, action, out)
        elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
            action = codes.ACTION_NONE
            flow_action = codes.ACTION_NONE
            overrun = False
            flow_overrun = False
            momentum = enabled[S_MOMENTUM]
            flow = enabled[S_TRADE_FLOW]
            if momentum:
                action = trade_momentum(trades[sid], pos, params[sid, S_MOMENTUM], out)
            if flow:
                flow_action = trade_flow_imbalance(trades[sid], pos, params[sid, S_TRADE_FLOW], out_flow)
            if momentum or flow:
                acquire_fence()
                begin = market[sid].trade_begin
                if momentum and begin - trade_cap > np.int64(out[OUT_OLDEST_POSITION]):
                    overrun = True
                if flow and begin - trade_cap > np.int64(out_flow[OUT_OLDEST_POSITION]):
                    flow_overrun = True
            release_fence()
            market[sid].trade_done = pos + 1
            if momentum:
                if overrun:
                    counters[C.OVERRUNS] += 1
                else:
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_MOMENTUM, action, out)
            if flow:
                if flow_overrun:
                    counters[C.OVERRUNS] += 1
                else:
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_TRADE_FLOW,
                                     flow_action, out_flow)
        elif kind == codes.KIND_TICKER:
            action = codes.ACTION_NONE
            overrun = False
            if enabled[S_VELOCITY]:
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
            release_fence()
            market[sid].ticker_done = pos + 1
            if enabled[S_VELOCITY]:
                if overrun:
                    counters[C.OVERRUNS] += 1
                else:
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_VELOCITY, action, out)
        elif kind == KIND_QUOTE:
            cap = quotes.shape[0]
            e = quotes[pos & (cap - 1)]
            bid, ask, ts, venue = e.bid, e.ask, e.ts_ms, e.venue
            acquire_fence()
            if feed_cursors[RING_QUOTES, CURSOR_BEGIN] - cap > pos:
                counters[C.OVERRUNS] += 1
                continue
            row = venue_quotes[sid]
            row[venue, QUOTE_BID] = bid
            row[venue, QUOTE_ASK] = ask
            row[venue, QUOTE_TIME] = ts
            if enabled[S_SPREAD]:
                action = cross_exchange_spread(row, ts, params[sid, S_SPREAD], venue_names, out)
                n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_SPREAD, action, out)
        elif kind == KIND_DOMINANCE:
            if enabled[S_DOMINANCE]:
                action = btc_dominance(dominance, pos, params[sid, S_DOMINANCE], out)
                acquire_fence()
                if feed_cursors[RING_DOMINANCE, CURSOR_BEGIN] - dominance.shape[0] > np.int64(out[OUT_OLDEST_POSITION]):
                    counters[C.OVERRUNS] += 1
                else:
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_DOMINANCE, action, out)
        elif kind == KIND_TRANSFER_BTC or kind == KIND_TRANSFER_ETH:
            if enabled[S_ONCHAIN]:
                chain = kind - KIND_TRANSFER_BTC
                chain_ring = transfers[chain]
                action = onchain_metrics(chain_ring, pos, chain, params[sid, S_ONCHAIN], out)
                acquire_fence()
                if feed_cursors[RING_TRANSFERS_BTC + chain, CURSOR_BEGIN] - chain_ring.shape[0] \
                        > np.int64(out[OUT_OLDEST_POSITION]):
                    counters[C.OVERRUNS] += 1
                else:
                    n_cand = _judged(counters, cand_info, cand_rows, n_cand, idx, S_ONCHAIN, action, out)
    return n_cand


def new_candidate_buffers(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.zeros(CANDIDATES_PER_EVENT * capacity, dtype=CANDIDATE_DTYPE),
            np.zeros((CANDIDATES_PER_EVENT * capacity, OUT_WIDTH), dtype=np.float64))
