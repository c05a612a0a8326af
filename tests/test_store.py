"""The shared-memory store: its segment, header and layout, attaching from other processes, stale
segments, foreign segments, and the symbol table.

Every test uses a fresh instance name (``t`` + 8 hex digits) and removes its segment; the module
fixture fails if any ``/dev/shm/rtsig-t…`` of this module is left behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from rtsig import counters
from rtsig.decode import symbol_hash
from rtsig.errors import LayoutMismatch, RtsigError, StoreError, StoreInUse
from rtsig.layout import ALIGN, DEPTH_LEVELS, HEADER_DTYPE, LAYOUT_VERSION, MAGIC, PRESSURE_HISTORY_S, Layout
from rtsig.settings import SYMBOL_BYTES, Settings
from rtsig.store import REGION_NAMES, Store, segment_name
from tests import store_helpers as H
from tests.store_helpers import created_store, small_settings, unique_instance

SPAWN = multiprocessing.get_context("spawn")
MiB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def no_segment_left_behind():
    first = len(H.CREATED_INSTANCES)
    yield
    mine = H.CREATED_INSTANCES[first:]
    left = H.leftover_segments(mine)
    for name in left:
        H.remove_segment(name.removeprefix("rtsig-"))
    assert left == [], f"segments left in /dev/shm: {left}"


@pytest.fixture
def store():
    with created_store(small_settings()) as s:
        yield s


# ----------------------------------------------------------------------------- create / header

def test_create_makes_the_named_segment_of_the_layout_size():
    settings = small_settings()
    with created_store(settings) as store:
        path = H.shm_path(settings.instance)
        assert store.name == f"rtsig-{settings.instance}" == segment_name(settings.instance)
        assert path.exists()
        assert path.stat().st_size == store.layout.total_bytes
        assert store.layout == Layout.from_settings(settings, counters.N_COUNTERS)


def test_header_magic_version_and_sizes():
    settings = small_settings(max_symbols=40, book_ring=8, trade_ring=2048, ticker_ring=128,
                              event_ring=4096, workers=3)
    with created_store(settings) as store:
        h = store.header[0]
        assert int(h["magic"]) == MAGIC == 0x5254_5349_4753_4D31
        assert int(h["layout_version"]) == LAYOUT_VERSION
        assert int(h["max_symbols"]) == 40
        assert int(h["total_bytes"]) == store.layout.total_bytes
        assert int(h["depth_levels"]) == DEPTH_LEVELS == 20
        assert (int(h["book_ring"]), int(h["trade_ring"]), int(h["ticker_ring"]),
                int(h["event_ring"])) == (8, 2048, 128, 4096)
        assert int(h["n_workers"]) == 3
        assert int(h["process_slots"]) == store.layout.process_slots >= 3 + 1
        assert int(h["owner_pid"]) == os.getpid()
        assert int(h["owner_start_ticks"]) > 0
        assert int(h["created_ns"]) > 0
        assert int(h["symbol_count"]) == 2
        assert int(h["config_epoch"]) == 0 and int(h["shutdown"]) == 0


def test_header_magic_spells_rtsigsm1():
    assert MAGIC.to_bytes(8, "big") == b"RTSIGSM1"


LAYOUT_CASES = [
    dict(),
    dict(max_symbols=1, book_ring=4, trade_ring=1024, ticker_ring=64, event_ring=1024, workers=1),
    dict(max_symbols=3, book_ring=1024, trade_ring=1024, ticker_ring=64, event_ring=1024,
         workers=5),
    dict(max_symbols=1000, workers=7),
]


@pytest.mark.parametrize("overrides", LAYOUT_CASES)
def test_regions_are_aligned_ordered_non_overlapping_and_inside(overrides):
    layout = Layout.from_settings(Settings(**overrides), counters.N_COUNTERS)
    regions = layout.regions()
    assert tuple(r.name for r in regions) == REGION_NAMES
    assert regions[0].name == "header" and regions[0].offset == 0
    for r in regions:
        assert r.offset % ALIGN == 0 and ALIGN == 64, r
        assert r.nbytes == int(np.prod(r.shape)) * r.dtype.itemsize
    for a, b in zip(regions, regions[1:]):
        assert a.offset + a.nbytes <= b.offset, (a, b)
    last = regions[-1]
    assert last.offset + last.nbytes <= layout.total_bytes
    assert layout.total_bytes % ALIGN == 0


@pytest.mark.parametrize("overrides", LAYOUT_CASES[:3])
def test_region_shapes_follow_the_settings(overrides):
    settings = Settings(**overrides)
    layout = Layout.from_settings(settings, counters.N_COUNTERS)
    shapes = {r.name: r.shape for r in layout.regions()}
    S, K = settings.max_symbols, settings.book_ring
    assert shapes["header"] == (1,)
    assert shapes["symbols"] == (S,)
    assert shapes["symbol_names"] == (S, SYMBOL_BYTES)
    assert shapes["symbol_slots"][0] >= 2 * S
    assert shapes["symbol_slots"][0] & (shapes["symbol_slots"][0] - 1) == 0
    assert shapes["market"] == (S,)
    assert shapes["book_meta"] == (S, K)
    assert shapes["book_levels"] == (S, K, 2, DEPTH_LEVELS, 2)
    assert shapes["trades"] == (S, settings.trade_ring)
    assert shapes["tickers"] == (S, settings.ticker_ring)
    assert shapes["events"] == (settings.workers, settings.event_ring)
    assert shapes["counters"] == (layout.process_slots, counters.N_COUNTERS)
    assert shapes["pressure_seconds"] == (PRESSURE_HISTORY_S,)
    assert shapes["pressure_history"] == (S, PRESSURE_HISTORY_S, 2)


def test_store_views_sit_at_their_region_offsets(store):
    base = store.header.ctypes.data
    for r in store.layout.regions():
        arr = getattr(store, r.name)
        assert arr.shape == r.shape and arr.dtype == r.dtype, r.name
        assert arr.ctypes.data - base == r.offset, r.name
        assert arr.ctypes.data % ALIGN == 0, r.name  # the mapping itself is page aligned


def test_default_store_memory_is_bounded():
    """Sanity bound on the segment for the default settings (not a timing test)."""
    for settings in (Settings(), Settings.from_env({})):
        total = Layout.from_settings(settings, counters.N_COUNTERS).total_bytes
        assert total < 600 * MiB, \
            f"default store is {total / MiB:.1f} MiB ({total} bytes, workers={settings.workers})"


def test_header_dtype_is_what_an_attacher_reads_first():
    # the header fits in the first region and is the only thing read before the sizes are known
    assert HEADER_DTYPE.itemsize <= Layout.from_settings(Settings(), 1).regions()[1].offset


# ----------------------------------------------------------------------------- attach

def test_attach_in_a_spawned_process_sees_the_same_bytes_and_later_writes(store):
    store.market[0]["last_price"] = 101.25
    ready, go, queue = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=H.child_attach_and_read,
                          args=(store.name, False, ready, go, queue))
    child.start()
    try:
        tag, first = queue.get(timeout=120)
        assert tag == "attached", first
        assert first["header"] == store.header.tobytes()
        assert first["symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert first["last_price"] == 101.25
        assert first["writeable"] == [True] * 4
        # writes made after the child attached
        store.market[0]["last_price"] = 202.5
        store.book_levels[0, 1, 0, 3, 1] = 3.75
        store.add_symbol(H.NEW_SYMBOL)
        go.set()
        tag, after = queue.get(timeout=60)
        assert tag == "after", after
        assert after == {"last_price": 202.5, "level": 3.75,
                         "symbols": ["BTCUSDT", "ETHUSDT", H.NEW_SYMBOL], "symbol_id": 2}
        H.stop_process(child)
        assert child.exitcode == 0
        # the child's write is visible here, and its exit left the segment in place
        assert int(store.counters[1, 5]) == 4242
        assert H.shm_path(store.name.removeprefix("rtsig-")).exists()
        again = Store.attach(store.name)
        assert again.symbol_list() == ["BTCUSDT", "ETHUSDT", H.NEW_SYMBOL]
        again.close()
    finally:
        H.stop_process(child)


def test_readonly_attach_in_a_spawned_process(store):
    ready, go, queue = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=H.child_attach_and_read, args=(store.name, True, ready, go, queue))
    child.start()
    try:
        tag, first = queue.get(timeout=120)
        assert tag == "attached", first
        assert first["writeable"] == [False] * 4
        go.set()
        tag, after = queue.get(timeout=60)
        assert tag == "after", after
        H.stop_process(child)
        assert child.exitcode == 0
    finally:
        H.stop_process(child)


def test_readonly_attach_gives_non_writeable_arrays(store):
    reader = Store.attach(store.name, readonly=True)
    try:
        assert reader.readonly
        for name in REGION_NAMES:
            arr = getattr(reader, name)
            assert not arr.flags.writeable, name
        with pytest.raises(ValueError):
            reader.market[0]["last_price"] = 1.0
        with pytest.raises(ValueError):
            reader.book_levels[0, 0, 0, 0, 0] = 1.0
        # but it sees the writer
        store.market[1]["last_price"] = 9.5
        assert float(reader.market[1]["last_price"]) == 9.5
    finally:
        reader.close()


def test_attaching_process_exit_does_not_remove_the_segment(store):
    """Python 3.11's resource tracker unlinks every segment a process opened when that process
    (and its tracker) exits; a fresh interpreter has its own tracker, so this is the real case."""
    store.market[0]["last_price"] = 55.0
    proc = subprocess.run([sys.executable, "-c", H.ATTACH_AND_EXIT, store.name, "BTCUSDT,ETHUSDT"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"leaked shared_memory" not in proc.stderr, proc.stderr.decode()
    assert H.shm_path(store.name.removeprefix("rtsig-")).exists()
    again = Store.attach(store.name)
    try:
        assert float(again.market[0]["last_price"]) == 55.0
    finally:
        again.close()


def test_control_a_naive_attacher_would_remove_the_segment():
    """Shows the previous test can fail: a bare ``SharedMemory(name)`` in another interpreter
    takes the segment with it when it exits (Python 3.11)."""
    settings = small_settings()
    with created_store(settings) as scratch:
        proc = subprocess.run([sys.executable, "-c", H.RAW_ATTACH_AND_EXIT, scratch.name],
                              capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        if H.shm_path(settings.instance).exists():
            pytest.skip("this Python's resource tracker does not unlink attached segments")


def test_attach_to_a_missing_name_is_a_store_error():
    name = segment_name(unique_instance())
    with pytest.raises(StoreError) as info:
        Store.attach(name)
    assert name in str(info.value)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, RtsigError)


def _foreign(data: bytes):
    instance = unique_instance()
    H.write_raw_segment(instance, data)
    return instance


def _header_bytes(size: int, **fields) -> bytes:
    header = np.zeros(1, dtype=HEADER_DTYPE)
    for k, v in fields.items():
        header[0][k] = v
    return header.tobytes() + bytes(size - HEADER_DTYPE.itemsize)


FOREIGN = {
    "random": lambda: np.random.default_rng(7).bytes(4096),
    "zeros": lambda: bytes(1 << 16),
    "text": lambda: b"PostgreSQL shared memory\n" * 200,
    "wrong_version": lambda: _header_bytes(4096, magic=MAGIC, layout_version=LAYOUT_VERSION + 1,
                                           max_symbols=1, book_ring=4, trade_ring=1024,
                                           ticker_ring=64, event_ring=1024, n_workers=1),
    "smaller_than_header_says": lambda: _header_bytes(
        4096, magic=MAGIC, layout_version=LAYOUT_VERSION, max_symbols=16, book_ring=4,
        trade_ring=1024, ticker_ring=64, event_ring=1024, n_workers=1),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_attach_to_a_foreign_segment_is_a_layout_mismatch(kind):
    instance = _foreign(FOREIGN[kind]())
    try:
        with pytest.raises(LayoutMismatch):
            Store.attach(segment_name(instance))
        assert H.shm_path(instance).exists()  # not ours to remove
    finally:
        H.remove_segment(instance)


@pytest.mark.parametrize("size", [0, 8])
def test_attach_to_a_tiny_foreign_segment_is_a_layout_mismatch(size):
    instance = _foreign(b"\x01" * size)
    try:
        with pytest.raises(LayoutMismatch):
            Store.attach(segment_name(instance))
    finally:
        H.remove_segment(instance)


def test_attach_to_a_store_of_another_layout_version_is_a_layout_mismatch():
    settings = small_settings()
    with created_store(settings) as store:
        store.header[0]["layout_version"] = LAYOUT_VERSION + 1
        with pytest.raises(LayoutMismatch):
            Store.attach(store.name)


# ----------------------------------------------------------------------------- ownership

def test_second_create_while_the_owner_is_alive_raises_store_in_use(store):
    store.market[0]["last_price"] = 3.5
    settings = small_settings(instance=store.name.removeprefix("rtsig-"))
    with pytest.raises(StoreInUse) as info:
        Store.create(settings)
    assert str(os.getpid()) in str(info.value)
    assert isinstance(info.value, StoreError)
    # the live store is untouched
    assert float(store.market[0]["last_price"]) == 3.5
    assert int(store.header[0]["magic"]) == MAGIC


def test_second_create_while_another_process_owns_it_raises_store_in_use():
    settings = small_settings()
    ready, stop, queue = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=H.child_create_and_wait, args=(settings, ready, stop, queue))
    child.start()
    try:
        tag, pid = queue.get(timeout=120)
        assert tag == "created", pid
        with pytest.raises(StoreInUse) as info:
            Store.create(settings)
        assert str(pid) in str(info.value)
        attached = Store.attach(segment_name(settings.instance))
        assert float(attached.market[0]["last_price"]) == 777.0  # still the child's store
        attached.close()
        stop.set()
        H.stop_process(child)
        assert child.exitcode == 0
        assert not H.shm_path(settings.instance).exists()  # the owner unlinked it
    finally:
        stop.set()
        H.stop_process(child)
        H.remove_segment(settings.instance)


def test_stale_segment_of_a_killed_owner_is_reclaimed(caplog):
    settings = small_settings()
    ready, stop, queue = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=H.child_create_and_wait, args=(settings, ready, stop, queue))
    child.start()
    try:
        tag, pid = queue.get(timeout=120)
        assert tag == "created", pid
        os.kill(pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        assert H.shm_path(settings.instance).exists()  # left behind
        with caplog.at_level(logging.WARNING, logger="rtsig.store"):
            with created_store(settings) as store:
                h = store.header[0]
                assert int(h["owner_pid"]) == os.getpid()
                assert float(store.market[0]["last_price"]) == 0.0  # a fresh store
                assert store.symbol_list() == ["BTCUSDT", "ETHUSDT"]
        assert any("reclaim" in r.getMessage() for r in caplog.records)
    finally:
        H.stop_process(child)
        H.remove_segment(settings.instance)


@pytest.mark.parametrize("owner", ["reused_pid", "zero_pid"])
def test_stale_segment_whose_owner_pid_is_not_the_owner_is_reclaimed(owner):
    settings = small_settings()
    old = Store.create(settings)
    try:
        if owner == "reused_pid":  # our pid is alive, but the start time is another process's
            old.header[0]["owner_start_ticks"] = int(old.header[0]["owner_start_ticks"]) + 12345
        else:
            old.header[0]["owner_pid"] = 0
        old.market[0]["last_price"] = 1.0
        old.close()
        with created_store(settings) as store:
            assert float(store.market[0]["last_price"]) == 0.0
            assert int(store.header[0]["owner_start_ticks"]) > 0
    finally:
        H.remove_segment(settings.instance)


@pytest.mark.parametrize("kind", ["random", "text", "tiny"])
def test_create_over_a_foreign_segment_of_the_same_name_reclaims_it(kind):
    data = b"\x07" * 8 if kind == "tiny" else FOREIGN[kind]()
    instance = _foreign(data)
    try:
        with created_store(small_settings(instance=instance)) as store:
            assert int(store.header[0]["magic"]) == MAGIC
    finally:
        H.remove_segment(instance)


def test_create_over_an_empty_stale_segment_reclaims_it():
    instance = _foreign(b"")
    try:
        with created_store(small_settings(instance=instance)) as store:
            assert int(store.header[0]["magic"]) == MAGIC
    finally:
        H.remove_segment(instance)


def test_failed_create_leaves_no_segment():
    settings = small_settings(max_symbols=2, trading_symbols=tuple(H.int64_hash_names("C", 3)))
    try:
        with pytest.raises(StoreError):
            Store.create(settings)
        assert not H.shm_path(settings.instance).exists()
    finally:
        H.remove_segment(settings.instance)


# ----------------------------------------------------------------------------- unlink / close

def test_unlink_removes_the_file_and_attach_then_fails():
    settings = small_settings()
    store = Store.create(settings)
    try:
        assert H.shm_path(settings.instance).exists()
        store.unlink()
        assert not H.shm_path(settings.instance).exists()
        store.unlink()  # idempotent
        with pytest.raises(StoreError):
            Store.attach(segment_name(settings.instance))
        store.close()
    finally:
        H.remove_segment(settings.instance)


def test_close_keeps_the_segment_for_the_others(store):
    other = Store.attach(store.name)
    other.close()
    assert not hasattr(other, "market")
    assert H.shm_path(store.name.removeprefix("rtsig-")).exists()
    assert store.symbol_list() == ["BTCUSDT", "ETHUSDT"]


def test_in_memory_store_has_the_same_layout():
    settings = small_settings()
    mem = Store.in_memory(settings)
    assert mem.name is None
    assert mem.layout == Layout.from_settings(settings, counters.N_COUNTERS)
    assert int(mem.header[0]["magic"]) == MAGIC
    assert mem.symbol_list() == ["BTCUSDT", "ETHUSDT"]
    assert not H.shm_path(settings.instance).exists()


# ----------------------------------------------------------------------------- symbols

def test_configured_symbols_are_registered_in_order(store):
    assert store.symbol_list() == ["BTCUSDT", "ETHUSDT"]
    assert store.symbol_count == 2
    assert store.symbol_id("BTCUSDT") == 0 and store.symbol_id("ethusdt") == 1
    assert store.symbol_id("XRPUSDT") is None


def test_independent_hash_matches_the_store():
    for name in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "btcusdt"):
        raw = np.frombuffer(name.encode(), dtype=np.uint8)
        assert int(symbol_hash(raw, 0, raw.size)) == H.fnv1a_upper(name)


def test_add_symbol_returns_ids_and_is_idempotent_and_case_insensitive(store):
    new = H.NEW_SYMBOL
    assert store.symbol_id(new) is None  # fills the name cache before the add
    assert store.add_symbol(new) == 2
    assert store.add_symbol(new) == 2
    assert store.add_symbol(new.lower()) == 2
    assert store.add_symbol("btcusdt") == 0
    assert store.symbol_count == 3
    assert store.symbol_id(new) == 2  # the cache notices the new symbol
    assert store.symbol_list() == ["BTCUSDT", "ETHUSDT", new]
    assert store.symbol_name(2) == new
    assert int(store.symbols[2]["name_hash"]) == H.fnv1a_upper(new)
    assert int(store.symbols[2]["name_len"]) == len(new)


def test_symbols_are_spread_over_the_workers(store):
    for name in H.int64_hash_names("W", 3):
        store.add_symbol(name)
    workers = [int(store.symbols[sid]["worker"]) for sid in range(store.symbol_count)]
    assert workers == [sid % store.layout.n_workers for sid in range(store.symbol_count)]


def test_no_symbols_registered_when_all_are_allowed():
    with created_store(small_settings(trading_symbols=None)) as store:
        assert store.symbol_list() == [] and store.symbol_count == 0


def test_symbol_table_full_is_a_store_error():
    with created_store(small_settings(max_symbols=4, trading_symbols=None)) as store:
        names = H.int64_hash_names("F", 5)
        assert [store.add_symbol(n) for n in names[:4]] == [0, 1, 2, 3]
        with pytest.raises(StoreError) as info:
            store.add_symbol(names[4])
        assert "RTSIG_MAX_SYMBOLS" in str(info.value)
        # existing symbols still resolve, the count did not move
        assert store.add_symbol(names[2]) == 2
        assert store.symbol_count == 4
        assert store.symbol_list() == names[:4]
        assert store.symbol_id(names[4]) is None


def test_many_symbols_round_trip_through_the_hash_table():
    with created_store(small_settings(max_symbols=600, trading_symbols=None)) as store:
        names = H.int64_hash_names("X", 600)
        for sid, n in enumerate(names):
            assert store.add_symbol(n) == sid
        assert store.symbol_list() == names
        assert all(store.symbol_id(n.lower()) == sid for sid, n in enumerate(names))


HIGH_HASH_SCRIPT = """
from rtsig.settings import Settings
from rtsig.store import Store
# BTCUSDT's hash is below 2**63, SOLUSDT's above: the first fixes the jitted lookup's type
store = Store.in_memory(Settings(max_symbols=16, trading_symbols=("BTCUSDT", "SOLUSDT")))
assert store.symbol_list() == ["BTCUSDT", "SOLUSDT"], store.symbol_list()
print("ok")
"""


def test_add_symbol_of_a_high_hash_name_after_a_low_hash_name():
    assert H.fnv1a_upper("BTCUSDT") < 1 << 63 <= H.fnv1a_upper("SOLUSDT")
    proc = subprocess.run([sys.executable, "-c", HIGH_HASH_SCRIPT], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == b"ok", proc.stderr.decode()[-600:]


@pytest.mark.parametrize("bad", ["", "X" * (SYMBOL_BYTES + 1)])
def test_add_symbol_rejects_empty_and_too_long_names(store, bad):
    with pytest.raises(ValueError):
        store.add_symbol(bad)
    assert store.symbol_count == 2


def test_longest_symbol_fits(store):
    name = next(n for n in ("Y" * SYMBOL_BYTES, "Z" * SYMBOL_BYTES, "Q" * SYMBOL_BYTES)
                if H.fnv1a_upper(n) < 1 << 63)
    sid = store.add_symbol(name)
    assert store.symbol_name(sid) == name
