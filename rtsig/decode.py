"""The decoder: Binance message bytes in, records in the store out, no I/O.

:func:`decode_batch` walks each message once with the validating scanner of
:mod:`rtsig.jsonscan` (:func:`_scan_envelope`), routes it by its stream name (:func:`_route`,
docs/CONTRACT.md §2), checks it with the one function of its kind (``_check_depth``,
``_check_trade`` …, each returning a named tuple of the values it read), cross-checks it against
what the store already holds (§2a), writes it into its symbol's ring (``_write_*``; the single
writer, see :mod:`rtsig.seqlock` for the ordering) and emits an *event* — symbol, kind, ring
position, times, input ``message_id`` — for every message a strategy evaluates. Bad input gets a
status code (codes.ERR_*) and a counter; it never raises and never touches another symbol's data.

Decisions beyond the spec (also in docs/DESIGN.md):

* Keys are matched byte for byte; a key written with ``\\u`` escapes is treated as unknown.
* The symbol is the stream name's part before ``@``, ASCII letters upper-cased, at most
  24 bytes of UTF-8 (longer → ``bad_stream``).
* Order-book snapshots must be sorted (bids descending, asks ascending; else ``unsorted_book``);
  a zero-quantity level, ``"e":"depthUpdate"`` without the futures ``pu``, or a futures
  ``depthUpdate`` that is unsorted or one-sided, is a diff routed as a snapshot
  (``diff_as_snapshot``); levels beyond 20 are skipped unparsed.
* ``{"result": …, "id": …}`` / ``{"error": …}`` subscription replies and ``!…`` streams are
  ignored as ``control``; futures trades whose ``X`` is not ``MARKET`` as ``non_market_trade``.
* A price must be > 0 (``non_positive_price``), a quantity ≥ 0 (``negative_quantity``), both
  below 10^12 and a trade's quantity above 0 (``bad_number``); 24 h volumes below 10^18.
* The market (spot or USD-M futures) is the payload's shape where it shows one (spot books have
  ``bids``, futures ones ``e``; spot trades carry ``M``; spot 24hrTickers ``b``; futures
  bookTickers ``e``; mark prices are futures), else the subject's (``markets``), else spot.
  A symbol's entry is (name, market): spot and futures never share books, trades or cool-downs.
* A book is checked against its symbol's own newest trade (else ticker) price; trades and
  tickers name their symbol themselves and are the reference, never cross-checked.
* Symbol shards (``RTSIG_SHARD=k/N``, docs/CONTRACT.md §2b): a message whose stream names a symbol
  with ``fnv1a_32(upper(symbol)) mod N != k`` is ``not_owned``. When ``stream`` precedes ``data``
  (as Binance and the socket client write it) the payload is skipped unparsed; otherwise the
  decision follows the scan. A message naming no symbol (control, errors) is decoded by every
  shard. A later repeated ``stream`` key that names an owned symbol gets the full scan again, so
  an owned message is decoded exactly as without shards.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from rtsig import codes
from rtsig import counters as C
from rtsig.jsonscan import (
    COLON,
    COMMA,
    LBRACE,
    LBRACKET,
    MAX_DEPTH,
    QUOTE,
    RBRACE,
    RBRACKET,
    integer_value,
    iso_time_ms,
    number_value,
    skip_ws,
    string_end,
    value_end,
)
from rtsig.layout import ASK, BID, DEPTH_LEVELS, EVENT_DTYPE, MESSAGE_ID_BYTES, PRICE, QTY, VENUE_FUTURES, VENUE_SPOT
from rtsig.seqlock import acquire_fence, release_fence
from rtsig.settings import SYMBOL_BYTES

AT, BANG = 64, 33


def _code(key: bytes) -> tuple[int, int]:
    """Pack a key of at most 15 bytes into two int64 (the jitted ``_key_code`` does the same)."""
    assert len(key) <= 15
    raw = key.ljust(15, b"\0") + bytes([len(key)])
    return (int.from_bytes(raw[:8], "little", signed=True),
            int.from_bytes(raw[8:], "little", signed=True))


@njit(cache=True, inline="always")
def _key_code(buf, s, e):
    """``_code`` of ``buf[s:e]``; ``(0, -1)`` (matches nothing) for longer keys."""
    m = e - s
    if m > 15:
        return np.int64(0), np.int64(-1)
    lo = np.int64(0)
    hi = np.int64(0)
    for k in range(m):
        b = np.int64(buf[s + k])
        if k < 8:
            lo |= b << (8 * k)
        else:
            hi |= b << (8 * (k - 8))
    hi |= np.int64(m) << 56
    return lo, hi


# Top-level envelope keys.
K_STREAM = _code(b"stream")
K_DATA = _code(b"data")
K_TIMESTAMP = _code(b"timestamp")
K_MESSAGE_ID = _code(b"message_id")
K_RESULT = _code(b"result")
K_ERROR = _code(b"error")

# Payload fields: a one-byte key's slot is its byte; longer keys get slots from 128.
F_LAST_UPDATE_ID, F_BIDS, F_ASKS, F_PU, F_PS = 128, 129, 130, 131, 132
N_FIELDS = 133
K_LAST_UPDATE_ID = _code(b"lastUpdateId")
K_BIDS = _code(b"bids")
K_ASKS = _code(b"asks")
K_PU = _code(b"pu")  # futures books' previous update id: a spot diff has none
K_PS = _code(b"ps")  # futures payloads' pair (since 2026)

# Stream kinds (the token after the first '@').
T_DEPTH = _code(b"depth")
T_DEPTH5 = _code(b"depth5")
T_DEPTH10 = _code(b"depth10")
T_DEPTH20 = _code(b"depth20")
T_TRADE = _code(b"trade")
T_AGG_TRADE = _code(b"aggTrade")
T_TICKER = _code(b"ticker")
T_BOOK_TICKER = _code(b"bookTicker")
T_MARK_PRICE = _code(b"markPrice")
T_MINI_TICKER = _code(b"miniTicker")
_KLINE = np.frombuffer(b"kline", dtype=np.uint8)
_MARKET = np.frombuffer(b'"MARKET"', dtype=np.uint8)
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_DEPTH_UPDATE = np.frombuffer(b'"depthUpdate"', dtype=np.uint8)

MAX_PLAUSIBLE = 1e12
"""Prices and quantities must lie below this (docs/CONTRACT.md §2a, ``bad_number``)."""
MAX_VOLUME = 1e18
"""24 h volumes are sums of quantities (SHIB trades ~1e13 a day): they get a wider bound."""

CH_E, CH_BIG_E, CH_T, CH_S, CH_P, CH_Q, CH_M, CH_X, CH_BIG_M = 101, 69, 84, 115, 112, 113, 109, 88, 77
CH_LT, CH_A, CH_B, CH_C, CH_V, CH_U, CH_BIG_B, CH_BIG_A, CH_I, CH_R, CH_LX = \
    116, 97, 98, 99, 118, 117, 66, 65, 105, 114, 120

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)
FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


@njit(cache=True, inline="always")
def _eq(a, b):
    return a[0] == b[0] and a[1] == b[1]


@njit(cache=True, inline="always")
def _upper(c):
    return c - 32 if 97 <= c <= 122 else c


@njit(cache=True)
def symbol_hash(buf, s, e):
    """FNV-1a of the upper-cased symbol bytes ``buf[s:e]``."""
    h = FNV_OFFSET
    for k in range(s, e):
        h = (h ^ np.uint64(_upper(buf[k]))) * FNV_PRIME
    return h


@njit(cache=True, inline="always")
def _fnv1a_32(buf, s, e, fold):
    h = np.uint64(FNV32_OFFSET)
    for k in range(s, e):
        c = _upper(buf[k]) if fold else buf[k]
        h = ((h ^ np.uint64(c)) * np.uint64(FNV32_PRIME)) & np.uint64(0xFFFFFFFF)
    return np.int64(h)


@njit(cache=True)
def fnv1a_32(buf, s, e):
    """32-bit FNV-1a of the bytes ``buf[s:e]`` (as an int64 in [0, 2**32))."""
    return _fnv1a_32(buf, s, e, False)


@njit(cache=True)
def symbol_fnv1a_32(buf, s, e):
    """``fnv1a_32`` of the symbol ``buf[s:e]`` with ASCII letters upper-cased: what picks a
    symbol's shard (``mod RTSIG_SHARD_COUNT``)."""
    return _fnv1a_32(buf, s, e, True)


def shard_of(symbol: str, shard_count: int) -> int:
    """The shard that judges ``symbol`` among ``shard_count`` (``RTSIG_SHARD=k/N``: k)."""
    raw = np.frombuffer(symbol.encode(), dtype=np.uint8)
    return int(symbol_fnv1a_32(raw, 0, raw.shape[0])) % shard_count


@njit(cache=True, inline="always")
def _venue_hash(h, venue):
    """The table key's hash: the name's for spot (as :meth:`Store.add_symbol` computes it),
    mixed with the market for futures, so the two entries of one name probe apart."""
    if venue == VENUE_FUTURES:
        return (h ^ np.uint64(0x1FF)) * FNV_PRIME
    return h


@njit(cache=True)
def symbol_find(symbols, symbol_names, symbol_slots, buf, s, e, h, venue):
    """Symbol id of the (upper-cased) name ``buf[s:e]`` in market ``venue``, or -1."""
    mask = symbol_slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    m = e - s
    while True:
        v = symbol_slots[j]
        if v == 0:
            return -1
        sid = v - 1
        if symbols[sid].name_hash == h and symbols[sid].name_len == m and symbols[sid].venue == venue:
            same = True
            for k in range(m):
                if symbol_names[sid, k] != _upper(buf[s + k]):
                    same = False
                    break
            if same:
                return sid
        j = (j + 1) & mask


@njit(cache=True)
def symbol_insert(header, symbols, symbol_names, symbol_slots, buf, s, e, h, n_workers, venue):
    """Add a symbol of market ``venue`` (the caller checked it is absent); its id, or -1 when
    the table is full.

    The row is complete before the hash slot and ``symbol_count`` make it visible.
    """
    sid = header[0].symbol_count
    if sid >= symbols.shape[0]:
        return -1
    m = e - s
    for k in range(m):
        symbol_names[sid, k] = _upper(buf[s + k])
    symbols[sid].name_hash = h
    symbols[sid].name_len = m
    symbols[sid].worker = sid % n_workers
    symbols[sid].venue = venue
    release_fence()
    mask = symbol_slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while symbol_slots[j] != 0:
        j = (j + 1) & mask
    symbol_slots[j] = sid + 1
    release_fence()
    header[0].symbol_count = sid + 1
    return sid


@njit(cache=True)
def _stream_kind(buf, s, e):
    """Classify a stream name ``buf[s:e]`` (no quotes): ``(status_or_kind, at)``.

    Returns a KIND_* (> 0) with the index of the '@', or minus an IGN_* code, or an ERR_* as
    ``1000 + code``.
    """
    if s >= e:
        return 1000 + codes.ERR_BAD_STREAM, -1
    if buf[s] == BANG:
        return -codes.IGN_CONTROL, -1
    at = -1
    for k in range(s, e):
        c = buf[k]
        if c == AT:
            at = k
            break
        if c == 92:  # escapes in a stream name: not a Binance stream
            return 1000 + codes.ERR_BAD_STREAM, -1
    if at <= s or at - s > SYMBOL_BYTES:
        return 1000 + codes.ERR_BAD_STREAM, -1
    t0 = at + 1
    t1 = t0
    while t1 < e and buf[t1] != AT:
        t1 += 1
    code = _key_code(buf, t0, t1)
    if _eq(code, T_DEPTH5) or _eq(code, T_DEPTH10) or _eq(code, T_DEPTH20):
        return codes.KIND_DEPTH, at
    if _eq(code, T_TRADE):
        return codes.KIND_TRADE, at
    if _eq(code, T_AGG_TRADE):
        return codes.KIND_AGG_TRADE, at
    if _eq(code, T_TICKER):
        return codes.KIND_TICKER, at
    if _eq(code, T_BOOK_TICKER):
        return codes.KIND_BOOK_TICKER, at
    if _eq(code, T_MARK_PRICE):
        return codes.KIND_MARK_PRICE, at
    if _eq(code, T_MINI_TICKER):
        return codes.KIND_MINI_TICKER, at
    if _eq(code, T_DEPTH):
        return -codes.IGN_DEPTH_DIFF, at
    if t1 - t0 >= 5:
        kline = True
        for k in range(5):
            if buf[t0 + k] != _KLINE[k]:
                kline = False
                break
        if kline:
            return -codes.IGN_KLINE, at
    return -codes.IGN_OTHER, at


@njit(cache=True)
def _parse_levels(buf, i, n, side, scratch, stack):
    """Parse a ``[[price, qty], …]`` array at ``i`` into ``scratch[side]``.

    Returns ``(end, count, error, zeros)``: ``end`` just past the array (-1 if malformed
    JSON); the count of stored levels (at most DEPTH_LEVELS); an ERR_ code or 0; 1 if a level
    had quantity 0 (not stored: a diff's deletion, which no snapshot carries). Levels beyond
    DEPTH_LEVELS are validated as JSON but not parsed.
    """
    err = 0
    count = 0
    seen = 0
    zeros = 0
    i = skip_ws(buf, i + 1, n)
    if i < n and buf[i] == RBRACKET:
        return i + 1, 0, 0, 0
    while True:
        if i >= n:
            return -1, 0, 0, 0
        if seen < DEPTH_LEVELS and buf[i] == LBRACKET and err == 0:
            # fast path: [price, qty(, extra…)]; anything else is re-validated as a whole
            pair = False
            qty = 0.0
            ok_q = False
            j = skip_ws(buf, i + 1, n)
            price, j, ok_p = number_value(buf, j, n)
            if j >= 0:
                j = skip_ws(buf, j, n)
                if j < n and buf[j] == COMMA:
                    j = skip_ws(buf, j + 1, n)
                    qty, j, ok_q = number_value(buf, j, n)
                    if j >= 0:
                        j = skip_ws(buf, j, n)
                        while j >= 0 and j < n and buf[j] == COMMA:  # extra elements: skipped
                            j = value_end(buf, j + 1, n, stack)
                            if j >= 0:
                                j = skip_ws(buf, j, n)
                        pair = j >= 0 and j < n and buf[j] == RBRACKET
            if pair:
                i = j + 1
                if not (ok_p and ok_q):
                    err = codes.ERR_BAD_NUMBER
                elif qty < 0:
                    err = codes.ERR_NEGATIVE_QUANTITY
                elif price <= 0:
                    err = codes.ERR_NON_POSITIVE_PRICE
                elif price >= MAX_PLAUSIBLE or qty >= MAX_PLAUSIBLE:
                    err = codes.ERR_BAD_NUMBER
                elif qty > 0:
                    scratch[side, count, PRICE] = price
                    scratch[side, count, QTY] = qty
                    count += 1
                else:
                    zeros = 1
            else:
                j = value_end(buf, i, n, stack)
                if j < 0:
                    return -1, 0, 0, 0
                err = codes.ERR_BAD_FIELD
                i = j
            seen += 1
        else:
            j = value_end(buf, i, n, stack)
            if j < 0:
                return -1, 0, 0, 0
            if seen < DEPTH_LEVELS and err == 0:
                err = codes.ERR_BAD_FIELD
            seen += 1
            i = j
        i = skip_ws(buf, i, n)
        if i >= n:
            return -1, 0, 0, 0
        if buf[i] == COMMA:
            i = skip_ws(buf, i + 1, n)
            continue
        if buf[i] == RBRACKET:
            return i + 1, count, err, zeros
        return -1, 0, 0, 0


@njit(cache=True)
def _field_number(buf, fs, fe, slot):
    """A price/quantity field: ``(value, status)`` with status 0, MISSING_FIELD or BAD_NUMBER."""
    if fs[slot] < 0:
        return 0.0, codes.ERR_MISSING_FIELD
    value, end, ok = number_value(buf, fs[slot], fe[slot])
    if not ok or end != fe[slot]:
        return 0.0, codes.ERR_BAD_NUMBER
    return value, 0


@njit(cache=True)
def _field_time(buf, fs, fe):
    """Event time from ``E``, else ``T``: ``(ms, status)``; -1 when neither is present."""
    for slot in (CH_BIG_E, CH_T):
        if fs[slot] >= 0:
            v, ok = integer_value(buf, fs[slot], fe[slot])
            if not ok or v < 0:
                return np.int64(0), codes.ERR_BAD_FIELD
            return v, 0
    return np.int64(-1), 0


@njit(cache=True)
def _copy_message_id(buf, ms, me, out_row):
    """Copy a ``message_id`` string (without quotes) into ``out_row``; length 0 if absent/long."""
    out_row[0] = 0
    if ms < 0 or buf[ms] != QUOTE:
        return
    m = me - ms - 2
    if m <= 0 or m > MESSAGE_ID_BYTES:
        return
    for k in range(m):
        c = buf[ms + 1 + k]
        if c == 92:  # escaped id: not carried
            out_row[0] = 0
            return
        out_row[1 + k] = c
    out_row[0] = m


# ----------------------------------------------------------------------------- the envelope

Envelope = namedtuple("Envelope", ("status", "stream_s", "stream_e", "data_seen", "data_is_object",
                                   "ts_s", "ts_e", "mid_s", "mid_e", "control", "skipped"))
"""What the top-level scan found: a status (0, or an ERR_ for malformed JSON), the spans of
``stream``, ``timestamp`` and ``message_id`` (-1 when absent), and flags (0/1); ``skipped``: the
payload was passed over unparsed (its stream, as far as the scan had read, named a symbol of
another shard)."""
Sides = namedtuple("Sides", ("bid_count", "ask_count", "level_err", "sides_seen", "zero_qty"))
"""Order-book levels parsed into the scratch book while the payload was walked: counts per
side, the first level error, which sides were level arrays (bit 0 bids, bit 1 asks), and
whether any level had quantity 0 (a diff's deletion)."""


@njit(cache=True, inline="always")
def _envelope_error(status):
    return Envelope(status, -1, -1, 0, 0, -1, -1, -1, -1, 0, 0), Sides(0, 0, 0, 0, 0)


@njit(cache=True, inline="always")
def _scan_payload(buf, i, n, fs, fe, scratch, stack):
    """Walk the payload object at ``buf[i] == '{'``, recording the spans of the fields used
    (``fs``/``fe`` by slot) and parsing level arrays into ``scratch``. ``(end, Sides)``; end -1
    when the JSON is malformed."""
    bid_count = 0
    ask_count = 0
    level_err = 0
    sides_seen = 0
    zero_qty = 0
    i = skip_ws(buf, i + 1, n)
    if i < n and buf[i] == RBRACE:
        return i + 1, Sides(0, 0, 0, 0, 0)
    while True:
        if i >= n or buf[i] != QUOTE:
            return -1, Sides(0, 0, 0, 0, 0)
        ks = i + 1
        i = string_end(buf, i, n)
        if i < 0:
            return -1, Sides(0, 0, 0, 0, 0)
        ke = i - 1
        i = skip_ws(buf, i, n)
        if i >= n or buf[i] != COLON:
            return -1, Sides(0, 0, 0, 0, 0)
        i = skip_ws(buf, i + 1, n)
        if i >= n:
            return -1, Sides(0, 0, 0, 0, 0)
        slot = _field_slot(buf, ks, ke)
        vs = i
        if buf[i] == LBRACKET and (slot == F_BIDS or slot == F_ASKS or slot == CH_B or slot == CH_A):
            side = BID if (slot == F_BIDS or slot == CH_B) else ASK
            i, count, err, zeros = _parse_levels(buf, i, n, side, scratch, stack)
            if i < 0:
                return -1, Sides(0, 0, 0, 0, 0)
            if side == BID:
                bid_count = count
                sides_seen |= 1
            else:
                ask_count = count
                sides_seen |= 2
            if err != 0 and level_err == 0:
                level_err = err
            zero_qty |= zeros
        else:
            i = value_end(buf, i, n, stack)
            if i < 0:
                return -1, Sides(0, 0, 0, 0, 0)
        if slot >= 0:
            fs[slot] = vs
            fe[slot] = i
        i = skip_ws(buf, i, n)
        if i < n and buf[i] == COMMA:
            i = skip_ws(buf, i + 1, n)
            continue
        if i < n and buf[i] == RBRACE:
            return i + 1, Sides(bid_count, ask_count, level_err, sides_seen, zero_qty)
        return -1, Sides(0, 0, 0, 0, 0)


@njit(cache=True, inline="always")
def _field_slot(buf, ks, ke):
    """The ``fs``/``fe`` slot of a payload key: its byte for one-byte keys, else a named slot."""
    if ke - ks == 1 and buf[ks] < 128:
        return np.int64(buf[ks])
    key = _key_code(buf, ks, ke)
    if _eq(key, K_LAST_UPDATE_ID):
        return F_LAST_UPDATE_ID
    if _eq(key, K_BIDS):
        return F_BIDS
    if _eq(key, K_ASKS):
        return F_ASKS
    if _eq(key, K_PU):
        return F_PU
    if _eq(key, K_PS):
        return F_PS
    return -1


_SKIP_CLASS = np.zeros(256, dtype=np.uint8)
"""Bytes :func:`_skip_container` stops at outside strings: 1 quote, 2 opening, 3 closing bracket."""
_SKIP_CLASS[QUOTE] = 1
_SKIP_CLASS[LBRACE] = _SKIP_CLASS[LBRACKET] = 2
_SKIP_CLASS[RBRACE] = _SKIP_CLASS[RBRACKET] = 3
_SKIP_STRING = np.zeros(256, dtype=np.uint8)
"""Bytes it stops at inside a string: 1 the closing quote, 2 a backslash (the next byte is skipped)."""
_SKIP_STRING[QUOTE] = 1
_SKIP_STRING[92] = 2


@njit(cache=True)
def _skip_container(buf, i, n):
    """Index just past the object or array at ``buf[i]``, brackets counted and strings jumped
    over without validating anything (exact for valid JSON); -1 if it never closes.

    PERF: one table lookup per byte; ~0.7 ns per byte against ~3.9 for the same loop written
    with comparisons (the escape test in the string loop defeated the compiler).
    """
    depth = 0
    while i < n:
        c = _SKIP_CLASS[buf[i]]
        i += 1
        if c == 0:
            continue
        if c == 1:
            while i < n:
                k = _SKIP_STRING[buf[i]]
                if k == 0:
                    i += 1
                elif k == 1:
                    break
                else:
                    i += 2
            if i >= n:
                return -1
            i += 1
        elif c == 2:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return i
    return -1


@njit(cache=True, inline="always")
def _not_owned(buf, stream_s, stream_e, shard_index, shard_count):
    """The ``stream`` value at ``buf[stream_s:stream_e]`` names a symbol another shard judges.
    False without shards, without a stream, or for one naming no symbol (control, malformed):
    those are decoded, and counted, by every shard."""
    if shard_count <= 1 or stream_s < 0 or buf[stream_s] != QUOTE:
        return False
    kind, at = _stream_kind(buf, stream_s + 1, stream_e - 1)
    if kind >= 1000 or at < 0:
        return False
    return symbol_fnv1a_32(buf, stream_s + 1, at) % shard_count != shard_index


@njit(cache=True, inline="always")
def _scan_envelope(buf, s, n, fs, fe, scratch, stack, shard_index, shard_count):
    """One pass over the message ``buf[s:n]``: ``(Envelope, Sides)``. Validates the JSON
    completely, except a payload whose stream (read before it) names a symbol of another shard:
    that one is skipped unparsed (``skipped``). The payload's fields are left in ``fs``/``fe``
    (all -1 when there is none or it was skipped)."""
    stream_s = -1
    stream_e = -1
    data_seen = 0
    data_is_object = 0
    ts_s = -1
    ts_e = -1
    mid_s = -1
    mid_e = -1
    control = 0
    skipped = 0
    sides = Sides(0, 0, 0, 0, 0)
    i = skip_ws(buf, s, n)
    if i >= n:
        return _envelope_error(codes.ERR_NOT_JSON)
    if buf[i] != LBRACE:
        j = value_end(buf, i, n, stack)
        if j >= 0 and skip_ws(buf, j, n) == n:
            return _envelope_error(codes.ERR_NOT_OBJECT)
        return _envelope_error(codes.ERR_NOT_JSON)
    i = skip_ws(buf, i + 1, n)
    if i < n and buf[i] == RBRACE:
        i += 1
    else:
        while True:
            if i >= n or buf[i] != QUOTE:
                return _envelope_error(codes.ERR_NOT_JSON)
            ks = i + 1
            i = string_end(buf, i, n)
            if i < 0:
                return _envelope_error(codes.ERR_NOT_JSON)
            key = _key_code(buf, ks, i - 1)
            i = skip_ws(buf, i, n)
            if i >= n or buf[i] != COLON:
                return _envelope_error(codes.ERR_NOT_JSON)
            i = skip_ws(buf, i + 1, n)
            if i >= n:
                return _envelope_error(codes.ERR_NOT_JSON)
            vs = i
            if _eq(key, K_DATA):
                # a repeated "data" key: the last one wins, as in every JSON parser
                fs[:] = -1
                sides = Sides(0, 0, 0, 0, 0)
                data_seen = 0 if buf[i] == 110 else 1  # null counts as missing
                data_is_object = 1 if buf[i] == LBRACE else 0
                skipped = 0
                if data_is_object and _not_owned(buf, stream_s, stream_e, shard_index, shard_count):
                    skipped = 1
                    i = _skip_container(buf, i, n)
                elif data_is_object:
                    i, sides = _scan_payload(buf, i, n, fs, fe, scratch, stack)
                else:
                    i = value_end(buf, i, n, stack)
                if i < 0:
                    return _envelope_error(codes.ERR_NOT_JSON)
            else:
                i = value_end(buf, i, n, stack)
                if i < 0:
                    return _envelope_error(codes.ERR_NOT_JSON)
                if _eq(key, K_STREAM):
                    stream_s = vs
                    stream_e = i
                elif _eq(key, K_TIMESTAMP):
                    ts_s = vs
                    ts_e = i
                elif _eq(key, K_MESSAGE_ID):
                    mid_s = vs
                    mid_e = i
                elif _eq(key, K_RESULT) or _eq(key, K_ERROR):
                    control = 1
            i = skip_ws(buf, i, n)
            if i < n and buf[i] == COMMA:
                i = skip_ws(buf, i + 1, n)
                continue
            if i < n and buf[i] == RBRACE:
                i += 1
                break
            return _envelope_error(codes.ERR_NOT_JSON)
    if skip_ws(buf, i, n) != n:
        return _envelope_error(codes.ERR_NOT_JSON)
    return Envelope(0, stream_s, stream_e, data_seen, data_is_object, ts_s, ts_e, mid_s, mid_e,
                    control, skipped), sides


@njit(cache=True, inline="always")
def _route(buf, env, fs, fe):
    """``(status, kind, symbol start, symbol end)`` from the stream name; the payload's own
    ``s``, when it has one, must agree with the stream's symbol."""
    if env.stream_s < 0:
        return (-codes.IGN_CONTROL if env.control else codes.ERR_MISSING_STREAM), 0, -1, -1
    if buf[env.stream_s] != QUOTE:
        return codes.ERR_BAD_STREAM, 0, -1, -1
    kind, at = _stream_kind(buf, env.stream_s + 1, env.stream_e - 1)
    if kind >= 1000:
        return kind - 1000, 0, -1, -1
    if not env.data_seen:
        return codes.ERR_MISSING_DATA, 0, -1, -1
    if kind < 0:
        return kind, 0, -1, -1
    if not env.data_is_object:
        return codes.ERR_BAD_FIELD, 0, -1, -1
    sym_s = env.stream_s + 1
    sym_e = at
    if fs[CH_S] >= 0:
        ps = fs[CH_S]
        if buf[ps] != QUOTE:
            return codes.ERR_BAD_FIELD, 0, -1, -1
        if fe[CH_S] - ps - 2 != sym_e - sym_s:
            return codes.ERR_SYMBOL_MISMATCH, 0, -1, -1
        for k in range(sym_e - sym_s):
            if buf[ps + 1 + k] != _upper(buf[sym_s + k]):
                return codes.ERR_SYMBOL_MISMATCH, 0, -1, -1
    return 0, kind, sym_s, sym_e


# ----------------------------------------------------------------------------- checks per kind

DepthFields = namedtuple("DepthFields", ("status", "last_update_id", "event_time_ms", "venue"))
TradeFields = namedtuple("TradeFields", ("status", "price", "quantity", "trade_id",
                                         "is_buyer_maker", "event_time_ms", "venue"))
TickerFields = namedtuple("TickerFields", ("status", "last_price", "base_volume", "quote_volume",
                                           "event_time_ms", "venue"))
QuoteFields = namedtuple("QuoteFields", ("status", "best_bid", "best_bid_qty", "best_ask",
                                         "best_ask_qty", "update_id", "event_time_ms", "venue"))
MarkFields = namedtuple("MarkFields", ("status", "mark_price", "index_price", "funding_rate",
                                       "event_time_ms"))


@njit(cache=True, inline="always")
def _depth_error(status):
    return DepthFields(status, np.int64(-1), np.int64(0), 0)


@njit(cache=True, inline="always")
def _trade_error(status, t_ms):
    return TradeFields(status, 0.0, 0.0, np.int64(-1), 0, t_ms, 0)


@njit(cache=True, inline="always")
def _ticker_error(status, t_ms):
    return TickerFields(status, 0.0, 0.0, 0.0, t_ms, 0)


@njit(cache=True, inline="always")
def _quote_error(status, t_ms):
    return QuoteFields(status, 0.0, 0.0, 0.0, 0.0, np.int64(-1), t_ms, 0)


@njit(cache=True, inline="always")
def _mark_error(status, t_ms):
    return MarkFields(status, 0.0, 0.0, 0.0, t_ms)


@njit(cache=True, inline="always")
def _plausible_price(value, status):
    """``status`` if it is already an error; else the price's: > 0 and < MAX_PLAUSIBLE."""
    if status != 0:
        return status
    if value <= 0:
        return codes.ERR_NON_POSITIVE_PRICE
    if value >= MAX_PLAUSIBLE:
        return codes.ERR_BAD_NUMBER
    return 0


@njit(cache=True, inline="always")
def _plausible_amount(value, status, limit):
    """``status`` if it is already an error; else the quantity's: >= 0 and < ``limit``."""
    if status != 0:
        return status
    if value < 0:
        return codes.ERR_NEGATIVE_QUANTITY
    if value >= limit:
        return codes.ERR_BAD_NUMBER
    return 0


@njit(cache=True, inline="always")
def _is_depth_update(buf, fs, fe):
    """The payload's ``e`` is ``"depthUpdate"``."""
    es = fs[CH_E]
    if es < 0 or fe[CH_E] - es != _DEPTH_UPDATE.shape[0]:
        return False
    for k in range(_DEPTH_UPDATE.shape[0]):
        if buf[es + k] != _DEPTH_UPDATE[k]:
            return False
    return True


@njit(cache=True, inline="always")
def _check_depth(buf, fs, fe, sides, scratch, env, t_ms, receipt_ns):
    """A partial-book snapshot: both sides level arrays, not a diff, non-empty, sorted, not
    crossed. Spot books carry no time: the envelope's ``timestamp``, else the receipt time."""
    futures = fs[CH_E] >= 0
    if futures and _is_depth_update(buf, fs, fe) and fs[F_PU] < 0:
        # a spot diff ({"e":"depthUpdate", no "pu"}) labelled as a partial book
        return _depth_error(codes.ERR_DIFF_AS_SNAPSHOT)
    if sides.sides_seen != 3:
        # a side sent as something other than a level array is malformed, not missing
        if ((sides.sides_seen & 1) == 0 and (fs[F_BIDS] >= 0 or fs[CH_B] >= 0)) or \
                ((sides.sides_seen & 2) == 0 and (fs[F_ASKS] >= 0 or fs[CH_A] >= 0)):
            return _depth_error(codes.ERR_BAD_FIELD)
        return _depth_error(codes.ERR_MISSING_FIELD)
    if sides.level_err != 0:
        return _depth_error(sides.level_err)
    if sides.zero_qty:
        return _depth_error(codes.ERR_DIFF_AS_SNAPSHOT)  # a level deletion: a diff
    # a futures partial book is a sorted top-N list with both sides: a ``depthUpdate`` that is
    # not one is a diff (Binance sends diffs' sides unordered and often one-sided)
    nb = sides.bid_count
    na = sides.ask_count
    if nb == 0 or na == 0:
        return _depth_error(codes.ERR_DIFF_AS_SNAPSHOT if futures else codes.ERR_EMPTY_SIDE)
    for k in range(1, nb):
        if scratch[BID, k, PRICE] >= scratch[BID, k - 1, PRICE]:
            return _depth_error(codes.ERR_DIFF_AS_SNAPSHOT if futures else codes.ERR_UNSORTED_BOOK)
    for k in range(1, na):
        if scratch[ASK, k, PRICE] <= scratch[ASK, k - 1, PRICE]:
            return _depth_error(codes.ERR_DIFF_AS_SNAPSHOT if futures else codes.ERR_UNSORTED_BOOK)
    if scratch[BID, 0, PRICE] >= scratch[ASK, 0, PRICE]:
        return _depth_error(codes.ERR_CROSSED_BOOK)
    update_id = np.int64(-1)
    for slot in (F_LAST_UPDATE_ID, CH_U):
        if fs[slot] >= 0:
            update_id, ok = integer_value(buf, fs[slot], fe[slot])
            if not ok:
                return _depth_error(codes.ERR_BAD_FIELD)
            break
    if t_ms < 0 and env.ts_s >= 0 and buf[env.ts_s] == QUOTE:
        t_ms = iso_time_ms(buf, env.ts_s, env.ts_e)
    if t_ms < 0:
        t_ms = receipt_ns // 1_000_000
    return DepthFields(0, update_id, t_ms, VENUE_FUTURES if futures else VENUE_SPOT)


@njit(cache=True, inline="always")
def _check_trade(buf, fs, fe, kind, t_ms):
    """A trade or aggTrade: price, quantity (> 0), maker flag; futures ``trade`` only when
    ``X`` is MARKET. Spot trades carry ``M``, futures ones never do."""
    if fs[CH_X] >= 0 and kind == codes.KIND_TRADE:
        xs = fs[CH_X]
        if buf[xs] != QUOTE:
            return _trade_error(codes.ERR_BAD_FIELD, t_ms)
        same = fe[CH_X] - xs == 8
        if same:
            for k in range(8):
                if buf[xs + k] != _MARKET[k]:
                    same = False
                    break
        if not same:
            return _trade_error(-codes.IGN_NON_MARKET_TRADE, t_ms)
    price, st_p = _field_number(buf, fs, fe, CH_P)
    quantity, st_q = _field_number(buf, fs, fe, CH_Q)
    if st_p != 0 or st_q != 0:
        return _trade_error(st_p if st_p != 0 else st_q, t_ms)
    status = _plausible_price(price, _plausible_amount(quantity, 0, MAX_PLAUSIBLE))
    if status == 0 and quantity == 0:
        status = codes.ERR_BAD_NUMBER  # a trade of nothing
    if status != 0:
        return _trade_error(status, t_ms)
    if fs[CH_M] < 0:
        return _trade_error(codes.ERR_MISSING_FIELD, t_ms)
    ms = fs[CH_M]
    if fe[CH_M] - ms == 4 and buf[ms] == _TRUE[0]:
        is_buyer_maker = 1
    elif fe[CH_M] - ms == 5 and buf[ms] == _FALSE[0]:
        is_buyer_maker = 0
    else:
        return _trade_error(codes.ERR_BAD_FIELD, t_ms)
    trade_id = np.int64(-1)
    id_slot = CH_LT if kind == codes.KIND_TRADE else CH_A
    if fs[id_slot] >= 0:
        trade_id, ok = integer_value(buf, fs[id_slot], fe[id_slot])
        if not ok:
            return _trade_error(codes.ERR_BAD_FIELD, t_ms)
    if t_ms < 0:
        return _trade_error(codes.ERR_MISSING_FIELD, t_ms)
    venue = VENUE_SPOT if fs[CH_BIG_M] >= 0 else VENUE_FUTURES
    return TradeFields(0, price, quantity, trade_id, is_buyer_maker, t_ms, venue)


@njit(cache=True, inline="always")
def _check_ticker(buf, fs, fe, t_ms, subject_venue):
    """A 24 h ticker or mini ticker: last price, base and (optional) quote volume. A spot
    24hrTicker carries ``b`` and ``x``, a futures one (since 2026) ``ps``; otherwise (mini
    tickers, minimal tickers) the subject's market decides, spot by default."""
    last_price, st_c = _field_number(buf, fs, fe, CH_C)
    base_volume, st_v = _field_number(buf, fs, fe, CH_V)
    quote_volume, st_q = _field_number(buf, fs, fe, CH_Q)
    if st_q == codes.ERR_MISSING_FIELD:
        quote_volume = np.nan
        st_q = 0
    for st in (st_c, st_v, st_q):
        if st != 0:
            return _ticker_error(st, t_ms)
    status = _plausible_price(last_price, 0)
    if status == 0:
        status = _plausible_amount(base_volume, 0, MAX_VOLUME)
    if status == 0 and quote_volume == quote_volume:  # not NaN
        status = _plausible_amount(quote_volume, 0, MAX_VOLUME)
    if status != 0:
        return _ticker_error(status, t_ms)
    if t_ms < 0:
        return _ticker_error(codes.ERR_MISSING_FIELD, t_ms)
    if fs[CH_B] >= 0 or fs[CH_LX] >= 0:
        venue = VENUE_SPOT  # best bid / price before the window: spot 24hrTickers only
    elif fs[F_PS] >= 0 or subject_venue == VENUE_FUTURES:
        venue = VENUE_FUTURES
    else:
        venue = VENUE_SPOT
    return TickerFields(0, last_price, base_volume, quote_volume, t_ms, venue)


@njit(cache=True, inline="always")
def _check_book_ticker(buf, fs, fe, t_ms, receipt_ns):
    """Best bid/ask: prices and quantities >= 0 (an empty side is 0), not crossed. Futures
    bookTickers carry ``e``; spot ones carry no type and no time (the receipt time is used)."""
    bid, st_b = _field_number(buf, fs, fe, CH_B)
    bid_qty, st_bq = _field_number(buf, fs, fe, CH_BIG_B)
    ask, st_a = _field_number(buf, fs, fe, CH_A)
    ask_qty, st_aq = _field_number(buf, fs, fe, CH_BIG_A)
    for st in (st_b, st_bq, st_a, st_aq):
        if st != 0:
            return _quote_error(st, t_ms)
    status = _plausible_amount(ask_qty, _plausible_amount(bid_qty, 0, MAX_PLAUSIBLE), MAX_PLAUSIBLE)
    if status != 0:
        return _quote_error(status, t_ms)
    if bid < 0 or ask < 0:
        return _quote_error(codes.ERR_NON_POSITIVE_PRICE, t_ms)
    if bid >= MAX_PLAUSIBLE or ask >= MAX_PLAUSIBLE:
        return _quote_error(codes.ERR_BAD_NUMBER, t_ms)
    if bid > 0 and ask > 0 and bid >= ask:
        return _quote_error(codes.ERR_CROSSED_BOOK, t_ms)
    update_id = np.int64(-1)
    if fs[CH_U] >= 0:
        update_id, ok = integer_value(buf, fs[CH_U], fe[CH_U])
        if not ok:
            return _quote_error(codes.ERR_BAD_FIELD, t_ms)
    if t_ms < 0:
        t_ms = receipt_ns // 1_000_000
    venue = VENUE_FUTURES if fs[CH_E] >= 0 else VENUE_SPOT
    return QuoteFields(0, bid, bid_qty, ask, ask_qty, update_id, t_ms, venue)


@njit(cache=True, inline="always")
def _check_mark_price(buf, fs, fe, t_ms):
    """A futures mark price: mark price (plausible), optional index price and funding rate."""
    mark, st_p = _field_number(buf, fs, fe, CH_P)
    index, st_i = _field_number(buf, fs, fe, CH_I)
    funding, st_r = _field_number(buf, fs, fe, CH_R)
    if st_i == codes.ERR_MISSING_FIELD:
        index = np.nan
        st_i = 0
    if st_r == codes.ERR_MISSING_FIELD:
        funding = np.nan
        st_r = 0
    for st in (st_p, st_i, st_r):
        if st != 0:
            return _mark_error(st, t_ms)
    status = _plausible_price(mark, 0)
    if status == 0 and index == index and (index < 0 or index >= MAX_PLAUSIBLE):
        status = codes.ERR_BAD_NUMBER
    if status != 0:
        return _mark_error(status, t_ms)
    if t_ms < 0:
        return _mark_error(codes.ERR_MISSING_FIELD, t_ms)
    return MarkFields(0, mark, index, funding, t_ms)


# ----------------------------------------------------------------------------- cross-checks

@njit(cache=True, inline="always")
def _too_far_ahead(t_ms, receipt_ns, bounds):
    """The event time is more than the allowed clock skew ahead of the receipt time."""
    return t_ms - receipt_ns // 1_000_000 > bounds.max_clock_skew_ms


@njit(cache=True, inline="always")
def reference_price(market_row, trades_row, t_ms, max_age_ms):
    """The symbol's own price to check a book against: its newest trade, else its ticker's
    last price, if no older than ``max_age_ms`` before ``t_ms`` (event time); else 0."""
    end = market_row.trade_end
    if end > 0:
        newest = trades_row[(end - 1) & (trades_row.shape[0] - 1)]
        if newest.event_time_ms >= t_ms - max_age_ms:
            return newest.price
    if market_row.last_price > 0 and market_row.last_price_time_ms >= t_ms - max_age_ms:
        return market_row.last_price
    return 0.0


@njit(cache=True, inline="always")
def _book_matches_reference(st, sid, scratch, t_ms, bounds):
    """The book's mid lies within the tolerance of the symbol's reference price (or there is
    no fresh reference): a book labelled with another symbol's name fails this."""
    ref = reference_price(st.market[sid], st.trades[sid], t_ms, bounds.reference_max_age_ms)
    if ref <= 0:
        return True
    mid = 0.5 * (scratch[BID, 0, PRICE] + scratch[ASK, 0, PRICE])
    return abs(mid - ref) <= bounds.book_price_tolerance * ref


# ----------------------------------------------------------------------------- the symbol table

@njit(cache=True)
def _slot_remove(symbols, symbol_slots, sid):
    """Take ``sid`` out of the open-addressing table (backward-shift deletion: no tombstones,
    every other key stays reachable from its home slot). The ingest is the table's only user."""
    mask = symbol_slots.shape[0] - 1
    i = np.int64(symbols[sid].name_hash & np.uint64(mask))
    while symbol_slots[i] != sid + 1:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        v = symbol_slots[j]
        if v == 0:
            break
        home = np.int64(symbols[v - 1].name_hash & np.uint64(mask))
        # the key at j may move into the hole at i unless its home lies cyclically in (i, j]
        if i <= j:
            stays = i < home and home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            symbol_slots[i] = v
            i = j
    symbol_slots[i] = 0


@njit(cache=True)
def _idle_symbol(st, receipt_ns, idle_ns):
    """The symbol silent longest, if silent for ``idle_ns`` and fully judged; else -1."""
    best = -1
    oldest = receipt_ns - idle_ns
    for sid in range(st.header[0].symbol_count):
        mk = st.market[sid]
        if mk.last_receipt_ns < oldest and mk.book_done == mk.book_end \
                and mk.trade_done == mk.trade_end and mk.ticker_done == mk.ticker_end:
            best = sid
            oldest = mk.last_receipt_ns
    return best


@njit(cache=True)
def _reuse_symbol(st, sid, buf, s, e, h, venue):
    """Give an idle symbol's id to a new symbol: its data is cleared (positions restart at 0,
    as for a new symbol), its ``generation`` and the header's ``symbol_evictions`` bumped so
    the workers and readers drop what they cached about the old name."""
    _slot_remove(st.symbols, st.symbol_slots, sid)
    mk = st.market[sid:sid + 1]
    q = mk[0].quote_seq
    mk[0].quote_seq = q + 1
    release_fence()
    mk[0].book_end = 0
    mk[0].trade_begin = 0
    mk[0].trade_end = 0
    mk[0].ticker_begin = 0
    mk[0].ticker_end = 0
    mk[0].book_done = 0
    mk[0].trade_done = 0
    mk[0].ticker_done = 0
    mk[0].best_bid = 0.0
    mk[0].best_bid_qty = 0.0
    mk[0].best_ask = 0.0
    mk[0].best_ask_qty = 0.0
    mk[0].quote_update_id = 0
    mk[0].quote_time_ms = 0
    mk[0].mark_price = 0.0
    mk[0].index_price = 0.0
    mk[0].funding_rate = 0.0
    mk[0].mark_time_ms = 0
    mk[0].last_price = 0.0
    mk[0].last_price_time_ms = 0
    mk[0].last_event_time_ms = 0
    mk[0].last_receipt_ns = 0
    m = e - s
    for k in range(m):
        st.symbol_names[sid, k] = _upper(buf[s + k])
    st.symbols[sid].name_hash = h
    st.symbols[sid].name_len = m
    st.symbols[sid].venue = venue
    st.symbols[sid].generation += 1
    release_fence()
    mk[0].quote_seq = q + 2
    mask = st.symbol_slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    while st.symbol_slots[j] != 0:
        j = (j + 1) & mask
    st.symbol_slots[j] = sid + 1
    release_fence()
    st.header[0].symbol_evictions += 1


@njit(cache=True, inline="always")
def _symbol_id(st, buf, s, e, venue, allow_new, n_workers, receipt_ns, bounds, counters, find_only):
    """``(sid, status)`` of the symbol ``buf[s:e]`` of ``venue``.

    Unknown symbols are added when all are allowed (evicting an idle one when the table is
    full), else filtered; a futures entry is added for a configured symbol (its spot entry
    exists). ``find_only``: ``(-1, 0)`` for an unknown symbol, nothing added.
    """
    h = _venue_hash(symbol_hash(buf, s, e), venue)
    sid = symbol_find(st.symbols, st.symbol_names, st.symbol_slots, buf, s, e, h, venue)
    if sid >= 0 or find_only:
        return sid, 0
    if not allow_new:
        if venue == VENUE_SPOT:
            return -1, codes.STATUS_FILTERED
        spot_h = symbol_hash(buf, s, e)
        if symbol_find(st.symbols, st.symbol_names, st.symbol_slots, buf, s, e, spot_h,
                       VENUE_SPOT) < 0:
            return -1, codes.STATUS_FILTERED
    sid = symbol_insert(st.header, st.symbols, st.symbol_names, st.symbol_slots, buf, s, e, h,
                        n_workers, venue)
    if sid >= 0:
        return sid, 0
    if allow_new:
        sid = _idle_symbol(st, receipt_ns, bounds.symbol_idle_ns)
        if sid >= 0:
            _reuse_symbol(st, sid, buf, s, e, h, venue)
            counters[C.SYMBOLS_EVICTED] += 1
            return sid, 0
    return -1, codes.ERR_SYMBOL_TABLE_FULL


# ----------------------------------------------------------------------------- writers per kind

@njit(cache=True, inline="always")
def _lagging(mk, ring, lag_limits):
    """The owning worker still needs the ring entry the next write would overwrite."""
    if ring == RING_BOOK:
        return mk.book_end - mk.book_done >= lag_limits[0]
    if ring == RING_TRADE:
        return mk.trade_end - mk.trade_done >= lag_limits[1]
    return mk.ticker_end - mk.ticker_done >= lag_limits[2]


@njit(cache=True, inline="always")
def _write_book(st, sid, scratch, sides, fields, receipt_ns):
    """Store a book snapshot in its ring slot under the slot's seqlock; its position."""
    mk = st.market[sid:sid + 1]
    pos = mk[0].book_end
    slot = pos & (st.book_meta.shape[1] - 1)
    meta = st.book_meta[sid, slot:slot + 1]
    meta[0].seq = 2 * pos + 1
    release_fence()
    for k in range(sides.bid_count):
        st.book_levels[sid, slot, BID, k, PRICE] = scratch[BID, k, PRICE]
        st.book_levels[sid, slot, BID, k, QTY] = scratch[BID, k, QTY]
    for k in range(sides.ask_count):
        st.book_levels[sid, slot, ASK, k, PRICE] = scratch[ASK, k, PRICE]
        st.book_levels[sid, slot, ASK, k, QTY] = scratch[ASK, k, QTY]
    meta[0].bid_count = sides.bid_count
    meta[0].ask_count = sides.ask_count
    meta[0].last_update_id = fields.last_update_id
    meta[0].event_time_ms = fields.event_time_ms
    meta[0].receipt_ns = receipt_ns
    release_fence()
    meta[0].seq = 2 * pos + 2
    mk[0].book_end = pos + 1
    return pos


@njit(cache=True, inline="always")
def _write_trade(st, sid, fields):
    """Append a trade to the symbol's trade ring (``trade_begin`` marks the slot in use)."""
    mk = st.market[sid:sid + 1]
    pos = mk[0].trade_end
    slot = pos & (st.trades.shape[1] - 1)
    mk[0].trade_begin = pos + 1
    release_fence()
    tr = st.trades[sid, slot:slot + 1]
    tr[0].event_time_ms = fields.event_time_ms
    tr[0].trade_id = fields.trade_id
    tr[0].price = fields.price
    tr[0].quantity = fields.quantity
    tr[0].is_buyer_maker = fields.is_buyer_maker
    release_fence()
    mk[0].trade_end = pos + 1
    return pos


@njit(cache=True, inline="always")
def _write_ticker(st, sid, fields):
    """Append a ticker sample to the symbol's ticker ring."""
    mk = st.market[sid:sid + 1]
    pos = mk[0].ticker_end
    slot = pos & (st.tickers.shape[1] - 1)
    mk[0].ticker_begin = pos + 1
    release_fence()
    tk = st.tickers[sid, slot:slot + 1]
    tk[0].event_time_ms = fields.event_time_ms
    tk[0].last_price = fields.last_price
    tk[0].base_volume = fields.base_volume
    tk[0].quote_volume = fields.quote_volume
    release_fence()
    mk[0].ticker_end = pos + 1
    return pos


@njit(cache=True, inline="always")
def _quotes_begin(mk):
    """Open the per-symbol quote seqlock; returns the sequence to pass to :func:`_quotes_end`."""
    q = mk[0].quote_seq
    mk[0].quote_seq = q + 1
    release_fence()
    return q


@njit(cache=True, inline="always")
def _quotes_end(mk, q, t_ms, receipt_ns):
    """Stamp the symbol's newest event and receipt time and close the quote seqlock."""
    mk[0].last_event_time_ms = t_ms
    mk[0].last_receipt_ns = receipt_ns
    release_fence()
    mk[0].quote_seq = q + 2


@njit(cache=True, inline="always")
def _emit(event, msgid_row, buf, env, pos, receipt_ns, t_ms, sid, kind):
    """Describe a stored entry for the worker that judges it."""
    event.position = pos
    event.receipt_ns = receipt_ns
    event.event_time_ms = t_ms
    event.symbol = sid
    event.kind = kind
    _copy_message_id(buf, env.mid_s, env.mid_e, msgid_row)


# ----------------------------------------------------------------------------- one message

Bounds = namedtuple("Bounds", ("max_clock_skew_ms", "reference_max_age_ms", "book_price_tolerance",
                               "symbol_idle_ns"))
"""The plausibility bounds of docs/CONTRACT.md §2a, read from the store header once per batch."""
StoreArrays = namedtuple("StoreArrays", ("header", "symbols", "symbol_names", "symbol_slots",
                                         "market", "book_meta", "book_levels", "trades", "tickers"))
"""The store regions the decoder reads and writes, packed once per batch inside the jitted code."""
RING_BOOK, RING_TRADE, RING_TICKER = 0, 1, 2


@njit(cache=True, inline="always")
def _decode_depth(buf, env, sides, fs, fe, scratch, t_ms, receipt_ns, sym_s, sym_e, st, bounds,
                  allow_new, n_workers, lag_limits, counters, event, msgid_row):
    f = _check_depth(buf, fs, fe, sides, scratch, env, t_ms, receipt_ns)
    if f.status != 0:
        return f.status
    if _too_far_ahead(f.event_time_ms, receipt_ns, bounds):
        return codes.ERR_BAD_TIME
    sid, status = _symbol_id(st, buf, sym_s, sym_e, f.venue, allow_new, n_workers, receipt_ns,
                             bounds, counters, True)
    if sid >= 0 and not _book_matches_reference(st, sid, scratch, f.event_time_ms, bounds):
        return codes.ERR_BOOK_PRICE_MISMATCH
    if sid < 0:  # a new symbol has no reference price yet
        sid, status = _symbol_id(st, buf, sym_s, sym_e, f.venue, allow_new, n_workers,
                                 receipt_ns, bounds, counters, False)
        if sid < 0:
            return status
    mk = st.market[sid:sid + 1]
    if _lagging(mk[0], RING_BOOK, lag_limits):
        return codes.STATUS_BLOCKED
    acquire_fence()  # the worker's reads of the old entry happen before our writes
    pos = _write_book(st, sid, scratch, sides, f, receipt_ns)
    _quotes_end(mk, _quotes_begin(mk), f.event_time_ms, receipt_ns)
    _emit(event, msgid_row, buf, env, pos, receipt_ns, f.event_time_ms, sid, codes.KIND_DEPTH)
    return codes.STATUS_OK


@njit(cache=True, inline="always")
def _decode_trade(buf, env, fs, fe, kind, t_ms, receipt_ns, sym_s, sym_e, st, bounds, allow_new,
                  n_workers, lag_limits, counters, event, msgid_row):
    f = _check_trade(buf, fs, fe, kind, t_ms)
    if f.status != 0:
        return f.status
    if _too_far_ahead(f.event_time_ms, receipt_ns, bounds):
        return codes.ERR_BAD_TIME
    sid, status = _symbol_id(st, buf, sym_s, sym_e, f.venue, allow_new, n_workers, receipt_ns,
                             bounds, counters, False)
    if sid < 0:
        return status
    mk = st.market[sid:sid + 1]
    if _lagging(mk[0], RING_TRADE, lag_limits):
        return codes.STATUS_BLOCKED
    acquire_fence()
    pos = _write_trade(st, sid, f)
    _quotes_end(mk, _quotes_begin(mk), f.event_time_ms, receipt_ns)
    _emit(event, msgid_row, buf, env, pos, receipt_ns, f.event_time_ms, sid, kind)
    return codes.STATUS_OK


@njit(cache=True, inline="always")
def _decode_ticker(buf, env, fs, fe, kind, t_ms, receipt_ns, subject_venue, sym_s, sym_e, st,
                   bounds, allow_new, n_workers, lag_limits, counters, event, msgid_row):
    """A 24 h ticker (stored in the ticker ring, judged) or a mini ticker (last price only)."""
    f = _check_ticker(buf, fs, fe, t_ms, subject_venue)
    if f.status != 0:
        return f.status
    if _too_far_ahead(f.event_time_ms, receipt_ns, bounds):
        return codes.ERR_BAD_TIME
    sid, status = _symbol_id(st, buf, sym_s, sym_e, f.venue, allow_new, n_workers, receipt_ns,
                             bounds, counters, False)
    if sid < 0:
        return status
    mk = st.market[sid:sid + 1]
    ring_event = kind == codes.KIND_TICKER
    if ring_event and _lagging(mk[0], RING_TICKER, lag_limits):
        return codes.STATUS_BLOCKED
    acquire_fence()
    pos = _write_ticker(st, sid, f) if ring_event else np.int64(-1)
    q = _quotes_begin(mk)
    mk[0].last_price = f.last_price
    mk[0].last_price_time_ms = f.event_time_ms
    _quotes_end(mk, q, f.event_time_ms, receipt_ns)
    if ring_event:
        _emit(event, msgid_row, buf, env, pos, receipt_ns, f.event_time_ms, sid, kind)
    return codes.STATUS_OK


@njit(cache=True, inline="always")
def _decode_book_ticker(buf, fs, fe, t_ms, receipt_ns, sym_s, sym_e, st, bounds, allow_new,
                        n_workers, counters):
    """Best bid/ask: stored with the symbol's quotes (no event: no strategy judges it)."""
    f = _check_book_ticker(buf, fs, fe, t_ms, receipt_ns)
    if f.status != 0:
        return f.status
    if _too_far_ahead(f.event_time_ms, receipt_ns, bounds):
        return codes.ERR_BAD_TIME
    sid, status = _symbol_id(st, buf, sym_s, sym_e, f.venue, allow_new, n_workers, receipt_ns,
                             bounds, counters, False)
    if sid < 0:
        return status
    mk = st.market[sid:sid + 1]
    q = _quotes_begin(mk)
    mk[0].best_bid = f.best_bid
    mk[0].best_bid_qty = f.best_bid_qty
    mk[0].best_ask = f.best_ask
    mk[0].best_ask_qty = f.best_ask_qty
    mk[0].quote_update_id = f.update_id
    mk[0].quote_time_ms = f.event_time_ms
    _quotes_end(mk, q, f.event_time_ms, receipt_ns)
    return codes.STATUS_OK


@njit(cache=True, inline="always")
def _decode_mark_price(buf, fs, fe, t_ms, receipt_ns, sym_s, sym_e, st, bounds, allow_new,
                       n_workers, counters):
    """A futures mark price: stored with the symbol's (futures entry's) quotes."""
    f = _check_mark_price(buf, fs, fe, t_ms)
    if f.status != 0:
        return f.status
    if _too_far_ahead(f.event_time_ms, receipt_ns, bounds):
        return codes.ERR_BAD_TIME
    sid, status = _symbol_id(st, buf, sym_s, sym_e, VENUE_FUTURES, allow_new, n_workers,
                             receipt_ns, bounds, counters, False)
    if sid < 0:
        return status
    mk = st.market[sid:sid + 1]
    q = _quotes_begin(mk)
    mk[0].mark_price = f.mark_price
    mk[0].index_price = f.index_price
    mk[0].funding_rate = f.funding_rate
    mk[0].mark_time_ms = f.event_time_ms
    _quotes_end(mk, q, f.event_time_ms, receipt_ns)
    return codes.STATUS_OK


@njit(cache=True)
def _rescan_envelope(buf, s, n, fs, fe, scratch, stack):
    """The full scan of a message whose payload a shard skipped before a later ``stream`` key
    named one of its own symbols (rare: kept out of line)."""
    return _scan_envelope(buf, s, n, fs, fe, scratch, stack, 0, 1)


@njit(cache=True, inline="always")
def _decode_one(buf, s, n, receipt_ns, subject_venue, st, bounds, allow_new, n_workers,
                lag_limits, counters, event, msgid_row, fs, fe, scratch, stack, shard_index,
                shard_count):
    """Decode one message ``buf[s:n]``: a status (codes.STATUS_*, ERR_*, -IGN_*) and the
    KIND_* stored (0 if none). ``event`` is written only for a stored depth, trade or ticker
    (the kinds a strategy judges); otherwise it is left untouched. ``subject_venue`` is
    VENUE_FUTURES for a message from the futures subject (it decides only where the payload's
    shape does not), else 0. With ``shard_count`` > 1 a symbol of another shard is
    ``-IGN_NOT_OWNED``, decided by the stream as soon as the scan has it."""
    env, sides = _scan_envelope(buf, s, n, fs, fe, scratch, stack, shard_index, shard_count)
    if env.status != 0:
        return env.status, 0
    if shard_count > 1:
        if _not_owned(buf, env.stream_s, env.stream_e, shard_index, shard_count):
            return -codes.IGN_NOT_OWNED, 0
        if env.skipped:
            env, sides = _rescan_envelope(buf, s, n, fs, fe, scratch, stack)
            if env.status != 0:
                return env.status, 0
    status, kind, sym_s, sym_e = _route(buf, env, fs, fe)
    if status != 0:
        return status, 0
    t_ms, status = _field_time(buf, fs, fe)
    if status != 0:
        return status, 0
    if kind == codes.KIND_DEPTH:
        status = _decode_depth(buf, env, sides, fs, fe, scratch, t_ms, receipt_ns, sym_s, sym_e,
                               st, bounds, allow_new, n_workers, lag_limits, counters, event,
                               msgid_row)
    elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
        status = _decode_trade(buf, env, fs, fe, kind, t_ms, receipt_ns, sym_s, sym_e, st, bounds,
                               allow_new, n_workers, lag_limits, counters, event, msgid_row)
    elif kind == codes.KIND_TICKER or kind == codes.KIND_MINI_TICKER:
        status = _decode_ticker(buf, env, fs, fe, kind, t_ms, receipt_ns, subject_venue, sym_s,
                                sym_e, st, bounds, allow_new, n_workers, lag_limits, counters,
                                event, msgid_row)
    elif kind == codes.KIND_BOOK_TICKER:
        status = _decode_book_ticker(buf, fs, fe, t_ms, receipt_ns, sym_s, sym_e, st, bounds,
                                     allow_new, n_workers, counters)
    else:  # KIND_MARK_PRICE
        status = _decode_mark_price(buf, fs, fe, t_ms, receipt_ns, sym_s, sym_e, st, bounds,
                                    allow_new, n_workers, counters)
    return status, (kind if status == codes.STATUS_OK else 0)


@njit(cache=True)
def decode_batch(data, starts, ends, receipt_ns, first, header, symbols, symbol_names,
                 symbol_slots, market, book_meta, book_levels, trades, tickers, counters, allow_new,
                 n_workers, lag_limits, status_out, events_out, msgid_out, markets, shard_index,
                 shard_count):
    """Decode messages ``first, first+1, …`` packed in ``data``: ``(next, n_events)``.

    Message ``k`` is ``data[starts[k]:ends[k]]`` received at ``receipt_ns[k]`` (a length over
    MAX_MESSAGE_BYTES is rejected before any byte is read, so it need not be copied) on a
    subject of market ``markets[k]`` (VENUE_FUTURES for the futures subject; 0, or a shorter
    ``markets``, for the others); its status goes to ``status_out[k]``; events are appended to
    ``events_out`` / ``msgid_out`` in input order; ``counters`` is this process's counter row.
    Decoding stops at the first message whose ring is ``lag_limits`` ahead of its worker
    (``STATUS_BLOCKED``): ``next`` is that message, to be retried once the worker has caught
    up; nothing is lost or counted twice. ``shard_index``/``shard_count``: this replica's symbol
    shard (0/1: every symbol); other shards' symbols are ``not_owned``.
    """
    n_msgs = starts.shape[0]
    fs = np.empty(N_FIELDS, dtype=np.int64)
    fe = np.empty(N_FIELDS, dtype=np.int64)
    scratch = np.empty((2, DEPTH_LEVELS, 2), dtype=np.float64)
    stack = np.empty(MAX_DEPTH, dtype=np.int8)
    st = StoreArrays(header, symbols, symbol_names, symbol_slots, market, book_meta, book_levels,
                     trades, tickers)
    h = header[0]
    bounds = Bounds(h.max_clock_skew_ms, h.reference_max_age_ms, h.book_price_tolerance,
                    h.symbol_idle_ns)
    n_events = 0
    for k in range(first, n_msgs):
        s = starts[k]
        e = ends[k]
        if e - s > codes.MAX_MESSAGE_BYTES:
            status = codes.ERR_OVERSIZED
            kind = 0
        else:
            subject_venue = np.int64(markets[k]) if k < markets.shape[0] else np.int64(0)
            status, kind = _decode_one(
                data, s, e, receipt_ns[k], subject_venue, st, bounds, allow_new, n_workers,
                lag_limits, counters, events_out[n_events:n_events + 1][0], msgid_out[n_events],
                fs, fe, scratch, stack, shard_index, shard_count)
        status_out[k] = status
        if status == codes.STATUS_BLOCKED:
            return k, n_events
        counters[C.MESSAGES_RECEIVED] += 1
        if status == codes.STATUS_OK:
            counters[C.KIND_BASE + kind] += 1
            if kind == codes.KIND_DEPTH or kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE \
                    or kind == codes.KIND_TICKER:
                n_events += 1
        elif status == codes.STATUS_FILTERED:
            counters[C.FILTERED] += 1
        elif status < 0:
            counters[C.IGNORED_BASE - status] += 1
        else:
            counters[C.ERROR_BASE + status] += 1
    return n_msgs, n_events


def new_event_buffers(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Event and message-id arrays for :func:`decode_batch` output."""
    return (np.zeros(capacity, dtype=EVENT_DTYPE),
            np.zeros((capacity, MESSAGE_ID_BYTES + 1), dtype=np.uint8))


class Decoder:
    """Packs messages into one buffer and decodes them in one jitted call.

    A Numba call costs microseconds of argument unboxing with the store's arrays, so messages
    are decoded in batches (docs/DESIGN.md, "The hot path"). When a ring
    is as far ahead of its worker as it may be, :meth:`decode` stops there and keeps the rest
    of the batch (:attr:`blocked`): call it again once the workers have caught up.
    """

    def __init__(self, store, counter_row: int, allow_new: bool, capacity: int = 256,
                 buffer_bytes: int = 1 << 20, shard_index: int = 0, shard_count: int = 1) -> None:
        from rtsig.registry import STRATEGIES

        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard {shard_index}/{shard_count}: need 0 <= index < count")
        self.shard_index = int(shard_index)
        self.shard_count = int(shard_count)
        """This replica's symbol shard (``RTSIG_SHARD``); other shards' symbols are ``not_owned``."""
        self.store = store
        self.counters = store.counters[counter_row]
        self.allow_new = allow_new
        self.capacity = capacity
        window_max = STRATEGIES["trade_momentum"].param("momentum_window").max
        assert window_max is not None  # the registry bounds the window
        max_window = int(window_max)
        self.lag_limits = store.layout.lag_limits(max_window)
        self._data = np.zeros(buffer_bytes, dtype=np.uint8)
        self._starts = np.zeros(capacity, dtype=np.int64)
        self._ends = np.zeros(capacity, dtype=np.int64)
        self._receipt = np.zeros(capacity, dtype=np.int64)
        self.status = np.zeros(capacity, dtype=np.int16)
        self.events, self.message_ids = new_event_buffers(capacity)
        self._markets = np.zeros(capacity, dtype=np.uint8)
        self._no_markets = np.zeros(0, dtype=np.uint8)
        self._evictions = 0
        self._generations = store.symbols["generation"].copy()
        self.count = 0
        self.first = 0
        """Index of the first message not decoded yet (0 unless blocked)."""
        self.decoded_from = 0
        self.last_status = self.status[:0]
        """Statuses of the messages the last :meth:`decode` call got through."""
        self._used = 0

    def add(self, message: bytes, receipt_ns: int, market: int = 0) -> bool:
        """Queue one message; False when the batch is full (decode first).

        ``market`` is VENUE_FUTURES for a message from ``NATS_FUTURES_TOPIC`` (else 0).
        """
        if self.count >= self.capacity:
            return False
        n = len(message)
        k = self.count
        if n > codes.MAX_MESSAGE_BYTES:
            # decoded as `oversized` from its length alone: not copied
            self._starts[k], self._ends[k] = 0, n
        else:
            if self._used + n > self._data.size:
                if k:
                    return False
                self._data = np.zeros(max(n, self._data.size * 2), dtype=np.uint8)
            self._data[self._used:self._used + n] = np.frombuffer(message, dtype=np.uint8)
            self._starts[k], self._ends[k] = self._used, self._used + n
            self._used += n
        self._receipt[k] = receipt_ns
        self._markets[k] = market
        self.count = k + 1
        return True

    def full(self) -> bool:
        return self.count >= self.capacity

    @property
    def blocked(self) -> bool:
        """Messages are waiting for a worker to catch up."""
        return self.first < self.count

    def decode_spans(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                     receipt_ns: np.ndarray, status: np.ndarray, events: np.ndarray,
                     message_ids: np.ndarray, markets: np.ndarray | None = None) -> tuple[int, int]:
        """Decode messages that already sit in a buffer (``data[starts[i]:ends[i]]``).

        The ingest frames NATS messages in its receive buffer and decodes them in place; this
        is its one entry into the decoder. ``markets[i]`` (uint8) is ``layout.VENUE_FUTURES``
        for a message received on ``NATS_FUTURES_TOPIC``, else 0; None means all 0. Returns
        ``(messages judged, events written)``; fewer messages than given means a worker's ring
        is full (call again once it has caught up).
        """
        s = self.store
        nxt, n_events = decode_batch(
            data, starts, ends, receipt_ns, 0, s.header, s.symbols, s.symbol_names,
            s.symbol_slots, s.market, s.book_meta, s.book_levels, s.trades, s.tickers,
            self.counters, self.allow_new, s.layout.n_workers, self.lag_limits, status, events,
            message_ids, self._no_markets if markets is None else markets, self.shard_index,
            self.shard_count)
        self._after_evictions()
        return int(nxt), int(n_events)

    def _after_evictions(self) -> None:
        """Clear the pressure history of symbol ids given to new symbols (the supervisor's
        sampler skips symbols without a book, so the old name's history would stay)."""
        s = self.store
        evictions = int(s.header[0]["symbol_evictions"])
        if evictions == self._evictions:
            return
        self._evictions = evictions
        generations = s.symbols["generation"]
        for sid in np.flatnonzero(generations != self._generations):
            s.pressure_history[sid] = np.nan
        self._generations[:] = generations

    def decode(self) -> int:
        """Decode the queued messages into the store; returns the number of events."""
        s = self.store
        n = self.count
        self.decoded_from = self.first
        nxt, n_events = decode_batch(
            self._data, self._starts[:n], self._ends[:n], self._receipt[:n], self.first, s.header,
            s.symbols, s.symbol_names, s.symbol_slots, s.market, s.book_meta, s.book_levels,
            s.trades, s.tickers, self.counters, self.allow_new, s.layout.n_workers,
            self.lag_limits, self.status, self.events, self.message_ids, self._markets[:n],
            self.shard_index, self.shard_count)
        self._after_evictions()
        self.first = int(nxt)
        self.last_status = self.status[self.decoded_from:self.first]
        if self.first >= n:
            self.count = 0
            self.first = 0
            self._used = 0
        return n_events
