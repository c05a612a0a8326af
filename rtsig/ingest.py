"""The ingest process: NATS messages → store → the owning workers' event rings.

Fast path (``nats://`` servers): :class:`rtsig.natsproto.FastSubscriber` frames every socket read
in one jitted call and the frames are decoded straight from its buffer — no Python object per
message (PERF: nats-py's per-message cost alone, ~5 µs, exceeded the whole budget; see
docs/PERFORMANCE.md). ``tls://`` servers use nats-py: a plain callback subscription (its async
iterator is ~3x slower and drops at default limits) on ``NATS_CONSUMER_TOPIC`` in the queue group
``NATS_CONSUMER_GROUP``. Each callback only
copies the message into the decoder's batch; the batch is decoded and routed when it is full or
when the event loop has nothing else queued (``call_soon``), so one jitted call serves every
message that arrived in one socket read. A batch never holds more messages than the book ring
has slots. Backpressure, not loss: the decoder never overwrites a ring entry its worker has not
judged and never routes more events than a worker's ring holds; the ingest then waits, and
messages queue in the NATS client (large pending limits) and, beyond that, in the server.
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
from rtsig.natsconn import CIRCUIT_CLOSED, CIRCUIT_OPEN, connect
from rtsig.natsproto import FastSubscriber, parse_servers
from rtsig.settings import Settings
from rtsig.store import Store
from rtsig.zygote import supervisor_and_zygote

log = logging.getLogger(__name__)

PENDING_MSGS_LIMIT = 2_000_000
PENDING_BYTES_LIMIT = 1024 * 1024 * 1024
"""Subscription buffer: bursts are absorbed here rather than dropped as a slow consumer."""
TICK_S = 0.1
FAST_BATCH = 4096
"""Messages framed and decoded per jitted call on the fast path (a busy socket read holds ~100-400)."""
BACKPRESSURE_WAIT_S = 0.0002
"""How long the ingest waits before retrying when a worker is a full ring behind."""


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
        self.loop = asyncio.get_running_loop()
        self.row[C.PROCESS_PID] = os.getpid()
        if all(s["scheme"] == "nats" for s in parse_servers(self.settings.nats_url)):
            return await self.run_fast()
        return await self.run_nats_py()

    # ----- the fast path: framing and decoding straight from the socket buffer
    async def run_fast(self) -> int:
        """Subscribe with :class:`FastSubscriber`; every read is framed and decoded in bulk."""
        batch = FAST_BATCH
        self.f_status = np.zeros(batch, dtype=np.int16)
        self.f_events, self.f_ids = new_event_buffers(batch)
        self.fast = FastSubscriber(self.settings.nats_url, self.settings.nats_consumer_topic,
                                   self.settings.nats_consumer_group, "rtsig-ingest",
                                   on_data=self._fast_flush, on_state=self._fast_state, batch=batch)
        self.fast.start()
        log.info("subscribing to %s (queue %s)", self.settings.nats_consumer_topic,
                 self.settings.nats_consumer_group)
        while not self._stopping():
            self.row[C.ALIVE_NS] = time.time_ns()
            self.row[C.RECONNECTS] = self.fast.reconnects
            await asyncio.sleep(TICK_S)
        await self.fast.close()  # stop intake; what was received is still decoded below
        self.row[C.SUBSCRIBED] = 0
        self.fast.frame(time.time_ns())
        while self.fast.framed:
            self._fast_flush()
            if self.fast.framed:
                await asyncio.sleep(BACKPRESSURE_WAIT_S)
        return 0

    def _fast_state(self, connected: bool) -> None:
        self.row[C.NATS_CONNECTED] = int(connected)
        self.row[C.SUBSCRIBED] = int(connected)
        self.row[C.CIRCUIT_STATE] = CIRCUIT_CLOSED if connected else CIRCUIT_OPEN

    def _fast_flush(self) -> None:
        """Decode and route every framed message; on backpressure, retry shortly."""
        self.flush_scheduled = False
        sub = self.fast
        s = self.store
        cursors = s.event_cursors
        while sub.framed:
            room = s.layout.event_ring - int((cursors[:, CURSOR_HEAD] - cursors[:, CURSOR_TAIL]).max())
            n = min(sub.framed, room)
            if n <= 0:
                break
            nxt, n_events = self.decoder.decode_spans(
                sub.buffer.data, sub.starts[:n], sub.ends[:n], sub.receipt_ns[:n], self.f_status,
                self.f_events, self.f_ids)
            if n_events:
                route_events(self.f_events, self.f_ids, n_events, s.symbols, s.events,
                             s.event_message_ids, cursors, self.row, self.wake)
                wake_workers(self.wake, self.wakers)
            if nxt:
                self._log_bad_input(self.f_status[:nxt])
            self.row[C.MESSAGES_HANDED_OFF] += nxt
            sub.consumed(int(nxt))
            sub.frame(time.time_ns())
            if nxt < n:
                break  # a worker is a full ring behind
        if sub.framed and not self.flush_scheduled:
            self.flush_scheduled = True
            self.row[C.BACKPRESSURE_WAITS] += 1
            self.loop.call_later(BACKPRESSURE_WAIT_S, self._fast_flush)

    # ----- the nats-py path (tls:// servers)
    async def run_nats_py(self) -> int:
        nc = await connect(self.settings, "rtsig-ingest", self.row, stopping=self._stopping,
                           on_reconnect=self._on_reconnect, on_disconnect=self._on_disconnect)
        if nc is None:
            return 0
        sub = await nc.subscribe(self.settings.nats_consumer_topic, queue=self.settings.nats_consumer_group,
                                 cb=self._on_message, pending_msgs_limit=PENDING_MSGS_LIMIT,
                                 pending_bytes_limit=PENDING_BYTES_LIMIT)
        self.row[C.SUBSCRIBED] = 1
        log.info("subscribed to %s (queue %s)", self.settings.nats_consumer_topic,
                 self.settings.nats_consumer_group)
        while not self._stopping():
            self.row[C.ALIVE_NS] = time.time_ns()
            await asyncio.sleep(TICK_S)
        # stop intake, handle what was already received, hand everything to the workers
        try:
            await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - connection down: nothing more will arrive anyway
            pass
        self.row[C.SUBSCRIBED] = 0
        pending = sub._pending_queue  # noqa: SLF001 - drain what nats-py already buffered
        while not pending.empty():
            await self._on_message(pending.get_nowait())
        while self.decoder.count:  # the workers are still running: they free the rings
            self._flush()
            if self.decoder.count:
                await asyncio.sleep(BACKPRESSURE_WAIT_S)
        try:
            await nc.close()
        except Exception:  # noqa: BLE001
            pass
        return 0

    def _stopping(self) -> bool:
        """Shutdown ordered, or the supervisor is gone (never outlive it)."""
        return int(self.store.header[0]["shutdown"]) != 0 or os.getppid() not in self.parents

    async def _on_reconnect(self) -> None:
        self.row[C.SUBSCRIBED] = 1

    async def _on_disconnect(self) -> None:
        self.row[C.SUBSCRIBED] = 0

    async def _on_message(self, msg) -> None:
        data = msg.data
        receipt_ns = time.time_ns()
        while not self.decoder.add(data, receipt_ns):
            self._flush()
            if self.decoder.full():  # a worker is behind: wait for it (nothing is dropped)
                self.row[C.BACKPRESSURE_WAITS] += 1
                await asyncio.sleep(BACKPRESSURE_WAIT_S)
        if self.decoder.full():
            self._flush()
        if self.decoder.count and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        dec = self.decoder
        if dec.count == 0:
            return
        s = self.store
        cursors = s.event_cursors
        room = s.layout.event_ring - int((cursors[:, CURSOR_HEAD] - cursors[:, CURSOR_TAIL]).max())
        if room < dec.capacity:  # a batch's events must fit every ring: wait for the workers
            self._retry_later()
            return
        n_events = dec.decode()
        route_events(dec.events, dec.message_ids, n_events, s.symbols, s.events, s.event_message_ids,
                     cursors, self.row, self.wake)
        wake_workers(self.wake, self.wakers)
        self.row[C.MESSAGES_HANDED_OFF] += len(dec.last_status)
        self._log_bad_input(dec.last_status)
        if dec.blocked:
            self._retry_later()

    def _retry_later(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.row[C.BACKPRESSURE_WAITS] += 1
            self.loop.call_later(BACKPRESSURE_WAIT_S, self._flush)

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
