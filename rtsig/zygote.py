"""Start the processes that run jitted code from a short-lived, warmed-up parent (a zygote).

Why: a process that has loaded Numba and the compiled kernels keeps ~110-170 MiB resident for
good, and a child forked from it counts the parent's heap in its own RSS as well. The supervisor
therefore never loads Numba. For each start it forks a zygote that loads the compiled code from
the cache (compiling it on a cold cache, once), forks the ingest and/or workers, reports their
pids and exits. The supervisor is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so
those grandchildren are re-parented to it: it waits for them, reaps them and restarts them like
its own children (:class:`AdoptedProcess`, via a pidfd).

The children import their jitted modules from the zygote's memory, so they never compile: no two
processes compile at once (numba issue 4807: several processes compiling the same cached
function at the same time can crash).
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
from collections.abc import Callable, Sequence

from rtsig.errors import RtsigError
from rtsig.settings import Settings
from rtsig.store import Store

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
Job = tuple[str, Callable, tuple]
"""``(process name, target, args)`` of a process to fork from the zygote."""


def supervisor_and_zygote(store: Store, parent_pid: int | None = None) -> frozenset[int]:
    """The parents a child of ``rtsig run`` may have: the zygote that forked it, until that
    exits, then the supervisor that owns the store (a subreaper). Any other parent means the
    supervisor died and the child must not outlive it.

    A parent of 1 (init) is never the zygote: a child that starts after its zygote exited and
    its supervisor died has already been handed to init, and must stop — found as orphans left
    running by a demo stopped while the zygote was still compiling. (The supervisor itself may
    be pid 1, in a container: it is the owner, not the parent, that says so.)"""
    ppid = os.getppid() if parent_pid is None else parent_pid
    owner = int(store.header[0]["owner_pid"])
    return frozenset({owner} | ({ppid} if ppid != 1 else set()))


def become_subreaper() -> None:
    """Adopt orphaned descendants (the zygote's children) instead of letting init have them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


class AdoptedProcess:
    """A re-parented grandchild, with the part of ``multiprocessing.Process`` the supervisor uses."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.name = name
        self.sentinel = os.pidfd_open(pid)  # readable once the process has exited
        self.exitcode: int | None = None

    def _reap(self, block: bool) -> None:
        if self.exitcode is not None:
            return
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid:
            self.exitcode = os.waitstatus_to_exitcode(status)

    def is_alive(self) -> bool:
        self._reap(block=False)
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        if self.exitcode is None and select.select([self.sentinel], [], [], timeout)[0]:
            self._reap(block=True)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.is_alive():
            signal.pidfd_send_signal(self.sentinel, signum)

    def close(self) -> None:
        """Release the pidfd (after the process was reaped, or at the supervisor's exit)."""
        if self.sentinel >= 0:
            os.close(self.sentinel)
            self.sentinel = -1


def _zygote(ctx, settings: Settings, store: Store | None, jobs: Sequence[Job], report) -> None:
    """Body of the zygote: warm up, fork every job, report the pids, exit without cleanup (its
    children must outlive it; ``multiprocessing`` would otherwise join them at exit)."""
    from rtsig import logs
    from rtsig.warmup import prepare, warm_up

    # The supervisor stops what the zygote forks (shutdown stages, then SIGKILL at the deadline);
    # a stop signal must not kill the zygote half-way and leave the supervisor without children.
    # Its children start with these ignored and install their own handlers first thing.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.setup(settings.log_level, settings.log_format, "zygote")
    try:
        from rtsig.compile_progress import compile_progress

        with compile_progress(log.info):  # a line per module when Numba compiles (a cold cache)
            if store is not None:
                prepare(settings, store)
            else:
                warm_up(settings)
        pids = []
        for name, target, args in jobs:
            child = ctx.Process(target=target, args=args, name=name, daemon=False)
            child.start()
            pids.append(child.pid)
        report.send(pids)
    except BaseException:
        log.exception("warming up the kernels / forking %s failed", [name for name, _, _ in jobs])
        os._exit(1)
    os._exit(0)


def start_warmed(ctx, settings: Settings, jobs: Sequence[Job], store: Store | None = None
                 ) -> list[AdoptedProcess]:
    """Fork a zygote that warms up (and, given ``store``, registers the configured symbols in it
    first) and forks ``jobs``; the adopted processes, in order. Blocks until the zygote exits."""
    receive, report = ctx.Pipe(duplex=False)
    zygote = ctx.Process(target=_zygote, args=(ctx, settings, store, jobs, report), name="zygote")
    zygote.start()
    report.close()
    zygote.join()
    try:
        if zygote.exitcode != 0 or not receive.poll():
            raise RtsigError(f"starting {', '.join(name for name, _, _ in jobs)} failed: the warm-up "
                             f"process exited with {zygote.exitcode} (see the log above)")
        pids = receive.recv()
    finally:
        receive.close()
    return [AdoptedProcess(pid, name) for pid, (name, _, _) in zip(pids, jobs)]
