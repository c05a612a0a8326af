"""``rtsig run``: create the store, start and watch the processes, stop cleanly.

The supervisor creates the shared-memory store (and is the only process that unlinks it) and
never loads Numba (a process that has loaded it keeps ~110-170 MiB resident for good). The
processes that run jitted code — the ingest and the workers — are started through a *zygote*
(:mod:`rtsig.zygote`): a short-lived child that loads the compiled kernels from the cache
(compiling them once on a cold cache, :mod:`rtsig.warmup`), registers the configured symbols in
the store on the first start, forks the ingest and the workers, reports their pids and exits.
The supervisor is a child subreaper, so it adopts them and waits for, reaps and restarts them
like its own children; a restart goes through a new zygote. No two processes compile at once
(numba issue 4807: that can crash). The Gunicorn web server runs no jitted code and is forked
from the supervisor directly. The supervisor itself never starts an event loop or a thread, so
forking is safe. It also writes the heartbeat log line and samples the per-second pressure
history for the web (:mod:`rtsig.pressure`). docs/ARCHITECTURE.md has the whole picture.

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
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from rtsig import counters as C
from rtsig import heartbeat
from rtsig.codes import SHUTDOWN_DRAIN, SHUTDOWN_STOP_INTAKE
from rtsig.errors import RtsigError, SettingsError
from rtsig.pressure import PressureSampler
from rtsig.settings import Settings, is_loopback_host
from rtsig.store import Store
from rtsig.zygote import AdoptedProcess, Job, become_subreaper, start_warmed

log = logging.getLogger(__name__)

RESTART_DELAY_S = 0.2
CRASH_LOOP_S = 5.0
"""A child that dies sooner than this after its start is restarted with a growing delay."""
MAX_RESTART_DELAY_S = 10.0
STOP_INTAKE_S = 4.0
STOP_TOTAL_S = 9.0
POLL_S = 0.2


# The children's entry points import their modules in the child: the jitted code (and Numba) is
# loaded in the zygote the ingest and the workers are forked from, never in the supervisor.
def _ingest(settings: Settings, store: Store, wakers: list[int]) -> None:
    from rtsig.ingest import ingest_main

    ingest_main(settings, store, wakers)


def _worker(settings: Settings, store: Store, index: int, waker_fd: int) -> None:
    from workers.worker import worker_main

    worker_main(settings, store, index, waker_fd)


def _web(settings: Settings, supervisor_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # before the imports: a stop may come any time
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from web.server import web_main

    web_main(settings, supervisor_pid)  # dies with the supervisor, even of a kill -9


def new_wakers(n_workers: int) -> list[int]:
    """One non-blocking eventfd per worker (made before the processes fork): the ingest writes
    a worker's to wake it when its event ring was empty (rtsig/eventring.py)."""
    return [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(n_workers)]


def check_api_exposure(settings: Settings) -> None:
    """Refuse to start (one line naming HTTP_HOST) when the API would listen beyond loopback
    with no ``RTSIG_API_TOKEN``: anyone who reaches the port could change the trading config."""
    if not is_loopback_host(settings.http_host) and not settings.api_token:
        raise SettingsError("HTTP_HOST", settings.http_host,
                            "a loopback address (127.0.0.1) unless RTSIG_API_TOKEN is set: "
                            "listening on other interfaces needs a token for changes")


def api_mode(settings: Settings) -> str:
    """The start-up line saying where the API listens and who may change the configuration."""
    where = ("loopback only" if is_loopback_host(settings.http_host)
             else "every interface" if settings.http_host in ("0.0.0.0", "::")
             else "a non-loopback interface")
    who = ("changes need 'Authorization: Bearer <RTSIG_API_TOKEN>'" if settings.api_token
           else "changes need no token (loopback only)")
    return (f"operator API on http://{_host_in_url(settings.http_host)}:{settings.http_port} "
            f"({where}; {who}; {settings.web_workers} web workers)")


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse to start (one line naming HTTP_PORT) when the API's port is taken, rather than
    run a web server that keeps failing to bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            # strerror is None only for OSErrors that bind does not raise (typeshed: str | None)
            raise SettingsError("HTTP_PORT", str(port),
                                f"a free TCP port ({exc.strerror.lower()}; or run with --no-web)"  # type: ignore[union-attr]
                                ) from None


class Child:
    """One supervised process: how to start it and its current incarnation.

    A child that runs jitted code (``warmed``) is forked from a zygote (:mod:`rtsig.zygote`);
    the web server, which does not, is forked from the supervisor directly.
    """

    def __init__(self, name: str, target: Callable, args: tuple, warmed: bool,
                 row: int | None = None) -> None:
        self.name = name
        self.target = target
        self.args = args
        self.warmed = warmed
        self.row = row
        """Its counter row (the ingest and the workers; the web server has none)."""
        self.process: multiprocessing.process.BaseProcess | AdoptedProcess | None = None
        self.restarts = 0
        self.restarted_ns: deque[int] = deque()
        """Wall clock of its restarts within the last ``C.RESTART_WINDOW_NS``."""
        self.started_at = 0.0
        self.delay_s = RESTART_DELAY_S

    @property
    def job(self) -> Job:
        return self.name, self.target, self.args

    def start(self, ctx, settings: Settings) -> None:
        if isinstance(self.process, AdoptedProcess):
            self.process.close()
        if self.warmed:
            self.adopt(start_warmed(ctx, settings, [self.job])[0])
            return
        process = ctx.Process(target=self.target, args=self.args, name=self.name, daemon=False)
        self.process = process
        process.start()
        self.started_at = time.monotonic()

    def adopt(self, process: AdoptedProcess) -> None:
        self.process = process
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
        self.pid = os.getpid()
        self.store: Store | None = None

    def _request_stop(self, signum, frame) -> None:
        if os.getpid() != self.pid:
            # A child forked before it installed its own handlers (the web server is still
            # importing): a stop meant for it must not be swallowed here, or it would go on to
            # start Gunicorn and outlive the supervisor's deadline. SIGTERM ends it; SIGINT is
            # the terminal's, and children leave that to the supervisor.
            if signum == signal.SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            return
        if not self.stop_requested:
            log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop_requested = True

    def run(self) -> int:
        started = time.monotonic()
        if self.web:
            check_api_exposure(self.settings)
            check_port_free(self.settings.http_port, self.settings.http_host)
        store = Store.create(self.settings, register_symbols=False)
        try:
            return self._run(store, started)
        finally:
            store.unlink()
            store.close()

    def _run(self, store: Store, started: float) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        become_subreaper()
        wakers = new_wakers(self.settings.workers)
        self.store = store
        ingest = Child("ingest", _ingest, (self.settings, store, wakers), warmed=True, row=C.ROW_INGEST)
        workers = [Child(f"worker-{i}", _worker, (self.settings, store, i, wakers[i]), warmed=True,
                         row=C.ROW_WORKER0 + i)
                   for i in range(self.settings.workers)]
        web = Child("web", _web, (self.settings, os.getpid()), warmed=False) if self.web else None
        children = [ingest, *workers] + ([web] if web else [])
        store.counters[C.ROW_SUPERVISOR][C.INGEST_STARTED_NS] = time.time_ns()
        # one zygote for the first start; it registers the configured symbols before forking
        adopted = start_warmed(self.ctx, self.settings, [c.job for c in (ingest, *workers)], store)
        for child, process in zip((ingest, *workers), adopted):
            child.adopt(process)
        if web is not None:
            web.start(self.ctx, self.settings)
        store.counters[C.ROW_SUPERVISOR][C.PROCESS_PID] = os.getpid()
        log.info("rtsig started: %d workers, instance %s, ready in %.2f s", len(workers),
                 self.settings.instance, time.monotonic() - started,
                 extra={"shm": store.name, "pids": {c.name: c.process.pid for c in children if c.process is not None}})
        if web is not None:
            log.info("%s", api_mode(self.settings))
        sampler = PressureSampler(store)
        beat = heartbeat.Heartbeat(store, self.settings.workers)
        next_beat = time.monotonic() + self.settings.heartbeat_interval_seconds
        while not self.stop_requested:
            sentinels: dict[Any, Child] = {c.process.sentinel: c for c in children if c.process is not None}
            for ready in wait(list(sentinels), timeout=POLL_S):
                child = sentinels[ready]
                if self.stop_requested:
                    break
                assert child.process is not None  # a sentinel is there only with its process
                child.process.join(0)
                log.error("%s (pid %s) exited with %s; restarting", child.name, child.process.pid,
                          child.process.exitcode)
                child.restarts += 1
                if child.row is not None:  # its last word on NATS is no longer true
                    row = store.counters[child.row]
                    row[C.NATS_CONNECTED] = row[C.SUBSCRIBED] = 0
                self._restart(child)
            for child in children:
                if child.process is None and not self.stop_requested:  # its last start failed
                    self._restart(child)
            if sampler.due(time.time()):
                sampler.sample(time.time())
            now = time.monotonic()
            if now >= next_beat:
                beat.log()
                next_beat = now + self.settings.heartbeat_interval_seconds
        return self._shutdown(store, ingest, workers, wakers, web)

    def _restart(self, child: Child) -> None:
        """Start ``child`` again after its back-off delay, unless a stop is requested meanwhile
        (the delay grows to 10 s for a crash loop; a stop must not wait for it)."""
        resume_at = time.monotonic() + child.next_delay()
        while not self.stop_requested and time.monotonic() < resume_at:
            time.sleep(min(POLL_S, max(0.0, resume_at - time.monotonic())))
        if self.stop_requested:
            child.process = None
            return
        if child.row == C.ROW_INGEST:
            self._note_ingest_start(child)
        try:
            child.start(self.ctx, self.settings)
        except RtsigError as exc:  # the zygote failed: the loop tries again after a longer pause
            log.error("%s", exc)
            child.process = None

    def _note_ingest_start(self, child: Child) -> None:
        """Record a restart of the ingest in the supervisor's row for ``/ready``: how many the
        last minute saw, and the wall clock just before this start (a heartbeat older than that
        is the previous incarnation's). An ingest restarted more than once in a minute is not
        ready until it has run a moment (docs/OPERATIONS.md, Readiness)."""
        now_ns = time.time_ns()
        child.restarted_ns.append(now_ns)
        while now_ns - child.restarted_ns[0] > C.RESTART_WINDOW_NS:
            child.restarted_ns.popleft()
        assert self.store is not None  # set by _run before any child starts
        row = self.store.counters[C.ROW_SUPERVISOR]
        row[C.INGEST_RESTARTS] = len(child.restarted_ns)
        row[C.INGEST_STARTED_NS] = now_ns

    def _shutdown(self, store: Store, ingest: Child, workers: list[Child], wakers: list[int],
                  web: Child | None = None) -> int:
        deadline = time.monotonic() + STOP_TOTAL_S
        header = store.header[0]
        if web is not None and web.alive():
            assert web.process is not None  # alive() says so
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
                assert child.process is not None  # alive() says so
                child.process.kill()
                child.process.join(1)
        for fd in wakers:
            os.close(fd)
        heartbeat.Heartbeat(store, self.settings.workers).log(final=True)
        log.info("rtsig stopped%s", "" if clean else " (some processes were killed)")
        return 0
