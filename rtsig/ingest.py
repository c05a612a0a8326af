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
import logging
import os
import signal
import time

import numpy as np

from rtsig import codes
from rtsig import counters as C
from rtsig.decode import Decoder, new_event_buffers
from rtsig.eventring import route_events, wake_workers
from rtsig.layout import CURSOR_HEAD, CURSOR_TAIL
from rtsig.logs import RateLimiter
from rtsig.natsauth import NatsAuth
from rtsig.natsconn import CIRCUIT_CLOSED, CIRCUIT_OPEN
from rtsig.natsproto import FastSubscriber
from rtsig.settings import Settings
from rtsig.store import Store
from rtsig.zygote import supervisor_and_zygote

log = logging.getLogger(__name__)

TICK_S = 0.1
FAST_BATCH = 4096
"""Messages decoded per jitted call at most (a busy socket read holds ~100-400)."""
BACKPRESSURE_WAIT_S = 0.0002
"""How long the ingest waits before retrying when a worker is a full ring behind."""
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
                               capacity=min(settings.book_ring, 256))
        self.wake = np.zeros(store.layout.n_workers, dtype=np.uint8)
        self.flush_scheduled = False
        self.limiter = RateLimiter(60.0)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.parents = supervisor_and_zygote(store)

    async def run(self) -> int:
        """Subscribe and decode every read in bulk until shutdown; then judge what was received."""
        self.loop = asyncio.get_running_loop()
        self.row[C.PROCESS_PID] = os.getpid()
        self.f_status = np.zeros(FAST_BATCH, dtype=np.int16)
        self.f_events, self.f_ids = new_event_buffers(FAST_BATCH)
        self.sub = FastSubscriber(NatsAuth.from_settings(self.settings), self.settings.nats_consumer_topic,
                                  self.settings.nats_consumer_group, "rtsig-ingest",
                                  on_data=self._flush, on_state=self._state, batch=FAST_BATCH,
                                  limit_bytes=BACKLOG_LIMIT_BYTES)
        self.sub.start()
        log.info("subscribing to %s (queue %s)", self.settings.nats_consumer_topic,
                 self.settings.nats_consumer_group)
        while not self._stopping():
            self._stamp()
            await asyncio.sleep(TICK_S)
        await self.sub.close()  # stop intake; what was received is still decoded below
        self.row[C.SUBSCRIBED] = 0
        while self.sub.framed:
            self._flush()
            self._stamp()
            if self.sub.framed:
                await asyncio.sleep(BACKPRESSURE_WAIT_S)
        self._stamp()
        return 0

    def _stamp(self) -> None:
        """The heartbeat, and the subscriber's counts, into the counter row."""
        self.row[C.ALIVE_NS] = time.time_ns()
        self._count_input()

    def _count_input(self) -> None:
        """Messages read, dropped and reconnects: before any of them is handed off, so that
        ``INPUT_FRAMED >= MESSAGES_HANDED_OFF + INPUT_DROPPED_OVER_LIMIT`` whenever it is read."""
        sub = self.sub
        self.row[C.RECONNECTS] = sub.reconnects
        self.row[C.INPUT_FRAMED] = sub.received
        self.row[C.INPUT_TRUNCATED] = sub.truncated
        self.row[C.INPUT_DROPPED_OVER_LIMIT] = sub.dropped_over_limit

    def _state(self, connected: bool) -> None:
        self._count_input()
        self.row[C.NATS_CONNECTED] = int(connected)
        self.row[C.SUBSCRIBED] = int(connected)
        self.row[C.CIRCUIT_STATE] = CIRCUIT_CLOSED if connected else CIRCUIT_OPEN

    def _flush(self) -> None:
        """Decode and route every framed message; on backpressure, retry shortly."""
        self.flush_scheduled = False
        sub = self.sub
        self._count_input()
        s = self.store
        cursors = s.event_cursors
        while sub.framed:
            room = s.layout.event_ring - int((cursors[:, CURSOR_HEAD] - cursors[:, CURSOR_TAIL]).max())
            n = min(sub.framed, room, FAST_BATCH)
            if n <= 0:
                break
            starts, ends, receipt_ns = sub.spans(n)
            nxt, n_events = self.decoder.decode_spans(sub.buffer, starts, ends, receipt_ns,
                                                      self.f_status, self.f_events, self.f_ids)
            if n_events:
                route_events(self.f_events, self.f_ids, n_events, s.symbols, s.events,
                             s.event_message_ids, cursors, self.row, self.wake)
                wake_workers(self.wake, self.wakers)
            if nxt:
                self._log_bad_input(self.f_status[:nxt])
            self.row[C.MESSAGES_HANDED_OFF] += nxt
            sub.consumed(nxt)
            if nxt < n:
                break  # a worker is a full ring behind
        if sub.framed and not self.flush_scheduled:
            self.flush_scheduled = True
            self.row[C.BACKPRESSURE_WAITS] += 1
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
