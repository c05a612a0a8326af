"""The feeds' way into the store: a feed message → its ring → an event for the owning worker.

Used by the live ingest (:class:`rtsig.ingest.Ingest`, for frames of the feed subjects) and by
``rtsig signals`` (:class:`rtsig.offline.OfflineRun`, for ``{"subject", "data"}`` lines), in
arrival order with the market data: a run of market messages goes through the jitted decoder, a
feed message through :meth:`FeedPath.handle`, one after the other, so the workers see exactly
the order the offline run sees.

* A **dominance sample** goes to the ``dominance`` ring, with BTCUSDT's newest Binance price at
  that moment (the single writer reads it: no seqlock), and becomes a ``KIND_DOMINANCE`` event of
  BTCUSDT.
* A **venue quote** goes to the ``quotes`` ring and becomes a ``KIND_QUOTE`` event of its spot
  symbol; the owning worker keeps the venue's newest quote in ``venue_quotes`` (in event order).
* A **transfer** with a direction goes to its chain's ring and becomes a ``KIND_TRANSFER_*``
  event of BTCUSDT / ETHUSDT, with that symbol's price; an ``other`` transfer is counted only.
* A **USD-M futures book** (a decoded depth event of a futures symbol) is mirrored by
  :func:`mirror_futures_books` as a quote of venue ``binance_futures`` of the same name's spot
  symbol, placed right after the book's own event (no adapter needed).

Entries are written like the trade ring: ``begin`` bumped, release fence, entry, release fence,
``end`` bumped; a worker that read an entry checks ``begin`` afterwards (an overrun if the ingest
has since started overwriting it).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from numba import njit

from rtsig import codes
from rtsig import counters as C
from rtsig.decode import shard_of, symbol_find, symbol_hash
from rtsig.errors import StoreError
from rtsig.feeds import messages as M
from rtsig.layout import (
    ASK,
    BID,
    CHAIN_SYMBOLS,
    CURSOR_BEGIN,
    CURSOR_END,
    DIRECTION_OTHER,
    EVENT_DTYPE,
    FEED_DOMINANCE,
    FEED_NAMES,
    FEED_QUOTES,
    FEED_TRANSFERS,
    KIND_DOMINANCE,
    KIND_QUOTE,
    KIND_TRANSFER_BTC,
    MAX_EXCHANGES,
    MAX_VENUES,
    MESSAGE_ID_BYTES,
    NAME_BYTES,
    PRICE,
    RING_DOMINANCE,
    RING_QUOTES,
    RING_TRANSFERS_BTC,
    VENUE_BINANCE_FUTURES,
    VENUE_FUTURES,
    VENUE_SPOT,
)
from rtsig.logs import RateLimiter
from rtsig.seqlock import release_fence

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- jitted writers

@njit(cache=True)
def binance_price(market, trades, book_meta, book_levels, sid):
    """The symbol's newest Binance price (docs/STRATEGIES.md, market-logic): its newest trade's,
    else the mid of its newest book, else its ticker's last price ``c``; NaN if none. Called by
    the store's single writer (the ingest, or the offline runner), so no seqlock is needed."""
    m = market[sid]
    if m.trade_end > 0:
        return trades[sid, (m.trade_end - 1) & (trades.shape[1] - 1)].price
    if m.book_end > 0:
        slot = (m.book_end - 1) & (book_meta.shape[1] - 1)
        return (book_levels[sid, slot, BID, 0, PRICE] + book_levels[sid, slot, ASK, 0, PRICE]) / 2.0
    if m.last_price_time_ms > 0 and m.last_price > 0.0:
        return m.last_price
    return np.nan


@njit(cache=True)
def _open(cursors, ring):
    pos = cursors[ring, CURSOR_END]
    cursors[ring, CURSOR_BEGIN] = pos + 1
    release_fence()
    return pos


@njit(cache=True)
def _close(cursors, ring, pos):
    release_fence()
    cursors[ring, CURSOR_END] = pos + 1


@njit(cache=True)
def push_dominance(ring, cursors, ts_ms, dominance, price, source, source_len):
    pos = _open(cursors, RING_DOMINANCE)
    e = ring[pos & (ring.shape[0] - 1):][:1]
    e[0].ts_ms = ts_ms
    e[0].dominance = dominance
    e[0].price = price
    e[0].source_len = source_len
    for k in range(source_len):
        e[0].source[k] = source[k]
    _close(cursors, RING_DOMINANCE, pos)
    return pos


@njit(cache=True)
def push_quote(ring, cursors, ts_ms, bid, ask, symbol, venue):
    pos = _open(cursors, RING_QUOTES)
    e = ring[pos & (ring.shape[0] - 1):][:1]
    e[0].ts_ms = ts_ms
    e[0].bid = bid
    e[0].ask = ask
    e[0].symbol = symbol
    e[0].venue = venue
    _close(cursors, RING_QUOTES, pos)
    return pos


@njit(cache=True)
def push_transfer(rings, cursors, chain, ts_ms, value, price, direction, exchange, txid, txid_len):
    ring = rings[chain]
    which = RING_TRANSFERS_BTC + chain
    pos = _open(cursors, which)
    e = ring[pos & (ring.shape[0] - 1):][:1]
    e[0].ts_ms = ts_ms
    e[0].value = value
    e[0].price = price
    e[0].direction = direction
    e[0].exchange = exchange
    e[0].txid_len = txid_len
    for k in range(txid_len):
        e[0].txid[k] = txid[k]
    _close(cursors, which, pos)
    return pos


@njit(cache=True)
def mirror_futures_books(events, ids, count, out_events, out_ids, symbols, symbol_names,
                         symbol_slots, book_meta, book_levels, quotes, cursors, counters):
    """Copy ``events[:count]`` to ``out_events``, each USD-M futures book followed by a
    ``KIND_QUOTE`` event of its name's spot symbol (venue ``binance_futures``, the book's best
    bid and ask, its message id). Returns how many were written, or -1 when no event is a
    futures book (the caller then routes ``events`` as they are: nothing is copied)."""
    any_futures = False
    for j in range(count):
        if events[j].kind == codes.KIND_DEPTH and symbols[events[j].symbol].venue == VENUE_FUTURES:
            any_futures = True
            break
    if not any_futures:
        return -1
    book_mask = book_meta.shape[1] - 1
    width = ids.shape[1]
    k = 0
    for j in range(count):
        out_events[k] = events[j]
        for b in range(width):
            out_ids[k, b] = ids[j, b]
        k += 1
        ev = events[j]
        if ev.kind != codes.KIND_DEPTH or symbols[ev.symbol].venue != VENUE_FUTURES:
            continue
        fsid = ev.symbol
        name = symbol_names[fsid]
        n = symbols[fsid].name_len
        spot = symbol_find(symbols, symbol_names, symbol_slots, name, 0, n, symbol_hash(name, 0, n),
                           VENUE_SPOT)
        if spot < 0:
            continue
        slot = ev.position & book_mask
        bid = book_levels[fsid, slot, BID, 0, PRICE]
        ask = book_levels[fsid, slot, ASK, 0, PRICE]
        pos = push_quote(quotes, cursors, ev.event_time_ms, bid, ask, spot, VENUE_BINANCE_FUTURES)
        out_events[k].position = pos
        out_events[k].receipt_ns = ev.receipt_ns
        out_events[k].event_time_ms = ev.event_time_ms
        out_events[k].symbol = spot
        out_events[k].kind = KIND_QUOTE
        for b in range(width):
            out_ids[k, b] = ids[j, b]
        k += 1
        counters[C.FEED_QUOTES_MIRRORED] += 1
    return k


# ----------------------------------------------------------------------------- the ingest's side

class FeedPath:
    """Feed messages into the store, one at a time; the event to route is in :attr:`events`."""

    def __init__(self, store, settings, counter_row: int) -> None:
        self.store = store
        self.settings = settings
        self.row = store.counters[counter_row]
        self.subjects: tuple[str, ...] = tuple(settings.feed_subjects)
        self.max_skew_ms = int(settings.max_clock_skew_seconds * 1000)
        self.allow_new = settings.trading_symbols is None
        self.shard_index, self.shard_count = settings.shard_index, settings.shard_count
        self.events = np.zeros(1, dtype=EVENT_DTYPE)
        self.ids = np.zeros((1, MESSAGE_ID_BYTES + 1), dtype=np.uint8)
        self._mirror_events = np.zeros(0, dtype=EVENT_DTYPE)
        self._mirror_ids = np.zeros((0, MESSAGE_ID_BYTES + 1), dtype=np.uint8)
        self.limiter = RateLimiter(60.0)
        self._venues = {self._name(store.venue_names, v): v for v in range(int(store.feed_name_counts[0]))}
        self._exchanges = {self._name(store.exchange_names, v): v
                           for v in range(int(store.feed_name_counts[1]))}

    @staticmethod
    def _name(table: np.ndarray, k: int) -> str:
        return bytes(table[k]).rstrip(b"\0").decode("utf-8", "replace")

    def feed_of(self, subject: str) -> int | None:
        """The feed (``layout.FEED_*``) a subject carries, or None."""
        try:
            return self.subjects.index(subject)
        except ValueError:
            return None

    def handle(self, feed: int, body, receipt_ns: int) -> int:
        """Validate and store one feed message; 1 when it made an event (``self.events[0]``)."""
        try:
            record = M.parse(feed, bytes(body), receipt_ns, self.max_skew_ms)
        except M.FeedError as exc:
            self.row[C.FEED_ERRORS_BASE + feed * C.N_FEED_REASONS + exc.reason] += 1
            key = f"{FEED_NAMES[feed]}:{M.REASON_NAMES[exc.reason]}"
            if self.limiter.allow(key):
                log.warning("dropped bad %s feed message: %s", FEED_NAMES[feed], exc,
                            extra={"feed": FEED_NAMES[feed], "reason": M.REASON_NAMES[exc.reason]})
            return 0
        s = self.store
        if feed == FEED_TRANSFERS and record.direction == DIRECTION_OTHER:
            self._accepted(feed, record.ts_ms)
            self.row[C.TRANSFER_DIRECTION_BASE + record.direction] += 1
            return 0
        symbol = (CHAIN_SYMBOLS[record.chain] if feed == FEED_TRANSFERS
                  else "BTCUSDT" if feed == FEED_DOMINANCE else record.symbol)
        sid = self._spot_symbol(symbol)
        if sid is None:
            self.row[C.FEED_FILTERED] += 1
            return 0
        if feed == FEED_DOMINANCE:
            price = binance_price(s.market, s.trades, s.book_meta, s.book_levels, sid)
            source = np.frombuffer(record.source.encode(), dtype=np.uint8)
            pos = push_dominance(s.dominance, s.feed_cursors, record.ts_ms, record.btc_dominance,
                                 price, source, source.size)
            kind = KIND_DOMINANCE
        elif feed == FEED_QUOTES:
            venue = self._number(record.venue, self._venues, s.venue_names, 0, MAX_VENUES)
            if venue is None:
                self.row[C.FEED_ERRORS_BASE + feed * C.N_FEED_REASONS + M.REASON_BAD_VENUE] += 1
                if self.limiter.allow("quotes:venues"):
                    log.warning("dropped a quote of venue %s: %d venues are known already",
                                record.venue, MAX_VENUES)
                return 0
            pos = push_quote(s.quotes, s.feed_cursors, record.ts_ms, record.bid, record.ask, sid, venue)
            kind = KIND_QUOTE
        else:
            price = binance_price(s.market, s.trades, s.book_meta, s.book_levels, sid)
            exchange = -1
            if record.exchange is not None:
                found = self._number(record.exchange, self._exchanges, s.exchange_names, 1, MAX_EXCHANGES)
                exchange = -1 if found is None else found
            txid = np.frombuffer(record.txid.encode(), dtype=np.uint8)
            pos = push_transfer(s.transfers, s.feed_cursors, record.chain, record.ts_ms,
                                record.value, price, record.direction, exchange, txid, txid.size)
            kind = KIND_TRANSFER_BTC + record.chain
            self.row[C.TRANSFER_DIRECTION_BASE + record.direction] += 1
        ev = self.events[0]
        ev["position"] = pos
        ev["receipt_ns"] = receipt_ns
        ev["event_time_ms"] = record.ts_ms
        ev["symbol"] = sid
        ev["kind"] = kind
        self.ids[0, 0] = 0  # feed bodies carry no message id
        self._accepted(feed, record.ts_ms)
        return 1

    def _accepted(self, feed: int, ts_ms: int) -> None:
        self.row[C.FEED_MESSAGES_BASE + feed] += 1
        self.row[C.FEED_LAST_TS_BASE + feed] = max(int(self.row[C.FEED_LAST_TS_BASE + feed]), ts_ms)
        self.row[C.FEED_LAST_RECEIPT_BASE + feed] = time.time_ns()

    def _spot_symbol(self, symbol: str) -> int | None:
        """The spot symbol's id; registered under ``TRADING_SYMBOLS=*``; None when it is not
        traded here (outside TRADING_SYMBOLS, another shard's, or the table is full)."""
        if self.shard_count > 1 and shard_of(symbol, self.shard_count) != self.shard_index:
            return None
        s = self.store
        raw = np.frombuffer(symbol.encode(), dtype=np.uint8)
        sid = int(symbol_find(s.symbols, s.symbol_names, s.symbol_slots, raw, 0, raw.size,
                              np.uint64(symbol_hash(raw, 0, raw.size)), VENUE_SPOT))
        if sid >= 0:
            return sid
        if not self.allow_new:
            return None
        try:
            return s.add_symbol(symbol)
        except StoreError:
            return None

    def _number(self, name: str, known: dict[str, int], table: np.ndarray, count_index: int,
                limit: int) -> int | None:
        """The number of a venue or exchange name, given on first sight (None: table full)."""
        number = known.get(name)
        if number is not None:
            return number
        number = int(self.store.feed_name_counts[count_index])
        if number >= limit:
            return None
        raw = name.encode()[:NAME_BYTES]
        table[number, :] = 0
        table[number, :len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        self.store.feed_name_counts[count_index] = number + 1  # names are written before use
        known[name] = number
        return number

    def mirror(self, events: np.ndarray, ids: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``events[:count]`` with a quote event after each USD-M futures book (see
        :func:`mirror_futures_books`); the same arrays when there is none."""
        if self._mirror_events.size < 2 * count:
            self._mirror_events = np.zeros(max(2 * count, 64), dtype=EVENT_DTYPE)
            self._mirror_ids = np.zeros((max(2 * count, 64), ids.shape[1]), dtype=np.uint8)
        s = self.store
        n = mirror_futures_books(events, ids, count, self._mirror_events, self._mirror_ids,
                                 s.symbols, s.symbol_names, s.symbol_slots, s.book_meta,
                                 s.book_levels, s.quotes, s.feed_cursors, self.row)
        if n < 0:
            return events, ids, count
        return self._mirror_events, self._mirror_ids, int(n)


def warm_up(store, settings) -> None:
    """Compile the jitted writers (zygote warm-up: the ingest must not compile at its first feed
    message)."""
    path = FeedPath(store, settings.with_overrides(trading_symbols=None), C.ROW_SUPERVISOR)
    now_ms = int(store.header[0]["created_ns"]) // 1_000_000 or 1
    for feed, body in ((FEED_DOMINANCE, b'{"ts":%d,"btc_dominance":50}' % now_ms),
                       (FEED_QUOTES, b'{"ts":%d,"venue":"warmup","symbol":"WARMUPUSDT","bid":1,"ask":2}' % now_ms),
                       (FEED_TRANSFERS,
                        b'{"ts":%d,"chain":"btc","txid":"x","value":1,"direction":"to_exchange"}' % now_ms)):
        path.handle(feed, body, now_ms * 1_000_000)
    events, ids = path.events.copy(), path.ids.copy()
    path.mirror(events, ids, 1)
    path.mirror(events[:0], ids[:0], 0)
