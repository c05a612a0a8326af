"""A config store that hangs (stopped with SIGSTOP: connections open, nothing answers).

Every call is bounded: a read falls back as for an outage within about 2 s, a change answers 503
within 5 s, and nothing else waits — not ``/healthz`` or ``/ready`` (even while a change is
stuck on the store), not the workers' ticks (``workers_alive`` stays whole). Measured figures
are printed (``pytest -s``); assertions use generous bounds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rtsig import counters as C
from rtsig.config import ConfigService
from rtsig.errors import StoreUnavailable
from rtsig.settings import Settings
from tests.live_helpers import N_WORKERS, Service
from tests.servers import MariaDbServer, MongoWireServer

READ_BOUND_S = 3.5
WRITE_BOUND_S = 5.0
PROBE_BOUND_S = 1.0
SKEW = "orderbook_skew"


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[MariaDbServer]:
    reason = MariaDbServer.missing()
    if reason:
        pytest.skip(reason)
    server = MariaDbServer(tmp_path / "mariadb").start()
    try:
        yield server
    finally:
        if server.proc is not None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


class Stopped:
    """SIGSTOP a server for the block; SIGCONT whatever happens."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Stopped:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc) -> None:
        os.kill(self.pid, signal.SIGCONT)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# ----------------------------------------------------------------------------- the service alone
@pytest.mark.parametrize("kind", ["mysql", "mongodb"])
def test_a_hung_store_bounds_every_config_service_call(kind: str, tmp_path: Path, request) -> None:
    if kind == "mysql":
        server = request.getfixturevalue("private_mariadb")
        settings = Settings(data_dir=tmp_path, mysql_uri=server.create_database("hung"))
        pid = server.proc.pid
    else:
        server = MongoWireServer(tmp_path / "mongo").start()
        request.addfinalizer(server.stop)
        settings = Settings(data_dir=tmp_path, mongodb_uri=server.uri, mongodb_database="hung")
        pid = server.proc.pid
    service = ConfigService(settings)
    try:
        service.update(SKEW, None, {"top_levels": 7}, "alice")
        service.refresh()
        with Stopped(pid):
            snapshot, read_s = timed(service.refresh)
            assert snapshot.degraded is not None and read_s < READ_BOUND_S
            assert service.effective(SKEW).parameters["top_levels"] == 7  # the last values read
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                service.update(SKEW, None, {"top_levels": 8}, "alice")
            write_s = time.monotonic() - started
            health, health_s = timed(lambda: service.health(refresh=False))
            print(f"\n[figures] hung {kind}: read degraded in {read_s:.2f} s, change refused in "
                  f"{write_s:.2f} s, health without refresh {health_s * 1e3:.2f} ms")
            assert write_s < WRITE_BOUND_S and health_s < 0.1
            assert health["state"] != "primary"
            booted = ConfigService(settings)  # a web worker that starts while the store hangs
            try:
                first, first_s = timed(lambda: booted.health(refresh=False))
                assert first_s < 0.1 and first["degraded"] == "not read yet", first
            finally:
                booted.close()
        service._checked_at = None  # the store is back: the next read must use it again
        service.update(SKEW, None, {"top_levels": 9}, "alice")
        assert service.refresh().degraded is None
    finally:
        service.close()


# ----------------------------------------------------------------------------- the whole service
def http_json(service: Service, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, raw = service.http(method, path, body)
    return status, orjson.loads(raw) if raw else {}, time.monotonic() - started


def test_a_hung_mariadb_bounds_the_api_and_never_stops_the_workers(nats_server, services, private_mariadb):
    uri = private_mariadb.create_database("rtsig_hung")
    service = services(nats_server.url, web=True,
                       env={"MYSQL_URI": uri, "CONFIG_CACHE_TTL_SECONDS": "1"})
    change = {"parameters": {"top_levels": 6}, "changed_by": "alice"}
    path = f"/api/v1/strategies/{SKEW}/config"
    assert http_json(service, "POST", path, change)[0] == 201

    stamps: list[list[int]] = []
    stop = threading.Event()

    def watch_workers() -> None:  # the workers' liveness stamps, as /ready and /metrics read them
        while not stop.is_set():
            stamps.append([int(service.store.counters[C.ROW_WORKER0 + k][C.ALIVE_NS]) for k in range(N_WORKERS)])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_workers, daemon=True)
    with Stopped(private_mariadb.proc.pid):
        hang_started = time.time_ns()
        watcher.start()
        # a change stuck on the store, and meanwhile probes on other connections
        stuck: dict = {}
        writer = threading.Thread(target=lambda: stuck.update(
            zip(("status", "body", "seconds"), http_json(service, "POST", path, change))))
        writer.start()
        probe_times = []
        while writer.is_alive():
            for probe in ("/healthz", "/ready"):
                status, _, seconds = http_json(service, "GET", probe)
                assert status in (200, 503)
                probe_times.append(seconds)
            time.sleep(0.05)
        writer.join()
        status, body, read_s = http_json(service, "GET", path)
        assert status == 200 and body["metadata"]["degraded"], body
        status2, body2, write2_s = http_json(service, "POST", path, change)
        time.sleep(max(0.0, 6.0 - (time.time_ns() - hang_started) / 1e9))  # several cache TTLs of hang
        ready_status, ready, _ = http_json(service, "GET", "/ready")
        stop.set()
        watcher.join()
    print(f"\n[figures] hung MariaDB: change answered {stuck['status']} in {stuck['seconds']:.2f} s "
          f"(then {status2} in {write2_s:.2f} s), degraded read in {read_s:.2f} s, "
          f"{len(probe_times)} probes meanwhile max {max(probe_times) * 1e3:.1f} ms")
    assert stuck["status"] == 503 and stuck["body"]["error"]["code"] == "UNAVAILABLE"
    assert stuck["seconds"] < WRITE_BOUND_S and write2_s < WRITE_BOUND_S and status2 == 503
    assert read_s < READ_BOUND_S
    assert max(probe_times) < PROBE_BOUND_S
    assert ready["checks"]["workers"]["ok"], ready
    assert ready["checks"]["config_store"]["degraded"] is True
    # no worker went a heartbeat-stale period without turning its tick during the hang
    worst_gap = max(max(b[k] - a[k] for a, b in zip(stamps, stamps[1:])) for k in range(N_WORKERS))
    print(f"[figures] longest gap between a worker's ticks during the hang: {worst_gap / 1e9:.2f} s")
    assert worst_gap < C.HEARTBEAT_STALE_NS
    # the store is back: changes go through again
    deadline = time.monotonic() + 15
    while http_json(service, "POST", path, change)[0] != 200:
        assert time.monotonic() < deadline, "changes still refused after the store came back"
        time.sleep(0.5)


# ----------------------------------------------------------------------------- a process started during an outage
def test_a_process_started_during_an_outage_serves_the_last_configs_read(mysql_uri: str, tmp_path: Path) -> None:
    """A web worker (re)started while the store is down serves what was last read on this host,
    as ``last_known``, not the defaults; a damaged file is ignored."""
    from rtsig.config import lastknown
    from tests.servers import free_port

    keep = lastknown.path_for(tmp_path, "test")
    settings = Settings(data_dir=tmp_path, mysql_uri=mysql_uri)
    before = ConfigService(settings, last_known=keep)
    try:
        before.update(SKEW, None, {"top_levels": 7}, "alice")
        before.update(SKEW, "ETHUSDT", {"top_levels": 3}, "alice")
        before.refresh()
    finally:
        before.close()
    assert keep.exists()
    down = settings.with_overrides(mysql_uri=f"mysql://root@127.0.0.1:{free_port()}/gone")
    started = ConfigService(down, last_known=keep)
    blind = ConfigService(down)
    try:
        started.refresh()
        assert started.state() == "last_known" and started.health()["serving_from"] == "mysql"
        assert started.effective(SKEW).parameters["top_levels"] == 7
        assert started.effective(SKEW, "ETHUSDT").parameters["top_levels"] == 3
        blind.refresh()
        assert blind.state() == "defaults" and blind.effective(SKEW).parameters["top_levels"] == 5
    finally:
        started.close()
        blind.close()
    keep.write_bytes(b"{not json")
    damaged = ConfigService(down, last_known=keep)
    try:
        damaged.refresh()
        assert damaged.state() == "defaults"
    finally:
        damaged.close()
