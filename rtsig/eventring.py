"""Event rings from the ingest to the workers: one single-producer, single-consumer ring each.

The ingest appends a batch's events to the ring of the worker that owns each symbol and
publishes the new head; a worker consumes ``[tail, head)`` and publishes its tail. Positions only
grow; the slot is ``position & (capacity - 1)``.

Wake-up without a system call per message: a worker that finds its ring empty sets its
``sleeping`` flag, *then* re-checks the head (a full fence between: this store→load order is the
one x86 may reorder) and only then blocks on its eventfd. The ingest publishes heads, fences,
and writes a worker's eventfd only when that flag is set. A busy worker never sleeps, so the
ingest never makes a system call for it; an idle one blocks in the kernel and costs no CPU.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from rtsig import counters as C
from rtsig.layout import CURSOR_HEAD, CURSOR_SLEEPING, CURSOR_TAIL
from rtsig.seqlock import acquire_fence, memory_fence, release_fence


@njit(cache=True)
def route_events(events, message_ids, count, symbols, ring_events, ring_message_ids, cursors,
                 counters, wake):
    """Append ``events[:count]`` to their owners' rings; set ``wake[w]`` for sleeping owners.

    A full ring drops the event and counts ``EVENT_RING_FULL`` (the ingest never blocks).
    Returns the number of events routed.
    """
    n_workers = ring_events.shape[0]
    capacity = ring_events.shape[1]
    mask = capacity - 1
    width = message_ids.shape[1]
    heads = np.empty(n_workers, dtype=np.int64)
    for w in range(n_workers):
        heads[w] = cursors[w, CURSOR_HEAD]
        wake[w] = 0
    routed = 0
    for j in range(count):
        w = symbols[events[j].symbol].worker
        head = heads[w]
        if head - cursors[w, CURSOR_TAIL] >= capacity:
            counters[C.EVENT_RING_FULL] += 1
            continue
        slot = head & mask
        ring_events[w, slot] = events[j]
        for k in range(width):
            ring_message_ids[w, slot, k] = message_ids[j, k]
        heads[w] = head + 1
        routed += 1
    release_fence()
    for w in range(n_workers):
        cursors[w, CURSOR_HEAD] = heads[w]
    memory_fence()  # heads visible before the sleeping flags are read
    for w in range(n_workers):
        if cursors[w, CURSOR_SLEEPING] != 0:
            wake[w] = 1
    return routed


@njit(cache=True)
def pending(cursors, w):
    """``(tail, head)`` of worker ``w``'s ring; entries up to head are complete."""
    head = cursors[w, CURSOR_HEAD]
    acquire_fence()
    return cursors[w, CURSOR_TAIL], head


@njit(cache=True)
def consumed(cursors, w, tail):
    """Publish the worker's new tail (its slots may be reused)."""
    release_fence()
    cursors[w, CURSOR_TAIL] = tail


@njit(cache=True)
def try_sleep(cursors, w):
    """Set the sleeping flag unless events arrived meanwhile; True when the worker may block."""
    cursors[w, CURSOR_SLEEPING] = 1
    memory_fence()
    if cursors[w, CURSOR_HEAD] != cursors[w, CURSOR_TAIL]:
        cursors[w, CURSOR_SLEEPING] = 0
        return False
    return True


@njit(cache=True)
def awake(cursors, w):
    cursors[w, CURSOR_SLEEPING] = 0


def wake_workers(wake: np.ndarray, wakers: list[int]) -> None:
    for w in np.flatnonzero(wake):
        try:
            os.eventfd_write(wakers[w], 1)
        except BlockingIOError:  # counter saturated: the worker is awake anyway
            pass
