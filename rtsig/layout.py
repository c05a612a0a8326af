"""The shared-memory store's layout, declared once as aligned numpy dtypes.

Every process (ingest, workers, web, the offline ``rtsig signals``) views the same bytes through
:func:`Layout.views`; nothing is pickled between processes. A region is a numpy array of a fixed
dtype and shape at a 64-byte aligned offset; the header at offset 0 carries a magic number, the
layout version and the sizes, so an attacher can tell a foreign or outdated segment.

Positions, not indices: every ring entry is addressed by its *position* (0, 1, 2, … since the
store was created); its slot is ``position & (capacity - 1)``. Events carry positions, so a worker
judges each event on the entry that was written for it, and can tell when that entry has since
been overwritten (an overrun) instead of silently reading newer data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtsig.registry import REALTIME_IDS
from rtsig.settings import SYMBOL_BYTES, Settings

MAGIC = 0x5254_5349_4753_4D31  # "RTSIGSM1"
LAYOUT_VERSION = 6  # 6: order-flow-imbalance state (ofi_state, ofi_history), nine strategies
ALIGN = 64
DEPTH_LEVELS = 20
"""Levels per side kept for each order-book snapshot (Binance partial depth sends at most 20)."""
MESSAGE_ID_BYTES = 47
"""Longest input ``message_id`` carried into a signal (a uuid4 is 36)."""
MAX_PROCESS_SLOTS_EXTRA = 4  # supervisor, ingest, web aggregate, offline
N_REALTIME = len(REALTIME_IDS)
PRESSURE_HISTORY_S = 3600
"""Seconds of per-symbol pressure/imbalance history (the API's longest timeframe, 1 h)."""
PRESSURE, IMBALANCE = 0, 1
"""Columns of ``pressure_history``: net pressure (−100…100) and imbalance ratio (−1…1)."""

# Book sides and level columns of ``book_levels[symbol, slot, side, level, column]``.
BID, ASK = 0, 1
PRICE, QTY = 0, 1

# Market kinds: a symbol's entry is (name, venue), so spot and USD-M futures data of one name
# have separate books, trades, tickers and cool-downs (docs/CONTRACT.md §2a).
VENUE_UNKNOWN, VENUE_SPOT, VENUE_FUTURES = 0, 1, 2

HEADER_DTYPE = np.dtype([
    ("magic", "u8"),
    ("layout_version", "u4"),
    ("max_symbols", "i4"),
    ("total_bytes", "i8"),
    ("owner_pid", "i8"),
    ("owner_start_ticks", "i8"),  # /proc/<pid>/stat start time: tells a reused pid apart
    ("created_ns", "i8"),
    ("depth_levels", "i4"),
    ("book_ring", "i4"),
    ("trade_ring", "i4"),
    ("ticker_ring", "i4"),
    ("event_ring", "i4"),
    ("n_workers", "i4"),
    ("process_slots", "i4"),
    ("symbol_count", "i4"),  # written by the ingest only, after the symbol's row is complete
    ("config_epoch", "i8"),  # bumped by whoever changes strategy configuration
    ("shutdown", "i8"),  # set by the supervisor: stop taking messages
    # the decoder's plausibility bounds (docs/CONTRACT.md §2a), from the settings of the creator
    ("max_clock_skew_ms", "i8"),
    ("reference_max_age_ms", "i8"),
    ("book_price_tolerance", "f8"),  # a fraction (RTSIG_BOOK_PRICE_TOLERANCE_PERCENT / 100)
    ("symbol_idle_ns", "i8"),
    ("symbol_evictions", "i8"),  # bumped by the ingest each time a symbol id is given to a new symbol
], align=True)

SYMBOL_DTYPE = np.dtype([
    ("name_hash", "u8"),
    ("name_len", "i4"),  # the name's bytes are in the ``symbol_names`` region
    ("worker", "i4"),
    ("venue", "i4"),  # VENUE_SPOT or VENUE_FUTURES: part of the key, spot and futures never mix
    ("generation", "i4"),  # +1 each time this id is given to another symbol (eviction)
], align=True)

BOOK_META_DTYPE = np.dtype([
    ("seq", "i8"),  # 2·position + 1 while being written, 2·position + 2 when complete
    ("last_update_id", "i8"),
    ("event_time_ms", "i8"),
    ("receipt_ns", "i8"),
    ("bid_count", "i4"),
    ("ask_count", "i4"),
], align=True)

MARKET_DTYPE = np.dtype([
    # ring cursors: entries [begin - capacity, end) exist; begin > end while one is being written
    ("book_end", "i8"),
    ("trade_begin", "i8"),
    ("trade_end", "i8"),
    ("ticker_begin", "i8"),
    ("ticker_end", "i8"),
    # how far the owning worker has judged each ring (written by the worker only): the ingest
    # never overwrites an entry a worker still needs, it waits (backpressure) instead
    ("book_done", "i8"),
    ("trade_done", "i8"),
    ("ticker_done", "i8"),
    # quotes: best bid/ask (bookTicker) and mark price (markPrice), under their own seqlock
    ("quote_seq", "i8"),
    ("best_bid", "f8"),
    ("best_bid_qty", "f8"),
    ("best_ask", "f8"),
    ("best_ask_qty", "f8"),
    ("quote_update_id", "i8"),
    ("quote_time_ms", "i8"),
    ("mark_price", "f8"),
    ("index_price", "f8"),
    ("funding_rate", "f8"),
    ("mark_time_ms", "i8"),
    ("last_price", "f8"),  # from tickers and mini tickers
    ("last_price_time_ms", "i8"),
    ("last_event_time_ms", "i8"),
    ("last_receipt_ns", "i8"),
], align=True)

TRADE_DTYPE = np.dtype([
    ("event_time_ms", "i8"),
    ("trade_id", "i8"),
    ("price", "f8"),
    ("quantity", "f8"),
    ("is_buyer_maker", "u1"),  # Binance `m`: true means the trade was seller-initiated
], align=True)

TICKER_DTYPE = np.dtype([
    ("event_time_ms", "i8"),
    ("last_price", "f8"),
    ("base_volume", "f8"),
    ("quote_volume", "f8"),
], align=True)

EVENT_DTYPE = np.dtype([
    ("position", "i8"),  # position of the entry this event wrote in its kind's ring
    ("receipt_ns", "i8"),
    ("event_time_ms", "i8"),
    ("symbol", "i4"),
    ("kind", "i4"),
], align=True)
"""An event; its input ``message_id`` is in the parallel ``event_message_ids`` region
(byte 0 the length, then up to MESSAGE_ID_BYTES bytes)."""

# ----- feeds of the market-logic strategies (docs/CONTRACT.md §2c; rtsig.feeds)
FEED_DOMINANCE, FEED_QUOTES, FEED_TRANSFERS = 0, 1, 2
FEED_NAMES = ("dominance", "quotes", "onchain")
"""The three feeds, in the order of ``Settings.feed_subjects`` and of the feed counters."""
CHAIN_BTC, CHAIN_ETH = 0, 1
CHAINS = ("btc", "eth")
CHAIN_SYMBOLS = ("BTCUSDT", "ETHUSDT")
"""The Binance symbol an on-chain signal of each chain is about."""
DIRECTION_TO_EXCHANGE, DIRECTION_FROM_EXCHANGE, DIRECTION_OTHER = 0, 1, 2
DIRECTIONS = ("to_exchange", "from_exchange", "other")
DOMINANCE_RING = 16384
"""Dominance samples kept: at one a minute, 11 days (window_hours is at most 168 h = 7 days)."""
QUOTE_RING = 65536
"""Venue quotes (feed quotes and mirrored USD-M futures books) kept for the workers to judge."""
TRANSFER_RING = 8192
"""Directional transfers kept per chain: the exchange-flow window never reaches further back."""
MAX_VENUES = 32
VENUE_BINANCE, VENUE_BINANCE_FUTURES = 0, 1
"""Venue numbers of the spread strategy: Binance spot (the trading venue: its newest spot book)
and Binance USD-M futures (its newest futures book); quote-feed venues get 2, 3, … on first sight."""
MAX_EXCHANGES = 64
NAME_BYTES = 24
SOURCE_BYTES = 24
TXID_BYTES = 80
# feed_cursors rows (BEGIN/END columns, like the trade ring: begin > end while one is written)
RING_DOMINANCE, RING_QUOTES, RING_TRANSFERS_BTC, RING_TRANSFERS_ETH = 0, 1, 2, 3
CURSOR_BEGIN, CURSOR_END = 0, 1
# columns of venue_quotes[symbol, venue, :]
QUOTE_BID, QUOTE_ASK, QUOTE_TIME = 0, 1, 2
# order_flow_imbalance's per-symbol state (kernels/order_flow_imbalance.py): written by the worker
# that owns the symbol only, in event order, like venue_quotes. ofi_state[symbol, :] holds the
# previous judged book's best levels and how many contributions were ever appended;
# ofi_history[symbol, n % OFI_HISTORY, :] the n-th contribution (event time, e_n, best-level depth).
OFI_HISTORY = 256
OFI_PREV_BID, OFI_PREV_BID_QTY, OFI_PREV_ASK, OFI_PREV_ASK_QTY, OFI_COUNT = 0, 1, 2, 3, 4
OFI_STATE_WIDTH = 5
OFI_TIME, OFI_CONTRIBUTION, OFI_DEPTH = 0, 1, 2
# event kinds of feed events (beside codes.KIND_*, which the decoder counts per kind)
KIND_DOMINANCE = 20
KIND_QUOTE = 21
KIND_TRANSFER_BTC = 22
KIND_TRANSFER_ETH = 23

DOMINANCE_DTYPE = np.dtype([
    ("ts_ms", "i8"),
    ("dominance", "f8"),  # BTC's share of the total crypto market cap, %
    ("price", "f8"),  # BTCUSDT's newest Binance price when the sample arrived; NaN: none
    ("source_len", "i4"),
    ("source", "u1", (SOURCE_BYTES,)),
], align=True)

QUOTE_DTYPE = np.dtype([
    ("ts_ms", "i8"),
    ("bid", "f8"),
    ("ask", "f8"),
    ("symbol", "i4"),  # the spot symbol's id
    ("venue", "i4"),  # index into venue_names
], align=True)

TRANSFER_DTYPE = np.dtype([
    ("ts_ms", "i8"),
    ("value", "f8"),  # coins
    ("price", "f8"),  # the chain symbol's newest Binance price when it arrived; NaN: none
    ("direction", "i4"),  # DIRECTION_*
    ("exchange", "i4"),  # index into exchange_names, -1 for none
    ("txid_len", "i4"),
    ("txid", "u1", (TXID_BYTES,)),
], align=True)

# Event ring cursors, one cache line each so the ingest and a worker never share one.
CURSOR_HEAD, CURSOR_TAIL, CURSOR_SLEEPING = 0, 8, 16
CURSOR_SILENT = 1
CURSOR_PUBLISHED = 9
"""Written by the worker beside its tail (JetStream mode): every signal of the events before this
ring position is on the wire — a NATS flush confirmed it — so their input may be acknowledged."""
"""Written by the ingest beside the head: events before this ring position are judged without
publishing (JetStream mode's history rebuild re-judges input whose signals were already sent)."""
CURSOR_WIDTH = 24


@dataclass(frozen=True)
class Region:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Layout:
    """Sizes of one store and the position of each region in its bytes."""

    max_symbols: int
    book_ring: int
    trade_ring: int
    ticker_ring: int
    event_ring: int
    n_workers: int
    n_counters: int

    @classmethod
    def from_settings(cls, settings: Settings, n_counters: int) -> Layout:
        return cls(settings.max_symbols, settings.book_ring, settings.trade_ring,
                   settings.ticker_ring, settings.event_ring, settings.workers, n_counters)

    def lag_limits(self, max_trade_window: int) -> np.ndarray:
        """How many entries a ring may run ahead of its worker: ``[book, trade, ticker]``.

        A book event needs only its own slot; a trade event needs the ``momentum_window``
        entries before it (at least half the ring is kept for that); a ticker window is bounded
        by half the ring.
        """
        trade = max(self.trade_ring // 2, self.trade_ring - max_trade_window)
        return np.array([self.book_ring, trade, self.ticker_ring // 2], dtype=np.int64)

    @property
    def process_slots(self) -> int:
        """Counter rows: one per worker plus supervisor, ingest, web and offline."""
        return self.n_workers + MAX_PROCESS_SLOTS_EXTRA

    @property
    def symbol_slots(self) -> int:
        """Open-addressing hash table size: a power of two at least twice the symbols."""
        size = 16
        while size < 2 * self.max_symbols:
            size *= 2
        return size

    def regions(self) -> tuple[Region, ...]:
        S, W = self.max_symbols, self.n_workers
        specs: list[tuple[str, np.dtype, tuple[int, ...]]] = [
            ("header", HEADER_DTYPE, (1,)),
            ("symbols", SYMBOL_DTYPE, (S,)),
            ("symbol_names", np.dtype("u1"), (S, SYMBOL_BYTES)),
            ("symbol_slots", np.dtype("i4"), (self.symbol_slots,)),
            ("market", MARKET_DTYPE, (S,)),
            ("book_meta", BOOK_META_DTYPE, (S, self.book_ring)),
            ("book_levels", np.dtype("f8"), (S, self.book_ring, 2, DEPTH_LEVELS, 2)),
            ("trades", TRADE_DTYPE, (S, self.trade_ring)),
            ("tickers", TICKER_DTYPE, (S, self.ticker_ring)),
            ("events", EVENT_DTYPE, (W, self.event_ring)),
            ("event_message_ids", np.dtype("u1"), (W, self.event_ring, MESSAGE_ID_BYTES + 1)),
            ("event_cursors", np.dtype("i8"), (W, CURSOR_WIDTH)),
            ("counters", np.dtype("i8"), (self.process_slots, self.n_counters)),
            ("last_signal_ms", np.dtype("i8"), (S, N_REALTIME, 2)),
            ("pressure_seconds", np.dtype("i8"), (PRESSURE_HISTORY_S,)),
            ("pressure_history", np.dtype("f4"), (S, PRESSURE_HISTORY_S, 2)),
            # feeds (rtsig.feeds): written by the ingest only, except venue_quotes (below)
            ("feed_cursors", np.dtype("i8"), (4, 2)),
            ("dominance", DOMINANCE_DTYPE, (DOMINANCE_RING,)),
            ("quotes", QUOTE_DTYPE, (QUOTE_RING,)),
            ("transfers", TRANSFER_DTYPE, (len(CHAINS), TRANSFER_RING)),
            ("feed_name_counts", np.dtype("i8"), (2,)),  # venues, exchanges named so far
            ("venue_names", np.dtype("u1"), (MAX_VENUES, NAME_BYTES)),
            ("exchange_names", np.dtype("u1"), (MAX_EXCHANGES, NAME_BYTES)),
            # the newest quote of each venue per spot symbol, as of the last event its worker
            # judged: written by the worker that owns the symbol only, in event order
            ("venue_quotes", np.dtype("f8"), (S, MAX_VENUES, 3)),
            # order_flow_imbalance: owned by the symbol's worker too (zero: no previous book)
            ("ofi_state", np.dtype("f8"), (S, OFI_STATE_WIDTH)),
            ("ofi_history", np.dtype("f8"), (S, OFI_HISTORY, 3)),
        ]
        out, offset = [], 0
        for name, dtype, shape in specs:
            region = Region(name, dtype, shape, offset)
            out.append(region)
            offset = _align(offset + region.nbytes)
        return tuple(out)

    @property
    def total_bytes(self) -> int:
        last = self.regions()[-1]
        return _align(last.offset + last.nbytes)

    def views(self, buffer: memoryview | bytearray, readonly: bool = False) -> dict[str, np.ndarray]:
        """One numpy array per region over ``buffer`` (no copy)."""
        arrays = {}
        for r in self.regions():
            arr = np.ndarray(r.shape, dtype=r.dtype, buffer=buffer, offset=r.offset)
            if readonly:
                arr.flags.writeable = False
            arrays[r.name] = arr
        return arrays

    def stamp_header(self, header: np.ndarray) -> None:
        """Write the sizes into a new store's header (magic last: it marks the store complete)."""
        h = header[0]
        h["layout_version"] = LAYOUT_VERSION
        h["max_symbols"] = self.max_symbols
        h["total_bytes"] = self.total_bytes
        h["depth_levels"] = DEPTH_LEVELS
        h["book_ring"] = self.book_ring
        h["trade_ring"] = self.trade_ring
        h["ticker_ring"] = self.ticker_ring
        h["event_ring"] = self.event_ring
        h["n_workers"] = self.n_workers
        h["process_slots"] = self.process_slots
        h["magic"] = MAGIC

    @classmethod
    def from_header(cls, header_bytes: bytes, n_counters: int) -> Layout:
        """Read the sizes back from an existing store's header."""
        h = np.frombuffer(header_bytes[:HEADER_DTYPE.itemsize], dtype=HEADER_DTYPE)[0]
        return cls(int(h["max_symbols"]), int(h["book_ring"]), int(h["trade_ring"]),
                   int(h["ticker_ring"]), int(h["event_ring"]), int(h["n_workers"]), n_counters)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
