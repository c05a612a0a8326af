"""The production web server: Gunicorn serving :func:`web.app.create_app`.

``rtsig run`` starts :func:`web_main` as a supervised child; Gunicorn then forks
``RTSIG_WEB_WORKERS`` processes, each of which attaches to the host's shared memory read-only
(writing only the config epoch and its counter row) and opens its own config-store connection.

Server model (:mod:`web.worker`): threaded workers whose main loop reads each request whole
before a thread serves it, so no client can tie a thread up; probes, configuration routes and
the rest have separate thread pools. Lifetime: the Gunicorn master dies with the supervisor
(``PR_SET_PDEATHSIG``) and its workers with the master, so nothing is left on the port after a
``kill -9``; Gunicorn's control socket is off (it would be one per user, shared by every
instance); Gunicorn logs through rtsig's handlers, so ``LOG_FORMAT=json`` covers its lines too.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import resource
import signal

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from rtsig import counters as C
from rtsig.config import lastknown
from rtsig.config.notify import notice
from rtsig.config.service import ChangeResult, ConfigService
from rtsig.settings import Settings
from rtsig.store import Store, segment_name
from web.app import create_app
from web.deps import WebDeps
from web.guard import RateLimiter

log = logging.getLogger(__name__)
GRACEFUL_TIMEOUT_S = 3
GENERAL_THREADS = 4
"""Threads per web worker for the market, metrics and docs routes (probes and configuration
routes have their own pools: web/worker.py)."""
MAX_CONNECTIONS = 10_000
"""Open connections per web worker (idle ones cost a descriptor and a few bytes each)."""
KEEPALIVE_S = 5
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies; exit now if the
    parent is already gone (it may have died before the request was made)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent_pid:
        os._exit(0)


def _post_fork(server, worker) -> None:
    """A Gunicorn worker dies with its master (the master dies with the supervisor)."""
    die_with_parent(server.pid)


class JsonGunicornLogger(glogging.Logger):
    """Gunicorn's error (and access) log through the root logger, i.e. rtsig's format."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for gunicorn_log in (self.error_log, self.access_log):
            for handler in list(gunicorn_log.handlers):
                gunicorn_log.removeHandler(handler)
            gunicorn_log.propagate = True


def raise_open_files_limit(wanted: int) -> int:
    """The soft RLIMIT_NOFILE raised towards ``wanted`` (up to the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class NatsAnnouncer:
    """Publishes a change notice for the other replicas; a NATS outage only loses the notice
    (they still pick the change up within CONFIG_CACHE_TTL_SECONDS)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, result: ChangeResult) -> None:
        try:
            asyncio.run(self._publish(notice(result, self.settings.instance)))
        except Exception as exc:  # noqa: BLE001
            log.warning("config change committed but not announced on NATS: %s", exc)

    async def _publish(self, payload: bytes) -> None:
        import nats

        nc = await nats.connect(self.settings.nats_url, name="rtsig-web", connect_timeout=2,
                                allow_reconnect=False, max_reconnect_attempts=0)
        try:
            await nc.publish(self.settings.config_subject, payload)
            await nc.flush(timeout=2)
        finally:
            await nc.close()


def production_deps(settings: Settings) -> WebDeps:
    store = Store.attach(segment_name(settings.instance), readonly=True)
    counters = store.writable("counters")[C.ROW_WEB]
    config = ConfigService(settings, counters=counters,
                           last_known=lastknown.path_for(settings.data_dir, settings.instance))
    config.refresh_in_background()  # the first read, before the first request needs it
    return WebDeps(settings, config, store,
                   announce=NatsAnnouncer(settings), header=store.writable("header"),
                   counters=counters,
                   limiter=RateLimiter(settings.change_rate_limit))


def bind_address(settings: Settings) -> str:
    """Gunicorn's ``bind`` for HTTP_HOST and HTTP_PORT (IPv6 literals in brackets)."""
    host = settings.http_host
    return f"[{host}]:{settings.http_port}" if ":" in host else f"{host}:{settings.http_port}"


class WebServer(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        nofile = raise_open_files_limit(s.web_workers * MAX_CONNECTIONS + 256)
        connections = max(64, min(MAX_CONNECTIONS, (nofile - 256) // s.web_workers))
        for key, value in {"bind": [bind_address(s)], "workers": s.web_workers,
                           "worker_class": "web.worker.ApiWorker", "threads": GENERAL_THREADS,
                           "worker_connections": connections, "keepalive": KEEPALIVE_S,
                           "backlog": 2048, "timeout": 30,
                           "graceful_timeout": GRACEFUL_TIMEOUT_S, "accesslog": None,
                           "errorlog": "-", "loglevel": s.log_level.lower(),
                           "logger_class": JsonGunicornLogger, "control_socket_disable": True,
                           "post_fork": _post_fork,
                           "proc_name": f"rtsig-web-{s.instance}", "preload_app": False}.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app(production_deps(self.settings))


def web_main(settings: Settings, supervisor_pid: int | None = None) -> None:
    """Entry point of the supervised web child (forked by the supervisor)."""
    from rtsig import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor orders shutdown (SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if supervisor_pid is not None:
        die_with_parent(supervisor_pid)
    logs.setup(settings.log_level, settings.log_format, "web")
    WebServer(settings).run()
