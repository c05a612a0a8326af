"""``/ready`` and the NATS gauges of ``/metrics`` believe a process's gauges only while it turns its
loop: through ``falcon.testing`` over a real in-memory store whose heartbeats (``ALIVE_NS``), pids
and the supervisor's restart record are set as the processes set them.

The live counterpart (a real ``rtsig run`` whose ingest or worker is stopped) is
tests/test_readiness_live.py.
"""

# ruff: noqa: F811 - the fixture make_app is imported from tests/web_helpers.py
from __future__ import annotations

import os
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtsig import counters as C
from tests.web_helpers import WebApp, make_app  # noqa: F401 - fixture

S = 1_000_000_000  # ns per second
N_WORKERS = 2


def running(app: WebApp, since_s: float = 0.0) -> WebApp:
    """Every process as it is while it runs: pid alive (this one), connected, subscribed, and a
    heartbeat ``since_s`` seconds old."""
    rows = app.store.counters
    now = time.time_ns()
    for row in [C.ROW_INGEST] + [C.ROW_WORKER0 + k for k in range(N_WORKERS)]:
        rows[row][C.PROCESS_PID] = os.getpid()
        rows[row][C.NATS_CONNECTED] = 1
        rows[row][C.ALIVE_NS] = now - int(since_s * S)
    rows[C.ROW_INGEST][C.SUBSCRIBED] = 1
    return app


def ready(app: WebApp) -> tuple[int, dict]:
    resp = app.get("/ready")
    return resp.status_code, resp.json


def gauges(app: WebApp) -> dict[str, float]:
    resp = app.get("/metrics")
    assert resp.status_code == 200
    return {s.name.removeprefix("realtime_strategies_"): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples
            if not s.labels}


def gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def app(make_app) -> WebApp:
    return running(make_app(n_workers=N_WORKERS))


def test_fresh_heartbeats_are_ready_and_connected(app: WebApp) -> None:
    """Every loop turned a second ago (within the 2 s limit): 200, and the NATS gauges are 1."""
    running(app, since_s=1.0)
    status, body = ready(app)
    assert status == 200 and body["failing"] == [], body
    assert body["checks"]["nats"]["detail"] == "connected and subscribed"
    assert body["checks"]["workers"]["detail"] == f"{N_WORKERS} of {N_WORKERS} alive"
    g = gauges(app)
    assert (g["nats_connected"], g["nats_subscribed"], g["workers_alive"]) == (1, 1, N_WORKERS)


@pytest.mark.parametrize("age_s", [2.5, 8.0, 3600.0])
def test_a_stale_ingest_heartbeat_fails_nats_and_zeroes_its_gauges(app: WebApp, age_s: float) -> None:
    """The ingest's row still says connected and subscribed, but its loop has not turned for
    longer than 2 s (stopped, hung): /ready is 503 naming nats and saying for how long; the
    gauges are 0; the workers are unaffected."""
    app.store.counters[C.ROW_INGEST][C.ALIVE_NS] = time.time_ns() - int(age_s * S)
    status, body = ready(app)
    assert status == 503 and body["failing"] == ["nats"], body
    detail = body["checks"]["nats"]["detail"]
    assert detail.startswith(f"ingest pid {os.getpid()} has not turned its loop for "), detail
    assert age_s <= float(detail.split(" for ")[1].removesuffix(" s")) < age_s + 1.0, detail
    g = gauges(app)
    assert (g["nats_connected"], g["nats_subscribed"], g["workers_alive"]) == (0, 0, N_WORKERS)


def test_an_ingest_that_never_stamped_or_whose_pid_is_gone_is_not_ready(app: WebApp) -> None:
    rows = app.store.counters
    rows[C.ROW_INGEST][C.ALIVE_NS] = 0
    status, body = ready(app)
    assert status == 503 and body["failing"] == ["nats"]
    assert "has not turned its loop since its start" in body["checks"]["nats"]["detail"]
    assert gauges(app)["nats_connected"] == 0
    running(app)
    pid = gone_pid()
    rows[C.ROW_INGEST][C.PROCESS_PID] = pid
    status, body = ready(app)
    assert status == 503 and body["checks"]["nats"]["detail"] == f"ingest pid {pid} is gone"
    assert gauges(app)["nats_connected"] == 0
    rows[C.ROW_INGEST][C.PROCESS_PID] = 0
    assert ready(app)[1]["checks"]["nats"]["detail"] == "ingest not started"


def test_a_heartbeat_from_before_the_ingests_latest_start_does_not_count(app: WebApp) -> None:
    """The supervisor records the wall clock just before it (re)starts the ingest: a stamp older
    than that, however recent, is the previous incarnation's."""
    now = time.time_ns()
    app.store.counters[C.ROW_SUPERVISOR][C.INGEST_STARTED_NS] = now - S // 2
    app.store.counters[C.ROW_INGEST][C.ALIVE_NS] = now - S
    status, body = ready(app)
    assert status == 503 and "has not turned its loop since its start" in body["checks"]["nats"]["detail"]
    assert gauges(app)["nats_connected"] == 0
    app.store.counters[C.ROW_INGEST][C.ALIVE_NS] = time.time_ns()  # the new one's first turn
    assert ready(app)[0] == 200 and gauges(app)["nats_connected"] == 1


@pytest.mark.parametrize("restarts, started_s_ago, is_ready", [
    (2, 1.0, False),   # restarted twice in the last minute, the latest a second ago: a crash loop
    (5, 0.1, False),
    (2, 4.0, True),    # ... but it has now run for longer than 3 s
    (1, 0.5, True),    # one restart is not a loop
    (0, 0.5, True),
])
def test_a_crash_looping_ingest_is_not_ready_until_it_has_run_three_seconds(
        app: WebApp, restarts: int, started_s_ago: float, is_ready: bool) -> None:
    """The supervisor's row: INGEST_RESTARTS (restarts in the last minute) and INGEST_STARTED_NS.
    The ingest itself runs its loop and is connected; the NATS gauge says so."""
    now = time.time_ns()
    sup = app.store.counters[C.ROW_SUPERVISOR]
    sup[C.INGEST_RESTARTS] = restarts
    sup[C.INGEST_STARTED_NS] = now - int(started_s_ago * S)
    app.store.counters[C.ROW_INGEST][C.ALIVE_NS] = now
    status, body = ready(app)
    if is_ready:
        assert status == 200, body
    else:
        assert status == 503 and body["failing"] == ["nats"], body
        assert body["checks"]["nats"]["detail"].startswith(
            f"ingest restarted {restarts} times in the last minute, the latest "), body
    assert gauges(app)["nats_connected"] == 1  # it is connected; readiness waits for it to last


def test_a_stale_worker_heartbeat_fails_workers_naming_it_and_zeroes_nats_connected(app: WebApp) -> None:
    app.store.counters[C.ROW_WORKER0 + 1][C.ALIVE_NS] = time.time_ns() - 5 * S
    status, body = ready(app)
    assert status == 503 and body["failing"] == ["workers"], body
    detail = body["checks"]["workers"]["detail"]
    assert detail.startswith(f"1 of {N_WORKERS} alive; not alive: [1] (worker 1: pid {os.getpid()} "
                             "has not turned its loop for "), detail
    g = gauges(app)
    assert (g["workers_alive"], g["nats_connected"], g["nats_subscribed"]) == (1, 0, 1)
    running(app)
    assert ready(app)[0] == 200 and gauges(app)["nats_connected"] == 1
