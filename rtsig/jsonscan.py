"""A validating JSON scanner and number parsers for jitted code.

Bytes in, positions and numbers out, no Python objects: the decoder uses these to walk a
Binance message once. Every function returns ``-1`` (or ``ok = False``) on malformed input
instead of raising, so one bad message costs a status code, never an exception.

Decimal strings are converted exactly when their significant digits fit in 53 bits and the
power of ten is at most 22 (every price and quantity Binance sends: at most 8 decimals, no
exponent); other numbers are converted with one extra rounding (within 1 ulp).
"""

from __future__ import annotations

import numpy as np
from numba import njit

QUOTE, BACKSLASH, COMMA, COLON = 34, 92, 44, 58
LBRACE, RBRACE, LBRACKET, RBRACKET = 123, 125, 91, 93
MINUS, PLUS, DOT, ZERO, NINE = 45, 43, 46, 48, 57
LOWER_E, UPPER_E = 101, 69
MAX_DEPTH = 64
"""Deeper nesting is treated as malformed (Binance messages nest 4 levels)."""

_POW10 = np.array([10.0 ** k for k in range(23)], dtype=np.float64)
_TWO53 = 1 << 53


@njit(cache=True, inline="always")
def skip_ws(buf, i, n):
    while i < n:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


@njit(cache=True)
def _hex4(buf, i, n):
    """The value of the four hex digits at ``i``, or -1."""
    if i + 4 > n:
        return -1
    v = 0
    for k in range(4):
        c = buf[i + k]
        if 48 <= c <= 57:
            d = c - 48
        elif 65 <= c <= 70:
            d = c - 55
        elif 97 <= c <= 102:
            d = c - 87
        else:
            return -1
        v = v * 16 + d
    return v


@njit(cache=True)
def _utf8_end(buf, i, n):
    """End of the multi-byte UTF-8 sequence starting at ``i`` (a byte >= 0x80), or -1."""
    c = buf[i]
    if 0xC2 <= c <= 0xDF:
        need, lo, hi = 1, 0x80, 0xBF
    elif c == 0xE0:
        need, lo, hi = 2, 0xA0, 0xBF
    elif c == 0xED:
        need, lo, hi = 2, 0x80, 0x9F
    elif 0xE1 <= c <= 0xEF:
        need, lo, hi = 2, 0x80, 0xBF
    elif c == 0xF0:
        need, lo, hi = 3, 0x90, 0xBF
    elif 0xF1 <= c <= 0xF3:
        need, lo, hi = 3, 0x80, 0xBF
    elif c == 0xF4:
        need, lo, hi = 3, 0x80, 0x8F
    else:
        return -1
    if i + need >= n:
        return -1
    b = buf[i + 1]
    if b < lo or b > hi:
        return -1
    for k in range(2, need + 1):
        b = buf[i + k]
        if b < 0x80 or b > 0xBF:
            return -1
    return i + need + 1


_STRING_CLASS = np.zeros(256, dtype=np.uint8)
_STRING_CLASS[:0x20] = 3  # control characters must be escaped
_STRING_CLASS[QUOTE] = 1
_STRING_CLASS[BACKSLASH] = 2
_STRING_CLASS[0x80:] = 4  # start of a multi-byte UTF-8 sequence


@njit(cache=True)
def string_end(buf, i, n):
    """Index just past the JSON string starting with the quote at ``i``, or -1."""
    # PERF: one table lookup per ordinary byte instead of four comparisons.
    i += 1
    while i < n:
        cls = _STRING_CLASS[buf[i]]
        if cls == 0:
            i += 1
        elif cls == 1:
            return i + 1
        elif cls == 2:
            if i + 1 >= n:
                return -1
            e = buf[i + 1]
            if e == 117:  # \uXXXX; surrogates must pair (orjson rejects lone ones)
                unit = _hex4(buf, i + 2, n)
                if unit < 0 or 0xDC00 <= unit <= 0xDFFF:
                    return -1
                i += 6
                if 0xD800 <= unit <= 0xDBFF:
                    if i + 1 >= n or buf[i] != BACKSLASH or buf[i + 1] != 117:
                        return -1
                    low = _hex4(buf, i + 2, n)
                    if low < 0xDC00 or low > 0xDFFF:
                        return -1
                    i += 6
            elif e == QUOTE or e == BACKSLASH or e == 47 or e == 98 or e == 102 \
                    or e == 110 or e == 114 or e == 116:
                i += 2
            else:
                return -1
        elif cls == 3:
            return -1
        else:
            i = _utf8_end(buf, i, n)
            if i < 0:
                return -1
    return -1


@njit(cache=True)
def number_end(buf, i, n):
    """Index just past the JSON number starting at ``i`` (strict grammar), or -1."""
    if i < n and buf[i] == MINUS:
        i += 1
    if i >= n:
        return -1
    c = buf[i]
    if c == ZERO:
        i += 1
    elif ZERO < c <= NINE:
        while i < n and ZERO <= buf[i] <= NINE:
            i += 1
    else:
        return -1
    if i < n and buf[i] == DOT:
        i += 1
        start = i
        while i < n and ZERO <= buf[i] <= NINE:
            i += 1
        if i == start:
            return -1
    if i < n and (buf[i] == LOWER_E or buf[i] == UPPER_E):
        i += 1
        if i < n and (buf[i] == PLUS or buf[i] == MINUS):
            i += 1
        start = i
        while i < n and ZERO <= buf[i] <= NINE:
            i += 1
        if i == start:
            return -1
    return i


@njit(cache=True)
def _literal_end(buf, i, n, word):
    m = len(word)
    if i + m > n:
        return -1
    for k in range(m):
        if buf[i + k] != word[k]:
            return -1
    return i + m


_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_NULL = np.frombuffer(b"null", dtype=np.uint8)


@njit(cache=True)
def scalar_end(buf, i, n):
    """End of a string, number or literal at ``i``; -2 if ``i`` starts a container; -1 if bad."""
    c = buf[i]
    if c == QUOTE:
        return string_end(buf, i, n)
    if c == MINUS or (ZERO <= c <= NINE):
        return number_end(buf, i, n)
    if c == 116:
        return _literal_end(buf, i, n, _TRUE)
    if c == 102:
        return _literal_end(buf, i, n, _FALSE)
    if c == 110:
        return _literal_end(buf, i, n, _NULL)
    if c == LBRACE or c == LBRACKET:
        return -2
    return -1


@njit(cache=True, inline="always")
def member_value_start(buf, i, n):
    """At an object member's key (its opening quote): the index just past the ``:``, or -1."""
    if i >= n or buf[i] != QUOTE:
        return -1
    i = string_end(buf, i, n)
    if i < 0:
        return -1
    i = skip_ws(buf, i, n)
    if i >= n or buf[i] != COLON:
        return -1
    return i + 1


@njit(cache=True)
def value_end(buf, i, n, stack):
    """Index just past the JSON value at ``i`` (validated completely), or -1.

    ``stack`` is an int8 scratch array of at least MAX_DEPTH entries (1 object, 2 array).
    """
    depth = 0
    while True:
        i = skip_ws(buf, i, n)
        if i >= n:
            return -1
        end = scalar_end(buf, i, n)
        if end == -1:
            return -1
        if end == -2:
            c = buf[i]
            i = skip_ws(buf, i + 1, n)
            if i >= n:
                return -1
            if c == LBRACE:
                if buf[i] == RBRACE:
                    i += 1
                else:
                    if depth >= MAX_DEPTH:
                        return -1
                    stack[depth] = 1
                    depth += 1
                    i = member_value_start(buf, i, n)
                    if i < 0:
                        return -1
                    continue
            else:
                if buf[i] == RBRACKET:
                    i += 1
                else:
                    if depth >= MAX_DEPTH:
                        return -1
                    stack[depth] = 2
                    depth += 1
                    continue
        else:
            i = end
        # a value is complete: close containers and find the next value
        while True:
            if depth == 0:
                return i
            i = skip_ws(buf, i, n)
            if i >= n:
                return -1
            c = buf[i]
            if stack[depth - 1] == 1:
                if c == COMMA:
                    i = member_value_start(buf, skip_ws(buf, i + 1, n), n)
                    if i < 0:
                        return -1
                    break
                if c == RBRACE:
                    depth -= 1
                    i += 1
                    continue
                return -1
            if c == COMMA:
                i += 1
                break
            if c == RBRACKET:
                depth -= 1
                i += 1
                continue
            return -1


@njit(cache=True)
def decimal_at(buf, i, n):
    """Parse a decimal number starting at ``i``: ``(value, end, ok)``.

    Accepts ``-?digits(.digits)?([eE][+-]?digits)?`` (leading zeros allowed, as Python's
    ``float`` does for strings). ``end`` is the first byte after the number; the caller checks
    what follows (a closing quote, or a JSON delimiter).
    """
    # PERF: the common case (at most 18 digits, no exponent) is one tight loop and one
    # correctly rounded division; measured 2x faster than digit-by-digit bookkeeping.
    start = i
    neg = False
    if i < n and buf[i] == MINUS:
        neg = True
        i += 1
    mant = np.int64(0)
    int_digits = 0
    while i < n:
        d = np.int64(buf[i]) - ZERO
        if d < 0 or d > 9:
            break
        mant = mant * 10 + d
        int_digits += 1
        i += 1
    frac_digits = 0
    if i < n and buf[i] == DOT:
        i += 1
        while i < n:
            d = np.int64(buf[i]) - ZERO
            if d < 0 or d > 9:
                break
            mant = mant * 10 + d
            frac_digits += 1
            i += 1
        if frac_digits == 0:
            return 0.0, i, False
    if int_digits == 0:
        return 0.0, i, False
    if int_digits + frac_digits > 18 or (i < n and (buf[i] == LOWER_E or buf[i] == UPPER_E)):
        return _decimal_slow(buf, start, n)
    if mant <= _TWO53 and frac_digits <= 22:  # PERF: exact in one division, no call
        value = float(mant) / _POW10[frac_digits]
    else:
        value = _scale(mant, -frac_digits)
    return (-value if neg else value), i, True


_DD_SPLIT = 134217729.0  # 2**27 + 1 (Veltkamp)
_POW10_MIN, _POW10_MAX = -300, 300


def _pow10_table() -> tuple[np.ndarray, np.ndarray]:
    """10**k for k in [-300, 300] as double-doubles (hi + lo), from exact rationals."""
    from fractions import Fraction

    hi = np.empty(_POW10_MAX - _POW10_MIN + 1)
    lo = np.empty_like(hi)
    for k in range(_POW10_MIN, _POW10_MAX + 1):
        exact = Fraction(10) ** k
        h = float(exact)
        hi[k - _POW10_MIN] = h
        lo[k - _POW10_MIN] = float(exact - Fraction(h))
    return hi, lo


_POW10_HI, _POW10_LO = _pow10_table()


@njit(cache=True, inline="always")
def _two_prod(a, b):
    """``(p, e)`` with ``p + e == a * b`` exactly (Dekker, no FMA needed)."""
    p = a * b
    c = _DD_SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _DD_SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@njit(cache=True)
def _scale(mant, exp10):
    """``mant · 10**exp10`` as the nearest double (``mant`` ≥ 0, at most 18 digits).

    Exact when the mantissa fits 53 bits and |exp10| ≤ 22 (one correctly rounded operation);
    otherwise a double-double product (error ~2**-100 before the final rounding), which is
    correctly rounded except within ~2**-100 of a halfway case. Beyond 1e±300 it scales in two
    steps (within an ulp or two; overflow gives inf, which callers reject).
    """
    if mant == 0:
        return 0.0
    if mant <= _TWO53 and -22 <= exp10 <= 22:  # PERF: the common case, no digit stripping
        if exp10 >= 0:
            return float(mant) * _POW10[exp10]
        return float(mant) / _POW10[-exp10]
    while mant % 10 == 0:
        mant //= 10
        exp10 += 1
    if mant <= _TWO53 and -22 <= exp10 <= 22:
        if exp10 >= 0:
            return float(mant) * _POW10[exp10]
        return float(mant) / _POW10[-exp10]
    extra = 1.0
    if exp10 < _POW10_MIN + 20:
        extra = 1e-40
        exp10 += 40
    elif exp10 > _POW10_MAX - 20:
        extra = 1e40
        exp10 -= 40
    if exp10 < _POW10_MIN:
        return 0.0
    if exp10 > _POW10_MAX:
        return np.inf
    mh = float(mant)
    ml = float(mant - np.int64(mh)) if mh < 9.2e18 else 0.0
    ph = _POW10_HI[exp10 - _POW10_MIN]
    pl = _POW10_LO[exp10 - _POW10_MIN]
    p, e = _two_prod(mh, ph)
    e += mh * pl + ml * ph
    return (p + e) * extra


@njit(cache=True)
def _decimal_slow(buf, i, n):
    """:func:`decimal_at` for long mantissas and exponents (kept digit by digit)."""
    neg = False
    if i < n and buf[i] == MINUS:
        neg = True
        i += 1
    mant = np.int64(0)
    sig = 0
    exp10 = 0
    digits = 0
    while i < n:
        c = buf[i]
        if c < ZERO or c > NINE:
            break
        d = c - ZERO
        if sig < 18:  # 18 digits always fit an int64; the rest only move the exponent
            if mant != 0 or d != 0:
                mant = mant * 10 + d
                sig += 1
        else:
            exp10 += 1
        digits += 1
        i += 1
    if digits == 0:
        return 0.0, i, False
    if i < n and buf[i] == DOT:
        i += 1
        frac = 0
        while i < n:
            c = buf[i]
            if c < ZERO or c > NINE:
                break
            d = c - ZERO
            if sig < 18:
                if mant != 0 or d != 0:
                    mant = mant * 10 + d
                    sig += 1
                exp10 -= 1
            frac += 1
            i += 1
        if frac == 0:
            return 0.0, i, False
    if i < n and (buf[i] == LOWER_E or buf[i] == UPPER_E):
        i += 1
        eneg = False
        if i < n and (buf[i] == PLUS or buf[i] == MINUS):
            eneg = buf[i] == MINUS
            i += 1
        e = 0
        edigits = 0
        while i < n and ZERO <= buf[i] <= NINE:
            if e < 100000:
                e = e * 10 + (buf[i] - ZERO)
            edigits += 1
            i += 1
        if edigits == 0:
            return 0.0, i, False
        exp10 += -e if eneg else e
    if exp10 > 100000:
        exp10 = 100000
    elif exp10 < -100000:
        exp10 = -100000
    value = _scale(mant, exp10)
    return (-value if neg else value), i, True


_ASCII_ZEROS = np.uint64(0x3030303030303030)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIXES = np.uint64(0x0606060606060606)
_MASK_BYTES_0_4 = np.uint64(0x000000FF000000FF)
_MUL_100_1E6 = np.uint64(100 + (1000000 << 32))
_MUL_1_1E4 = np.uint64(1 + (10000 << 32))
_U8 = np.uint64(8)
_U16 = np.uint64(16)
_U32 = np.uint64(32)
_U10 = np.uint64(10)
_1E8 = 1e8


@njit(cache=True, inline="always")
def _spot_decimal(buf, i, n):
    """Fast path for ``digits.dddddddd"`` (Binance spot: exactly 8 decimals): ``(value, end)``.

    ``end`` is just past the closing quote, or -1 when the text has another shape (the caller
    falls back to :func:`decimal_at`).
    """
    # PERF: the 8 decimals are checked and converted as one 64-bit word (SWAR, as in
    # simdjson's parse_eight_digits); depth20 decode went from ~5.2 to ~3 µs per message.
    mant = np.int64(0)
    k = i
    while k < n:
        d = np.int64(buf[k]) - ZERO
        if d < 0 or d > 9:
            break
        mant = mant * 10 + d
        k += 1
    if k == i or k - i > 9 or k + 9 >= n or buf[k] != DOT or buf[k + 9] != QUOTE:
        return 0.0, -1
    w = np.uint64(0)
    for b in range(8):
        w |= np.uint64(buf[k + 1 + b]) << np.uint64(8 * b)
    if (w & _HIGH_NIBBLES) != _ASCII_ZEROS or ((w + _SIXES) & _HIGH_NIBBLES) != _ASCII_ZEROS:
        return 0.0, -1
    w = w - _ASCII_ZEROS
    w = w * _U10 + (w >> _U8)
    w = ((w & _MASK_BYTES_0_4) * _MUL_100_1E6 + ((w >> _U16) & _MASK_BYTES_0_4) * _MUL_1_1E4) >> _U32
    total = mant * 100_000_000 + np.int64(w & np.uint64(0xFFFFFFFF))
    if total > _TWO53:  # exact only below 2**53; the general path handles the rest
        return 0.0, -1
    return float(total) / _1E8, k + 10


@njit(cache=True, inline="always")
def number_value(buf, i, n):
    """A price or quantity at ``i``: a decimal string or a JSON number. ``(value, end, ok)``.

    ``end`` is just past the value; ``ok`` is False for anything else, including a valid JSON
    value that is not a finite number (the caller tells malformed JSON from a bad number by
    calling :func:`scalar_end` when ``end`` is -1).
    """
    if i >= n:
        return 0.0, -1, False
    if buf[i] == QUOTE:
        value, j = _spot_decimal(buf, i + 1, n)
        if j > 0:
            return value, j, True
        value, j, ok = decimal_at(buf, i + 1, n)
        if ok and j < n and buf[j] == QUOTE and np.isfinite(value):
            return value, j + 1, True
        return 0.0, string_end(buf, i, n), False
    j = number_end(buf, i, n)
    if j < 0:
        return 0.0, -1, False
    value, k, ok = decimal_at(buf, i, j)
    if ok and k == j and np.isfinite(value):
        return value, j, True
    return 0.0, j, False


@njit(cache=True)
def integer_value(buf, s, e):
    """An integer id or time in ``buf[s:e]`` (a JSON integer or a quoted one): ``(value, ok)``."""
    if s < e and buf[s] == QUOTE:
        s += 1
        e -= 1
    neg = False
    if s < e and buf[s] == MINUS:
        neg = True
        s += 1
    if s >= e or e - s > 18:
        return 0, False
    v = np.int64(0)
    for k in range(s, e):
        c = buf[k]
        if c < ZERO or c > NINE:
            return 0, False
        v = v * 10 + (c - ZERO)
    return (-v if neg else v), True


_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


@njit(cache=True, inline="always")
def _digits(buf, s, width):
    v = 0
    for k in range(width):
        v = v * 10 + (np.int64(buf[s + k]) - ZERO)
    return v


@njit(cache=True)
def iso_time_ms(buf, s, e):
    """Milliseconds since the epoch of ``"YYYY-MM-DDTHH:MM:SS[.fff…](Z|+00:00)"`` in ``buf[s:e]``.

    ``s``/``e`` include the quotes. Returns -1 when the text is not such a timestamp.
    """
    s += 1
    e -= 1
    if e - s < 20:
        return -1
    p = s
    # YYYY-MM-DDTHH:MM:SS at fixed offsets
    for off in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
        c = buf[s + off]
        if c < ZERO or c > NINE:
            return -1
    if buf[s + 4] != MINUS or buf[s + 7] != MINUS or (buf[s + 10] != 84 and buf[s + 10] != 32) \
            or buf[s + 13] != COLON or buf[s + 16] != COLON:
        return -1
    y = _digits(buf, s, 4)
    mo = _digits(buf, s + 5, 2)
    d = _digits(buf, s + 8, 2)
    hh = _digits(buf, s + 11, 2)
    mm = _digits(buf, s + 14, 2)
    ss = _digits(buf, s + 17, 2)
    p = s + 19
    ms = 0
    if p < e and buf[p] == DOT:
        p += 1
        scale = 100
        start = p
        while p < e and ZERO <= buf[p] <= NINE:
            ms += (buf[p] - ZERO) * scale
            scale //= 10
            p += 1
        if p == start:
            return -1
    if p < e and buf[p] == 90:  # Z
        p += 1
    elif p + 6 == e and (buf[p] == PLUS or buf[p] == MINUS) and buf[p + 1] == ZERO \
            and buf[p + 2] == ZERO and buf[p + 3] == COLON and buf[p + 4] == ZERO and buf[p + 5] == ZERO:
        p += 6
    else:
        return -1
    if p != e:
        return -1
    if mo < 1 or mo > 12 or d < 1 or hh > 23 or mm > 59 or ss > 59:
        return -1
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    if d > _DAYS_IN_MONTH[mo - 1] + (1 if mo == 2 and leap else 0):
        return -1
    # days from civil (Howard Hinnant's algorithm)
    y2 = y - 1 if mo <= 2 else y
    era = y2 // 400
    yoe = y2 - era * 400
    mp = mo + 9 if mo <= 2 else mo - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return ((days * 24 + hh) * 60 + mm) * 60000 + ss * 1000 + ms
