"""Events → signals for one process: the evaluation step shared by workers and ``rtsig signals``."""

from __future__ import annotations

import numpy as np

from rtsig.params import ParameterTable
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
        self.receipts: list[int] = []
        """Receipt time (ns) of the input of each signal of the last :meth:`judge` call."""

    def judge(self, events: np.ndarray, message_ids: np.ndarray, first: int, count: int) -> list[dict]:
        """Signals for ``events[first:first+count]`` (modulo the array length), in event order."""
        if count > len(self.cand_info):
            self.cand_info, self.cand_rows = new_candidate_buffers(count)
        store = self.store
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
        for c, (idx, strategy, action, sid, event_time_ms, receipt_ns) in enumerate(zip(
                index.tolist(), info["strategy"].tolist(), info["action"].tolist(),
                picked["symbol"].tolist(), picked["event_time_ms"].tolist(), picked["receipt_ns"].tolist())):
            mid = message_ids[idx]
            length = int(mid[0])
            message_id = mid[1:1 + length].tobytes().decode("utf-8", "replace") if length else None
            signal = self.builder.build(strategy, sid, action, self.cand_rows[c], event_time_ms, message_id)
            if signal is not None:
                signals.append(signal)
                self.receipts.append(receipt_ns)
        return signals
