"""The store: one named shared-memory segment per instance, viewed through :mod:`rtsig.layout`.

The supervisor creates and unlinks it; every other process attaches. ``rtsig signals`` uses the
same layout over private memory (:meth:`Store.in_memory`), so the offline path runs exactly the
code of the live one.

Python 3.11's ``SharedMemory`` registers every segment it opens with the resource tracker, which
unlinks it when *that* process exits — an attaching worker would delete the supervisor's store.
Both creator and attachers therefore unregister; cleanup is explicit (:meth:`Store.unlink`), and
a segment left behind by a killed instance is recognised (its owner pid is gone or reused) and
reclaimed by the next :meth:`Store.create` of the same name.
"""

from __future__ import annotations

import _posixshmem
import logging
import os
import time
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from rtsig import counters
from rtsig.errors import LayoutMismatch, StoreError, StoreInUse
from rtsig.layout import (
    ASK,
    BID,
    HEADER_DTYPE,
    LAYOUT_VERSION,
    MAGIC,
    VENUE_BINANCE,
    VENUE_BINANCE_FUTURES,
    VENUE_FUTURES,
    VENUE_SPOT,
    Layout,
)
from rtsig.settings import MARKETS, SYMBOL_BYTES, Settings

log = logging.getLogger(__name__)

REGION_NAMES = (
    "header", "symbols", "symbol_names", "symbol_slots", "market", "book_meta", "book_levels",
    "trades", "tickers", "events", "event_message_ids", "event_cursors", "counters",
    "last_signal_ms", "pressure_seconds", "pressure_history", "feed_cursors", "dominance", "quotes",
    "transfers", "feed_name_counts", "venue_names", "exchange_names", "venue_quotes",
    "ofi_state", "ofi_history",
)


def segment_name(instance: str) -> str:
    """The shared-memory name of an instance (``/dev/shm/<name>`` on Linux)."""
    return f"rtsig-{instance}"


def process_start_ticks(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (0 if unknown), to detect pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def owner_alive(pid: int, start_ticks: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start_ticks == 0 or process_start_ticks(pid) in (0, start_ticks)


def _untrack(shm: shared_memory.SharedMemory) -> None:
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - tracker absent
        pass


def _shm_unlink(name: str) -> None:
    """Remove a segment without telling the resource tracker (it no longer tracks it)."""
    try:
        _posixshmem.shm_unlink("/" + name.lstrip("/"))
    except FileNotFoundError:
        pass


class Store:
    """Numpy views of one store; attribute per region (``store.market``, ``store.trades`` …)."""

    header: np.ndarray
    symbols: np.ndarray
    symbol_names: np.ndarray
    symbol_slots: np.ndarray
    market: np.ndarray
    book_meta: np.ndarray
    book_levels: np.ndarray
    trades: np.ndarray
    tickers: np.ndarray
    events: np.ndarray
    event_message_ids: np.ndarray
    event_cursors: np.ndarray
    counters: np.ndarray
    last_signal_ms: np.ndarray
    pressure_seconds: np.ndarray
    pressure_history: np.ndarray
    feed_cursors: np.ndarray
    dominance: np.ndarray
    quotes: np.ndarray
    transfers: np.ndarray
    feed_name_counts: np.ndarray
    venue_names: np.ndarray
    exchange_names: np.ndarray
    venue_quotes: np.ndarray
    ofi_state: np.ndarray
    ofi_history: np.ndarray

    def __init__(self, layout: Layout, buffer, shm: shared_memory.SharedMemory | None = None,
                 readonly: bool = False) -> None:
        self.layout = layout
        self._shm = shm
        self._buffer = buffer
        self.readonly = readonly
        for name, arr in layout.views(buffer, readonly=readonly).items():
            setattr(self, name, arr)
        self._name_cache: dict[str, int] = {}
        self._name_cache_count = 0
        self._name_cache_evictions = 0

    # ----- life cycle
    @classmethod
    def in_memory(cls, settings: Settings, n_workers: int | None = None) -> Store:
        """A private store (offline mode and tests): same layout, no shared memory."""
        layout = Layout.from_settings(settings, counters.N_COUNTERS)
        if n_workers is not None:
            layout = Layout(layout.max_symbols, layout.book_ring, layout.trade_ring,
                            layout.ticker_ring, layout.event_ring, n_workers, layout.n_counters)
        buffer = bytearray(layout.total_bytes)
        store = cls(layout, buffer)
        store._initialise(settings)
        return store

    @classmethod
    def create(cls, settings: Settings, name: str | None = None, register_symbols: bool = True) -> Store:
        """Create the instance's segment, reclaiming one left by a dead instance.

        ``register_symbols=False`` leaves the configured symbols to the caller: the supervisor has
        its warm-up child register them, as it never loads Numba itself.
        """
        name = name or segment_name(settings.instance)
        layout = Layout.from_settings(settings, counters.N_COUNTERS)
        try:
            shm = shared_memory.SharedMemory(name=name, create=True, size=layout.total_bytes)
        except FileExistsError:
            cls._reclaim(name)
            shm = shared_memory.SharedMemory(name=name, create=True, size=layout.total_bytes)
        _untrack(shm)
        store = cls(layout, shm.buf, shm)
        try:
            store._initialise(settings, register_symbols)
        except BaseException:
            store.unlink()
            store.close()
            raise
        return store

    @staticmethod
    def _reclaim(name: str) -> None:
        try:
            old = shared_memory.SharedMemory(name=name)
        except ValueError:  # an empty segment (a creator died before sizing it)
            log.warning("reclaiming empty shared memory %s", name)
            _shm_unlink(name)
            return
        _untrack(old)
        try:
            header = np.ndarray((1,), dtype=HEADER_DTYPE, buffer=old.buf)[0] \
                if old.size >= HEADER_DTYPE.itemsize else None
            if header is not None and int(header["magic"]) == MAGIC \
                    and owner_alive(int(header["owner_pid"]), int(header["owner_start_ticks"])):
                raise StoreInUse(
                    f"shared memory {name!r} belongs to running pid {int(header['owner_pid'])}; "
                    "stop it or choose another RTSIG_INSTANCE")
            log.warning("reclaiming stale shared memory %s left by a dead instance", name)
            del header
        finally:
            old.close()
        _shm_unlink(name)

    @classmethod
    def attach(cls, name: str, readonly: bool = False) -> Store:
        """Attach to a running instance's segment (read-only views for readers)."""
        try:
            shm = shared_memory.SharedMemory(name=name)
        except FileNotFoundError:
            raise StoreError(f"no shared memory named {name!r}: is `rtsig run` running?") from None
        except ValueError:
            raise LayoutMismatch(f"{name!r} is empty: not an rtsig store") from None
        _untrack(shm)
        if shm.size < HEADER_DTYPE.itemsize:
            shm.close()
            raise LayoutMismatch(f"{name!r} is smaller than an rtsig header")
        header = np.ndarray((1,), dtype=HEADER_DTYPE, buffer=shm.buf)[0]
        if int(header["magic"]) != MAGIC or int(header["layout_version"]) != LAYOUT_VERSION:
            shm.close()
            raise LayoutMismatch(f"{name!r} is not an rtsig store of layout version {LAYOUT_VERSION}")
        assert shm.buf is not None  # attached above (None only after close)
        layout = Layout.from_header(bytes(shm.buf[:HEADER_DTYPE.itemsize]), counters.N_COUNTERS)
        if layout.total_bytes > shm.size:
            shm.close()
            raise LayoutMismatch(f"{name!r} is smaller than its header says")
        return cls(layout, shm.buf, shm, readonly=readonly)

    def _initialise(self, settings: Settings, register_symbols: bool = True) -> None:
        h = self.header[0]
        h["owner_pid"] = os.getpid()
        h["owner_start_ticks"] = process_start_ticks(os.getpid())
        h["created_ns"] = time.time_ns()
        self.last_signal_ms[...] = np.iinfo(np.int64).min
        self.venue_quotes[...] = np.nan
        for venue, name in ((VENUE_BINANCE, "binance"), (VENUE_BINANCE_FUTURES, "binance_futures")):
            self.venue_names[venue, :len(name)] = np.frombuffer(name.encode(), dtype=np.uint8)
        self.feed_name_counts[0] = 2
        h["max_clock_skew_ms"] = int(settings.max_clock_skew_seconds * 1000)
        h["reference_max_age_ms"] = int(settings.reference_max_age_seconds * 1000)
        h["book_price_tolerance"] = settings.book_price_tolerance_percent / 100.0
        h["symbol_idle_ns"] = int(settings.symbol_idle_seconds * 1e9)
        self.layout.stamp_header(self.header)
        if register_symbols and settings.trading_symbols is not None:
            for symbol in settings.trading_symbols:
                self.add_symbol(symbol)

    def writable(self, region: str) -> np.ndarray:
        """A writable view of one region of a store attached read-only.

        The web processes attach read-only and write exactly two things: the config epoch in the
        header and their own counter row.
        """
        r = next(r for r in self.layout.regions() if r.name == region)
        return np.ndarray(r.shape, dtype=r.dtype, buffer=self._buffer, offset=r.offset)

    def close(self) -> None:
        """Drop this process's views (the segment stays for the others)."""
        for name in REGION_NAMES:
            if hasattr(self, name):
                delattr(self, name)
        self._buffer = None
        if self._shm is not None:
            self._shm.close()

    def unlink(self) -> None:
        """Remove the segment (supervisor only, after every process has stopped)."""
        if self._shm is not None:
            _shm_unlink(self._shm.name)

    @property
    def name(self) -> str | None:
        return self._shm.name if self._shm is not None else None

    # ----- symbols
    @property
    def symbol_count(self) -> int:
        return int(self.header[0]["symbol_count"])

    def add_symbol(self, symbol: str) -> int:
        """Register a symbol before data arrives (configured TRADING_SYMBOLS); its id."""
        # imported here: the supervisor and the web processes never load Numba
        from rtsig.decode import symbol_find, symbol_hash, symbol_insert

        raw = np.frombuffer(symbol.encode(), dtype=np.uint8)
        if not 0 < raw.size <= SYMBOL_BYTES:
            raise ValueError(f"symbol {symbol!r} must be 1-{SYMBOL_BYTES} bytes")
        h = np.uint64(symbol_hash(raw, 0, raw.size))  # keep it unsigned across the Python boundary
        sid = symbol_find(self.symbols, self.symbol_names, self.symbol_slots, raw, 0, raw.size, h,
                          VENUE_SPOT)
        if sid >= 0:
            return int(sid)
        sid = symbol_insert(self.header, self.symbols, self.symbol_names, self.symbol_slots, raw,
                            0, raw.size, h, self.layout.n_workers, VENUE_SPOT)
        if sid < 0:
            raise StoreError(f"symbol table full ({self.layout.max_symbols}); raise RTSIG_MAX_SYMBOLS")
        return int(sid)

    def symbol_name(self, sid: int) -> str:
        n = int(self.symbols[sid]["name_len"])
        return bytes(self.symbol_names[sid, :n]).decode("utf-8", "replace")

    def symbol_id(self, symbol: str) -> int | None:
        """Id of a symbol by name (upper-cased), or None; cached, refreshed as symbols appear.

        A name with spot and futures entries gives the spot one (its futures entry is found by
        :meth:`symbol_ids`). An eviction (under ``TRADING_SYMBOLS=*``) rebuilds the cache.
        """
        count = self.symbol_count
        evictions = int(self.header[0]["symbol_evictions"])
        if evictions != self._name_cache_evictions:
            self._name_cache, self._name_cache_count = {}, 0
            self._name_cache_evictions = evictions
        if count != self._name_cache_count:
            for sid in range(self._name_cache_count, count):
                name = self.symbol_name(sid)
                if name not in self._name_cache or int(self.symbols[sid]["venue"]) == VENUE_SPOT:
                    self._name_cache[name] = sid
            self._name_cache_count = count
        return self._name_cache.get(symbol.upper())

    def symbol_ids(self, symbol: str) -> dict[str, int]:
        """Every entry of a name, by market (``spot``, ``usdm``)."""
        name = symbol.upper()
        return {MARKETS[int(self.symbols[sid]["venue"]) - 1]: sid for sid in range(self.symbol_count)
                if int(self.symbols[sid]["venue"]) in (VENUE_SPOT, VENUE_FUTURES)
                and self.symbol_name(sid) == name}

    def symbol_market(self, sid: int) -> str:
        """``spot`` or ``usdm``: the market of a symbol entry's data."""
        return MARKETS[1] if int(self.symbols[sid]["venue"]) == VENUE_FUTURES else MARKETS[0]

    def symbol_list(self) -> list[str]:
        return [self.symbol_name(sid) for sid in range(self.symbol_count)]

    def release_all(self) -> None:
        """Mark every ring entry written so far as judged (no workers: tests, benchmarks)."""
        m = self.market
        m["book_done"], m["trade_done"], m["ticker_done"] = m["book_end"], m["trade_end"], m["ticker_end"]

    # ----- consistent reads for Python-level readers (web, tests)
    def latest_book(self, sid: int, retries: int = 100):
        """Copy of the newest order-book snapshot of ``sid`` via its seqlock, or None.

        Returns ``(levels[2, 20, 2], bid_count, ask_count, meta_record_copy)``.
        """
        for _ in range(retries):
            end = int(self.market[sid]["book_end"])
            if end == 0:
                return None
            pos = end - 1
            slot = pos & (self.layout.book_ring - 1)
            seq1 = int(self.book_meta[sid, slot]["seq"])
            levels = self.book_levels[sid, slot].copy()
            meta = self.book_meta[sid, slot].copy()
            seq2 = int(self.book_meta[sid, slot]["seq"])
            if seq1 == seq2 == 2 * pos + 2:
                return levels, int(meta["bid_count"]), int(meta["ask_count"]), meta
        return None

    def latest_books(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Consistent copies of the newest book of every symbol that has one, in one pass.

        Returns ``(sids, levels[n, 2, 20, 2], bid_counts, ask_counts, receipt_ns)``. The seqlock
        check of :meth:`latest_book` is applied to all slots at once; the few caught mid-write
        are read again one by one (a symbol whose book keeps changing under the reader is left
        out of this pass).
        """
        count = self.symbol_count
        ends = self.market["book_end"][:count].astype(np.int64)
        sids = np.flatnonzero(ends > 0)
        position = ends[sids] - 1
        slots = position & (self.layout.book_ring - 1)
        seq_before = self.book_meta["seq"][sids, slots]
        levels = self.book_levels[sids, slots]
        meta = self.book_meta[sids, slots]
        seq_after = self.book_meta["seq"][sids, slots]
        good = (seq_before == seq_after) & (seq_before == 2 * position + 2)
        bid_counts = meta["bid_count"].astype(np.int64)
        ask_counts = meta["ask_count"].astype(np.int64)
        receipt_ns = meta["receipt_ns"].astype(np.int64)
        for k in np.flatnonzero(~good):
            again = self.latest_book(int(sids[k]))
            if again is not None:
                levels[k], bid_counts[k], ask_counts[k] = again[0], again[1], again[2]
                receipt_ns[k] = int(again[3]["receipt_ns"])
                good[k] = True
        return sids[good], levels[good], bid_counts[good], ask_counts[good], receipt_ns[good]

    def book_sides(self, sid: int):
        """The newest book as two lists of (price, qty), bids then asks (tests, debugging)."""
        book = self.latest_book(sid)
        if book is None:
            return None
        levels, nb, na, _ = book
        return ([tuple(x) for x in levels[BID, :nb]], [tuple(x) for x in levels[ASK, :na]])
