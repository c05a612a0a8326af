"""Helpers of the shared-memory store tests (test_store.py, test_store_concurrency.py).

* ``unique_instance`` names a fresh ``RTSIG_INSTANCE`` (``t`` + 8 hex digits) and remembers it, so
  a test module can check at the end that none of its segments was left in ``/dev/shm``.
* ``created_store`` creates a store and always unlinks it.
* Child-process entry points for ``multiprocessing.get_context("spawn")``: they live in this
  importable module so a spawned child can find them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

from rtsig.settings import Settings
from rtsig.store import Store, segment_name

SHM = Path("/dev/shm")
CREATED_INSTANCES: list[str] = []
"""Every instance name handed out in this process (checked for leftovers at module teardown)."""


def unique_instance() -> str:
    name = f"t{uuid.uuid4().hex[:8]}"
    CREATED_INSTANCES.append(name)
    return name


def small_settings(**overrides) -> Settings:
    """A small store (fast to create) under a fresh instance name."""
    values = dict(instance=unique_instance(), max_symbols=16, book_ring=4, trade_ring=1024,
                  ticker_ring=64, event_ring=1024, workers=2,
                  trading_symbols=("BTCUSDT", "ETHUSDT"))
    values.update(overrides)
    return Settings(**values)


def fnv1a_upper(name: str) -> int:
    """FNV-1a (64 bit) of the upper-cased name: the store's symbol hash, computed independently."""
    h = 0xCBF29CE484222325
    for byte in name.upper().encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def int64_hash_names(prefix: str, n: int) -> list[str]:
    """``n`` symbol names whose hash is below 2**63.

    Works around the add_symbol OverflowError (see test_store.py
    ``test_add_symbol_of_a_high_hash_name_after_a_low_hash_name``) so the other symbol tests
    test their own behaviour whatever order the jitted lookup was first called in.
    """
    out, k = [], 0
    while len(out) < n:
        name = f"{prefix}{k}USDT"
        if fnv1a_upper(name) < 1 << 63:
            out.append(name)
        k += 1
    return out


def shm_path(instance: str) -> Path:
    return SHM / segment_name(instance)


def remove_segment(instance: str) -> bool:
    """Remove ``/dev/shm/rtsig-<instance>`` if present; True if it was there."""
    try:
        shm_path(instance).unlink()
        return True
    except FileNotFoundError:
        return False


def leftover_segments(instances: list[str]) -> list[str]:
    return [segment_name(i) for i in instances if shm_path(i).exists()]


def write_raw_segment(instance: str, data: bytes) -> Path:
    """A foreign "segment": a file in /dev/shm written directly (no resource tracker involved)."""
    path = shm_path(instance)
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def created_store(settings: Settings) -> Iterator[Store]:
    store = Store.create(settings)
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            store.unlink()
        with contextlib.suppress(Exception):
            store.close()
        remove_segment(settings.instance)


def stop_process(proc, timeout: float = 10.0) -> None:
    """Join a child; kill it if it does not end (only this child, by its pid)."""
    if proc is None:
        return
    proc.join(timeout)
    if proc.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)


# ----------------------------------------------------------------------------- child processes

NEW_SYMBOL = "S0USDT"
"""A symbol the creator adds after a child attached (its hash is below 2**63)."""

def child_attach_and_read(name: str, readonly: bool, ready, go, queue) -> None:
    """Attach, report what the store holds, wait for ``go``, report again, write a reply."""
    try:
        store = Store.attach(name, readonly=readonly)
        queue.put(("attached", {
            "header": bytes(store.header.tobytes()),
            "symbols": store.symbol_list(),
            "last_price": float(store.market[0]["last_price"]),
            "writeable": [getattr(store, r).flags.writeable for r in ("header", "market",
                                                                       "book_levels", "counters")],
        }))
        ready.set()
        if not go.wait(60):
            queue.put(("error", "go never came"))
            return
        after = {
            "last_price": float(store.market[0]["last_price"]),
            "level": float(store.book_levels[0, 1, 0, 3, 1]),
            "symbols": store.symbol_list(),
            "symbol_id": store.symbol_id(NEW_SYMBOL.lower()),
        }
        if not readonly:
            store.counters[1, 5] = 4242  # a reply the creator can see
        queue.put(("after", after))
        store.close()
    except BaseException as exc:  # report instead of dying silently
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def child_create_and_wait(settings: Settings, ready, stop, queue) -> None:
    """Create a store, mark it, and hold it until ``stop`` (or until killed)."""
    try:
        store = Store.create(settings)
        store.market[0]["last_price"] = 777.0
        queue.put(("created", os.getpid()))
        ready.set()
        stop.wait(120)
        store.unlink()
        store.close()
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        ready.set()


ATTACH_AND_EXIT = """
import sys
from rtsig.store import Store
store = Store.attach(sys.argv[1])
assert store.symbol_list() == sys.argv[2].split(",")
store.close()
"""
"""Run by a fresh interpreter (its own resource tracker): attach and exit."""

RAW_ATTACH_AND_EXIT = """
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(name=sys.argv[1])
shm.close()
"""
"""The control: what a naive attacher does on Python 3.11 (its tracker unlinks at exit)."""
