"""Fixtures for the live-service tests: a real NATS server per test, ``rtsig run`` subprocesses.

pytest-asyncio is not used: a test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

from typing import Callable

import pytest

from rtsig.natsbin import EmbeddedNats
from tests.live_helpers import Service


@pytest.fixture
def nats_server():
    """A real nats-server on a free loopback port, stopped whatever the test did."""
    server = EmbeddedNats(port=0, jetstream=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def services(tmp_path) -> Callable[..., Service]:
    """Factory: ``services(nats_url, env={...}, uid=..., start=True)`` → a running :class:`Service`.

    Every service made here is stopped at teardown (SIGTERM, then SIGKILL of its process group)
    and its shared-memory segment removed, so a failing test leaves nothing behind.
    """
    made: list[Service] = []

    def make(nats_url: str, env: dict[str, str] | None = None, uid: str | None = None,
             start: bool = True) -> Service:
        service = Service(nats_url, tmp_path, uid=uid, env=env)
        made.append(service)
        if start:
            service.start()
        return service

    try:
        yield make
    finally:
        for service in made:
            service.cleanup()


@pytest.fixture
def service(nats_server, services) -> Service:
    """One running service on the test's NATS server, default settings."""
    return services(nats_server.url)
