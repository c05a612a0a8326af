"""Torn-read proof: the real writer and a seqlock reader hammer the same book slots from two
processes.

The writer is the ingest's own path — :class:`rtsig.decode.Decoder` fed spot ``btcusdt@depth20``
combined-stream messages — into a store with the smallest book ring (4), so the writer laps every
slot every four messages. Snapshot ``k`` is built so that a consistent copy satisfies

    last_update_id == k, bid_count == ask_count == 20,
    every bid and ask quantity == k,
    bid price i == base(k) - i, ask price i == base(k) + 1 + i, base(k) = 10000 + k % 4096

and a copy mixing two snapshots breaks it. The reader does, in a jitted loop, the copy of
``workers/evaluate.py`` — seq, fence, counts and levels, fence, seq; good only when both reads
equal ``2·pos + 2`` — and checks the invariant on every good copy. Two positions are read: the
newest (what the web and a caught-up worker read) and the oldest still in the ring (the slot the
writer is about to reuse: a worker that fell behind), with both ``memory_fence`` (seq_cst) and
``acquire_fence`` (what evaluate.py uses). The negative control copies without the seqlock and
must see torn copies, which shows the invariant check can catch one.
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
from numba import njit

from rtsig.layout import ASK, BID, DEPTH_LEVELS, PRICE, QTY
from rtsig.seqlock import acquire_fence, memory_fence
from rtsig.settings import Settings
from rtsig.store import Store
from tests import store_helpers as H

SPAWN = multiprocessing.get_context("spawn")
SYMBOL = "BTCUSDT"
DURATION_S = 3.0
N_MESSAGES = 1 << 13
"""Distinct snapshots the writer cycles through (k = 1 … N_MESSAGES)."""
PRICE_PERIOD = 4096

# reader modes: (position, fence) with the seqlock, then the two unsafe controls
SAFE_NEWEST_SEQ_CST, SAFE_NEWEST_ACQUIRE, SAFE_OLDEST_SEQ_CST, SAFE_OLDEST_ACQUIRE = 0, 1, 2, 3
UNSAFE_NEWEST, UNSAFE_WRITING = 4, 5
MODE_NAMES = ("newest/seq_cst", "newest/acquire", "oldest/seq_cst", "oldest/acquire",
              "unsafe/newest", "unsafe/being-written")
SAFE_MODES = (SAFE_NEWEST_SEQ_CST, SAFE_NEWEST_ACQUIRE, SAFE_OLDEST_SEQ_CST, SAFE_OLDEST_ACQUIRE)
UNSAFE_MODES = (UNSAFE_NEWEST, UNSAFE_WRITING)
GOOD, RETRY, VIOLATION = 0, 1, 2


@pytest.fixture(scope="module", autouse=True)
def no_segment_left_behind():
    first = len(H.CREATED_INSTANCES)
    yield
    left = H.leftover_segments(H.CREATED_INSTANCES[first:])
    for name in left:
        H.remove_segment(name.removeprefix("rtsig-"))
    assert left == [], f"segments left in /dev/shm: {left}"


# ----------------------------------------------------------------------------- the snapshots

def depth20_message(k: int) -> bytes:
    """Spot ``btcusdt@depth20`` combined-stream message of snapshot ``k``."""
    base = 10000 + k % PRICE_PERIOD
    qty = f"{k}.00000000"
    bids = ",".join(f'["{base - i}.00000000","{qty}"]' for i in range(DEPTH_LEVELS))
    asks = ",".join(f'["{base + 1 + i}.00000000","{qty}"]' for i in range(DEPTH_LEVELS))
    return (f'{{"stream":"btcusdt@depth20","data":{{"lastUpdateId":{k},'
            f'"bids":[{bids}],"asks":[{asks}]}}}}').encode()


@njit(cache=False)
def snapshot_consistent(levels, nb, na, uid):
    """The invariant every snapshot written by the test's writer satisfies."""
    if nb != DEPTH_LEVELS or na != DEPTH_LEVELS or uid <= 0:
        return False
    q = float(uid)
    base = 10000.0 + float(uid % PRICE_PERIOD)
    for i in range(DEPTH_LEVELS):
        if levels[BID, i, QTY] != q or levels[ASK, i, QTY] != q:
            return False
        if levels[BID, i, PRICE] != base - i or levels[ASK, i, PRICE] != base + 1.0 + i:
            return False
    return True


# ----------------------------------------------------------------------------- the readers

@njit(cache=False)
def seqlock_copy(book_meta, book_levels, sid, pos, levels, use_acquire):
    """Copy position ``pos`` of ``sid``'s book ring like workers/evaluate.py.

    Returns ``(ok, bid_count, ask_count, last_update_id)``; ``ok`` False means retry (the slot
    was being written or has been reused since).
    """
    slot = pos & (book_meta.shape[1] - 1)
    seq1 = book_meta[sid, slot].seq
    if use_acquire:
        acquire_fence()
    else:
        memory_fence()
    nb = book_meta[sid, slot].bid_count
    na = book_meta[sid, slot].ask_count
    uid = book_meta[sid, slot].last_update_id
    for side in range(2):
        n_side = nb if side == 0 else na
        n_side = min(max(n_side, 0), DEPTH_LEVELS)  # a torn count must not index out of bounds
        for k in range(n_side):
            levels[side, k, 0] = book_levels[sid, slot, side, k, 0]
            levels[side, k, 1] = book_levels[sid, slot, side, k, 1]
    if use_acquire:
        acquire_fence()
    else:
        memory_fence()
    seq2 = book_meta[sid, slot].seq
    if seq1 != 2 * pos + 2 or seq2 != seq1:
        return False, 0, 0, 0
    return True, nb, na, uid


@njit(cache=False)
def plain_copy(book_meta, book_levels, sid, slot, levels):
    """The negative control: the same copy with no sequence check and no fence."""
    nb = book_meta[sid, slot].bid_count
    na = book_meta[sid, slot].ask_count
    uid = book_meta[sid, slot].last_update_id
    for side in range(2):
        for k in range(DEPTH_LEVELS):
            levels[side, k, 0] = book_levels[sid, slot, side, k, 0]
            levels[side, k, 1] = book_levels[sid, slot, side, k, 1]
    return nb, na, uid


@njit(cache=False)
def hammer(book_meta, book_levels, market, sid, mode, iterations, counts):
    """``iterations`` reads in ``mode``; adds good / retry / violation to ``counts[mode]``."""
    ring = book_meta.shape[1]
    levels = np.zeros((2, DEPTH_LEVELS, 2), dtype=np.float64)
    for _ in range(iterations):
        memory_fence()  # re-read the cursor every turn
        end = market[sid].book_end
        if end < ring + 1:
            continue
        if mode == UNSAFE_NEWEST or mode == UNSAFE_WRITING:
            pos = end - 1 if mode == UNSAFE_NEWEST else end
            nb, na, uid = plain_copy(book_meta, book_levels, sid, pos & (ring - 1), levels)
            if snapshot_consistent(levels, nb, na, uid):
                counts[mode, GOOD] += 1
            else:
                counts[mode, VIOLATION] += 1
            continue
        newest = mode == SAFE_NEWEST_SEQ_CST or mode == SAFE_NEWEST_ACQUIRE
        use_acquire = mode == SAFE_NEWEST_ACQUIRE or mode == SAFE_OLDEST_ACQUIRE
        pos = end - 1 if newest else end - ring
        ok, nb, na, uid = seqlock_copy(book_meta, book_levels, sid, pos, levels, use_acquire)
        if not ok:
            counts[mode, RETRY] += 1
        elif snapshot_consistent(levels, nb, na, uid):
            counts[mode, GOOD] += 1
        else:
            counts[mode, VIOLATION] += 1


# ----------------------------------------------------------------------------- child processes

def writer_main(name: str, ready, go, stop, queue) -> None:
    """The ingest's write path, flat out, until ``stop`` (or a time limit)."""
    try:
        from rtsig import codes
        from rtsig.counters import ROW_INGEST
        from rtsig.decode import Decoder

        store = Store.attach(name)
        messages = [depth20_message(k) for k in range(1, N_MESSAGES + 1)]
        batch = 64
        decoder = Decoder(store, ROW_INGEST, allow_new=False, capacity=batch)
        written = bad = 0
        i = 0

        def one_batch() -> None:
            nonlocal i, written, bad
            for _ in range(batch):
                decoder.add(messages[i], time.time_ns())
                i = (i + 1) % N_MESSAGES
            ok = 0
            while True:
                decoder.decode()
                ok += int(np.count_nonzero(decoder.last_status == codes.STATUS_OK))
                # no worker judges here: the writer may reuse every slot (the reader relies on
                # the seqlock alone, which is what this test proves)
                store.release_all()
                if not decoder.blocked:
                    break
            written += ok
            bad += batch - ok

        one_batch()  # compile / load the cache before the clock starts
        ready.set()
        go.wait(300)
        deadline = time.monotonic() + DURATION_S + 30
        while not stop.is_set() and time.monotonic() < deadline:
            for _ in range(16):
                one_batch()
        queue.put(("writer", {"written": written, "bad": bad,
                              "book_end": int(store.market[0]["book_end"])}))
        store.close()
    except BaseException as exc:
        queue.put(("writer-error", f"{type(exc).__name__}: {exc}"))
        ready.set()


def reader_main(name: str, modes: tuple[int, ...], duration_s: float, stop_on_violations: int,
                ready, go, queue) -> None:
    """Hammer the book with ``modes`` in turn for ``duration_s``; report the counts."""
    try:
        store = Store.attach(name, readonly=True)
        counts = np.zeros((len(MODE_NAMES), 3), dtype=np.int64)
        sid = store.symbol_id(SYMBOL)
        for mode in modes:  # compile before the clock starts
            hammer(store.book_meta, store.book_levels, store.market, sid, mode, 1, counts)
        counts[:] = 0
        ready.set()
        go.wait(300)
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            for mode in modes:
                hammer(store.book_meta, store.book_levels, store.market, sid, mode, 2000, counts)
            if stop_on_violations and counts[:, VIOLATION].sum() >= stop_on_violations:
                break
        queue.put(("reader", counts.tolist()))
        store.close()
    except BaseException as exc:
        queue.put(("reader-error", f"{type(exc).__name__}: {exc}"))
        ready.set()


def run_pair(modes: tuple[int, ...], duration_s: float, stop_on_violations: int = 0):
    """Writer + reader on a fresh store; returns (writer report, counts array)."""
    settings = Settings(book_ring=4, trading_symbols=(SYMBOL,), instance=H.unique_instance(),
                        max_symbols=4, trade_ring=1024, ticker_ring=64, event_ring=1024, workers=1)
    store = Store.create(settings)
    procs = []
    stop = SPAWN.Event()
    try:
        go, queue = SPAWN.Event(), SPAWN.Queue()
        ready_w, ready_r = SPAWN.Event(), SPAWN.Event()
        writer = SPAWN.Process(target=writer_main, args=(store.name, ready_w, go, stop, queue))
        writer.start()
        procs.append(writer)
        assert ready_w.wait(300), "writer never became ready"
        reader = SPAWN.Process(target=reader_main,
                               args=(store.name, modes, duration_s, stop_on_violations,
                                     ready_r, go, queue))
        reader.start()
        procs.append(reader)
        assert ready_r.wait(300), "reader never became ready"
        go.set()
        reports = {}
        tag, body = queue.get(timeout=duration_s + 120)  # the reader ends first
        reports[tag] = body
        stop.set()
        tag, body = queue.get(timeout=60)
        reports[tag] = body
        errors = {k: v for k, v in reports.items() if k.endswith("error")}
        assert not errors, errors
        for p in procs:
            H.stop_process(p)
            assert p.exitcode == 0, p
        # the final book, read by the Python reader of the store, satisfies the invariant too
        book = store.latest_book(0)
        assert book is not None
        levels, nb, na, meta = book
        assert snapshot_consistent(levels, nb, na, int(meta["last_update_id"]))
        assert reports["writer"]["book_end"] == int(store.market[0]["book_end"])
        return reports["writer"], np.array(reports["reader"], dtype=np.int64)
    finally:
        stop.set()
        for p in procs:
            H.stop_process(p)
        store.unlink()
        store.close()
        H.remove_segment(settings.instance)


def _figures(writer: dict, counts: np.ndarray, modes) -> str:
    rows = [f"{MODE_NAMES[m]}: good={counts[m, GOOD]} retries={counts[m, RETRY]} "
            f"violations={counts[m, VIOLATION]}" for m in modes]
    return f"writer: {writer}; " + "; ".join(rows)


# ----------------------------------------------------------------------------- the tests

def test_snapshot_message_satisfies_the_invariant_after_decoding():
    from rtsig.decode import Decoder

    store = Store.in_memory(Settings(book_ring=4, trading_symbols=(SYMBOL,), max_symbols=4,
                                     trade_ring=1024, ticker_ring=64, event_ring=1024, workers=1))
    decoder = Decoder(store, 0, allow_new=False, capacity=8)
    for k in (1, 2, 4095, 4096, 4097, N_MESSAGES):
        decoder.add(depth20_message(k), 1_700_000_000_000_000_000)
        assert decoder.decode() == 1
        store.release_all()
        levels, nb, na, meta = store.latest_book(0)
        assert int(meta["last_update_id"]) == k
        assert snapshot_consistent(levels, nb, na, k)
        assert not snapshot_consistent(levels, nb, na, k + 4)  # another snapshot of the slot


def test_invariant_check_flags_a_torn_copy_made_by_hand():
    """A copy half of snapshot k and half of k+4 (the next write of the same slot) is caught,
    whichever part is torn: a level, a quantity, a price, a count or the update id."""
    def snap(k):
        levels = np.zeros((2, DEPTH_LEVELS, 2))
        base = 10000 + k % PRICE_PERIOD
        for i in range(DEPTH_LEVELS):
            levels[BID, i] = (base - i, k)
            levels[ASK, i] = (base + 1 + i, k)
        return levels

    old, new = snap(100), snap(104)
    assert snapshot_consistent(old, 20, 20, 100) and snapshot_consistent(new, 20, 20, 104)
    for cut in range(1, 2 * DEPTH_LEVELS):
        torn = new.copy()
        flat_old, flat_torn = old.reshape(-1, 2), torn.reshape(-1, 2)
        flat_torn[cut:] = flat_old[cut:]  # first `cut` levels new, the rest old
        assert not snapshot_consistent(torn, 20, 20, 104), cut
        assert not snapshot_consistent(torn, 20, 20, 100), cut
    only_qty = old.copy()
    only_qty[ASK, 7, QTY] = 104.0
    assert not snapshot_consistent(only_qty, 20, 20, 100)
    only_price = old.copy()
    only_price[BID, 19, PRICE] = new[BID, 19, PRICE]
    assert not snapshot_consistent(only_price, 20, 20, 100)
    assert not snapshot_consistent(old, 20, 20, 104)  # update id from the newer snapshot
    assert not snapshot_consistent(old, 19, 20, 100)


@pytest.mark.slow
def test_seqlock_reader_never_sees_a_torn_book(capsys):
    writer, counts = run_pair(SAFE_MODES, DURATION_S)
    figures = _figures(writer, counts, SAFE_MODES)
    with capsys.disabled():
        print(f"\n[torn-read] {figures}")
    assert writer["bad"] == 0, figures
    assert writer["written"] > 10 * N_MESSAGES // 8, figures
    assert counts[list(SAFE_MODES), VIOLATION].sum() == 0, figures
    assert counts[SAFE_NEWEST_SEQ_CST, GOOD] > 1000, figures
    assert counts[SAFE_NEWEST_ACQUIRE, GOOD] > 1000, figures
    assert counts[list(SAFE_MODES), GOOD].sum() > 1000, figures


@pytest.mark.slow
def test_negative_control_a_reader_without_the_seqlock_sees_torn_books(capsys):
    writer, counts = run_pair(UNSAFE_MODES, DURATION_S, stop_on_violations=100)
    figures = _figures(writer, counts, UNSAFE_MODES)
    with capsys.disabled():
        print(f"\n[torn-read control] {figures}")
    assert writer["bad"] == 0, figures
    assert counts[list(UNSAFE_MODES), VIOLATION].sum() > 0, figures
