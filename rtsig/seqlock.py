"""Memory ordering for the single-writer rings in shared memory.

Numba has no atomics, and LLVM may reorder plain stores inside one jitted function. A seqlock
is only correct if the sequence bumps are ordered around the data writes, so both the writer
and the readers put :func:`memory_fence` — an LLVM ``fence seq_cst`` — between them. A fence is
also a compiler barrier: LLVM does not move memory accesses across it. On x86-64 it compiles to
``mfence``; on AArch64 to ``dmb ish``. The torn-read test (tests/test_store_concurrency.py) checks
the result across two processes.

Protocols (positions count from 0 since the store was created):

* order-book slot ``p & (K-1)``: ``seq = 2p+1``, release fence, data, release fence,
  ``seq = 2p+2``. A reader of position ``p`` reads ``seq``, acquire fence, data, acquire fence,
  ``seq`` again; the copy is good when both reads equal ``2p+2``. A larger value means the slot
  was reused: an overrun.
* trade and ticker rings: ``begin = p+1``, release fence, entry, release fence, ``end = p+1``. A
  reader that copied positions ``[a, p]`` re-reads ``begin`` after an acquire fence; the copy is
  good when ``begin - capacity <= a``.
"""

from __future__ import annotations

from numba import njit, types
from numba.extending import intrinsic


def _fence_intrinsic(ordering: str):
    @intrinsic
    def _fence(typingctx):  # pragma: no cover - runs inside jitted code
        def codegen(context, builder, signature, args):
            builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return _fence


_seq_cst = _fence_intrinsic("seq_cst")
_release = _fence_intrinsic("release")
_acquire = _fence_intrinsic("acquire")


@njit(inline="always")
def memory_fence() -> None:
    """Full memory barrier (``mfence`` on x86-64): orders every load and store around it."""
    _seq_cst()


@njit(inline="always")
def release_fence() -> None:
    """Writer side: no store after it becomes visible before any access before it.

    PERF: on x86-64 (TSO) this is a compiler barrier only — no instruction — where a full
    fence (``mfence``) measured ~30 ns; on AArch64 it is ``dmb ish``.
    """
    _release()


@njit(inline="always")
def acquire_fence() -> None:
    """Reader side: no access after it is performed before the loads before it."""
    _acquire()
