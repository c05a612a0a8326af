"""Fixtures for the live-service tests: a real NATS server per test, ``rtsig run`` subprocesses.

pytest-asyncio is not used: a test drives its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from rtsig.config.service import ConfigService
from rtsig.natsbin import EmbeddedNats
from rtsig.settings import Settings
from tests.live_helpers import Service
from tests.servers import MariaDbServer, MongoWireServer


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
def jetstream(tmp_path):
    """A real nats-server with JetStream (its store in the test's directory), stopped at the end."""
    from rtsig.natsbin import free_port
    from tests.live_helpers import JetStreamServer

    server = JetStreamServer(free_port(), tmp_path / "js").start()
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
             start: bool = True, web: bool = False) -> Service:
        service = Service(nats_url, tmp_path, uid=uid, env=env, web=web)
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


# ----------------------------------------------------------------------------- config stores
@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A private MariaDB server for the whole run, or None when ``MYSQL_URI`` names one."""
    if os.environ.get("MYSQL_URI"):
        yield None
        return
    reason = MariaDbServer.missing()
    if reason:
        pytest.skip(reason)
    server = MariaDbServer(tmp_path_factory.mktemp("mariadb")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongo_wire(tmp_path_factory):
    """A private nx-27017 MongoDB wire server for the whole run, or None when ``MONGODB_URI`` is set."""
    if os.environ.get("MONGODB_URI"):
        yield None
        return
    server = MongoWireServer(tmp_path_factory.mktemp("mongo")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mysql_uri(mariadb) -> str:
    """``MYSQL_URI`` of a database no other test uses."""
    name = f"rtsig_{uuid.uuid4().hex[:12]}"
    if mariadb is None:
        import MySQLdb

        from rtsig.settings import parse_mysql_uri

        params = parse_mysql_uri(os.environ["MYSQL_URI"])
        base = {k: v for k, v in params.items() if k != "database"}
        conn = MySQLdb.connect(**base)
        conn.cursor().execute(f"CREATE DATABASE `{name}`")
        conn.close()
        return (f"mysql://{params['user']}:{params['passwd']}@{params['host']}:{params['port']}/{name}")
    return mariadb.create_database(name)


@pytest.fixture
def mongodb_uri_and_db(mongo_wire) -> tuple[str, str]:
    """``(MONGODB_URI, MONGODB_DATABASE)`` of a database no other test uses."""
    uri = os.environ["MONGODB_URI"] if mongo_wire is None else mongo_wire.uri
    return uri, f"rtsig_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "mysql", "mongodb"])
def store_settings(request, tmp_path) -> Settings:
    """Settings whose config store is each of the three kinds in turn (a fresh, empty one)."""
    kind = request.param
    base = Settings(data_dir=tmp_path / "data")
    if kind == "mysql":
        return base.with_overrides(mysql_uri=request.getfixturevalue("mysql_uri"))
    if kind == "mongodb":
        uri, db = request.getfixturevalue("mongodb_uri_and_db")
        return base.with_overrides(mongodb_uri=uri, mongodb_database=db)
    return base


@pytest.fixture
def make_service(store_settings: Settings) -> Iterator:
    """Factory of ConfigServices (each with its own store connection), all closed at teardown."""
    made: list[ConfigService] = []

    def make(settings: Settings | None = None, **kwargs) -> ConfigService:
        service = ConfigService(settings or store_settings, **kwargs)
        made.append(service)
        return service

    try:
        yield make
    finally:
        for service in made:
            service.close()
