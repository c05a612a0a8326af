"""Events → signals for one process: the evaluation step shared by workers and ``rtsig signals``."""

from __future__ import annotations

import numpy as np

from rtsig.counters import ROW_WORKER0
from rtsig.layout import VENUE_FUTURES
from rtsig.params import ParameterTable
from rtsig.settings import MARKETS
from rtsig.signals import SignalBuilder
from workers.evaluate import evaluate_events, new_candidate_buffers


class EventJudge:
    """Runs :func:`evaluate_events` on a span of events and builds the signals it finds."""

    def __init__(self, store, params: ParameterTable, builder: SignalBuilder, counter_row: int,
                 capacity: int) -> None:
        self.store = store
        self.params = params
        self.builder = builder
        self.counters = store.counters[counter_row]
        self.cand_info, self.cand_rows = new_candidate_buffers(capacity)
        self._symbols_known = 0
        self._evictions_seen = 0
        self._generations = store.symbols["generation"].copy()
        self._owner = counter_row - ROW_WORKER0 if counter_row >= ROW_WORKER0 else None
        """This worker's index (None offline: one process owns every symbol)."""
        self.receipts: list[int] = []
        """Receipt time (ns) of the input of each signal of the last :meth:`judge` call."""

    def judge(self, events: np.ndarray, message_ids: np.ndarray, first: int, count: int) -> list[dict]:
        """Signals for ``events[first:first+count]`` (modulo the array length), in event order."""
        if count > len(self.cand_info):
            self.cand_info, self.cand_rows = new_candidate_buffers(count)
        store = self.store
        if int(store.header[0]["symbol_evictions"]) != self._evictions_seen:
            self._renamed()
        if store.symbol_count != self._symbols_known:
            names = store.symbol_list()  # read once: the ingest may add symbols meanwhile
            self.params.sync_symbols(names)
            self._symbols_known = len(names)
        n = evaluate_events(events, first, count, store.book_meta, store.book_levels, store.market,
                            store.trades, store.tickers, self.params.values, self.params.enabled,
                            self.counters, self.cand_info, self.cand_rows)
        signals = []
        self.receipts = []
        if n == 0:
            return signals
        # every field the builder needs, as Python values, in one NumPy call per field
        info = self.cand_info[:n]
        index = info["event_index"]
        picked = events[index]
        venues = store.symbols["venue"][picked["symbol"]].tolist()
        for c, (idx, strategy, action, sid, event_time_ms, receipt_ns, venue) in enumerate(zip(
                index.tolist(), info["strategy"].tolist(), info["action"].tolist(),
                picked["symbol"].tolist(), picked["event_time_ms"].tolist(), picked["receipt_ns"].tolist(),
                venues)):
            mid = message_ids[idx]
            length = int(mid[0])
            message_id = mid[1:1 + length].tobytes().decode("utf-8", "replace") if length else None
            signal = self.builder.build(strategy, sid, action, self.cand_rows[c], event_time_ms, message_id,
                                        MARKETS[1] if venue == VENUE_FUTURES else MARKETS[0])
            if signal is not None:
                signals.append(signal)
                self.receipts.append(receipt_ns)
        return signals

    def _renamed(self) -> None:
        """The ingest gave idle symbols' ids to new symbols: re-resolve their parameters, forget
        their names and (for the symbols this worker owns, whose cool-downs only it writes)
        clear their cool-downs. Runs before any event of a new symbol is judged: the ingest
        bumps ``symbol_evictions`` before it writes the new symbol's first entry."""
        store = self.store
        self._evictions_seen = int(store.header[0]["symbol_evictions"])
        count = store.symbol_count
        generations = store.symbols["generation"][:count].copy()
        for sid in np.flatnonzero(generations != self._generations[:count]).tolist():
            if sid < self._symbols_known:
                self.params.rename(sid, store.symbol_name(sid))
            self.builder.forget(sid)
            if self._owner is None or int(store.symbols[sid]["worker"]) == self._owner:
                store.last_signal_ms[sid] = np.iinfo(np.int64).min
        self._generations[:count] = generations
