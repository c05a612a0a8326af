"""``rtsig run``: create the store, compile once, start and watch the processes, stop cleanly.

Children are *forked* after every jitted function has been compiled (or loaded from the cache)
for the exact argument types the processes use, so no child compiles anything — several
processes compiling the same cached function at once can crash (numba issue 4807) — and a
restarted child is ready at once. The supervisor itself never starts an event loop or a thread,
so forking is safe.

Shutdown (SIGTERM/SIGINT): ``shutdown = 1`` stops the ingest's intake; once it has handed every
received message to the workers, ``shutdown = 2`` lets the workers empty their rings, flush their
publishes and exit; stragglers are killed at the deadline; the segment is unlinked.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from typing import Callable

import numpy as np

from rtsig import counters as C
from rtsig import heartbeat
from rtsig.decode import Decoder
from rtsig.errors import SettingsError
from rtsig.eventring import awake, consumed, new_wakers, pending, route_events, try_sleep
from rtsig.ingest import ingest_main
from rtsig.natsproto import scan_frames
from rtsig.params import ParameterTable
from rtsig.pressure import PressureSampler
from rtsig.settings import Settings
from rtsig.store import Store
from workers.evaluate import evaluate_events, new_candidate_buffers
from workers.worker import SHUTDOWN_DRAIN, SHUTDOWN_STOP_INTAKE, worker_main

log = logging.getLogger(__name__)

RESTART_DELAY_S = 0.2
CRASH_LOOP_S = 5.0
"""A child that dies sooner than this after its start is restarted with a growing delay."""
MAX_RESTART_DELAY_S = 10.0
STOP_INTAKE_S = 4.0
STOP_TOTAL_S = 9.0
POLL_S = 0.2


def warm_up(settings: Settings, store: Store) -> None:
    """Compile every jitted function with the argument types the children will pass."""
    import kernels

    kernels.warm_up()
    dec = Decoder(store, C.ROW_SUPERVISOR, settings.trading_symbols is None, capacity=1)
    dec.decode()
    wake = np.zeros(store.layout.n_workers, dtype=np.uint8)
    route_events(dec.events, dec.message_ids, 0, store.symbols, store.events, store.event_message_ids,
                 store.event_cursors, store.counters[C.ROW_SUPERVISOR], wake)
    params = ParameterTable(settings, settings.max_symbols)
    info, rows = new_candidate_buffers(1)
    evaluate_events(store.events[0], 0, 0, store.book_meta, store.book_levels, store.market,
                    store.trades, store.tickers, params.values, params.enabled,
                    store.counters[C.ROW_SUPERVISOR], info, rows)
    frames = np.zeros(4, dtype=np.int64)
    scan_frames(np.frombuffer(b"PING\r\n", dtype=np.uint8).copy(), 0, 6, frames, frames.copy(), 0, 4)
    cursors = store.event_cursors
    tail, head = pending(cursors, 0)
    consumed(cursors, 0, tail)
    if try_sleep(cursors, 0):
        awake(cursors, 0)


def check_port_free(port: int) -> None:
    """Refuse to start (one line naming HTTP_PORT) when the API's port is taken, rather than
    run a web server that keeps failing to bind."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as exc:
            raise SettingsError("HTTP_PORT", str(port),
                                f"a free TCP port ({exc.strerror.lower()}; or run with --no-web)") from None


class Child:
    """One supervised process: how to start it and its current incarnation."""

    def __init__(self, name: str, target: Callable, args: tuple) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.process: multiprocessing.process.BaseProcess | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.delay_s = RESTART_DELAY_S

    def start(self, ctx) -> None:
        self.process = ctx.Process(target=self.target, args=self.args, name=self.name, daemon=False)
        self.process.start()
        self.started_at = time.monotonic()

    def next_delay(self) -> float:
        """The pause before a restart: short, unless the child keeps dying right after starting."""
        if time.monotonic() - self.started_at < CRASH_LOOP_S:
            self.delay_s = min(MAX_RESTART_DELAY_S, self.delay_s * 2)
        else:
            self.delay_s = RESTART_DELAY_S
        return self.delay_s

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    def __init__(self, settings: Settings, web: bool = True) -> None:
        self.settings = settings
        self.web = web
        self.stop_requested = False
        self.ctx = multiprocessing.get_context("fork")

    def _request_stop(self, signum, frame) -> None:
        if not self.stop_requested:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop_requested = True

    def run(self) -> int:
        started = time.monotonic()
        if self.web:
            check_port_free(self.settings.http_port)
        store = Store.create(self.settings)
        try:
            return self._run(store, started)
        finally:
            store.unlink()
            store.close()

    def _run(self, store: Store, started: float) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        warm_up(self.settings, store)
        wakers = new_wakers(self.settings.workers)
        ingest = Child("ingest", ingest_main, (self.settings, store, wakers))
        workers = [Child(f"worker-{i}", worker_main, (self.settings, store, i, wakers[i]))
                   for i in range(self.settings.workers)]
        web = None
        if self.web:
            from web.server import web_main

            web = Child("web", web_main, (self.settings,))
        children = [ingest, *workers] + ([web] if web else [])
        for child in children:
            child.start(self.ctx)
        store.counters[C.ROW_SUPERVISOR][C.PROCESS_PID] = os.getpid()
        log.info("rtsig started: %d workers, instance %s, ready in %.2f s", len(workers),
                 self.settings.instance, time.monotonic() - started,
                 extra={"shm": store.name, "pids": {c.name: c.process.pid for c in children}})
        if web is not None:
            log.info("operator API on port %d (%d web workers)", self.settings.http_port,
                     self.settings.web_workers)
        sampler = PressureSampler(store)
        beat = heartbeat.Heartbeat(store, self.settings.workers)
        next_beat = time.monotonic() + self.settings.heartbeat_interval_seconds
        while not self.stop_requested:
            sentinels = {c.process.sentinel: c for c in children if c.process is not None}
            for ready in wait(list(sentinels), timeout=POLL_S):
                child = sentinels[ready]
                if self.stop_requested:
                    break
                child.process.join(0)
                log.error("%s (pid %s) exited with %s; restarting", child.name, child.process.pid,
                          child.process.exitcode)
                child.restarts += 1
                time.sleep(child.next_delay())
                child.start(self.ctx)
            if sampler.due(time.time()):
                sampler.sample(time.time())
            now = time.monotonic()
            if now >= next_beat:
                beat.log()
                next_beat = now + self.settings.heartbeat_interval_seconds
        return self._shutdown(store, ingest, workers, wakers, web)

    def _shutdown(self, store: Store, ingest: Child, workers: list[Child], wakers: list[int],
                  web: Child | None = None) -> int:
        deadline = time.monotonic() + STOP_TOTAL_S
        header = store.header[0]
        if web is not None and web.alive():
            web.process.terminate()  # Gunicorn: finish the requests in flight, then exit
        header["shutdown"] = SHUTDOWN_STOP_INTAKE
        if ingest.process is not None:
            ingest.process.join(STOP_INTAKE_S)
        header["shutdown"] = SHUTDOWN_DRAIN
        for fd in wakers:
            os.eventfd_write(fd, 1)
        for child in workers:
            if child.process is not None:
                child.process.join(max(0.0, deadline - time.monotonic()))
        if web is not None and web.process is not None:
            web.process.join(max(0.0, deadline - time.monotonic()))
        clean = True
        for child in [ingest, *workers] + ([web] if web else []):
            if child.alive():
                clean = False
                log.warning("%s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.join(1)
        for fd in wakers:
            os.close(fd)
        heartbeat.Heartbeat(store, self.settings.workers).log(final=True)
        log.info("rtsig stopped%s", "" if clean else " (some processes were killed)")
        return 0
