"""Memory ordering for the single-writer rings in shared memory.

Numba has no atomics, and LLVM may reorder plain stores inside one jitted function. A seqlock
is only correct if the sequence bumps are ordered around the data writes, so the jitted writers
and readers put LLVM fences between them, emitted by the three intrinsics below. A fence is also
a compiler barrier: LLVM does not move memory accesses across it.

* :func:`release_fence` (``fence release``) is what every writer uses — the ingest's decoder
  (:mod:`rtsig.decode`: book slots, trade and ticker rings, the per-symbol quote sequence, the
  symbol table), the feed path (:mod:`rtsig.feeds.path`) and the event rings
  (:mod:`rtsig.eventring`). On x86-64 (TSO) it emits no instruction, only the compiler barrier;
  on AArch64 it is ``dmb ish``.
* :func:`acquire_fence` (``fence acquire``) is what the jitted readers use — the workers'
  :func:`workers.evaluate.evaluate_events` and the event rings' :func:`~rtsig.eventring.pending`.
  Also no instruction on x86-64.
* :func:`memory_fence` (``fence seq_cst``, ``mfence`` on x86-64) is used only where a store must
  be ordered before a later load — the event rings' sleep/wake handshake
  (:func:`~rtsig.eventring.route_events` publishes the heads, then reads the sleeping flags;
  :func:`~rtsig.eventring.try_sleep` sets the flag, then re-reads the head) — never on the
  per-message data path.

Python-level readers (:meth:`rtsig.store.Store.latest_book` / ``latest_books`` for the web) take
no fence: they read ``seq``, copy with NumPy, read ``seq`` again and retry on a mismatch. The
torn-read test (tests/test_store_concurrency.py) checks the result across two processes.

Protocols (positions count from 0 since the store was created):

* order-book slot ``p & (K-1)``: ``seq = 2p+1``, release fence, data, release fence,
  ``seq = 2p+2``, then ``book_end = p+1``. A reader of position ``p`` reads ``seq``, acquire
  fence, data, acquire fence, ``seq`` again; the copy is good when both reads equal ``2p+2``. A
  larger value means the slot was reused: an overrun.
* trade and ticker rings: ``begin = p+1``, release fence, entry, release fence, ``end = p+1``. A
  reader that read positions ``[a, p]`` re-reads ``begin`` after an acquire fence; the copy is
  good when ``begin - capacity <= a`` (else an overrun).
* the per-symbol quote sequence (best bid/ask, mark price, newest event time): odd while the
  ingest writes, even when done (``quote_seq``, :func:`rtsig.decode._quotes_begin` / ``_quotes_end``).
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
