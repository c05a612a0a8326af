"""A worker process: judge the events of its symbols in order, publish the signals.

Each worker owns the symbols ``symbol_id % n_workers == index``, consumes its event ring from the
ingest (see :mod:`rtsig.eventring`), judges events in chunks with the kernels and publishes on its
own NATS connection; nats-py batches the writes, so a busy worker flushes many signals per system
call. While NATS is down, signals wait in a bounded buffer and go out on reconnect; what does not
fit is dropped and counted (``PUBLISH_DROPPED``) — the ingest is never blocked.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from rtsig import counters as C
from rtsig.codes import SHUTDOWN_DRAIN
from rtsig.config.notify import bump_epoch, parse_notice
from rtsig.config.service import ConfigService
from rtsig.eventring import awake, consumed, pending, try_sleep
from rtsig.layout import CURSOR_PUBLISHED, CURSOR_SILENT, CURSOR_TAIL
from rtsig.natsconn import connect
from rtsig.params import ParameterTable
from rtsig.settings import Settings
from rtsig.signals import SignalBuilder, serialize
from rtsig.store import Store
from rtsig.zygote import supervisor_and_zygote
from workers.judge import EventJudge

if TYPE_CHECKING:
    import nats

log = logging.getLogger(__name__)

CHUNK_EVENTS = 1024
"""Events judged per jitted call; the loop yields to NATS I/O between chunks."""
TICK_S = 0.2
PUBLISH_CONFIRM_S = 0.02
"""JetStream mode: how often a worker confirms with a NATS flush which signals are on the wire."""
"""Housekeeping period: shutdown flag, config epoch, liveness, and a safety poll of the ring."""


class SignalPublisher:
    """Publishes signals, holding up to ``limit`` of them while NATS is down."""

    def __init__(self, row, limit: int) -> None:
        self.row = row
        self.nc: nats.NATS | None = None
        self.held: collections.deque[tuple[str, bytes, dict | None]] = collections.deque()
        self.limit = limit

    async def publish(self, subject: str, payload: bytes, headers: dict | None = None) -> bool:
        """True when handed to the connection; False when held for later."""
        nc = self.nc
        if nc is not None and nc.is_connected and not self.held:
            try:
                await nc.publish(subject, payload, headers=headers)
                self.row[C.PUBLISHED] += 1
                return True
            except Exception as exc:  # noqa: BLE001 - connection lost between check and write
                self.row[C.PUBLISH_ERRORS] += 1
                log.debug("publish failed, holding the signal: %s", exc)
        self._hold(subject, payload, headers)
        return False

    def _hold(self, subject: str, payload: bytes, headers: dict | None) -> None:
        if len(self.held) >= self.limit:
            self.row[C.PUBLISH_DROPPED] += 1
            if not self.held:
                return
            self.held.popleft()
        self.held.append((subject, payload, headers))
        self.row[C.PUBLISH_BUFFERED] = len(self.held)

    async def release_held(self) -> None:
        """Send what was held (on reconnect), oldest first."""
        nc = self.nc
        while self.held and nc is not None and nc.is_connected:
            subject, payload, headers = self.held[0]
            try:
                await nc.publish(subject, payload, headers=headers)
            except Exception:  # noqa: BLE001 - down again: keep the rest
                self.row[C.PUBLISH_ERRORS] += 1
                break
            self.held.popleft()
            self.row[C.PUBLISHED] += 1
        self.row[C.PUBLISH_BUFFERED] = len(self.held)
        if nc is not None and nc.is_connected:
            try:
                await nc.flush(timeout=2)
            except Exception:  # noqa: BLE001
                pass


class Worker:
    def __init__(self, settings: Settings, store: Store, index: int, waker_fd: int) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self.waker_fd = waker_fd
        self.row = store.counters[C.ROW_WORKER0 + index]
        self.config = ConfigService(settings)  # connects lazily, after the fork
        self.params = ParameterTable(settings, settings.max_symbols, source=self.config)
        builder = SignalBuilder(settings, self.params, store.last_signal_ms, self.row, store.symbol_name)
        self.judge = EventJudge(store, self.params, builder, C.ROW_WORKER0 + index, CHUNK_EVENTS)
        self.builder = builder
        self.publisher = SignalPublisher(self.row, settings.publish_buffer)
        self.msg_id_header = settings.nats_consumer_stream is not None
        """JetStream mode: ``Nats-Msg-Id`` lets a signals stream drop signals made again."""
        self.ring_events = store.events[index]
        self.ring_ids = store.event_message_ids[index]
        self.mask = self.ring_events.shape[0] - 1
        self.wake = asyncio.Event()
        self.epoch = int(store.header[0]["config_epoch"])
        self.parents = supervisor_and_zygote(store)

    # ----- the loop
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.row[C.PROCESS_PID] = os.getpid()
        self.publisher.nc = await connect(
            self.settings, f"rtsig-worker-{self.index}", self.row,
            on_reconnect=self.publisher.release_held, stopping=self._draining)
        await self._refresh_config(reload=True)
        if self.index == 0 and self.publisher.nc is not None:  # None: told to stop while connecting
            await self.publisher.nc.subscribe(self.settings.config_subject, cb=self._on_config_notice)
        loop.add_reader(self.waker_fd, self._on_wake)
        ticker = asyncio.create_task(self._tick())
        confirmer = asyncio.create_task(self._confirm_published()) if self.msg_id_header else None
        try:
            while True:
                self.wake.clear()
                await self._drain_ring()
                if self._shutdown() >= SHUTDOWN_DRAIN:
                    tail, head = pending(self.store.event_cursors, self.index)
                    if tail == head:
                        break
                    continue
                try:
                    await asyncio.wait_for(self.wake.wait(), TICK_S)
                except TimeoutError:
                    pass
        finally:
            ticker.cancel()
            if confirmer is not None:
                confirmer.cancel()
            loop.remove_reader(self.waker_fd)
            await self._close()
            if confirmer is not None and not self.publisher.held:  # _close flushed everything
                cursors = self.store.event_cursors
                cursors[self.index, CURSOR_PUBLISHED] = cursors[self.index, CURSOR_TAIL]
        return 0

    async def _confirm_published(self) -> None:
        """JetStream mode: stamp how far every signal is on the wire, for the ingest's acks.

        A position is stamped only after a NATS flush that started after its events were
        judged returned, and while no signal is held for a lost connection."""
        cursors = self.store.event_cursors
        while True:
            await asyncio.sleep(PUBLISH_CONFIRM_S)
            tail = int(cursors[self.index, CURSOR_TAIL])
            if tail == int(cursors[self.index, CURSOR_PUBLISHED]):
                continue
            nc = self.publisher.nc
            if nc is None or not nc.is_connected or self.publisher.held:
                continue
            try:
                await nc.flush(timeout=2)
            except Exception:  # noqa: BLE001 - not confirmed: try again later
                continue
            if not self.publisher.held:
                cursors[self.index, CURSOR_PUBLISHED] = tail

    def _on_wake(self) -> None:
        try:
            os.eventfd_read(self.waker_fd)
        except BlockingIOError:
            pass
        awake(self.store.event_cursors, self.index)
        self.wake.set()

    async def _drain_ring(self) -> None:
        """Judge events until the ring is empty and the sleeping flag is set."""
        cursors = self.store.event_cursors
        while True:
            tail, head = pending(cursors, self.index)
            if tail == head:
                if try_sleep(cursors, self.index):
                    return
                continue
            count = min(head - tail, CHUNK_EVENTS, self.mask + 1 - (tail & self.mask))
            silent_until = int(cursors[self.index, CURSOR_SILENT])
            if tail < silent_until:  # history being rebuilt: judged, never published again
                count = min(count, silent_until - tail)
            await self._judge_chunk(tail, count, silent=tail < silent_until)
            consumed(cursors, self.index, tail + count)
            await asyncio.sleep(0)  # let the NATS client read and write between chunks

    async def _judge_chunk(self, tail: int, count: int, silent: bool = False) -> None:
        first = tail & self.mask
        before = [int(self.row[C.EVALUATED_BASE + s]) for s in range(C.N_STRATEGY_COUNTERS)]
        t0 = time.perf_counter_ns()
        signals = self.judge.judge(self.ring_events, self.ring_ids, first, count)
        elapsed = time.perf_counter_ns() - t0
        for s in range(C.N_STRATEGY_COUNTERS):
            n = int(self.row[C.EVALUATED_BASE + s]) - before[s]
            if n:
                C.observe(self.row, C.STRATEGY_LATENCY_BASE + s * C.HISTOGRAM_WIDTH, elapsed // count, n)
        last = self.ring_events[(first + count - 1)]
        self.row[C.CONSUMER_LAG_NS] = max(0, time.time_ns() - int(last["receipt_ns"]))
        self.row[C.EVENT_LAG_NS] = max(0, time.time_ns() - int(last["event_time_ms"]) * 1_000_000)
        if silent:
            self.row[C.SIGNALS_REBUILT] += len(signals)
            return
        for sig, receipt_ns in zip(signals, self.judge.receipts):
            headers = {"Nats-Msg-Id": sig["signal_id"]} if self.msg_id_header else None
            await self.publisher.publish(self.builder.subject(sig), serialize(sig), headers)
            C.observe(self.row, C.PROCESSING_LATENCY, max(0, time.time_ns() - receipt_ns))

    # ----- housekeeping
    def _shutdown(self) -> int:
        """The supervisor's shutdown stage; a worker whose supervisor died drains and exits."""
        if os.getppid() not in self.parents:
            return SHUTDOWN_DRAIN
        return int(self.store.header[0]["shutdown"])

    def _draining(self) -> bool:
        return self._shutdown() >= SHUTDOWN_DRAIN

    async def _tick(self) -> None:
        refreshing: asyncio.Task | None = None
        while True:
            self.row[C.ALIVE_NS] = time.time_ns()
            epoch = int(self.store.header[0]["config_epoch"])
            # the store is read beside the tick, never in it: a hung store must not stop the
            # liveness stamp (a bump seen meanwhile is handled once the running read ends)
            if (refreshing is None or refreshing.done()) and (epoch != self.epoch or self.config.expired()):
                bumped = epoch != self.epoch
                self.epoch = epoch
                refreshing = asyncio.create_task(self._refresh_config(reload=bumped, epoch=epoch))
            if self._shutdown() >= SHUTDOWN_DRAIN:
                self.wake.set()
            await asyncio.sleep(TICK_S)

    async def _refresh_config(self, reload: bool, epoch: int | None = None) -> None:
        """Re-read the config store off the event loop; rebuild the parameter rows if it changed."""
        before = self.config.snapshot.fingerprint
        snapshot = await asyncio.to_thread(self.config.refresh)
        self.row[C.CONFIG_STORE_STATE] = C.CONFIG_STATES.index(self.config.state())
        if reload or snapshot.fingerprint != before:
            self.params.reload()
        if epoch is not None:
            self.row[C.CONFIG_EPOCH_SEEN] = epoch

    async def _on_config_notice(self, msg) -> None:
        """A change announced on NATS (another replica, or this host's API): wake every worker."""
        if parse_notice(msg.data) is not None:
            self.row[C.CONFIG_NOTICES] += 1
            bump_epoch(self.store.header)

    async def _close(self) -> None:
        self.config.close()
        nc = self.publisher.nc
        if nc is None:
            return
        await self.publisher.release_held()
        if self.publisher.held:
            log.warning("stopping with %d signals unpublished (NATS down)", len(self.publisher.held))
            self.row[C.PUBLISH_DROPPED] += len(self.publisher.held)
        try:
            await nc.flush(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        try:
            await nc.close()
        except Exception:  # noqa: BLE001
            pass


def worker_main(settings: Settings, store: Store, index: int, waker_fd: int) -> None:
    """Entry point of a forked worker process."""
    import uvloop

    from rtsig import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor orders shutdown
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logs.setup(settings.log_level, settings.log_format, f"worker-{index}")
    code = uvloop.run(Worker(settings, store, index, waker_fd).run())
    os._exit(code)
