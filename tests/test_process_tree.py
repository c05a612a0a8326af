"""The process tree of ``rtsig run``: Numba only where jitted code runs, every process supervised.

The supervisor forks a short-lived zygote that loads the compiled code and forks the ingest and
the workers (rtsig/zygote.py); the supervisor, a child subreaper, adopts them. These tests look at
a running instance through /proc: which processes map LLVM (Numba's compiler library), who is
whose parent, and that an adopted worker killed with SIGKILL is reaped (no zombie) and replaced.
"""

from __future__ import annotations

import os
import signal

from rtsig import counters as C
from tests.live_helpers import N_WORKERS, Service, group_members, wait_until


def maps_llvm(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "libllvmlite" in f.read()


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def jitted_pids(service: Service) -> set[int]:
    return {service.ingest(C.PROCESS_PID)} | {service.worker_pid(k) for k in range(N_WORKERS)}


def test_only_the_ingest_and_the_workers_load_numba(nats_server, services):
    service = services(nats_server.url, web=True)
    jitted = jitted_pids(service)
    members = {pid for pid, _, _ in group_members(service.pid)}
    assert jitted <= members and service.pid in members
    others = members - jitted  # supervisor, resource tracker, Gunicorn master and its workers
    assert len(others) >= 3, members
    assert {pid for pid in jitted if maps_llvm(pid)} == jitted
    assert {pid for pid in others if maps_llvm(pid)} == set(), "a process that runs no jitted code loaded Numba"


def test_the_supervisor_adopts_the_processes_its_zygote_forked(nats_server, services):
    service = services(nats_server.url)
    for pid in jitted_pids(service):
        assert parent(pid) == service.pid, f"pid {pid} is not the supervisor's child"


def test_an_adopted_worker_that_dies_is_reaped_and_replaced(nats_server, services):
    service = services(nats_server.url)
    old = service.worker_pid(1)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: service.worker_pid(1) not in (0, old), 30, "a replacement worker")
    new = service.worker_pid(1)
    assert parent(new) == service.pid
    wait_until(lambda: not os.path.exists(f"/proc/{old}"), 10, "the dead worker to be reaped")
    zombies = [(pid, comm) for pid, state, comm in group_members(service.pid, include_zombies=True)
               if state == "Z"]
    assert zombies == []
    service.wait_ready()
