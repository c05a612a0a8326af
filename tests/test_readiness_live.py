"""Readiness that tells the truth, on a real ``rtsig run`` with its web server and a real
nats-server: a stopped (SIGSTOP) ingest or worker turns ``/ready`` to 503 within 3 s naming the
failing check, ``realtime_strategies_nats_connected`` drops to 0, and both recover on SIGCONT; an
ingest killed twice in a row is not ready until its new incarnation has run for 3 s.

Every wait polls a condition with a deadline; the only fixed durations are how long a process
is kept stopped, during which every answer is checked.
"""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtsig import counters as C
from tests.live_helpers import N_WORKERS, Service, wait_until

DETECT_S = 3.0  # the promise: a stopped process is seen within this
STOP_S = 8.0  # how long a process is kept stopped
RECOVER_S = 20.0  # after SIGCONT (a NATS client may reconnect first)


def ready(service: Service) -> tuple[int, dict]:
    status, body = service.http("GET", "/ready")
    return status, orjson.loads(body) if body else {}


def gauge(service: Service, name: str) -> float:
    status, body = service.http("GET", "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == f"realtime_strategies_{name}" and not sample.labels:
                return sample.value
    raise AssertionError(f"no realtime_strategies_{name} on /metrics")


def wait_ready(service: Service, timeout_s: float = RECOVER_S) -> None:
    try:
        wait_until(lambda: ready(service)[0] == 200, timeout_s, "/ready to answer 200", poll_s=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: last {ready(service)}\n{service.log_tail()}") from None


def stopped_for(service: Service, pid: int, check: str) -> dict:
    """SIGSTOP ``pid`` for ``STOP_S``: /ready is 503 naming ``check`` within ``DETECT_S`` and on
    every poll after that until SIGCONT. The first 503 body."""
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        try:
            seen_s = wait_until(lambda: ready(service)[0] == 503, DETECT_S, "/ready to answer 503",
                                poll_s=0.02)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: last {ready(service)}") from None
        print(f"\n{check}: /ready 503 {seen_s:.2f} s after SIGSTOP of pid {pid}")
        status, first = ready(service)
        assert status == 503 and first["failing"] == [check], first
        assert gauge(service, "nats_connected") == 0
        while time.monotonic() - stopped < STOP_S:
            status, body = ready(service)
            assert status == 503 and body["failing"] == [check], body
            time.sleep(0.25)  # pacing the checks, not waiting for anything
        return first
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def service(nats_server, services) -> Service:
    service = services(nats_server.url, web=True)
    wait_ready(service)
    assert gauge(service, "nats_connected") == 1
    return service


def test_a_stopped_ingest_fails_nats_within_3_s_and_recovers_on_sigcont(service: Service) -> None:
    pid = service.ingest(C.PROCESS_PID)
    body = stopped_for(service, pid, "nats")
    detail = body["checks"]["nats"]["detail"]
    assert detail.startswith(f"ingest pid {pid} has not turned its loop for "), detail
    assert body["checks"]["workers"]["ok"] is True, body
    wait_ready(service)
    assert gauge(service, "nats_connected") == 1
    assert service.ingest(C.PROCESS_PID) == pid, "the supervisor left the stopped ingest alone"


def test_a_stopped_worker_fails_workers_within_3_s_and_recovers_on_sigcont(service: Service) -> None:
    k = N_WORKERS - 1
    pid = service.worker_pid(k)
    body = stopped_for(service, pid, "workers")
    detail = body["checks"]["workers"]["detail"]
    assert detail.startswith(f"{N_WORKERS - 1} of {N_WORKERS} alive; not alive: [{k}] "
                             f"(worker {k}: pid {pid} has not turned its loop for "), detail
    assert body["checks"]["nats"]["ok"] is True, body
    wait_ready(service)
    assert gauge(service, "nats_connected") == 1 and gauge(service, "workers_alive") == N_WORKERS


def test_an_ingest_killed_twice_in_a_minute_is_not_ready_until_it_has_run_3_s(service: Service) -> None:
    """Each SIGKILL: /ready is 503 within 3 s (the pid is gone) and until the supervisor's new
    ingest turns its loop; after the second kill within a minute it stays 503 until 3 s after the new
    start (the crash-loop hold) even while the new ingest runs, then returns to 200."""
    rows = service.store.counters
    for kill in (1, 2):
        pid = service.ingest(C.PROCESS_PID)
        os.kill(pid, signal.SIGKILL)  # 503 once the supervisor reaps it (a zombie's pid exists)
        wait_until(lambda: ready(service)[0] == 503, DETECT_S, "/ready to answer 503", poll_s=0.02)
        wait_until(lambda: int(rows[C.ROW_SUPERVISOR][C.INGEST_RESTARTS]) == kill, RECOVER_S,
                   f"restart {kill} recorded")
        started_ns = int(rows[C.ROW_SUPERVISOR][C.INGEST_STARTED_NS])
        hold_ends_ns = started_ns + C.CRASH_LOOP_HOLD_NS
        details, held = [], 0
        while True:  # every answer until the first 200
            turned = int(rows[C.ROW_INGEST][C.ALIVE_NS]) >= started_ns  # the new ingest runs
            status, body = ready(service)
            answered_ns = time.time_ns()
            if status == 200:
                break
            assert body["failing"] == ["nats"], body
            detail = body["checks"]["nats"]["detail"]
            details.append(detail)
            assert detail.startswith("ingest "), details
            if kill == 2 and turned and answered_ns < hold_ends_ns:
                assert detail.startswith("ingest restarted 2 times in the last minute, the latest "), details
                held += 1
            assert answered_ns < started_ns + int(RECOVER_S * 1e9), (details[-3:], service.log_tail())
            time.sleep(0.05)  # pacing the checks
        assert service.ingest(C.PROCESS_PID) != pid
        if kill == 1:
            assert not any(d.startswith("ingest restarted") for d in details), details
        else:
            assert answered_ns >= hold_ends_ns, "ready again only once the hold ended"
            print(f"second restart: {len(details)} answers 503, {held} of them the hold")
    assert gauge(service, "nats_connected") == 1
