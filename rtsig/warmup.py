"""Compile (or load from the cache) every jitted function, with the argument types the service uses.

Runs in the zygote the supervisor forks the ingest and the workers from (:mod:`rtsig.zygote`) and
in ``rtsig warm-up`` (image build). It works on a small private store: the arrays have the types
of the shared store's, so the same machine code serves both, and nothing shared is touched.
"""

from __future__ import annotations

import numpy as np

from rtsig import counters as C
from rtsig.settings import Settings
from rtsig.store import Store


def warm_up(settings: Settings) -> None:
    """Compile every jitted function with the argument types the children will pass."""
    import kernels
    from rtsig.decode import Decoder
    from rtsig.eventring import awake, consumed, pending, route_events, try_sleep
    from rtsig.natsframe import SubjectTable, scan_frames, stream_sequences
    from rtsig.params import ParameterTable
    from workers.evaluate import evaluate_events, new_candidate_buffers

    kernels.warm_up()
    store = Store.in_memory(settings.with_overrides(max_symbols=16, trading_symbols=None))
    store.add_symbol("WARMUPUSDT")  # the symbol table's jitted find and insert
    dec = Decoder(store, C.ROW_SUPERVISOR, settings.trading_symbols is None, capacity=1)
    dec.decode()
    wake = np.zeros(store.layout.n_workers, dtype=np.uint8)
    route_events(dec.events, dec.message_ids, 0, store.symbols, store.events, store.event_message_ids,
                 store.event_cursors, store.counters[C.ROW_SUPERVISOR], wake)
    params = ParameterTable(settings, settings.max_symbols)
    info, rows = new_candidate_buffers(1)
    evaluate_events(store.events[0], 0, 0, store.book_meta, store.book_levels, store.market,
                    store.trades, store.tickers, params.values, params.enabled,
                    store.counters[C.ROW_SUPERVISOR], info, rows, store.symbols, store.feed_cursors,
                    store.dominance, store.quotes, store.transfers, store.venue_quotes,
                    store.venue_names, store.ofi_state, store.ofi_history)
    from rtsig.feeds.path import warm_up as warm_up_feeds

    warm_up_feeds(store, settings)  # the feeds' writers and the futures-book mirror
    frames = np.zeros(4, dtype=np.int64)
    meta = np.zeros((4, 5), dtype=np.int64)
    ping = np.frombuffer(b"PING\r\n", dtype=np.uint8).copy()
    scan_frames(ping, 0, 6, frames, frames.copy(), meta, 0, 4)
    stream_sequences(ping, meta, frames.copy())
    SubjectTable(["a", "b"]).classify(ping, meta)
    cursors = store.event_cursors
    tail, head = pending(cursors, 0)
    consumed(cursors, 0, tail)
    if try_sleep(cursors, 0):
        awake(cursors, 0)


def prepare(settings: Settings, store: Store) -> None:
    """The first zygote's work: warm up, then register the configured symbols in the shared store
    (the symbol table's insert is jitted), so the ingest and the workers start on a ready store."""
    warm_up(settings)
    for symbol in settings.trading_symbols or ():
        store.add_symbol(symbol)
