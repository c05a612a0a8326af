"""The validating JSON scanner and number parsers, against Python's own (``float``, ``json``,
``datetime.fromisoformat``) and orjson."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rtsig.jsonscan import MAX_DEPTH, decimal_at, integer_value, iso_time_ms, number_value, skip_ws, value_end
from tests.decode_helpers import known_orjson_divergence, orjson_error, python_valid

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def buf(data: bytes | str) -> np.ndarray:
    """A writable uint8 array, the type the decoder passes (a read-only one would recompile)."""
    if isinstance(data, str):
        data = data.encode()
    return np.frombuffer(bytearray(data), dtype=np.uint8)


def decimal(s: str):
    b = buf(s)
    value, end, ok = decimal_at(b, 0, len(b))
    return float(value), int(end), bool(ok)


def number(s: str):
    b = buf(s)
    value, end, ok = number_value(b, 0, len(b))
    return float(value), int(end), bool(ok)


def same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def within_one_ulp(value: float, exact: float) -> bool:
    return math.isfinite(value) and abs(value - exact) <= math.ulp(exact)


# ----------------------------------------------------------------------------- decimal strings

@st.composite
def decimal_strings(draw, max_decimals=8, max_significant=15, signed=True, digits=(1, 18)):
    """Decimal text as Binance prints it: at most ``max_decimals`` decimals (trailing zeros
    included, e.g. ``0.00062000``), at most ``max_significant`` significant digits (the integer
    part may end in zeros, e.g. ``95000000000000.00000000``), no exponent, and a total number of
    digits within ``digits``."""
    decimals = draw(st.integers(0, max_decimals))
    mant = draw(st.integers(0, 10 ** draw(st.integers(1, max_significant)) - 1))
    text = (str(mant) + "0" * draw(st.integers(0, 12))).rjust(decimals + 1, "0")
    whole, frac = text[:len(text) - decimals].lstrip("0") or "0", text[len(text) - decimals:]
    frac += "0" * draw(st.integers(0, max_decimals - decimals))
    assume(digits[0] <= len(whole) + len(frac) <= digits[1])
    sign = draw(st.sampled_from(["", "-"])) if signed else ""
    return sign + whole + ("." + frac if frac else "")


@PROPERTY
@given(decimal_strings())
@example("83034.29000000")
@example("0.00062000")
@example("0.00000001")
@example("999999999999999")
@example("9999999.99999999")
@example("9999999999.99999999")
@example("0.0034082")
@example("-0")
@example("0.00000000")
def test_binance_decimals_convert_exactly(s):
    """Up to 18 digits in all: every price and quantity of the captures and formats doc."""
    exact = float(s)
    value, end, ok = decimal(s)
    assert ok and end == len(s) and same_float(value, exact)
    # inside a JSON string, as Binance sends prices
    assert number('"' + s + '"') == (value, len(s) + 2, True)
    # as a JSON number (canonical text only: no leading zeros)
    assert number(s) == (value, len(s), True)
    for delimiter in (",", "]", "}", " "):
        v, e, ok = number(s + delimiter)
        assert ok and e == len(s) and same_float(v, exact)


@PROPERTY
@given(decimal_strings(max_decimals=22, digits=(19, 40)))
@example("95000000000000.00000000")  # a meme coin's 24h base volume, spot format
@example("99999999999.00000000")
@example("92233721.00000000000")
def test_many_digit_decimals_with_few_significant_convert_exactly(s):
    value, end, ok = decimal(s)
    assert ok and end == len(s) and same_float(value, float(s))


@PROPERTY
@given(decimal_strings(max_decimals=22, max_significant=15), st.sampled_from(["", "00", "0"]))
def test_up_to_15_digits_and_22_decimals_exact_with_leading_zeros(s, lead):
    """The documented exact range: 53-bit mantissa, power of ten at most 22."""
    sign, body = ("-", s[1:]) if s.startswith("-") else ("", s)
    text = sign + lead + body
    value, end, ok = decimal(text)
    assert ok and end == len(text) and same_float(value, float(text))


@PROPERTY
@given(st.integers(0, 10 ** 15 - 1), st.integers(-22, 22), st.sampled_from(["e", "E"]),
       st.booleans())
def test_exponent_forms_exact_in_range(mant, exp, letter, plus):
    text = f"{mant}{letter}{'+' if plus and exp >= 0 else ''}{exp}"
    d = Decimal(text).normalize() if mant else Decimal(0)
    if mant:
        # the exact path: significant digits in 53 bits and a power of ten within 22
        assume(-22 <= d.as_tuple().exponent <= 22)
    value, end, ok = decimal(text)
    assert ok and end == len(text) and value == float(text)


@pytest.mark.parametrize("text", [
    "", "-", ".", ".5", "5.", "-.5", "e5", "1e", "1e+", "+1", "abc", "-x",
])
def test_decimal_at_rejects_non_numbers(text):
    assert decimal(text)[2] is False


@pytest.mark.parametrize("text, ok, end", [
    ('"1e400"', False, 7),    # a number that does not parse into a finite float
    ("1e400", False, 5),
    ("-1e400", False, 6),
    ('"NaN"', False, 5),
    ('"Infinity"', False, 10),
    ('"abc"', False, 5),
    ('""', False, 2),
    ('"1.5x"', False, 6),
    ('"1.5 "', False, 6),
    ('" 1.5"', False, 6),
    ('"0x1F"', False, 6),
    ("true", False, -1),      # not a number or string: the caller validates it as JSON
    ("[1]", False, -1),
    ('"1.5', False, -1),      # unterminated string: malformed JSON
    ('"00012.50"', True, 10),  # leading zeros inside a string read as float() does
])
def test_number_value_edges(text, ok, end):
    value, e, good = number(text)
    assert (good, e) == (ok, end)
    if ok:
        assert value == float(json.loads(text))


# Within 1 ulp outside the exact range.

@pytest.mark.parametrize("text", [
    "9223372036854775808", "9999999999999999999", "0.9999999999999999999",
    "0.99999999999999999999", "99999999999999999999.5",
])
def test_decimal_at_long_mantissa_keeps_sign(text):
    value, end, ok = decimal(text)
    assert ok and end == len(text) and within_one_ulp(value, float(text))


@PROPERTY
@given(decimal_strings(max_decimals=17, max_significant=18, signed=False))
@example("997.3380838027595")
@example("58.579686273477132")
def test_decimal_at_long_mantissa_within_one_ulp(s):
    value, end, ok = decimal(s)
    assert ok and end == len(s) and within_one_ulp(value, float(s))


# Beyond 1e±280 the two-step scaling may be 1 ulp off, and a value within an ulp of
# the largest double may overflow to inf (then rejected as bad_number): documented limits.
@PROPERTY
@given(st.integers(1, 10 ** 15 - 1), st.integers(-300, 280))
@example(320283388111419, -194)
@example(22250738585072014, -324)  # 2.2250738585072014e-308, the smallest normal: read as 0
def test_decimal_at_exponents_within_one_ulp(mant, exp):
    text = f"{mant}e{exp}"
    value, end, ok = decimal(text)
    assert ok and end == len(text) and within_one_ulp(value, float(text))


# ----------------------------------------------------------------------------- integers

@PROPERTY
@given(st.integers(-(10 ** 18) + 1, 10 ** 18 - 1), st.booleans())
@example(4445146133983, False)  # futures update ids exceed 2^32
@example(999_999_999_999_999_999, True)
@example(0, False)
def test_integer_value_up_to_18_digits(v, quoted):
    text = f'"{v}"' if quoted else str(v)
    b = buf(text)
    assert integer_value(b, 0, len(b)) == (v, True)


@pytest.mark.parametrize("text", [
    "1000000000000000000",  # 19 digits: beyond the documented 18
    "9223372036854775807", "-9223372036854775808", "99999999999999999999",
    "", '""', "-", '"-"', "1.0", "1e3", "+1", " 1", "1 ", "0x10", "true", "null", '"12a"',
])
def test_integer_value_rejects(text):
    b = buf(text)
    assert integer_value(b, 0, len(b))[1] is False


# ----------------------------------------------------------------------------- ISO times

@st.composite
def iso_times(draw):
    dt = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)))
    frac_digits = draw(st.integers(0, 9))
    frac = "" if frac_digits == 0 else "." + (f"{dt.microsecond:06d}" + "987")[:frac_digits]
    sep = draw(st.sampled_from(["T", " "]))
    zone = draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}{sep}"
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}{frac}{zone}")


def iso(text: str) -> int:
    b = buf('"' + text + '"')
    return int(iso_time_ms(b, 0, len(b)))


@PROPERTY
@given(iso_times())
@example("2024-11-01T12:00:00.125000Z")
@example("1970-01-01T00:00:00Z")
@example("1969-12-31T23:59:59.999Z")
@example("2024-02-29T23:59:59.9999999+00:00")
@example("0001-01-01T00:00:00Z")
def test_iso_time_ms_matches_fromisoformat(text):
    expected = (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)
    assert iso(text) == expected


@pytest.mark.parametrize("text", [
    "", "2024-11-01", "2024-11-01T12:00Z", "2024-11-01T12:00:00", "2024-11-01T12:00:00.Z",
    "2024-11-01T12:00:00+01:00", "2024-11-01T12:00:00z", "2024-13-01T12:00:00Z",
    "2024-00-01T12:00:00Z", "2024-11-32T12:00:00Z", "2024-11-00T12:00:00Z",
    "2024-11-01T24:00:00Z", "2024-11-01T12:60:00Z", "2024/11/01T12:00:00Z",
    "2024-11-01T12:00:00ZZ", "2024-11-01T12:00:00.125000Z ", "not a timestamp at all",
])
def test_iso_time_ms_rejects(text):
    assert iso(text) == -1


@pytest.mark.parametrize("text", [
    "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
    "2024-11-01T23:59:60Z",
])
def test_iso_time_ms_rejects_impossible_dates(text):
    with pytest.raises(ValueError):
        datetime.fromisoformat(text)
    assert iso(text) == -1


# ----------------------------------------------------------------------------- validation

def scan(data: bytes) -> int:
    """End of the single JSON text ``data`` (surrounding whitespace allowed), or -1."""
    b = buf(data)
    n = len(b)
    stack = np.zeros(MAX_DEPTH, dtype=np.int8)
    end = value_end(b, skip_ws(b, 0, n), n, stack)
    if end < 0 or skip_ws(b, end, n) != n:
        return -1
    return int(end)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10 ** 30), 10 ** 30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=25,
)
whitespace = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n", "  \t"])


@st.composite
def json_texts(draw):
    """A JSON value serialised with random whitespace between every token."""
    value = draw(json_values)
    ascii_only = draw(st.booleans())

    def dump(v):
        w = draw(whitespace)
        if isinstance(v, dict):
            items = [draw(whitespace) + json.dumps(k, ensure_ascii=ascii_only) + draw(whitespace)
                     + ":" + draw(whitespace) + dump(x) + draw(whitespace) for k, x in v.items()]
            return "{" + (",".join(items) if items else w) + "}"
        if isinstance(v, list):
            items = [draw(whitespace) + dump(x) + draw(whitespace) for x in v]
            return "[" + (",".join(items) if items else w) + "]"
        return json.dumps(v, ensure_ascii=ascii_only)

    return draw(whitespace) + dump(value) + draw(whitespace)


@PROPERTY
@given(json_texts())
def test_value_end_accepts_valid_json_at_its_exact_end(text):
    data = text.encode()
    assert python_valid(data) and orjson_error(data) is None
    end_chars = json.JSONDecoder().raw_decode(text.lstrip(" \t\r\n"))[1]
    leading = len(text) - len(text.lstrip(" \t\r\n"))
    assert scan(data) == len(text[:leading + end_chars].encode())


@st.composite
def mutated_json(draw):
    data = bytearray(draw(json_texts()).encode())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from([
                b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"-", b".", b"e", b"0", b"1",
                b" ", b"\x00", b"\x1f", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\u12", b"tru",
                b"nul", b"\\ud800", b"1e999",
            ]))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 3))]
        else:
            del data[pos:]
    return bytes(data)


def check_validity(data: bytes) -> None:
    valid = scan(data) >= 0
    assert valid == python_valid(data), data
    err = orjson_error(data)
    if (err is None) != valid:
        assert valid and known_orjson_divergence(err), (data, err)


@PROPERTY
@given(mutated_json())
@example(b'"\\ud800"')
@example(b"[1e400]")
@example(b'{"a":1,}')
@example(b"[01]")
@example(b'"\xed\xa0\x80"')
@example(b"\xef\xbb\xbf{}")
@example(b'"\x7f"')
@example(b'"\\u00"')
def test_value_end_validity_matches_json_on_mutated_json(data):
    check_validity(data)


@PROPERTY
@given(st.binary(max_size=64))
def test_value_end_validity_matches_json_on_random_bytes(data):
    check_validity(data)


@pytest.mark.parametrize("depth", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 5000])
@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"k":', "}")])
def test_nesting_limit(depth, opener, closer):
    """Nesting up to MAX_DEPTH is valid; deeper is treated as malformed (never a crash)."""
    data = (opener * depth + "0" + closer * depth).encode()
    assert (scan(data) == len(data)) == (depth <= MAX_DEPTH)
    assert scan((opener * depth).encode()) == -1
