"""The decoder, fed bytes: literal Binance examples, the real captures, every bad-input reason of
docs/CONTRACT.md §2, the tolerances, and the ring positions it writes.

Expected values are computed here from the message text with ``json`` and ``float(str)``, never
from the decoder's own helpers.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from rtsig import codes
from tests.decode_helpers import (
    CAPTURE_FILES,
    ENVELOPE_TIMESTAMP,
    ENVELOPE_TIMESTAMP_MS,
    EXAMPLES,
    EXAMPLES_BY_NAME,
    MESSAGE_ID,
    REAL_DIR,
    RECEIPT_MS,
    RECEIPT_NS,
    Harness,
    book_ticker_msg,
    changed_regions,
    combined,
    depth_msg,
    envelope,
    mark_price_msg,
    read_capture,
    record,
    seed_messages,
    small_settings,
    snapshot,
    ticker_msg,
    trade_msg,
)

EVENT_KINDS = {"depth", "trade", "aggTrade", "ticker"}
"""Kinds a strategy evaluates: these produce an event (docs/CONTRACT.md §2 'routed to')."""
VENUE = {"spot": 1, "futures": 2}  # layout.VENUE_SPOT / VENUE_FUTURES
WRAPPERS = {"combined": combined, "envelope": envelope}


def levels_of(side: list) -> list[tuple[float, float]]:
    """What a book side must be stored as: float(str), zero quantities skipped, top 20."""
    out = [(float(p), float(q)) for p, q, *_ in side if float(q) != 0]
    return out[:20]


# ============================================================================ 1. literal examples

def expected_event_time(ex, data: dict, wrapper: str) -> int:
    """E, else T; a spot partial book has neither: the envelope timestamp, else receipt time."""
    if "E" in data:
        return data["E"]
    if "T" in data:
        return data["T"]
    if ex.kind == "depth" and wrapper == "envelope":
        return ENVELOPE_TIMESTAMP_MS
    return RECEIPT_MS


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.name)
def test_literal_example(ex, wrapper):
    h = Harness()
    out = h.decode([WRAPPERS[wrapper](ex.stream, ex.payload)])
    assert out.statuses == [ex.status]
    summary = h.summary()
    assert summary["messages"] == 1
    assert summary["errors"] == {} and summary["filtered"] == 0
    if ex.status != "ok":
        assert summary["ignored"] == {ex.status: 1} and summary["kinds"] == {}
        assert out.events == [] and h.store.symbol_list() == []
        return
    assert summary["kinds"] == {ex.kind: 1} and summary["ignored"] == {}
    assert h.store.symbol_list() == [ex.symbol]

    data = ex.data
    sid = h.sid(ex.symbol)
    market = record(h.store.market[sid])
    t_ms = expected_event_time(ex, data, wrapper)
    assert market["last_event_time_ms"] == t_ms
    assert market["last_receipt_ns"] == RECEIPT_NS

    if ex.kind in ("trade", "aggTrade"):
        assert record(h.store.trades[sid, 0]) == {
            "event_time_ms": t_ms,
            "trade_id": data["t" if ex.kind == "trade" else "a"],
            "price": float(data["p"]),
            "quantity": float(data["q"]),
            "is_buyer_maker": int(data["m"]),
        }
        assert (market["trade_begin"], market["trade_end"]) == (1, 1)
    elif ex.kind == "ticker":
        assert record(h.store.tickers[sid, 0]) == {
            "event_time_ms": t_ms, "last_price": float(data["c"]),
            "base_volume": float(data["v"]), "quote_volume": float(data["q"])}
        assert (market["ticker_begin"], market["ticker_end"]) == (1, 1)
        assert (market["last_price"], market["last_price_time_ms"]) == (float(data["c"]), t_ms)
    elif ex.kind == "miniTicker":
        assert (market["last_price"], market["last_price_time_ms"]) == (float(data["c"]), t_ms)
        assert market["ticker_end"] == 0  # no 24h volumes worth a ticker entry
    elif ex.kind == "bookTicker":
        assert (market["best_bid"], market["best_bid_qty"], market["best_ask"],
                market["best_ask_qty"]) == tuple(float(data[k]) for k in "bBaA")
        assert (market["quote_update_id"], market["quote_time_ms"]) == (data["u"], t_ms)
    elif ex.kind == "markPrice":
        assert (market["mark_price"], market["index_price"], market["funding_rate"],
                market["mark_time_ms"]) == (float(data["p"]), float(data["i"]),
                                            float(data["r"]), t_ms)
    elif ex.kind == "depth":
        bids = data["bids"] if "bids" in data else data["b"]
        asks = data["asks"] if "asks" in data else data["a"]
        assert h.store.book_sides(sid) == (levels_of(bids), levels_of(asks))
        _, nb, na, meta = h.store.latest_book(sid)
        assert (nb, na) == (len(levels_of(bids)), len(levels_of(asks)))
        assert int(meta["last_update_id"]) == data.get("lastUpdateId", data.get("u"))
        assert int(meta["event_time_ms"]) == t_ms and int(meta["receipt_ns"]) == RECEIPT_NS
        assert market["book_end"] == 1
    else:  # pragma: no cover
        raise AssertionError(ex.kind)

    if ex.kind in ("depth", "trade", "aggTrade"):
        assert int(h.store.symbols[sid]["venue"]) == VENUE[ex.venue]
    expected_events = []
    if ex.kind in EVENT_KINDS:
        expected_events = [{
            "symbol": ex.symbol, "kind": ex.kind, "position": 0, "event_time_ms": t_ms,
            "receipt_ns": RECEIPT_NS,
            "message_id": MESSAGE_ID if wrapper == "envelope" else "",
        }]
    assert out.events == expected_events


def test_all_literal_examples_in_one_batch_match_one_by_one():
    """The same 30 messages in one batch store exactly what they store one per batch."""
    msgs = [w(e.stream, e.payload) for e in EXAMPLES for w in WRAPPERS.values()]
    together, alone = Harness(), Harness(capacity=1)
    a = together.decode(msgs)
    b = alone.decode(msgs)
    assert a.statuses == b.statuses
    assert a.events == b.events
    assert together.state() == alone.state()


@pytest.mark.parametrize("stream, symbol", [
    ("1000pepeusdt@trade", "1000PEPEUSDT"),
    ("1inchusdt@trade", "1INCHUSDT"),
    ("BTCUSDT@trade", "BTCUSDT"),
    ("BtcUsdt@trade", "BTCUSDT"),
    ("币安人生usdt@trade", "币安人生USDT"),  # spot has (rare) non-ASCII symbols
])
def test_symbol_from_stream_upper_cased(stream, symbol):
    payload = ('{"e":"trade","E":1790649901913,"s":' + json.dumps(symbol, ensure_ascii=False)
               + ',"t":1,"p":"1.5","q":"2","T":1790649901913,"m":false,"M":true}')
    h = Harness()
    out = h.decode([combined(stream, payload)])
    assert out.statuses == ["ok"]
    assert h.store.symbol_list() == [symbol]
    assert out.events[0]["symbol"] == symbol


@pytest.mark.parametrize("message, status", [
    (b'{"result":null,"id":1}', "control"),
    (b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}', "control"),
    (combined("btcusdt@kline_1m",
              '{"e":"kline","E":1,"s":"BTCUSDT","k":{"t":1,"T":2,"s":"BTCUSDT","i":"1m",'
              '"f":-1,"L":-1,"o":"1","c":"1","h":"1","l":"1","v":"0","n":0,"x":false,'
              '"q":"0","V":"0","Q":"0","B":"0"}}'), "kline"),
    (combined("btcusdt@kline", '{"e":"kline","E":1,"s":"BTCUSDT","k":{}}'), "kline"),
    (combined("btcusdt@depth", EXAMPLES_BY_NAME["spot_diff_depth"].payload.replace(
        "NKNUSDT", "BTCUSDT")), "depth_diff"),
    (combined("btcusdt@avgPrice", '{"e":"avgPrice","E":1,"s":"BTCUSDT","w":"5m","p":"1"}'),
     "other"),
])
def test_ignored_kinds_are_counted_not_errors(message, status):
    h = Harness()
    assert h.decode([message]).statuses == [status]
    summary = h.summary()
    assert summary["ignored"] == {status: 1} and summary["errors"] == {}
    assert h.store.symbol_list() == []


@pytest.mark.parametrize("timestamp, expected_ms", [
    (ENVELOPE_TIMESTAMP, ENVELOPE_TIMESTAMP_MS),
    ("2024-11-01T12:00:00.125+00:00", ENVELOPE_TIMESTAMP_MS),
    ("2024-11-01T12:00:00Z", ENVELOPE_TIMESTAMP_MS - 125),
    ("not a time", RECEIPT_MS),
    ("", RECEIPT_MS),
])
def test_spot_depth_time_from_envelope_timestamp(timestamp, expected_ms):
    ex = EXAMPLES_BY_NAME["spot_depth20"]
    h = Harness()
    out = h.decode([envelope(ex.stream, ex.payload, timestamp=timestamp)])
    assert out.statuses == ["ok"]
    assert out.events[0]["event_time_ms"] == expected_ms


# ============================================================================ 2. real captures

def capture_expectations(messages: list[bytes]) -> tuple[Counter, Counter]:
    """Kinds and ignored kinds of a capture, from the spec's routing table, with plain json."""
    stored, ignored = Counter(), Counter()
    for body in messages:
        obj = json.loads(body)
        kind = obj["stream"].split("@")[1]
        if kind in ("depth5", "depth10", "depth20"):
            stored["depth"] += 1
        elif kind == "trade" and obj["data"].get("X", "MARKET") != "MARKET":
            ignored["non_market_trade"] += 1
        elif kind in ("trade", "aggTrade", "ticker", "bookTicker", "markPrice", "miniTicker"):
            stored[kind] += 1
        elif kind == "depth":
            ignored["depth_diff"] += 1
        elif kind.startswith("kline"):
            ignored["kline"] += 1
        else:
            ignored["other"] += 1
    return stored, ignored


@pytest.mark.skipif(REAL_DIR is None, reason="real captures (shared/data/real) not found")
@pytest.mark.parametrize("name", CAPTURE_FILES)
def test_real_capture_decodes_without_errors(name):
    lines = read_capture(name)
    messages = [m for _, m in lines]
    h = Harness()
    out = h.decode(messages, [r for r, _ in lines])

    stored, ignored = capture_expectations(messages)
    assert sum(stored.values()) + sum(ignored.values()) == len(messages)
    summary = h.summary()
    assert summary["errors"] == {}
    assert summary["messages"] == len(messages)
    assert summary["kinds"] == dict(stored)
    assert summary["ignored"] == dict(ignored)
    assert summary["filtered"] == 0
    assert Counter(out.statuses) == Counter({"ok": sum(stored.values())}) + ignored

    # what was stored is exactly the last quote and every trade of each symbol
    last_quote, trades = {}, {}
    for (receipt, body) in lines:
        obj = json.loads(body)
        d = obj["data"]
        kind = obj["stream"].split("@")[1]
        if kind == "bookTicker":
            last_quote[d["s"]] = (float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]),
                                  d["u"], d.get("E", receipt // 1_000_000))
        elif kind == "aggTrade":
            trades.setdefault(d["s"], []).append({
                "event_time_ms": d["E"], "trade_id": d["a"], "price": float(d["p"]),
                "quantity": float(d["q"]), "is_buyer_maker": int(d["m"])})
    state = h.state()
    for sym, quote in last_quote.items():
        m = state[sym]["market"]
        assert (m["best_bid"], m["best_bid_qty"], m["best_ask"], m["best_ask_qty"],
                m["quote_update_id"], m["quote_time_ms"]) == quote
    for sym, expected in trades.items():
        assert [rec for _, rec in state[sym]["trades"]] == expected
    trade_events = [(e["symbol"], e["position"]) for e in out.events]
    expected_events = []
    seen = Counter()
    for body in messages:
        obj = json.loads(body)
        if obj["stream"].split("@")[1] == "aggTrade":
            expected_events.append((obj["data"]["s"], seen[obj["data"]["s"]]))
            seen[obj["data"]["s"]] += 1
    assert trade_events == expected_events


# ============================================================================ 3. bad input

TRADE_OK = ('{{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":5,"p":{p},"q":{q},'
            '"T":1700000000000,"m":{m},"M":true}}')


def bad_trade(p='"50000.5"', q='"0.1"', m="true", stream="btcusdt@trade") -> bytes:
    return combined(stream, TRADE_OK.format(p=p, q=q, m=m))


def _oversized() -> bytes:
    msg = trade_msg("BTCUSDT")
    return msg[:-1] + b" " * (64 * 1024 + 1 - len(msg)) + b"}"


BAD_CASES = [
    # (reason, case id, message, settings changes)
    ("not_json", "garbage", b"hello", {}),
    ("not_json", "empty", b"", {}),
    ("not_json", "truncated", trade_msg("BTCUSDT")[:-7], {}),
    ("not_json", "trailing_comma", b'{"stream":"btcusdt@trade",}', {}),
    ("not_json", "trailing_bytes", trade_msg("BTCUSDT") + b" x", {}),
    ("not_json", "bad_utf8", trade_msg("BTCUSDT").replace(b"BTCUSDT\"", b"BTC\xff\xfeT\"", 1),
     {}),
    ("not_json", "nan_literal", bad_trade(p="NaN"), {}),
    ("not_object", "array", b"[1,2]", {}),
    ("not_object", "string", b'"x"', {}),
    ("not_object", "number", b" 42 ", {}),
    ("not_object", "null", b"null", {}),
    ("missing_stream", "data_only", b'{"data":' + TRADE_OK.format(
        p='"1"', q='"1"', m="true").encode() + b"}", {}),
    ("missing_stream", "empty_object", b"{}", {}),
    ("missing_data", "no_data", b'{"stream":"btcusdt@trade"}', {}),
    ("missing_data", "null_data", b'{"stream":"btcusdt@trade","data":null}', {}),
    ("bad_number", "price_two_dots", bad_trade(p='"50000.5.1"'), {}),
    ("bad_number", "qty_letters", bad_trade(q='"abc"'), {}),
    ("bad_number", "price_empty", bad_trade(p='""'), {}),
    ("bad_number", "price_infinite", bad_trade(p='"1e400"'), {}),
    ("bad_number", "price_bool", bad_trade(p="true"), {}),
    ("bad_number", "depth_price", depth_msg("BTCUSDT", [["49999.x", "1"]], [["50001", "1"]]),
     {}),
    ("negative_quantity", "trade", bad_trade(q='"-0.1"'), {}),
    ("negative_quantity", "depth", depth_msg("BTCUSDT", [["49999", "1"]],
                                             [["50001", "-2"]]), {}),
    ("negative_quantity", "book_ticker", book_ticker_msg("BTCUSDT", bid_qty="-1"), {}),
    ("non_positive_price", "trade_zero", bad_trade(p='"0.00000000"'), {}),
    ("non_positive_price", "trade_negative", bad_trade(p='"-5"'), {}),
    ("non_positive_price", "depth_zero", depth_msg("BTCUSDT", [["0", "1"]],
                                                   [["50001", "1"]]), {}),
    ("non_positive_price", "ticker", ticker_msg("BTCUSDT", last="0"), {}),
    ("crossed_book", "bid_above_ask", depth_msg("BTCUSDT", [["50002", "1"]],
                                                [["50001", "1"]]), {}),
    ("crossed_book", "bid_equals_ask", depth_msg("BTCUSDT", [["50001", "1"]],
                                                 [["50001", "1"]]), {}),
    ("crossed_book", "futures", depth_msg("BTCUSDT", [["50002", "1"]], [["50001", "1"]],
                                          futures=True), {}),
    ("crossed_book", "book_ticker", book_ticker_msg("BTCUSDT", bid="101", ask="100"), {}),
    ("empty_side", "no_bids", depth_msg("BTCUSDT", [], [["50001", "1"]]), {}),
    ("empty_side", "no_asks", depth_msg("BTCUSDT", [["49999", "1"]], []), {}),
    # docs/CONTRACT.md §2a: the producer's faults
    ("diff_as_snapshot", "asks_all_zero", depth_msg("BTCUSDT", [["49999", "1"]],
                                                    [["50001", "0"], ["50002", "0.000"]]), {}),
    ("diff_as_snapshot", "one_zero_level", depth_msg("BTCUSDT", [["49999", "1"], ["49998", "0"]],
                                                     [["50001", "1"]]), {}),
    ("diff_as_snapshot", "spot_diff_payload", combined(
        "btcusdt@depth20@100ms", '{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT","U":7,'
        '"u":9,"b":[["49999.00","1.5"]],"a":[["50001.00","2.0"]]}'), {}),
    ("book_price_mismatch", "eth_book_labelled_btc", depth_msg(
        "BTCUSDT", [["2999.50", "4"], ["2999.00", "1"]], [["3000.50", "2"]]),
     {"reference_max_age_seconds": 1e9}),
    ("bad_time", "trade_in_2099", bad_trade().replace(b'"E":1700000000000', b'"E":4070908800000'),
     {}),
    ("bad_time", "depth_envelope_in_2099", envelope(
        "btcusdt@depth20@100ms", '{"lastUpdateId":1,"bids":[["49999","1"]],"asks":[["50001","1"]]}',
        timestamp="2099-01-01T00:00:00.000000Z"), {}),
    ("bad_number", "trade_qty_1e308", bad_trade(q="1e308"), {}),
    ("bad_number", "trade_qty_zero", bad_trade(q='"0.00000000"'), {}),
    ("bad_number", "trade_price_1e12", bad_trade(p='"1000000000000.00000000"'), {}),
    ("bad_number", "depth_qty_1e12", depth_msg("BTCUSDT", [["49999", "1000000000000"]],
                                               [["50001", "1"]]), {}),
    ("bad_number", "ticker_volume_1e308", ticker_msg("BTCUSDT", base_volume="1e308"), {}),
    ("unsorted_book", "bids_ascending", depth_msg("BTCUSDT", [["49998", "1"], ["49999", "1"]],
                                                  [["50001", "1"]]), {}),
    ("unsorted_book", "asks_descending", depth_msg("BTCUSDT", [["49999", "1"]],
                                                   [["50002", "1"], ["50001", "1"]]), {}),
    ("unsorted_book", "duplicate_price", depth_msg("BTCUSDT", [["49999", "1"], ["49999", "2"]],
                                                   [["50001", "1"]]), {}),
    ("oversized", "65537_bytes", _oversized(), {}),
    ("symbol_mismatch", "trade", bad_trade(stream="ethusdt@trade"), {}),
    ("symbol_mismatch", "futures_depth", depth_msg("BTCUSDT", [["1", "1"]], [["2", "1"]],
                                                   futures=True).replace(b"btcusdt@", b"ethusdt@"),
     {}),
    # the seed fills 4 entries: spot and futures (its mark prices) of BTCUSDT and ETHUSDT
    ("symbol_table_full", "fifth_entry", trade_msg("SOLUSDT"), {"max_symbols": 4}),
    ("bad_stream", "no_at", combined("btcusdt", '{}'), {}),
    ("bad_stream", "no_symbol", combined("@trade", '{}'), {}),
    ("bad_stream", "empty", combined("", '{}'), {}),
    ("bad_stream", "not_a_string", b'{"stream":5,"data":{}}', {}),
    ("bad_stream", "symbol_too_long", trade_msg("A" * 25), {}),
    ("bad_field", "data_array", b'{"stream":"btcusdt@trade","data":[]}', {}),
    ("bad_field", "data_string", b'{"stream":"btcusdt@trade","data":"x"}', {}),
    ("bad_field", "maker_string", bad_trade(m='"true"'), {}),
    ("bad_field", "time_string", combined("btcusdt@trade", TRADE_OK.format(
        p='"1"', q='"1"', m="true").replace('"E":1700000000000', '"E":"soon"')), {}),
    ("bad_field", "time_float", combined("btcusdt@trade", TRADE_OK.format(
        p='"1"', q='"1"', m="true").replace('"E":1700000000000', '"E":1.5')), {}),
    ("bad_field", "trade_id_string", combined("btcusdt@trade", TRADE_OK.format(
        p='"1"', q='"1"', m="true").replace('"t":5', '"t":"five"')), {}),
    ("bad_field", "bids_object", b'{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,'
                                 b'"bids":{},"asks":[["2","1"]]}}', {}),
    ("bad_field", "level_not_pair", depth_msg("BTCUSDT", [["49999"]], [["50001", "1"]]), {}),
    ("bad_field", "level_not_array", b'{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,'
                                     b'"bids":["49999"],"asks":[["50001","1"]]}}', {}),
    ("missing_field", "trade_without_side", combined(
        "btcusdt@trade", '{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1"}'), {}),
    ("missing_field", "ticker_without_time", combined(
        "btcusdt@ticker", '{"e":"24hrTicker","s":"BTCUSDT","c":"1","v":"1","q":"1"}'), {}),
    ("missing_field", "depth_without_sides", combined("btcusdt@depth20", '{"lastUpdateId":1}'),
     {}),
    ("filtered", "not_traded", trade_msg("SOLUSDT"), {"trading_symbols": ("BTCUSDT", "ETHUSDT")}),
]

VALID_AROUND = [
    trade_msg("BTCUSDT", "50001.5", "0.7", trade_id=99),
    depth_msg("ETHUSDT", [["2999.5", "4"], ["2999.0", "1"]], [["3000.5", "2"]], update_id=77),
    ticker_msg("BTCUSDT", "50002.0", "1.5", "75003.0"),
    book_ticker_msg("ETHUSDT", "2999.5", "4", "3000.5", "2"),
]


def bad_case_ids():
    return [f"{reason}-{cid}" for reason, cid, _, _ in BAD_CASES]


def seeded(changes: dict) -> Harness:
    h = Harness(settings=small_settings(**changes))
    out = h.decode(seed_messages())
    assert set(out.statuses) == {"ok"}, out.statuses
    return h


def test_every_error_reason_has_a_case():
    """Each error code of codes.py is exercised by at least one hand-made message."""
    assert {r for r, *_ in BAD_CASES} >= set(codes.ERROR_NAMES.values())


@pytest.mark.parametrize("reason, cid, message, changes", BAD_CASES, ids=bad_case_ids())
def test_bad_input_counted_and_nothing_touched(reason, cid, message, changes):
    h = seeded(changes)
    before_state = snapshot(h.store)
    before = h.summary()
    out = h.decode([message])
    assert out.statuses == [reason]
    assert out.events == []
    after = h.summary()
    assert after["messages"] == before["messages"] + 1
    assert after["kinds"] == before["kinds"] and after["ignored"] == before["ignored"]
    if reason == "filtered":
        assert after["filtered"] == before["filtered"] + 1
        assert after["errors"] == before["errors"]
    else:
        assert after["errors"] == {**before["errors"],
                                   reason: before["errors"].get(reason, 0) + 1}
        assert after["filtered"] == before["filtered"]
    assert changed_regions(before_state, snapshot(h.store)) == []


@pytest.mark.parametrize("reason, cid, message, changes", BAD_CASES, ids=bad_case_ids())
def test_bad_input_between_valid_messages_loses_nothing(reason, cid, message, changes):
    with_bad, without = seeded(changes), seeded(changes)
    a = with_bad.decode(VALID_AROUND[:2] + [message] + VALID_AROUND[2:])
    b = without.decode(VALID_AROUND)
    assert a.statuses == ["ok", "ok", reason, "ok", "ok"]
    assert a.events == b.events
    assert snapshot(with_bad.store) == snapshot(without.store)


def test_filtered_symbols_counted_as_filtered():
    h = Harness(settings=small_settings(trading_symbols=("BTCUSDT",)))
    eth = [m.replace(b"btcusdt", b"ethusdt").replace(b"BTCUSDT", b"ETHUSDT")
           for m in VALID_AROUND] + [trade_msg("ETHUSDT"), mark_price_msg("ETHUSDT")]
    before = snapshot(h.store)
    out = h.decode(eth)
    assert out.statuses == ["filtered"] * len(eth) and out.events == []
    summary = h.summary()
    assert summary["filtered"] == len(eth)
    assert summary["errors"] == {} and summary["kinds"] == {}
    assert h.store.symbol_list() == ["BTCUSDT"]
    assert changed_regions(before, snapshot(h.store)) == []
    out = h.decode([trade_msg("btcusdt"), trade_msg("ETHUSDT")])
    assert out.statuses == ["ok", "filtered"]


def test_oversized_limit_is_64_kib():
    msg = trade_msg("BTCUSDT")
    at_limit = msg[:-1] + b" " * (64 * 1024 - len(msg)) + b"}"
    assert len(at_limit) == 64 * 1024
    h = Harness()
    assert h.decode([at_limit, at_limit + b" "]).statuses == ["ok", "oversized"]


def test_symbol_table_full_keeps_known_symbols_working():
    h = Harness(settings=small_settings(max_symbols=2))
    out = h.decode([trade_msg("BTCUSDT"), trade_msg("ETHUSDT"), trade_msg("SOLUSDT"),
                    trade_msg("BTCUSDT", trade_id=2)])
    assert out.statuses == ["ok", "ok", "symbol_table_full", "ok"]
    assert h.store.symbol_list() == ["BTCUSDT", "ETHUSDT"]
    assert h.summary()["errors"] == {"symbol_table_full": 1}


# Decoder bugs found while writing these tests (see the report): the expected behaviour.

def test_depth_with_a_missing_side_is_missing_field():
    msg = b'{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[["1","1"]]}}'
    assert Harness().decode([msg]).statuses == ["missing_field"]


def test_repeated_data_key_last_one_wins():
    msg = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1",'
           b'"q":"1","m":true},"data":{}}')
    assert json.loads(msg)["data"] == {}
    assert Harness().decode([msg]).statuses == ["missing_field"]


def test_large_spot_volume_with_8_decimals_is_stored():
    msg = ticker_msg("PEPEUSDT", "0.00001234", "95000000000000.00000000", "1172500000.00000000")
    h = Harness()
    assert h.decode([msg]).statuses == ["ok"]
    assert h.state()["PEPEUSDT"]["tickers"][0][1]["base_volume"] == 95e12


@pytest.mark.parametrize("message, status", [
    (b'{"stream":"btcusdt@depth20","data":{"lastUpdateId":1,"bids":[[]],"asks":[["2","1"]]}}',
     "bad_field"),
    (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,'
     b'"u":2,"b":[],"a":[[]]}}', "depth_diff"),
])
def test_empty_level_is_not_malformed_json(message, status):
    json.loads(message)
    assert Harness().decode([message]).statuses == [status]


# ============================================================================ 4. tolerances

def decode_state(messages):
    h = Harness()
    out = h.decode(messages)
    return out.statuses, out.events, h.state()


def test_levels_beyond_20_ignored_even_when_malformed():
    bids = [[f"{50000 - k}.00", f"{k + 1}.5"] for k in range(20)]
    asks = [[f"{50001 + k}.00", f"{k + 2}.25"] for k in range(20)]
    # levels 21+ would each be an error within the top 20: negative, unsorted, crossed, not a pair
    extra_bids = [["1.00", "-3"], ["60000.00", "1"], ["x", "y"], ["5"]]
    extra_asks = [["1.00", "1"], ["50001.00", "-1"], ["z"]]
    h = Harness()
    sym = "BTCUSDT"
    out = h.decode([depth_msg(sym, bids + extra_bids, asks + extra_asks)])
    assert out.statuses == ["ok"]
    assert h.store.book_sides(h.sid(sym)) == (levels_of(bids), levels_of(asks))
    assert h.summary()["errors"] == {}


def test_zero_quantity_level_marks_a_diff_not_a_snapshot():
    """A partial book never carries a zero quantity; a diff's deletion does (docs/CONTRACT.md §2a).
    Each spelling of zero is recognised."""
    for zero in ("0.00000000", "0.000", "0"):
        bids = [["100.5", "1"], ["100.4", zero], ["100.1", "2"]]
        h = Harness()
        assert h.decode([depth_msg("BTCUSDT", bids, [["100.7", "3"]])]).statuses == ["diff_as_snapshot"]
        assert h.store.symbol_list() == []


def test_extra_elements_in_a_level_tolerated():
    plain = depth_msg("BTCUSDT", [["100.5", "1"], ["100.4", "2"]], [["100.6", "3"]])
    extra = depth_msg("BTCUSDT", [["100.5", "1", "x", [], {"k": [1, {"n": None}]}],
                                  ["100.4", "2", 7]], [["100.6", "3", True, None]])
    assert decode_state([extra]) == decode_state([plain])


def test_prices_as_json_numbers_accepted():
    as_strings = [
        trade_msg("BTCUSDT", "50000.5", "0.125"),
        depth_msg("ETHUSDT", [["0.4856", "2036.02"], ["0.4855", "10"]], [["0.4863", "5601"]]),
        ticker_msg("BNBUSDT", "600.25", "1234.5", "740000.75"),
        book_ticker_msg("BTCUSDT", "49999.5", "1.25", "50000.5", "2"),
    ]
    as_numbers = [
        trade_msg("BTCUSDT", 50000.5, 0.125),
        depth_msg("ETHUSDT", [[0.4856, 2036.02], [0.4855, 10]], [[0.4863, 5601]]),
        ticker_msg("BNBUSDT", 600.25, 1234.5, 740000.75),
        book_ticker_msg("BTCUSDT", 49999.5, 1.25, 50000.5, 2),
    ]
    assert decode_state(as_numbers) == decode_state(as_strings)
    assert decode_state(as_numbers)[0] == ["ok"] * 4


def _shuffled(obj, rng):
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(obj, list):
        return [_shuffled(v, rng) for v in obj]
    return obj


@pytest.mark.parametrize("style", ["indent2", "tabs_crlf", "spaced", "data_first", "shuffled"])
def test_formatting_and_key_order_do_not_matter(style):
    rng = random.Random(style)
    compact = [w(e.stream, e.payload) for e in EXAMPLES for w in WRAPPERS.values()]
    variants = []
    for msg in compact:
        obj = json.loads(msg)
        if style == "indent2":
            text = json.dumps(obj, indent=2, ensure_ascii=False)
        elif style == "tabs_crlf":
            text = json.dumps(obj, indent="\t", ensure_ascii=False).replace("\n", "\r\n")
        elif style == "spaced":
            text = " \n" + json.dumps(obj, separators=(" , ", " : "), ensure_ascii=False) + "\t "
        elif style == "data_first":
            text = json.dumps({"data": obj.pop("data"), **obj}, ensure_ascii=False)
        else:
            text = json.dumps(_shuffled(obj, rng), ensure_ascii=False)
        variants.append(text.encode())
    assert decode_state(variants) == decode_state(compact)


# ============================================================================ 5. rings

def book(k: int):
    """The k-th distinct book of a sequence: prices move with k."""
    bids = [[f"{1000 + k}.{j:02d}", f"{k + 1}.5"] for j in range(9, 9 - 3, -1)]
    asks = [[f"{1001 + k}.{j:02d}", f"{k + 2}.25"] for j in range(3)]
    return bids, asks


def test_book_ring_positions_and_latest_after_wrap():
    h = Harness(capacity=4)  # batches no larger than the book ring, as the Decoder asks
    sid = None
    n = 2 * h.settings.book_ring + 3
    ring = h.store.layout.book_ring
    positions = []
    for start in range(0, n, 4):
        ks = list(range(start, min(n, start + 4)))
        out = h.decode([depth_msg("BTCUSDT", *book(k), update_id=1000 + k) for k in ks])
        assert out.statuses == ["ok"] * len(ks)
        sid = h.sid("BTCUSDT")
        for k, ev in zip(ks, out.events):
            pos = ev["position"]
            positions.append(pos)
            slot = pos & (ring - 1)
            meta = record(h.store.book_meta[sid, slot])
            assert meta["seq"] == 2 * pos + 2
            assert meta["last_update_id"] == 1000 + k
            bids, asks = book(k)
            levels = h.store.book_levels[sid, slot]
            assert [tuple(x) for x in levels[0, :meta["bid_count"]]] == levels_of(bids)
            assert [tuple(x) for x in levels[1, :meta["ask_count"]]] == levels_of(asks)
    assert positions == list(range(n))
    assert int(h.store.market[sid]["book_end"]) == n
    bids, asks = book(n - 1)
    assert h.store.book_sides(sid) == (levels_of(bids), levels_of(asks))
    assert int(h.store.latest_book(sid)[3]["last_update_id"]) == 1000 + n - 1


def test_book_ring_one_full_batch_events_identify_their_slots():
    h = Harness(capacity=16)
    ring = h.store.layout.book_ring
    h.decode([depth_msg("BTCUSDT", *book(k), update_id=k) for k in range(5)])
    out = h.decode([depth_msg("BTCUSDT", *book(k), update_id=k) for k in range(5, 5 + ring)])
    sid = h.sid("BTCUSDT")
    assert [e["position"] for e in out.events] == list(range(5, 5 + ring))
    for ev in out.events:
        assert int(h.store.book_meta[sid, ev["position"] & (ring - 1)]["last_update_id"]) \
            == ev["position"]
    assert int(h.store.latest_book(sid)[3]["last_update_id"]) == 4 + ring


def test_trade_and_ticker_cursors_advance_per_symbol():
    h = Harness()
    tr_ring = h.store.layout.trade_ring
    n = tr_ring + 6
    msgs = []
    for k in range(n):
        msgs.append(trade_msg("BTCUSDT", f"{100 + k}.5", "1", trade_id=k, time_ms=10 ** 12 + k))
        if k % 3 == 0:
            msgs.append(trade_msg("ETHUSDT", f"{10 + k}.5", "2", trade_id=k))
            msgs.append(ticker_msg("BTCUSDT", f"{100 + k}.0", "1", "2", time_ms=10 ** 12 + k))
    out = h.decode(msgs)
    assert set(out.statuses) == {"ok"}
    btc, eth = h.sid("BTCUSDT"), h.sid("ETHUSDT")
    m = h.store.market
    n_eth = len(range(0, n, 3))
    assert (int(m[btc]["trade_begin"]), int(m[btc]["trade_end"])) == (n, n)
    assert (int(m[eth]["trade_begin"]), int(m[eth]["trade_end"])) == (n_eth, n_eth)
    assert (int(m[btc]["ticker_begin"]), int(m[btc]["ticker_end"])) == (n_eth, n_eth)
    assert int(m[eth]["ticker_end"]) == 0
    by_kind = {}
    for ev in out.events:
        by_kind.setdefault((ev["symbol"], ev["kind"]), []).append(ev["position"])
    assert by_kind[("BTCUSDT", "trade")] == list(range(n))
    assert by_kind[("ETHUSDT", "trade")] == list(range(n_eth))
    assert by_kind[("BTCUSDT", "ticker")] == list(range(n_eth))
    # the ring holds the newest trade_ring trades, each at position & (ring - 1)
    for pos in range(n - tr_ring, n):
        rec = record(h.store.trades[btc, pos & (tr_ring - 1)])
        assert (rec["trade_id"], rec["price"]) == (pos, float(f"{100 + pos}.5"))
