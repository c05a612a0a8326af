"""``rtsig signals``: recorded data through exactly the live service's pieces, in one process.

Decoder → store → kernels → signal builder, batch by batch. The decoder never overwrites a ring
entry that has not been judged (it stops, the batch's events are judged, it goes on), so an
offline run never overruns.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

from rtsig import counters
from rtsig.decode import Decoder
from rtsig.params import ParameterTable
from rtsig.registry import ParamValue
from rtsig.settings import Settings
from rtsig.signals import SignalBuilder
from rtsig.store import Store
from workers.judge import EventJudge

OFFLINE_ROW = 0


class OfflineRun:
    """One offline pass; feed messages with :meth:`feed`, then :meth:`finish` for the summary."""

    def __init__(self, settings: Settings, emit: Callable[[dict], None],
                 cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None) -> None:
        self.store = Store.in_memory(settings, n_workers=1)
        self.params = ParameterTable(settings, settings.max_symbols, cli_overrides=cli_overrides)
        batch = min(settings.book_ring, 256)
        # the live ingest's shard (RTSIG_SHARD): N offline shards together give one unsharded run
        self.decoder = Decoder(self.store, OFFLINE_ROW, settings.trading_symbols is None, capacity=batch,
                               shard_index=settings.shard_index, shard_count=settings.shard_count)
        row = self.store.counters[OFFLINE_ROW]
        builder = SignalBuilder(settings, self.params, self.store.last_signal_ms, row,
                                self.store.symbol_name)
        self.judge = EventJudge(self.store, self.params, builder, OFFLINE_ROW, batch)
        self.emit = emit

    def feed(self, message: bytes, receipt_ns: int) -> None:
        if not self.decoder.add(message, receipt_ns):
            self._flush()
            self.decoder.add(message, receipt_ns)
        if self.decoder.full():
            self._flush()

    def _flush(self) -> None:
        while self.decoder.count:  # judging frees ring entries a blocked decode waits for
            n_events = self.decoder.decode()
            for signal in self.judge.judge(self.decoder.events, self.decoder.message_ids, 0, n_events):
                self.emit(signal)

    def finish(self) -> dict:
        self._flush()
        return counters.summarize(self.store.counters)


def run_signals(messages: Iterable[tuple[bytes, int]], settings: Settings, emit: Callable[[dict], None],
                cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None) -> dict:
    """Process every message; return the summary of ``rtsig signals``."""
    run = OfflineRun(settings, emit, cli_overrides)
    for message, receipt_ns in messages:
        run.feed(message, receipt_ns)
    return run.finish()
