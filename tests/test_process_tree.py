"""The process tree of ``rtsig run``: Numba only where jitted code runs, every process supervised.

The supervisor forks a short-lived zygote that loads the compiled code and forks the ingest and
the workers (rtsig/zygote.py); the supervisor, a child subreaper, adopts them. These tests look at
a running instance through /proc: which processes map LLVM (Numba's compiler library), who is
whose parent, and that an adopted worker killed with SIGKILL is reaped (no zombie) and replaced.
A child forked before it installed its own signal handlers must still obey SIGTERM (the web
server, stopped while it was still importing, once went on to start Gunicorn and outlived the
supervisor's deadline).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from rtsig import counters as C
from rtsig.settings import Settings
from rtsig.supervisor import Supervisor
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


def _announce_and_wait(ready) -> None:
    ready.set()
    time.sleep(30)  # a child that swallowed SIGTERM would still be here when the test gives up


def test_a_child_forked_before_its_own_handlers_still_obeys_sigterm():
    supervisor = Supervisor(Settings())
    previous = signal.signal(signal.SIGTERM, supervisor._request_stop)
    try:
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        child = ctx.Process(target=_announce_and_wait, args=(ready,))
        child.start()
        assert ready.wait(10)
        os.kill(child.pid, signal.SIGTERM)
        child.join(10)
        assert child.exitcode == -signal.SIGTERM, child.exitcode
        assert not supervisor.stop_requested, "the child's signal stopped the supervisor"
    finally:
        if child.is_alive():
            child.kill()
        signal.signal(signal.SIGTERM, previous)


def test_init_is_never_taken_for_the_zygote(tmp_path):
    """A child that starts after its zygote exited and its supervisor died has parent 1: that
    must count as orphaned (it left processes running for good), unless the owner is pid 1."""
    from rtsig.settings import Settings
    from rtsig.store import Store
    from rtsig.zygote import supervisor_and_zygote

    store = Store.in_memory(Settings(max_symbols=4))
    store.header[0]["owner_pid"] = 4242
    assert supervisor_and_zygote(store, parent_pid=1) == {4242}
    assert supervisor_and_zygote(store, parent_pid=777) == {4242, 777}
    store.header[0]["owner_pid"] = 1  # the supervisor is the container's pid 1
    assert 1 in supervisor_and_zygote(store, parent_pid=1)
