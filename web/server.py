"""The production web server: Gunicorn (sync workers) serving :func:`web.app.create_app`.

``rtsig run`` starts :func:`web_main` as a supervised child; Gunicorn then forks
``RTSIG_WEB_WORKERS`` processes, each of which attaches to the host's shared memory read-only
(writing only the config epoch and its counter row) and opens its own config-store connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from gunicorn.app.base import BaseApplication

from rtsig import counters as C
from rtsig.config.notify import notice
from rtsig.config.service import ChangeResult, ConfigService
from rtsig.settings import Settings
from rtsig.store import Store, segment_name
from web.app import create_app
from web.deps import WebDeps
from web.guard import RateLimiter

log = logging.getLogger(__name__)
GRACEFUL_TIMEOUT_S = 3


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
    return WebDeps(settings, ConfigService(settings, counters=counters), store,
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
        for key, value in {"bind": [bind_address(s)], "workers": s.web_workers,
                           "worker_class": "sync", "timeout": 30,
                           "graceful_timeout": GRACEFUL_TIMEOUT_S, "accesslog": None,
                           "errorlog": "-", "loglevel": s.log_level.lower(),
                           "proc_name": f"rtsig-web-{s.instance}", "preload_app": False}.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app(production_deps(self.settings))


def web_main(settings: Settings) -> None:
    """Entry point of the supervised web child (forked by the supervisor)."""
    from rtsig import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor orders shutdown (SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logs.setup(settings.log_level, settings.log_format, "web")
    WebServer(settings).run()
