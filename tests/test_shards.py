"""Symbol shards in the decoder and the offline runner (docs/CONTRACT.md §2b).

* ``fnv1a_32`` (jitted) equals a slow, obvious Python FNV-1a on any bytes and on the published
  test vectors; a symbol's shard is ``fnv1a_32(upper(symbol)) mod N``.
* A shard discards every message whose stream names a symbol of another shard as ``not_owned``
  (counted, before its payload is decoded) and decodes the rest exactly as an unsharded decoder:
  same statuses, same stored data. Messages that name no symbol are decoded by every shard.
* N offline shards (``rtsig signals`` with ``RTSIG_SHARD=k/N``) together give exactly the signals
  of one unsharded run, and each shard's ``not_owned`` is the count of the other symbols' messages.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtsig.decode import Decoder, fnv1a_32, shard_of, symbol_fnv1a_32
from rtsig.offline import run_signals
from rtsig.settings import Settings
from rtsig.synthetic import MarketSimulator
from tests.decode_helpers import (
    Harness,
    book_ticker_msg,
    combined,
    depth_msg,
    envelope,
    mark_price_msg,
    small_settings,
    ticker_msg,
    trade_msg,
)
from tests.live_helpers import RTSIG, signal_key, write_lines

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fnv1a_32_reference(data: bytes) -> int:
    """FNV-1a, 32 bits, as its authors describe it: xor the byte in, then multiply."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) % (1 << 32)
    return h


def shard_reference(symbol: str, count: int) -> int:
    return fnv1a_32_reference(symbol.encode().upper()) % count  # bytes.upper(): ASCII only


def as_buf(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


# ----------------------------------------------------------------------------- the hash
@pytest.mark.parametrize("data, expected", [
    (b"", 0x811C9DC5),  # the offset basis
    (b"a", 0xE40C292C),  # published FNV-1a 32 test vectors
    (b"foobar", 0xBF9CF968),
    (b"BTCUSDT", 0xE82CD26C),  # pinned: a change would move every symbol to another shard
])
def test_fnv1a_32_known_vectors(data, expected):
    assert fnv1a_32_reference(data) == expected
    assert fnv1a_32(as_buf(data), 0, len(data)) == expected


@PROPERTY
@given(st.binary(max_size=80), st.binary(max_size=8), st.binary(max_size=8))
def test_fnv1a_32_equals_the_obvious_python(data, before, after):
    buf = as_buf(before + data + after)
    s, e = len(before), len(before) + len(data)
    assert fnv1a_32(buf, s, e) == fnv1a_32_reference(data)
    assert symbol_fnv1a_32(buf, s, e) == fnv1a_32_reference(data.upper())


@PROPERTY
@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=24),
       st.integers(1, 1024))
def test_shard_of_a_symbol_is_the_hash_of_its_upper_case_name_mod_n(symbol, count):
    k = shard_of(symbol, count)
    assert k == shard_reference(symbol, count)
    assert 0 <= k < count
    assert shard_of(symbol.lower(), count) == shard_of(symbol.upper(), count) or not symbol.isascii()


def test_the_live_test_symbols_spread_over_three_shards():
    """The live tests rely on it: each of three shards owns one of their symbols."""
    assert {s: shard_of(s, 3) for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT")} == \
        {"BTCUSDT": 0, "ETHUSDT": 2, "BNBUSDT": 1}
    assert [shard_of(s, 2) for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT")] == [0, 0, 1]


# ----------------------------------------------------------------------------- the decoder
class ShardHarness(Harness):
    """:class:`Harness` whose decoder is one shard of ``count``."""

    def __init__(self, index: int, count: int, settings: Settings | None = None) -> None:
        self.index, self.count = index, count
        super().__init__(settings or small_settings())

    def __post_init__(self) -> None:
        super().__post_init__()
        self.decoder = Decoder(self.store, 0, self.settings.trading_symbols is None,
                               capacity=self.capacity, shard_index=self.index, shard_count=self.count)


SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "1000PEPEUSDT")


def mixed_messages() -> list[tuple[str, bytes]]:
    """``(symbol, message)``: every stored and ignored kind, spot and futures, both wrappers."""
    out = []
    for i, sym in enumerate(SYMBOLS):
        px = 100 + 10 * i
        bids, asks = [[f"{px - 1}.00", "1.5"], [f"{px - 2}.00", "2"]], [[f"{px + 1}.00", "0.5"], [f"{px + 2}.00", "3"]]
        out += [
            (sym, depth_msg(sym, bids, asks, update_id=11)),
            (sym, depth_msg(sym, bids, asks, update_id=12, futures=True)),
            (sym, trade_msg(sym, f"{px}.10", "0.3", trade_id=21)),
            (sym, ticker_msg(sym, f"{px}.20", "123.4", "5678.9")),
            (sym, book_ticker_msg(sym, f"{px - 1}.00", "1.5", f"{px + 1}.00", "0.5")),
            (sym, mark_price_msg(sym, f"{px}.05", f"{px}.04", "0.0001")),
            (sym, combined(f"{sym.lower()}@depth@100ms", '{"e":"depthUpdate","E":1,"s":"' + sym
                           + '","U":1,"u":2,"b":[["1","0"]],"a":[]}')),  # ignored: depth_diff
            (sym, combined(f"{sym.lower()}@kline_1m", '{"e":"kline"}')),  # ignored: kline
            (sym, envelope(f"{sym.lower()}@trade", trade_msg(sym, f"{px}.30", "0.1", trade_id=22)
                           .split(b'"data":', 1)[1][:-1].decode())),
            (sym, trade_msg(sym, "-1", "0.3")),  # an error: non_positive_price
        ]
    return out


NO_SYMBOL = [  # decoded, and counted, by every shard
    b'{"result":null,"id":1}',
    combined("!miniTicker@arr", "[]"),
    b"not json",
    b'{"data":{"s":"BTCUSDT"}}',  # missing_stream
    combined("@trade", "{}"),  # bad_stream
    b"[1,2]",  # not_object
]


@pytest.mark.parametrize("count", [2, 3, 5])
def test_a_shard_decodes_its_symbols_exactly_as_one_decoder_and_counts_the_rest(count):
    tagged = mixed_messages()
    messages = [m for _, m in tagged] + NO_SYMBOL
    whole = Harness()
    expected = whole.decode(messages)
    full_state = whole.state()
    not_owned_total = 0
    for k in range(count):
        h = ShardHarness(k, count)
        got = h.decode(messages)
        owned = [shard_reference(sym, count) == k for sym, _ in tagged] + [True] * len(NO_SYMBOL)
        assert got.statuses == [s if mine else "not_owned" for s, mine in zip(expected.statuses, owned)]
        mine = {sym for sym in SYMBOLS if shard_reference(sym, count) == k}
        assert got.events == [e for e in expected.events if e["symbol"] in mine]
        assert h.state() == {name: v for name, v in full_state.items() if name in mine}
        summary = h.summary()
        n_other = sum(1 for sym, _ in tagged if sym not in mine)
        assert summary["ignored"].get("not_owned", 0) == n_other
        assert summary["messages"] == len(messages)
        not_owned_total += n_other
    assert not_owned_total == (count - 1) * len(tagged)  # every message judged by exactly one shard


def owner_and_other(count: int = 3) -> tuple[str, str, int, int]:
    """Two symbols of different shards."""
    a, b = "BTCUSDT", "BNBUSDT"
    ka, kb = shard_reference(a, count), shard_reference(b, count)
    assert ka != kb
    return a, b, ka, kb


def test_the_payload_of_another_shards_symbol_is_not_decoded():
    """A payload that would be an error (crossed book, bad numbers) is simply not_owned."""
    a, _, ka, _ = owner_and_other()
    crossed = depth_msg(a, [["101.00", "1"]], [["100.00", "1"]])
    bad_number = trade_msg(a, "1e400", "0.3")
    huge_unknown = combined(f"{a.lower()}@trade", '{"x":[' + ",".join(['{"y":"\\u0041"}'] * 2000) + "]}")
    for k in range(3):
        statuses = ShardHarness(k, 3).decode([crossed, bad_number, huge_unknown]).statuses
        want = ["crossed_book", "bad_number", "missing_field"] if k == ka else ["not_owned"] * 3
        assert statuses == want


def test_a_stream_after_its_data_is_still_a_shard_decision():
    a, b, ka, kb = owner_and_other()
    payload = trade_msg(a).split(b'"data":', 1)[1][:-1]
    message = b'{"data":' + payload + b',"stream":"' + a.lower().encode() + b'@trade"}'
    for k in range(3):
        assert ShardHarness(k, 3).decode([message]).statuses == ["ok" if k == ka else "not_owned"]


def test_a_repeated_stream_key_decides_by_its_last_value_as_json_does():
    """The first ``stream`` names another shard's symbol, the payload is skipped, then a second
    ``stream`` names an owned one: the message is scanned again and decoded like one decoder."""
    a, b, ka, kb = owner_and_other()
    payload = trade_msg(a).split(b'"data":', 1)[1][:-1]
    message = (b'{"stream":"' + b.lower().encode() + b'@trade","data":' + payload
               + b',"stream":"' + a.lower().encode() + b'@trade"}')
    assert Harness().decode([message]).statuses == ["ok"]
    for k in range(3):
        h = ShardHarness(k, 3)
        assert h.decode([message]).statuses == ["ok" if k == ka else "not_owned"]
        if k == ka:
            whole = Harness()
            whole.decode([message])
            assert h.state() == whole.state()


def test_messages_naming_no_symbol_are_decoded_by_every_shard():
    whole = Harness().decode(NO_SYMBOL).statuses
    assert "not_owned" not in whole
    for k in range(4):
        assert ShardHarness(k, 4).decode(NO_SYMBOL).statuses == whole


def test_spot_and_futures_of_one_name_belong_to_the_same_shard():
    a, _, ka, _ = owner_and_other()
    bids, asks = [["99.00", "1"]], [["101.00", "1"]]
    messages = [depth_msg(a, bids, asks), depth_msg(a, bids, asks, futures=True)]
    for k in range(3):
        statuses = ShardHarness(k, 3).decode(messages).statuses
        assert statuses == (["ok", "ok"] if k == ka else ["not_owned", "not_owned"])


def test_a_shard_outside_its_count_is_refused():
    store = Harness().store
    for index, count in ((3, 3), (-1, 2), (0, 0)):
        with pytest.raises(ValueError):
            Decoder(store, 0, True, shard_index=index, shard_count=count)


symbol_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                       min_size=1, max_size=12)


@PROPERTY
@given(st.lists(st.tuples(symbol_names, st.sampled_from(["trade", "ticker", "depth", "book"]),
                          st.integers(1, 500)), min_size=1, max_size=40),
       st.integers(2, 7), st.data())
def test_property_a_shard_is_one_decoder_restricted_to_its_symbols(items, count, data):
    k = data.draw(st.integers(0, count - 1))
    messages = []
    for sym, kind, px in items:
        if kind == "trade":
            messages.append(trade_msg(sym, f"{px}.5", "0.25"))
        elif kind == "ticker":
            messages.append(ticker_msg(sym, f"{px}.0"))
        elif kind == "depth":
            messages.append(depth_msg(sym, [[f"{px}.00", "1"]], [[f"{px + 1}.00", "1"]]))
        else:
            messages.append(book_ticker_msg(sym, f"{px}.00", "1", f"{px + 1}.00", "1"))
    whole = Harness()
    expected = whole.decode(messages)
    h = ShardHarness(k, count)
    got = h.decode(messages)
    owned = [shard_reference(sym, count) == k for sym, _, _ in items]
    assert got.statuses == [s if mine else "not_owned" for s, mine in zip(expected.statuses, owned)]
    mine = {sym.upper() for (sym, _, _), o in zip(items, owned) if o}
    assert h.state() == {n: v for n, v in whole.state().items() if n in mine}
    assert h.summary()["ignored"].get("not_owned", 0) == owned.count(False)


# ----------------------------------------------------------------------------- offline
OFFLINE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")


def offline(messages: list[bytes], index: int, count: int, symbols) -> tuple[list[dict], dict]:
    out: list[dict] = []
    s = Settings(trading_symbols=symbols, shard_index=index, shard_count=count)
    summary = run_signals(((m, 1_730_462_400_000_000_000 + i) for i, m in enumerate(messages)), s, out.append)
    return out, summary


@pytest.mark.parametrize("symbols", [OFFLINE_SYMBOLS, None], ids=["listed", "all"])
def test_n_offline_shards_together_are_one_unsharded_run(symbols):
    messages = [m for _, m in MarketSimulator(OFFLINE_SYMBOLS, seed=5).messages(150)]
    per_symbol = collections.Counter(json.loads(m)["stream"].split("@")[0].upper() for m in messages)
    expected, whole = offline(messages, 0, 1, symbols)
    assert len(expected) >= 20 and len({s["symbol"] for s in expected}) >= 4
    for count in (2, 3, 4):
        union: list[dict] = []
        kinds: collections.Counter = collections.Counter()
        for k in range(count):
            signals, summary = offline(messages, k, count, symbols)
            assert {shard_reference(s["symbol"], count) for s in signals} <= {k}
            others = sum(n for sym, n in per_symbol.items() if shard_reference(sym, count) != k)
            assert summary["ignored"].get("not_owned", 0) == others
            assert summary["errors"] == whole["errors"] == {}
            assert summary["overruns"] == 0
            kinds.update(summary["kinds"])
            union += signals
        assert dict(kinds) == whole["kinds"]
        assert collections.Counter(map(signal_key, union)) == collections.Counter(map(signal_key, expected))


def test_rtsig_signals_takes_its_shard_from_the_environment(tmp_path):
    messages = [m for _, m in MarketSimulator(("BTCUSDT", "ETHUSDT", "BNBUSDT"), seed=9).messages(20)]
    path = write_lines(tmp_path / "feed.jsonl", messages)
    proc = subprocess.run([RTSIG, "signals", str(path)], capture_output=True, timeout=300,
                          env={**os.environ, "RTSIG_SHARD": "1/3", "TRADING_SYMBOLS": "*"})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    others = sum(1 for m in messages if shard_reference(json.loads(m)["stream"].split("@")[0], 3) != 1)
    assert summary["ignored"] == {"not_owned": others}
    assert {json.loads(line)["symbol"] for line in proc.stdout.splitlines()} <= {"BNBUSDT"}
