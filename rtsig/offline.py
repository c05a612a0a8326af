"""``rtsig signals``: recorded data through exactly the live service's pieces, in one process.

Decoder → store → kernels → signal builder, batch by batch. The decoder never overwrites a ring
entry that has not been judged (it stops, the batch's events are judged, it goes on), so an
offline run never overruns.

Feed messages (``{"subject", "data"}`` lines on a feed subject, docs/CONTRACT.md §2c) are taken in
the order they come, exactly as the live ingest takes feed frames: the market messages before
them are decoded and judged first, then the feed message goes through
:class:`rtsig.feeds.path.FeedPath` and its event is judged. USD-M futures books become quotes of
the spread strategy by the same mirror pass as live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from rtsig import counters
from rtsig.decode import Decoder
from rtsig.feeds.messages import REASON_NAMES
from rtsig.feeds.path import FeedPath
from rtsig.layout import DIRECTIONS, FEED_NAMES, VENUE_FUTURES
from rtsig.params import ConfigSource, ParameterTable
from rtsig.recorded import with_subject
from rtsig.registry import ParamValue
from rtsig.settings import Settings
from rtsig.signals import SignalBuilder
from rtsig.store import Store
from workers.judge import EventJudge

OFFLINE_ROW = 0


class OfflineRun:
    """One offline pass; feed messages with :meth:`feed`, then :meth:`finish` for the summary."""

    def __init__(self, settings: Settings, emit: Callable[[dict], None],
                 cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None,
                 source: ConfigSource | None = None,
                 on_events: Callable[[np.ndarray, int], None] | None = None) -> None:
        """``source``: parameters from a config store (``--config-store``) instead of the
        environment and ``cli_overrides`` alone. ``on_events(events, n)``: called with every
        decoded batch's events before they are judged, while their ring entries are in the
        store (``rtsig evaluate`` reads the prices that follow each signal from them)."""
        self.store = Store.in_memory(settings, n_workers=1)
        self.params = ParameterTable(settings, settings.max_symbols, source=source,
                                     cli_overrides=cli_overrides)
        batch = min(settings.book_ring, 256)
        # the live ingest's shard (RTSIG_SHARD): N offline shards together give one unsharded run
        self.decoder = Decoder(self.store, OFFLINE_ROW, settings.trading_symbols is None, capacity=batch,
                               shard_index=settings.shard_index, shard_count=settings.shard_count)
        row = self.store.counters[OFFLINE_ROW]
        builder = SignalBuilder(settings, self.params, self.store.last_signal_ms, row,
                                self.store.symbol_name)
        self.judge = EventJudge(self.store, self.params, builder, OFFLINE_ROW, batch)
        self.feeds = FeedPath(self.store, settings, OFFLINE_ROW)
        self.futures_topic = settings.nats_futures_topic
        self.emit = emit
        self.on_events = on_events

    def feed(self, message: bytes, receipt_ns: int) -> None:
        market = 0
        routed = with_subject(message)
        if routed is not None:
            subject, message = routed
            feed = self.feeds.feed_of(subject)
            if feed is not None:  # after every market message before it, as the live ingest
                self._flush()
                if self.feeds.handle(feed, message, receipt_ns):
                    for signal in self.judge.judge(self.feeds.events, self.feeds.ids, 0, 1):
                        self.emit(signal)
                return
            if subject == self.futures_topic:
                market = VENUE_FUTURES
        if not self.decoder.add(message, receipt_ns, market):
            self._flush()
            self.decoder.add(message, receipt_ns, market)
        if self.decoder.full():
            self._flush()

    def _flush(self) -> None:
        while self.decoder.count:  # judging frees ring entries a blocked decode waits for
            n_events = self.decoder.decode()
            if self.on_events is not None:
                self.on_events(self.decoder.events, n_events)
            events, ids, n_events = self.feeds.mirror(self.decoder.events, self.decoder.message_ids,
                                                      n_events)
            for signal in self.judge.judge(events, ids, 0, n_events):
                self.emit(signal)

    def finish(self) -> dict:
        self._flush()
        summary = counters.summarize(self.store.counters)
        row = self.store.counters[OFFLINE_ROW]
        if row[counters.FEED_MESSAGES_BASE:counters.FEED_FILTERED + 1].any():  # only with feed input
            summary["feeds"] = feed_summary(row)
        return summary


def run_signals(messages: Iterable[tuple[bytes, int]], settings: Settings, emit: Callable[[dict], None],
                cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None,
                source: ConfigSource | None = None) -> dict:
    """Process every message; return the summary of ``rtsig signals``."""
    run = OfflineRun(settings, emit, cli_overrides, source)
    for message, receipt_ns in messages:
        run.feed(message, receipt_ns)
    return run.finish()


def feed_summary(row) -> dict:
    """Per feed: messages accepted, errors by reason; plus transfers by direction, feed messages
    for symbols not traded here, USD-M books mirrored as quotes, and candidates without a price."""
    out: dict = {}
    for feed, name in enumerate(FEED_NAMES):
        base = counters.FEED_ERRORS_BASE + feed * counters.N_FEED_REASONS
        errors = {REASON_NAMES[r]: int(row[base + r]) for r in REASON_NAMES if row[base + r]}
        out[name] = {"messages": int(row[counters.FEED_MESSAGES_BASE + feed]), "errors": errors}
    out["onchain"]["directions"] = {d: int(row[counters.TRANSFER_DIRECTION_BASE + k])
                                    for k, d in enumerate(DIRECTIONS)}
    out["filtered"] = int(row[counters.FEED_FILTERED])
    out["futures_quotes"] = int(row[counters.FEED_QUOTES_MIRRORED])
    out["no_price"] = int(row[counters.NO_PRICE])
    return out
