"""NATS connections that never give up: back-off on the first connect, reconnect forever after.

These are the nats-py connections of the workers (publishing), the web and the tools; the
ingest has its own subscriber (:mod:`rtsig.natsproto`). Both log in the same way
(:class:`rtsig.natsauth.NatsAuth`).

The connection state is exported as gauges in the process's counter row so that ``/ready``,
``/metrics`` and the heartbeat can show it: ``NATS_CONNECTED`` (1 while connected) and
``CIRCUIT_STATE``, a three-valued state of the connection — 0 connected, 1 down (disconnected,
or a connect attempt failed), 2 connecting (an attempt in progress). There is no circuit
breaker: nothing is ever refused or short-circuited, the connection just retries (back-off on
the first connect, nats-py's reconnect forever after). The gauge keeps its historical name,
exported as ``realtime_strategies_circuit_breaker_state{name}`` (a contract name, docs/CONTRACT.md
§6); the ingest's own subscriber sets only 0 and 1. The ``CIRCUIT_*`` constants below are its values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.errors import SlowConsumerError

from rtsig import counters as C
from rtsig.logs import RateLimiter
from rtsig.natsauth import NatsAuth
from rtsig.settings import Settings

log = logging.getLogger(__name__)

CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN = 0, 1, 2
FIRST_DELAY_S, MAX_DELAY_S = 0.1, 5.0


async def connect(settings: Settings, name: str, row, *,
                  on_reconnect: Callable[[], Awaitable[None]] | None = None,
                  on_disconnect: Callable[[], Awaitable[None]] | None = None,
                  stopping: Callable[[], bool] = lambda: False,
                  pending_size: int = 64 * 1024 * 1024) -> nats.NATS | None:
    """Connect with exponential back-off until it works (or ``stopping()``); None if stopped."""
    limiter = RateLimiter(30.0)
    current: list[nats.NATS] = []

    async def disconnected() -> None:
        row[C.NATS_CONNECTED] = 0
        row[C.CIRCUIT_STATE] = CIRCUIT_OPEN
        if not stopping() and not (current and current[0].is_closed):
            log.warning("NATS disconnected; reconnecting", extra={"connection": name})
        if on_disconnect:
            await on_disconnect()

    async def reconnected() -> None:
        row[C.NATS_CONNECTED] = 1
        row[C.CIRCUIT_STATE] = CIRCUIT_CLOSED
        row[C.RECONNECTS] += 1
        log.info("NATS reconnected", extra={"connection": name})
        if on_reconnect:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            row[C.SLOW_CONSUMER] += 1
        if limiter.allow(type(exc)):
            log.warning("NATS error: %s", exc, extra={"connection": name})

    delay = FIRST_DELAY_S
    login = NatsAuth.from_settings(settings).nats_py_options()
    while not stopping():
        row[C.CIRCUIT_STATE] = CIRCUIT_HALF_OPEN
        try:
            nc = await nats.connect(
                **login, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=0.25, connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                pending_size=pending_size)
        except Exception as exc:  # noqa: BLE001 - any failure means "try again later"
            row[C.CIRCUIT_STATE] = CIRCUIT_OPEN
            if limiter.allow("connect"):
                log.warning("cannot reach NATS at %s (%s); retrying", settings.nats_url, exc,
                            extra={"connection": name})
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY_S, delay * 2)
            continue
        row[C.NATS_CONNECTED] = 1
        row[C.CIRCUIT_STATE] = CIRCUIT_CLOSED
        current.append(nc)
        return nc
    return None
