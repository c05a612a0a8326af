"""The decoder: Binance message bytes in, records in the store out, no I/O.

:func:`decode_batch` walks each message once with the validating scanner of
:mod:`rtsig.jsonscan`, routes it by its stream name (interfaces.md §2), checks it, writes it into
its symbol's ring in the store (the single writer; see :mod:`rtsig.seqlock` for the ordering)
and emits an *event* — symbol, kind, ring position, times, input ``message_id`` — for every
message a strategy evaluates. Bad input gets a status code (codes.ERR_*) and a counter; it never
raises and never touches another symbol's data.

Decisions beyond the spec (also in docs/DECODING.md):

* Keys are matched byte for byte; a key written with ``\\u`` escapes is treated as unknown.
* The symbol is the stream name's part before ``@``, ASCII letters upper-cased, at most
  24 bytes of UTF-8 (longer → ``bad_stream``).
* Order-book snapshots must be sorted (bids descending, asks ascending; else ``unsorted_book``);
  zero-quantity levels are skipped; levels beyond 20 are skipped unparsed.
* ``{"result": …, "id": …}`` / ``{"error": …}`` subscription replies and ``!…`` streams are
  ignored as ``control``; futures trades whose ``X`` is not ``MARKET`` as ``non_market_trade``.
* A price must be > 0 (``non_positive_price``), a quantity ≥ 0 (``negative_quantity``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rtsig import codes
from rtsig import counters as C
from rtsig.jsonscan import (
    COLON, COMMA, LBRACE, LBRACKET, QUOTE, RBRACE, RBRACKET, MAX_DEPTH,
    integer_value, iso_time_ms, number_value, scalar_end, skip_ws, string_end, value_end,
)
from rtsig.layout import (
    ASK, BID, DEPTH_LEVELS, EVENT_DTYPE, MESSAGE_ID_BYTES, PRICE, QTY, VENUE_FUTURES, VENUE_SPOT,
)
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
F_LAST_UPDATE_ID, F_BIDS, F_ASKS = 128, 129, 130
N_FIELDS = 131
K_LAST_UPDATE_ID = _code(b"lastUpdateId")
K_BIDS = _code(b"bids")
K_ASKS = _code(b"asks")

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

CH_E, CH_BIG_E, CH_T, CH_S, CH_P, CH_Q, CH_M, CH_X, CH_BIG_M = 101, 69, 84, 115, 112, 113, 109, 88, 77
CH_LT, CH_A, CH_B, CH_C, CH_V, CH_U, CH_BIG_B, CH_BIG_A, CH_I, CH_R = \
    116, 97, 98, 99, 118, 117, 66, 65, 105, 114

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


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


@njit(cache=True)
def symbol_find(symbols, symbol_names, symbol_slots, buf, s, e, h):
    """Symbol id of the (upper-cased) name ``buf[s:e]``, or -1."""
    mask = symbol_slots.shape[0] - 1
    j = np.int64(h & np.uint64(mask))
    m = e - s
    while True:
        v = symbol_slots[j]
        if v == 0:
            return -1
        sid = v - 1
        if symbols[sid].name_hash == h and symbols[sid].name_len == m:
            same = True
            for k in range(m):
                if symbol_names[sid, k] != _upper(buf[s + k]):
                    same = False
                    break
            if same:
                return sid
        j = (j + 1) & mask


@njit(cache=True)
def symbol_insert(header, symbols, symbol_names, symbol_slots, buf, s, e, h, n_workers):
    """Add a symbol (the caller checked it is absent); its id, or -1 when the table is full.

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

    Returns ``(end, count, error)``: ``end`` just past the array (-1 if malformed JSON); the
    count of stored levels (zero-quantity levels skipped, at most DEPTH_LEVELS); an ERR_ code
    or 0. Levels beyond DEPTH_LEVELS are validated as JSON but not parsed.
    """
    err = 0
    count = 0
    seen = 0
    i = skip_ws(buf, i + 1, n)
    if i < n and buf[i] == RBRACKET:
        return i + 1, 0, 0
    while True:
        if i >= n:
            return -1, 0, 0
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
                elif qty > 0:
                    scratch[side, count, PRICE] = price
                    scratch[side, count, QTY] = qty
                    count += 1
            else:
                j = value_end(buf, i, n, stack)
                if j < 0:
                    return -1, 0, 0
                err = codes.ERR_BAD_FIELD
                i = j
            seen += 1
        else:
            j = value_end(buf, i, n, stack)
            if j < 0:
                return -1, 0, 0
            if seen < DEPTH_LEVELS and err == 0:
                err = codes.ERR_BAD_FIELD
            seen += 1
            i = j
        i = skip_ws(buf, i, n)
        if i >= n:
            return -1, 0, 0
        if buf[i] == COMMA:
            i = skip_ws(buf, i + 1, n)
            continue
        if buf[i] == RBRACKET:
            return i + 1, count, err
        return -1, 0, 0


@njit(cache=True)
def _field_number(buf, fs, fe, slot, n):
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


@njit(cache=True)
def _decode_one(buf, s, n, receipt_ns, header, symbols, symbol_names, symbol_slots, market,
                book_meta, book_levels, trades, tickers, allow_new, n_workers, lag_limits,
                event, msgid_row, fs, fe, scratch, stack):
    """Decode one message ``buf[s:n]``; returns a status (codes.STATUS_*, ERR_*, -IGN_*) and
    the KIND_* stored (0 if none). ``event`` is written only for a stored depth, trade or
    ticker (the kinds a strategy judges); otherwise it is left untouched."""
    kind_out = 0
    stream_s = -1
    stream_e = -1
    data_seen = False
    data_is_object = False
    ts_s = -1
    ts_e = -1
    mid_s = -1
    mid_e = -1
    control = False
    bid_count = 0
    ask_count = 0
    level_err = 0
    sides_seen = 0

    i = skip_ws(buf, s, n)
    if i >= n:
        return codes.ERR_NOT_JSON, 0
    if buf[i] != LBRACE:
        j = value_end(buf, i, n, stack)
        if j >= 0 and skip_ws(buf, j, n) == n:
            return codes.ERR_NOT_OBJECT, 0
        return codes.ERR_NOT_JSON, 0
    i = skip_ws(buf, i + 1, n)
    if i < n and buf[i] == RBRACE:
        i += 1
    else:
        while True:
            if i >= n or buf[i] != QUOTE:
                return codes.ERR_NOT_JSON, 0
            ks = i + 1
            i = string_end(buf, i, n)
            if i < 0:
                return codes.ERR_NOT_JSON, 0
            key = _key_code(buf, ks, i - 1)
            i = skip_ws(buf, i, n)
            if i >= n or buf[i] != COLON:
                return codes.ERR_NOT_JSON, 0
            i = skip_ws(buf, i + 1, n)
            if i >= n:
                return codes.ERR_NOT_JSON, 0
            vs = i
            if _eq(key, K_DATA):
                # a repeated "data" key: the last one wins, as in every JSON parser
                for k in range(N_FIELDS):  # (fs holds only the last data's fields)
                    fs[k] = -1
                sides_seen = 0
                bid_count = 0
                ask_count = 0
                level_err = 0
            if _eq(key, K_DATA) and buf[i] == LBRACE:
                # the payload: walk its members, recording the spans of the fields we use
                data_seen = True
                data_is_object = True
                i = skip_ws(buf, i + 1, n)
                if i < n and buf[i] == RBRACE:
                    i += 1
                else:
                    while True:
                        if i >= n or buf[i] != QUOTE:
                            return codes.ERR_NOT_JSON, 0
                        dks = i + 1
                        i = string_end(buf, i, n)
                        if i < 0:
                            return codes.ERR_NOT_JSON, 0
                        dke = i - 1
                        i = skip_ws(buf, i, n)
                        if i >= n or buf[i] != COLON:
                            return codes.ERR_NOT_JSON, 0
                        i = skip_ws(buf, i + 1, n)
                        if i >= n:
                            return codes.ERR_NOT_JSON, 0
                        slot = -1
                        if dke - dks == 1 and buf[dks] < 128:
                            slot = np.int64(buf[dks])
                        else:
                            dkey = _key_code(buf, dks, dke)
                            if _eq(dkey, K_LAST_UPDATE_ID):
                                slot = F_LAST_UPDATE_ID
                            elif _eq(dkey, K_BIDS):
                                slot = F_BIDS
                            elif _eq(dkey, K_ASKS):
                                slot = F_ASKS
                        dvs = i
                        if buf[i] == LBRACKET and (slot == F_BIDS or slot == F_ASKS
                                                   or slot == CH_B or slot == CH_A):
                            side = BID if (slot == F_BIDS or slot == CH_B) else ASK
                            i, cnt, err = _parse_levels(buf, i, n, side, scratch, stack)
                            if i < 0:
                                return codes.ERR_NOT_JSON, 0
                            if side == BID:
                                bid_count = cnt
                                sides_seen |= 1
                            else:
                                ask_count = cnt
                                sides_seen |= 2
                            if err != 0 and level_err == 0:
                                level_err = err
                        else:
                            i = value_end(buf, i, n, stack)
                            if i < 0:
                                return codes.ERR_NOT_JSON, 0
                        if slot >= 0:
                            fs[slot] = dvs
                            fe[slot] = i
                        i = skip_ws(buf, i, n)
                        if i < n and buf[i] == COMMA:
                            i = skip_ws(buf, i + 1, n)
                            continue
                        if i < n and buf[i] == RBRACE:
                            i += 1
                            break
                        return codes.ERR_NOT_JSON, 0
            else:
                i = value_end(buf, i, n, stack)
                if i < 0:
                    return codes.ERR_NOT_JSON, 0
                if _eq(key, K_STREAM):
                    stream_s = vs
                    stream_e = i
                elif _eq(key, K_DATA):
                    data_seen = buf[vs] != 110  # null counts as missing
                    data_is_object = False
                elif _eq(key, K_TIMESTAMP):
                    ts_s = vs
                    ts_e = i
                elif _eq(key, K_MESSAGE_ID):
                    mid_s = vs
                    mid_e = i
                elif _eq(key, K_RESULT) or _eq(key, K_ERROR):
                    control = True
            i = skip_ws(buf, i, n)
            if i < n and buf[i] == COMMA:
                i = skip_ws(buf, i + 1, n)
                continue
            if i < n and buf[i] == RBRACE:
                i += 1
                break
            return codes.ERR_NOT_JSON, 0
    if skip_ws(buf, i, n) != n:
        return codes.ERR_NOT_JSON, 0

    # --- routing by stream name
    if stream_s < 0:
        if control:
            return -codes.IGN_CONTROL, 0
        return codes.ERR_MISSING_STREAM, 0
    if buf[stream_s] != QUOTE:
        return codes.ERR_BAD_STREAM, 0
    kind, at = _stream_kind(buf, stream_s + 1, stream_e - 1)
    if kind >= 1000:
        return kind - 1000, 0
    if not data_seen:
        return codes.ERR_MISSING_DATA, 0
    if kind < 0:
        return kind, 0
    if not data_is_object:
        return codes.ERR_BAD_FIELD, 0
    sym_s = stream_s + 1
    sym_e = at
    # the payload's own symbol, when it has one, must agree with the stream's
    if fs[CH_S] >= 0:
        ps = fs[CH_S]
        pe = fe[CH_S]
        if buf[ps] != QUOTE:
            return codes.ERR_BAD_FIELD, 0
        if pe - ps - 2 != sym_e - sym_s:
            return codes.ERR_SYMBOL_MISMATCH, 0
        for k in range(sym_e - sym_s):
            if buf[ps + 1 + k] != _upper(buf[sym_s + k]):
                return codes.ERR_SYMBOL_MISMATCH, 0

    # --- kind-specific checks, all before anything is written
    t_ms, st = _field_time(buf, fs, fe)
    if st != 0:
        return st, 0
    f1 = 0.0
    f2 = 0.0
    f3 = 0.0
    f4 = 0.0
    id1 = np.int64(-1)
    flag = 0
    if kind == codes.KIND_DEPTH:
        if sides_seen != 3:
            # a side sent as something other than a level array is malformed, not missing
            if ((sides_seen & 1) == 0 and (fs[F_BIDS] >= 0 or fs[CH_B] >= 0)) or \
                    ((sides_seen & 2) == 0 and (fs[F_ASKS] >= 0 or fs[CH_A] >= 0)):
                return codes.ERR_BAD_FIELD, 0
            return codes.ERR_MISSING_FIELD, 0
        if level_err != 0:
            return level_err, 0
        if bid_count == 0 or ask_count == 0:
            return codes.ERR_EMPTY_SIDE, 0
        for k in range(1, bid_count):
            if scratch[BID, k, PRICE] >= scratch[BID, k - 1, PRICE]:
                return codes.ERR_UNSORTED_BOOK, 0
        for k in range(1, ask_count):
            if scratch[ASK, k, PRICE] <= scratch[ASK, k - 1, PRICE]:
                return codes.ERR_UNSORTED_BOOK, 0
        if scratch[BID, 0, PRICE] >= scratch[ASK, 0, PRICE]:
            return codes.ERR_CROSSED_BOOK, 0
        for slot in (F_LAST_UPDATE_ID, CH_U):
            if fs[slot] >= 0:
                id1, ok = integer_value(buf, fs[slot], fe[slot])
                if not ok:
                    return codes.ERR_BAD_FIELD, 0
                break
        if t_ms < 0 and ts_s >= 0 and buf[ts_s] == QUOTE:
            t_ms = iso_time_ms(buf, ts_s, ts_e)
        if t_ms < 0:
            t_ms = receipt_ns // 1_000_000
        flag = VENUE_FUTURES if fs[CH_E] >= 0 else VENUE_SPOT
    elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
        if fs[CH_X] >= 0 and kind == codes.KIND_TRADE:
            xs = fs[CH_X]
            if buf[xs] != QUOTE:
                return codes.ERR_BAD_FIELD, 0
            same = fe[CH_X] - xs == 8
            if same:
                for k in range(8):
                    if buf[xs + k] != _MARKET[k]:
                        same = False
                        break
            if not same:
                return -codes.IGN_NON_MARKET_TRADE, 0
        f1, st = _field_number(buf, fs, fe, CH_P, n)
        if st != 0:
            return st, 0
        f2, st = _field_number(buf, fs, fe, CH_Q, n)
        if st != 0:
            return st, 0
        if f2 < 0:
            return codes.ERR_NEGATIVE_QUANTITY, 0
        if f1 <= 0:
            return codes.ERR_NON_POSITIVE_PRICE, 0
        if fs[CH_M] < 0:
            return codes.ERR_MISSING_FIELD, 0
        ms = fs[CH_M]
        if fe[CH_M] - ms == 4 and buf[ms] == _TRUE[0]:
            flag = 1
        elif fe[CH_M] - ms == 5 and buf[ms] == _FALSE[0]:
            flag = 0
        else:
            return codes.ERR_BAD_FIELD, 0
        id_slot = CH_LT if kind == codes.KIND_TRADE else CH_A
        if fs[id_slot] >= 0:
            id1, ok = integer_value(buf, fs[id_slot], fe[id_slot])
            if not ok:
                return codes.ERR_BAD_FIELD, 0
        if t_ms < 0:
            return codes.ERR_MISSING_FIELD, 0
    elif kind == codes.KIND_TICKER or kind == codes.KIND_MINI_TICKER:
        f1, st = _field_number(buf, fs, fe, CH_C, n)
        if st != 0:
            return st, 0
        f2, st = _field_number(buf, fs, fe, CH_V, n)
        if st != 0:
            return st, 0
        f3, st = _field_number(buf, fs, fe, CH_Q, n)
        if st == codes.ERR_MISSING_FIELD:
            f3 = np.nan
        elif st != 0:
            return st, 0
        if f1 <= 0:
            return codes.ERR_NON_POSITIVE_PRICE, 0
        if f2 < 0 or f3 < 0:
            return codes.ERR_NEGATIVE_QUANTITY, 0
        if t_ms < 0:
            return codes.ERR_MISSING_FIELD, 0
    elif kind == codes.KIND_BOOK_TICKER:
        f1, st = _field_number(buf, fs, fe, CH_B, n)
        if st != 0:
            return st, 0
        f2, st = _field_number(buf, fs, fe, CH_BIG_B, n)
        if st != 0:
            return st, 0
        f3, st = _field_number(buf, fs, fe, CH_A, n)
        if st != 0:
            return st, 0
        f4, st = _field_number(buf, fs, fe, CH_BIG_A, n)
        if st != 0:
            return st, 0
        if f2 < 0 or f4 < 0:
            return codes.ERR_NEGATIVE_QUANTITY, 0
        if f1 < 0 or f3 < 0:
            return codes.ERR_NON_POSITIVE_PRICE, 0
        if f1 > 0 and f3 > 0 and f1 >= f3:
            return codes.ERR_CROSSED_BOOK, 0
        if fs[CH_U] >= 0:
            id1, ok = integer_value(buf, fs[CH_U], fe[CH_U])
            if not ok:
                return codes.ERR_BAD_FIELD, 0
        if t_ms < 0:
            t_ms = receipt_ns // 1_000_000
    else:  # KIND_MARK_PRICE
        f1, st = _field_number(buf, fs, fe, CH_P, n)
        if st != 0:
            return st, 0
        f2, st = _field_number(buf, fs, fe, CH_I, n)
        if st == codes.ERR_MISSING_FIELD:
            f2 = np.nan
        elif st != 0:
            return st, 0
        f3, st = _field_number(buf, fs, fe, CH_R, n)
        if st == codes.ERR_MISSING_FIELD:
            f3 = np.nan
        elif st != 0:
            return st, 0
        if f1 <= 0:
            return codes.ERR_NON_POSITIVE_PRICE, 0
        if t_ms < 0:
            return codes.ERR_MISSING_FIELD, 0

    # --- the symbol: known, new (when all symbols are allowed) or filtered
    h = symbol_hash(buf, sym_s, sym_e)
    sid = symbol_find(symbols, symbol_names, symbol_slots, buf, sym_s, sym_e, h)
    if sid < 0:
        if not allow_new:
            return codes.STATUS_FILTERED, 0
        sid = symbol_insert(header, symbols, symbol_names, symbol_slots, buf, sym_s, sym_e, h,
                            n_workers)
        if sid < 0:
            return codes.ERR_SYMBOL_TABLE_FULL, 0

    # --- backpressure: never overwrite a ring entry the owning worker still needs
    mk = market[sid:sid + 1]
    if kind == codes.KIND_DEPTH:
        lag = mk[0].book_end - mk[0].book_done
        limit = lag_limits[0]
    elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
        lag = mk[0].trade_end - mk[0].trade_done
        limit = lag_limits[1]
    elif kind == codes.KIND_TICKER:
        lag = mk[0].ticker_end - mk[0].ticker_done
        limit = lag_limits[2]
    else:
        lag = 0
        limit = 1
    if lag >= limit:
        return codes.STATUS_BLOCKED, 0
    acquire_fence()  # the worker's reads of the old entry happen before our writes

    # --- write (single writer; ordering per rtsig.seqlock)
    pos = np.int64(-1)
    if kind == codes.KIND_DEPTH:
        symbols[sid].venue = flag
        pos = mk[0].book_end
        slot = pos & (book_meta.shape[1] - 1)
        meta = book_meta[sid, slot:slot + 1]
        meta[0].seq = 2 * pos + 1
        release_fence()
        for k in range(bid_count):
            book_levels[sid, slot, BID, k, PRICE] = scratch[BID, k, PRICE]
            book_levels[sid, slot, BID, k, QTY] = scratch[BID, k, QTY]
        for k in range(ask_count):
            book_levels[sid, slot, ASK, k, PRICE] = scratch[ASK, k, PRICE]
            book_levels[sid, slot, ASK, k, QTY] = scratch[ASK, k, QTY]
        meta[0].bid_count = bid_count
        meta[0].ask_count = ask_count
        meta[0].last_update_id = id1
        meta[0].event_time_ms = t_ms
        meta[0].receipt_ns = receipt_ns
        release_fence()
        meta[0].seq = 2 * pos + 2
        mk[0].book_end = pos + 1
    elif kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE:
        symbols[sid].venue = VENUE_SPOT if fs[CH_BIG_M] >= 0 else VENUE_FUTURES  # spot has `M`
        pos = mk[0].trade_end
        slot = pos & (trades.shape[1] - 1)
        mk[0].trade_begin = pos + 1
        release_fence()
        tr = trades[sid, slot:slot + 1]
        tr[0].event_time_ms = t_ms
        tr[0].trade_id = id1
        tr[0].price = f1
        tr[0].quantity = f2
        tr[0].is_buyer_maker = flag
        release_fence()
        mk[0].trade_end = pos + 1
    elif kind == codes.KIND_TICKER:
        pos = mk[0].ticker_end
        slot = pos & (tickers.shape[1] - 1)
        mk[0].ticker_begin = pos + 1
        release_fence()
        tk = tickers[sid, slot:slot + 1]
        tk[0].event_time_ms = t_ms
        tk[0].last_price = f1
        tk[0].base_volume = f2
        tk[0].quote_volume = f3
        release_fence()
        mk[0].ticker_end = pos + 1
    # quotes and last price, under the per-symbol quote seqlock
    q = mk[0].quote_seq
    mk[0].quote_seq = q + 1
    release_fence()
    if kind == codes.KIND_BOOK_TICKER:
        mk[0].best_bid = f1
        mk[0].best_bid_qty = f2
        mk[0].best_ask = f3
        mk[0].best_ask_qty = f4
        mk[0].quote_update_id = id1
        mk[0].quote_time_ms = t_ms
    elif kind == codes.KIND_MARK_PRICE:
        mk[0].mark_price = f1
        mk[0].index_price = f2
        mk[0].funding_rate = f3
        mk[0].mark_time_ms = t_ms
    elif kind == codes.KIND_TICKER or kind == codes.KIND_MINI_TICKER:
        mk[0].last_price = f1
        mk[0].last_price_time_ms = t_ms
    mk[0].last_event_time_ms = t_ms
    mk[0].last_receipt_ns = receipt_ns
    release_fence()
    mk[0].quote_seq = q + 2
    kind_out = kind

    if kind == codes.KIND_DEPTH or kind == codes.KIND_TRADE or kind == codes.KIND_AGG_TRADE \
            or kind == codes.KIND_TICKER:
        event.position = pos
        event.receipt_ns = receipt_ns
        event.event_time_ms = t_ms
        event.symbol = sid
        event.kind = kind
        _copy_message_id(buf, mid_s, mid_e, msgid_row)
    return codes.STATUS_OK, kind_out


@njit(cache=True)
def decode_batch(data, starts, ends, receipt_ns, first, header, symbols, symbol_names,
                 symbol_slots, market, book_meta, book_levels, trades, tickers, counters, allow_new,
                 n_workers, lag_limits, status_out, events_out, msgid_out):
    """Decode messages ``first, first+1, …`` packed in ``data``: ``(next, n_events)``.

    Message ``k`` is ``data[starts[k]:ends[k]]`` received at ``receipt_ns[k]`` (a length over
    MAX_MESSAGE_BYTES is rejected before any byte is read, so it need not be copied); its status
    goes to ``status_out[k]``; events are appended to ``events_out`` / ``msgid_out`` in input
    order; ``counters`` is this process's counter row. Decoding stops at the first message whose
    ring is ``lag_limits`` ahead of its worker (``STATUS_BLOCKED``): ``next`` is that message,
    to be retried once the worker has caught up; nothing is lost or counted twice.
    """
    n_msgs = starts.shape[0]
    fs = np.empty(N_FIELDS, dtype=np.int64)
    fe = np.empty(N_FIELDS, dtype=np.int64)
    scratch = np.empty((2, DEPTH_LEVELS, 2), dtype=np.float64)
    stack = np.empty(MAX_DEPTH, dtype=np.int8)
    n_events = 0
    for k in range(first, n_msgs):
        s = starts[k]
        e = ends[k]
        if e - s > codes.MAX_MESSAGE_BYTES:
            status = codes.ERR_OVERSIZED
            kind = 0
        else:
            status, kind = _decode_one(
                data, s, e, receipt_ns[k], header, symbols, symbol_names, symbol_slots, market,
                book_meta, book_levels, trades, tickers, allow_new, n_workers, lag_limits,
                events_out[n_events:n_events + 1][0], msgid_out[n_events], fs, fe, scratch, stack)
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
    are decoded in batches (architecture.md, "Batch across the Python boundary"). When a ring
    is as far ahead of its worker as it may be, :meth:`decode` stops there and keeps the rest
    of the batch (:attr:`blocked`): call it again once the workers have caught up.
    """

    def __init__(self, store, counter_row: int, allow_new: bool, capacity: int = 256,
                 buffer_bytes: int = 1 << 20) -> None:
        from rtsig.registry import STRATEGIES

        self.store = store
        self.counters = store.counters[counter_row]
        self.allow_new = allow_new
        self.capacity = capacity
        max_window = int(STRATEGIES["trade_momentum"].param("momentum_window").max)
        self.lag_limits = store.layout.lag_limits(max_window)
        self._data = np.zeros(buffer_bytes, dtype=np.uint8)
        self._starts = np.zeros(capacity, dtype=np.int64)
        self._ends = np.zeros(capacity, dtype=np.int64)
        self._receipt = np.zeros(capacity, dtype=np.int64)
        self.status = np.zeros(capacity, dtype=np.int16)
        self.events, self.message_ids = new_event_buffers(capacity)
        self.count = 0
        self.first = 0
        """Index of the first message not decoded yet (0 unless blocked)."""
        self.decoded_from = 0
        self.last_status = self.status[:0]
        """Statuses of the messages the last :meth:`decode` call got through."""
        self._used = 0

    def add(self, message: bytes, receipt_ns: int) -> bool:
        """Queue one message; False when the batch is full (decode first)."""
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
                     message_ids: np.ndarray) -> tuple[int, int]:
        """Decode messages that already sit in a buffer (``data[starts[i]:ends[i]]``).

        The ingest frames NATS messages in its receive buffer and decodes them in place; this
        is its one entry into the decoder. Returns ``(messages judged, events written)``; fewer
        messages than given means a worker's ring is full (call again once it has caught up).
        """
        s = self.store
        nxt, n_events = decode_batch(
            data, starts, ends, receipt_ns, 0, s.header, s.symbols, s.symbol_names,
            s.symbol_slots, s.market, s.book_meta, s.book_levels, s.trades, s.tickers,
            self.counters, self.allow_new, s.layout.n_workers, self.lag_limits, status, events,
            message_ids)
        return int(nxt), int(n_events)

    def decode(self) -> int:
        """Decode the queued messages into the store; returns the number of events."""
        s = self.store
        n = self.count
        self.decoded_from = self.first
        nxt, n_events = decode_batch(
            self._data, self._starts[:n], self._ends[:n], self._receipt[:n], self.first, s.header,
            s.symbols, s.symbol_names, s.symbol_slots, s.market, s.book_meta, s.book_levels,
            s.trades, s.tickers, self.counters, self.allow_new, s.layout.n_workers,
            self.lag_limits, self.status, self.events, self.message_ids)
        self.first = int(nxt)
        self.last_status = self.status[self.decoded_from:self.first]
        if self.first >= n:
            self.count = 0
            self.first = 0
            self._used = 0
        return n_events
