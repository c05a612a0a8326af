"""The ingest process: NATS messages → store → the owning workers' event rings.

:class:`rtsig.natsproto.FastSubscriber` frames every socket read in one jitted call and the
frames are decoded straight from its backlog — no Python object per message (PERF: nats-py's
per-message cost alone, ~5 µs, exceeded the whole budget; see docs/PERFORMANCE.md). It is the
only ingest path: plain, TLS and every NATS login go through it. Backpressure, not loss: the
decoder never overwrites a ring entry its worker has not judged and never routes more events
than a worker's ring holds; the ingest then waits and the frames stay in the backlog, which
keeps reading (control lines included) up to its byte limit — beyond it new messages are
dropped and counted (``INPUT_DROPPED_OVER_LIMIT``), as are messages a lost connection cut off
(``INPUT_TRUNCATED``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import time

import numpy as np

from rtsig import codes, durable
from rtsig import counters as C
from rtsig.decode import Decoder, new_event_buffers
from rtsig.eventring import route_events, wake_workers
from rtsig.feeds.path import FeedPath
from rtsig.layout import CURSOR_HEAD, CURSOR_TAIL, VENUE_FUTURES
from rtsig.logs import RateLimiter
from rtsig.natsauth import NatsAuth
from rtsig.natsconn import CIRCUIT_CLOSED, CIRCUIT_OPEN, connect
from rtsig.natsframe import SubjectTable
from rtsig.natsproto import FastSubscriber, PullConsumer
from rtsig.settings import Settings
from rtsig.store import Store
from rtsig.zygote import supervisor_and_zygote

log = logging.getLogger(__name__)

TICK_S = 0.1
FAST_BATCH = 4096
"""Messages decoded per jitted call at most (a busy socket read holds ~100-400)."""
BACKPRESSURE_WAIT_S = 0.0002
"""How long the ingest waits before retrying when a worker is a full ring behind."""
_INPUT_SLOTS = (C.RECONNECTS, C.INPUT_FRAMED, C.INPUT_TRUNCATED, C.INPUT_DROPPED_OVER_LIMIT)
"""Where :meth:`Ingest._count_input` writes the subscriber's counts, in :meth:`_input_counts` order."""
ACK_DRAIN_S = 5.0
"""JetStream mode, at shutdown: how long to wait for the workers to judge what was delivered."""
REBUILD_IDLE_S = 2.0
"""JetStream mode: a rebuild that receives nothing for this long has read all there is."""
BACKLOG_LIMIT_BYTES = 1 << 30
"""Received bytes the ingest holds while the workers are behind; beyond, new messages are dropped
(counted): ~3.5 M realistic messages, 35 s of a flat-out feed."""


class Ingest:
    def __init__(self, settings: Settings, store: Store, wakers: list[int]) -> None:
        self.settings = settings
        self.store = store
        self.wakers = wakers
        self.row = store.counters[C.ROW_INGEST]
        self.decoder = Decoder(store, C.ROW_INGEST, settings.trading_symbols is None,
                               capacity=min(settings.book_ring, 256),
                               shard_index=settings.shard_index, shard_count=settings.shard_count)
        self.wake = np.zeros(store.layout.n_workers, dtype=np.uint8)
        self.flush_scheduled = False
        self.limiter = RateLimiter(60.0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.parents = supervisor_and_zygote(store)
        self.feeds = FeedPath(store, settings, C.ROW_INGEST)
        """The market-logic strategies' feeds (docs/CONTRACT.md §2c): frames of their subjects are
        taken in their place among the market data (``_flush``)."""
        self.feed_sub: FastSubscriber | None = None

    async def run(self) -> int:
        """Subscribe and decode every read in bulk until shutdown; then judge what was received."""
        self.loop = asyncio.get_running_loop()
        self.row[C.PROCESS_PID] = os.getpid()
        self.f_status = np.zeros(FAST_BATCH, dtype=np.int16)
        self.f_events, self.f_ids = new_event_buffers(FAST_BATCH)
        self.auth = NatsAuth.from_settings(self.settings)
        futures = self.settings.nats_futures_topic
        self.subjects: tuple[str, ...] = (self.settings.nats_consumer_topic,) + ((futures,) if futures else ())
        self.n_market_subjects = len(self.subjects)
        self.subjects += self.settings.feed_subjects  # feeds: sids after the market subjects
        self.subject_table = SubjectTable(list(self.subjects))
        self.acks: durable.AckTracker | None = None
        self.rebuild_until = 0
        self._counted: tuple[int, ...] = (0, 0, 0, 0)
        """Counts of subscribers already closed (the rebuild's), added to the live one's."""
        self.sub = self._subscriber(None)  # counts and gauges exist before anything connects
        pull = None
        if self.settings.nats_consumer_stream:
            pull = await self._resume_durable()
            if pull is None:
                return 0
        sharded = self.settings.shard_count > 1
        queue = None if sharded else self.settings.nats_consumer_group
        self.sub = self._subscriber(pull, queue)
        self.sub.start()
        if pull is not None:  # the durable consumer reads the market subjects only
            self.feed_sub = self._feed_subscriber()
            self.feed_sub.start()
        log.info("reading %s", f"JetStream stream {pull.stream} through consumer {pull.consumer}" if pull
                 else f"{self.settings.nats_consumer_topic} " + (
                     f"as shard {self.settings.shard_index}/{self.settings.shard_count}" if sharded
                     else f"in queue group {queue}"))
        while not self._stopping():
            self._stamp()
            self._acknowledge()
            await asyncio.sleep(TICK_S)
        await self._finish()
        return 0

    def _subscriber(self, pull: PullConsumer | None, queue: str | None = None) -> FastSubscriber:
        return FastSubscriber(self.auth, self.settings.nats_consumer_topic, queue, "rtsig-ingest",
                              on_data=self._flush, on_state=self._state, batch=FAST_BATCH,
                              limit_bytes=BACKLOG_LIMIT_BYTES, pull=pull, also=self.subjects[1:])

    def _markets(self, n: int, which: np.ndarray | None = None) -> np.ndarray | None:
        """Per frame, ``VENUE_FUTURES`` for a message published on ``NATS_FUTURES_TOPIC`` (known by
        its subject, also in a JetStream delivery), else 0 (the payload's shape decides)."""
        if self.n_market_subjects == 1:
            return None
        if which is None:
            which = self.subject_table.classify(self.sub.buffer, self.sub.frame_meta(n))
        return np.where(which[:n] == 1, VENUE_FUTURES, 0).astype(np.uint8)

    # ----- feeds of the market-logic strategies (docs/CONTRACT.md §2c)
    def _feed_frames(self, n: int, room: int) -> tuple[int, np.ndarray]:
        """How many of the next ``n`` frames are market data before the first feed frame (0:
        the first is a feed's), and every frame's subject index. A run of market frames leaves
        room in the rings for a quote after each of its USD-M futures books."""
        which = self.subject_table.classify(self.sub.buffer, self.sub.frame_meta(n))
        feeds = np.flatnonzero(which >= self.n_market_subjects)
        if feeds.size:
            n = int(feeds[0])
        return min(n, max(1, room // 2)) if n else 0, which

    def _take_feed(self, sub: FastSubscriber, feed: int) -> None:
        """The next frame is a feed message: store it and route its event in its place."""
        s = self.store
        starts, ends, receipt_ns = sub.spans(1)
        body = sub.buffer[int(starts[0]):int(ends[0])].tobytes()
        if self.feeds.handle(feed, body, int(receipt_ns[0])):
            route_events(self.feeds.events, self.feeds.ids, 1, s.symbols, s.events,
                         s.event_message_ids, s.event_cursors, self.row, self.wake)
            wake_workers(self.wake, self.wakers)

    def _feed_subscriber(self) -> FastSubscriber:
        """JetStream mode: the feeds on a core-NATS subscription of their own (the durable
        consumer captures the market subjects only); they are taken in arrival order."""
        subjects = self.settings.feed_subjects
        return FastSubscriber(self.auth, subjects[0], None, "rtsig-ingest-feeds",
                              on_data=self._flush_feed_sub, on_state=lambda connected: None,
                              batch=256, also=subjects[1:])

    def _flush_feed_sub(self) -> None:
        sub = self.feed_sub
        assert sub is not None and self.loop is not None  # set by run() before this callback can run
        cursors = self.store.event_cursors
        while sub.framed:
            room = self.store.layout.event_ring - int((cursors[:, CURSOR_HEAD] - cursors[:, CURSOR_TAIL]).max())
            if room <= 0:
                self.loop.call_later(BACKPRESSURE_WAIT_S, self._flush_feed_sub)
                return
            which = int(self.subject_table.classify(sub.buffer, sub.frame_meta(1))[0])
            if which >= self.n_market_subjects:
                self._take_feed(sub, which - self.n_market_subjects)
            sub.consumed(1)

    async def _finish(self) -> None:
        """Stop intake, judge what was received, and (JetStream) acknowledge what was judged."""
        if self.acks is not None:
            self.sub.pull_stopped = True  # no more requests; what was delivered is judged below
            await self._drain_backlog()
            deadline = time.monotonic() + ACK_DRAIN_S
            while self.acks.pending and time.monotonic() < deadline:
                self._acknowledge()
                await asyncio.sleep(0.01)
            self._acknowledge()
            await self.sub.flush_writes()
        await self.sub.close()
        if self.feed_sub is not None:
            await self.feed_sub.close()
            self._flush_feed_sub()
        self.row[C.SUBSCRIBED] = 0
        await self._drain_backlog()
        self._stamp()

    async def _drain_backlog(self) -> None:
        while self.sub.framed:
            self._flush()
            self._stamp()
            if self.sub.framed:
                await asyncio.sleep(BACKPRESSURE_WAIT_S)

    # ----- JetStream
    async def _resume_durable(self) -> PullConsumer | None:
        """Stream and durable consumer ready, history rebuilt; None if stopped meanwhile."""
        settings = self.settings
        control = await connect(settings, "rtsig-ingest-control", np.zeros(C.N_COUNTERS, dtype=np.int64),
                                stopping=self._stopping)
        if control is None:
            return None
        try:
            while True:
                try:
                    point = await durable.prepare(control, settings)
                    break
                except Exception as exc:  # noqa: BLE001 - no stream yet, JetStream off, a timeout
                    if self.limiter.allow("durable"):
                        log.error("cannot use JetStream stream %s: %s", settings.nats_consumer_stream, exc)
                    for _ in range(20):
                        self._stamp()
                        if self._stopping():
                            return None
                        await asyncio.sleep(TICK_S)
            self.acks = durable.AckTracker()
            if point.floor_seq and settings.nats_consumer_rebuild_seconds > 0:
                await self._rebuild(control, point)
            self.acks.last_seq = max(self.acks.last_seq, point.floor_seq)
            self.rebuild_until = 0
        finally:
            await control.close()
        return durable.pull_for(settings, durable.durable_name(settings))

    async def _rebuild(self, control, point: durable.ResumePoint) -> None:
        """Judge, without publishing, the stream up to the acknowledgement floor (from
        ``NATS_CONSUMER_REBUILD_SECONDS`` before it), so windows and cool-downs are whole."""
        settings = self.settings
        assert self.acks is not None  # set just before _rebuild is called
        when = point.floor_time or datetime.datetime.now(datetime.UTC)
        since = when - datetime.timedelta(seconds=settings.nats_consumer_rebuild_seconds)
        name = await durable.rebuild_consumer(control, settings, since)
        self.rebuild_until = point.floor_seq
        started = time.monotonic()
        self.sub = self._subscriber(durable.pull_for(settings, name))
        self.sub.start()
        idle_since, last_received = time.monotonic(), 0
        while self.acks.last_seq < point.floor_seq and not self._stopping():
            self._stamp()
            if self.sub.received != last_received:
                idle_since, last_received = time.monotonic(), self.sub.received
            elif time.monotonic() - idle_since > REBUILD_IDLE_S:
                break  # the stream has nothing more before the floor (aged out, or purged)
            await asyncio.sleep(0.01)
        self.sub.pull_stopped = True
        self.row[C.INPUT_REDELIVERED] += self.sub.framed  # past the floor: the durable sends them
        await self.sub.close()
        self._counted = tuple(a + b for a, b in zip(self._counted, self._input_counts()))
        await durable.delete_consumer(control, settings, name)
        log.info("rebuilt history from %s up to stream sequence %d in %.2f s", since.isoformat(),
                 self.acks.last_seq, time.monotonic() - started)

    def _acknowledge(self) -> None:
        if self.acks is None or self.rebuild_until:
            return
        rows = self.store.counters
        held = int(rows[C.ROW_WORKER0:C.ROW_WORKER0 + self.store.layout.n_workers, C.PUBLISH_BUFFERED].sum())
        reply = self.acks.ready(self.store.event_cursors, held)
        if reply is not None:
            self.sub.ack(reply)

    # ----- counters
    def _stamp(self) -> None:
        """The heartbeat, and the subscriber's counts, into the counter row."""
        self.row[C.ALIVE_NS] = time.time_ns()
        self._count_input()

    def _input_counts(self) -> tuple[int, int, int, int]:
        sub = self.sub
        return sub.reconnects, sub.received, sub.truncated, sub.dropped_over_limit

    def _count_input(self) -> None:
        """Messages read, dropped and reconnects: before any of them is handed off, so that
        ``INPUT_FRAMED >= MESSAGES_HANDED_OFF + INPUT_DROPPED_OVER_LIMIT`` whenever it is read.
        Runs on every socket read: plain ints, no array built."""
        for slot, live, closed in zip(_INPUT_SLOTS, self._input_counts(), self._counted):
            self.row[slot] = live + closed

    def _state(self, connected: bool) -> None:
        self._count_input()
        self.row[C.NATS_CONNECTED] = int(connected)
        self.row[C.SUBSCRIBED] = int(connected) if not self.rebuild_until else 0
        self.row[C.CIRCUIT_STATE] = CIRCUIT_CLOSED if connected else CIRCUIT_OPEN

    def _flush(self) -> None:
        """Decode and route every framed message; on backpressure, retry shortly."""
        self.flush_scheduled = False
        sub = self.sub
        self._count_input()
        s = self.store
        cursors = s.event_cursors
        acks = self.acks
        while sub.framed:
            room = s.layout.event_ring - int((cursors[:, CURSOR_HEAD] - cursors[:, CURSOR_TAIL]).max())
            n = min(sub.framed, room, FAST_BATCH)
            if n <= 0:
                break
            if acks is not None:  # JetStream: skip redeliveries, stop at the rebuild's floor
                seqs = acks.sequences(sub.buffer, sub.frame_meta(n))
                again, n = acks.split(seqs)
                if self.rebuild_until:
                    n = int(np.searchsorted(seqs[:n], self.rebuild_until, side="right"))
                    if n == 0 and not again:
                        return  # past the floor: the durable consumer delivers these
                if again:
                    self.row[C.INPUT_REDELIVERED] += again
                    sub.consumed(again)
                    continue
            n, which = self._feed_frames(n, room)
            if n == 0:  # a feed message, in its place among the market data
                self._take_feed(sub, int(which[0]) - self.n_market_subjects)
                self.row[C.MESSAGES_HANDED_OFF] += 1
                sub.consumed(1)
                continue
            starts, ends, receipt_ns = sub.spans(n)
            nxt, n_events = self.decoder.decode_spans(sub.buffer, starts, ends, receipt_ns,
                                                      self.f_status, self.f_events, self.f_ids,
                                                      self._markets(n, which))
            if n_events:
                events, ids, n_events = self.feeds.mirror(self.f_events, self.f_ids, n_events)
                route_events(events, ids, n_events, s.symbols, s.events,
                             s.event_message_ids, cursors, self.row, self.wake)
                if self.rebuild_until:
                    durable.mark_silent(cursors)
                wake_workers(self.wake, self.wakers)
            if nxt:
                self._log_bad_input(self.f_status[:nxt])
                if acks is not None:
                    acks.decoded(seqs[:nxt], sub.buffer, sub.frame_meta(nxt), cursors[:, CURSOR_HEAD])
            self.row[C.MESSAGES_HANDED_OFF] += nxt
            sub.consumed(nxt)
            if nxt < n:
                break  # a worker is a full ring behind
        if acks is not None:
            self._acknowledge()
        if sub.framed and not self.flush_scheduled:
            self.flush_scheduled = True
            self.row[C.BACKPRESSURE_WAITS] += 1
            assert self.loop is not None  # set by run() before any subscription starts
            self.loop.call_later(BACKPRESSURE_WAIT_S, self._flush)

    def _stopping(self) -> bool:
        """Shutdown ordered, or the supervisor is gone (never outlive it)."""
        return int(self.store.header[0]["shutdown"]) != 0 or os.getppid() not in self.parents

    def _log_bad_input(self, status: np.ndarray) -> None:
        bad = np.flatnonzero((status > 0) & (status < codes.STATUS_FILTERED))
        for k in bad:
            reason = codes.status_name(int(status[k]))
            if self.limiter.allow(reason):
                log.warning("dropped bad message: %s", reason,
                            extra={"reason": reason, "count_total": int(self.row[C.ERROR_BASE + status[k]])})


def ingest_main(settings: Settings, store: Store, wakers: list[int]) -> None:
    """Entry point of the forked ingest process."""
    import uvloop

    from rtsig import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logs.setup(settings.log_level, settings.log_format, "ingest")
    code = uvloop.run(Ingest(settings, store, wakers).run())
    os._exit(code)
