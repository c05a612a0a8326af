"""The socket client's faults (docs/CONTRACT.md §2a), fed as the client publishes them.

Every feed here is built the way the ecosystem's socket client builds its messages
(:mod:`tests.socket_client`: stream named from the payload, its envelope with and without a
fraction in ``timestamp``, ``_otel_trace_context``), around the real captures and around the
documented depth20/trade/ticker shapes of the synthetic feed. The one property that matters to
the trade engine is asserted on every published signal: its price is the named symbol's.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rtsig import counters as C
from rtsig.decode import _slot_remove, symbol_find, symbol_hash, symbol_insert
from rtsig.layout import VENUE_SPOT
from rtsig.offline import OfflineRun
from rtsig.settings import Settings
from rtsig.synthetic import MarketSimulator
from tests.decode_helpers import (
    CAPTURE_FILES,
    REAL_DIR,
    RECEIPT_NS,
    Harness,
    depth_msg,
    read_capture,
    small_settings,
    ticker_msg,
    trade_msg,
)
from tests.socket_client import client_envelope, client_stream, client_timestamp, relabel

needs_captures = pytest.mark.skipif(REAL_DIR is None, reason="real captures not found")

EAGER = {  # every strategy fires as often as it can: the most chances to publish a wrong price
    "orderbook_skew": {"buy_threshold": 1.01, "sell_threshold": 0.99, "min_signal_interval": 0},
    "trade_momentum": {"buy_threshold": 0.2, "sell_threshold": -0.2, "min_signal_interval": 0},
    "ticker_velocity": {"buy_threshold": 0.05, "sell_threshold": -0.05, "min_price_change": 0.0,
                        "volume_confirmation": False, "min_signal_interval": 0},
}


def synthetic(symbols: tuple[str, ...], seconds: float, seed: int = 5) -> list[tuple[int, bytes]]:
    """The synthetic feed (documented payload shapes), received 3 ms after each event."""
    sim = MarketSimulator(symbols, seed=seed, depth_interval_ms=100)
    return [((t_ms + 3) * 1_000_000, msg) for t_ms, msg in sim.messages(seconds)]


def run(feed: list[tuple[int, bytes]], settings: Settings, cli=EAGER) -> tuple[list[dict], dict, np.ndarray]:
    """Offline run: ``(signals, summary, the counter row)``."""
    signals: list[dict] = []
    r = OfflineRun(settings, signals.append, cli)
    for receipt_ns, msg in feed:
        r.feed(msg, receipt_ns)
    summary = r.finish()
    return signals, summary, r.store.counters[0]


def price_ranges(feed: list[tuple[int, bytes]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(symbol, market) → (lowest, highest) trade/ticker price in the feed."""
    out: dict[tuple[str, str], list[float]] = {}
    for _, msg in feed:
        data = json.loads(msg)["data"]
        if data.get("e") in ("trade", "aggTrade", "24hrTicker"):
            market = "spot" if ("M" in data or "b" in data) else "usdm"
            out.setdefault((data["s"], market), []).append(float(data.get("p") if "q" in data and "c" not in data
                                                                  else data.get("c", data.get("p"))))
    return {k: (min(v), max(v)) for k, v in out.items()}


def assert_own_prices(signals: list[dict], ranges: dict, slack: float = 0.05) -> None:
    """No signal is published at a price its symbol (in its market) did not trade near."""
    for sig in signals:
        lo, hi = ranges[(sig["symbol"], sig["metadata"]["market"])]
        for field in ("price", "current_price"):
            assert lo * (1 - slack) <= sig[field] <= hi * (1 + slack), (field, sig)


# ----------------------------------------------------------------------------- the client's shape

def test_client_envelope_shape_is_what_the_client_writes():
    stream = client_stream({"lastUpdateId": 1, "bids": [], "asks": []})
    assert stream == "btcusdt@depth20@100ms"
    assert client_stream({"e": "depthUpdate", "s": "NKNUSDT"}) == "nknusdt@depth20@100ms"
    assert client_stream({"u": 1, "s": "BTCUSDT", "b": "1", "a": "2"}) is None  # spot bookTicker
    assert client_timestamp(1_730_462_400_000_000_000) == "2024-11-01T12:00:00Z"
    assert client_timestamp(1_730_462_400_125_000_000) == "2024-11-01T12:00:00.125000Z"
    body = json.loads(client_envelope("btcusdt@trade", {"e": "trade"}, 1_730_462_400_000_000_000))
    assert set(body) == {"stream", "data", "timestamp", "message_id", "source", "version",
                         "_otel_trace_context"}


@pytest.mark.parametrize("fraction_ns", [0, 125_000_000])
def test_spot_book_time_comes_from_the_envelope_timestamp_with_or_without_fraction(fraction_ns):
    receipt = 1_730_462_400_000_000_000 + fraction_ns
    payload = {"lastUpdateId": 5, "bids": [["100.00000000", "1.00000000"]],
               "asks": [["100.10000000", "1.00000000"]]}
    h = Harness()
    out = h.decode([client_envelope("btcusdt@depth20@100ms", payload, receipt)], receipt + 4_000_000)
    assert out.statuses == ["ok"]
    assert out.events[0]["event_time_ms"] == receipt // 1_000_000


# ----------------------------------------------------------------------------- mislabelled books

def test_eth_books_labelled_btcusdt_never_signal_at_eth_prices():
    """The client's default streams: every ETHUSDT book arrives as ``btcusdt@depth20@100ms``.
    Each is dropped as ``book_price_mismatch``; BTCUSDT's own books still signal."""
    feed = relabel(synthetic(("BTCUSDT", "ETHUSDT"), 60))
    eth_books = sum(1 for _, m in feed if b"btcusdt@depth20" in m
                    and float(json.loads(m)["data"]["bids"][0][0]) < 10_000)
    assert eth_books > 100
    signals, summary, _ = run(feed, Settings())
    assert summary["errors"] == {"book_price_mismatch": eth_books}
    assert_own_prices(signals, price_ranges(feed))
    by_strategy = Counter((s["symbol"], s["strategy_id"]) for s in signals)
    assert by_strategy[("BTCUSDT", "orderbook_skew")] > 0
    assert by_strategy[("ETHUSDT", "orderbook_skew")] == 0  # ETHUSDT never gets a book


def test_without_the_cross_check_the_mislabelled_books_do_signal_at_eth_prices():
    """The test above is not vacuous: with the tolerance opened wide, BTC signals at ETH prices."""
    feed = relabel(synthetic(("BTCUSDT", "ETHUSDT"), 60))
    signals, summary, _ = run(feed, Settings(book_price_tolerance_percent=99.9))
    assert "book_price_mismatch" not in summary["errors"]
    assert any(s["symbol"] == "BTCUSDT" and s["price"] < 10_000 for s in signals)


def test_a_book_with_no_fresh_reference_is_accepted():
    h = Harness(settings=small_settings(reference_max_age_seconds=60))
    book = depth_msg("BTCUSDT", [["3000.00", "1"]], [["3000.50", "1"]])
    old_trade = trade_msg("BTCUSDT", "50000.00", time_ms=RECEIPT_NS // 1_000_000 - 61_000)
    fresh_trade = trade_msg("BTCUSDT", "50000.00", time_ms=RECEIPT_NS // 1_000_000 - 59_000)
    assert h.decode([old_trade, book, fresh_trade, book]).statuses == [
        "ok", "ok", "ok", "book_price_mismatch"]


@pytest.mark.parametrize("mid,status", [("52400.00", "ok"), ("52600.00", "book_price_mismatch"),
                                        ("47600.00", "ok"), ("47400.00", "book_price_mismatch")])
def test_tolerance_is_percent_of_the_reference_price(mid, status):
    """5 % of 50000 is 2500: a mid of 52400 passes, 52600 does not (slow obvious reference)."""
    h = Harness()
    m = float(mid)
    book = depth_msg("BTCUSDT", [[f"{m - 0.5:.2f}", "1"]], [[f"{m + 0.5:.2f}", "1"]])
    trade = trade_msg("BTCUSDT", "50000.00", time_ms=RECEIPT_NS // 1_000_000)
    expected_ok = abs(m - 50000.0) <= 0.05 * 50000.0
    assert (status == "ok") == expected_ok
    assert h.decode([trade, book]).statuses == ["ok", status]


def test_ticker_is_the_reference_when_there_is_no_trade():
    h = Harness()
    now = RECEIPT_NS // 1_000_000
    assert h.decode([ticker_msg("BTCUSDT", "50000.0", time_ms=now),
                     depth_msg("BTCUSDT", [["3000.00", "1"]], [["3000.50", "1"]]),
                     depth_msg("BTCUSDT", [["49999.00", "1"]], [["50001.00", "1"]])]).statuses == [
        "ok", "book_price_mismatch", "ok"]


# ----------------------------------------------------------------------------- the real captures

@needs_captures
@pytest.mark.parametrize("name", CAPTURE_FILES)
def test_real_captures_in_their_original_form_decode_with_zero_errors(name):
    feed = read_capture(name)
    _, summary, _ = run(feed, Settings(trading_symbols=None, signal_markets=("spot", "usdm")))
    assert summary["errors"] == {}


CLIENT_SHAPED_ERRORS = {
    # every diff the client labels @depth20@100ms is named a diff: no empty_side/unsorted_book
    "cryptofeed-BINANCE.ws.1.0.txt": {"diff_as_snapshot": 177},
    "cryptofeed-BINANCE_FUTURES.ws.1.0.txt": {"diff_as_snapshot": 649},
    "cryptofeed-BINANCE_US.ws.1.0.txt": {"diff_as_snapshot": 336},
}


@needs_captures
@pytest.mark.parametrize("name", CAPTURE_FILES)
@pytest.mark.parametrize("markets", [("spot",), ("spot", "usdm")])
def test_real_captures_as_the_client_publishes_them(name, markets):
    """Diffs labelled as books are named ``diff_as_snapshot``; spot diffs never reach a book;
    every signal is at its own symbol's price."""
    feed = relabel(read_capture(name))
    signals, summary, _ = run(feed, Settings(trading_symbols=None, signal_markets=markets))
    assert summary["errors"] == CLIENT_SHAPED_ERRORS[name]
    spot_books = sum(1 for _, m in feed if b'"lastUpdateId"' in m)
    assert spot_books == 0 or summary["kinds"].get("depth", 0) < spot_books
    if "FUTURES" not in name:
        assert "depth" not in summary["kinds"]  # every spot diff was caught
    assert_own_prices(signals, price_ranges(feed))
    assert all(s["metadata"]["market"] in markets for s in signals)


# ----------------------------------------------------------------------------- spot and futures

def futures_copy(feed: list[tuple[int, bytes]], premium: float = 1.004) -> list[tuple[int, bytes]]:
    """The same market as USD-M futures payloads (trades without ``M``, tickers without ``b``,
    books as ``depthUpdate`` with ``b``/``a``/``pu``), priced at a premium."""
    out = []
    for receipt_ns, msg in feed:
        body = json.loads(msg)
        data, stream = body["data"], body["stream"]
        px = lambda x: f"{float(x) * premium:.2f}"  # noqa: E731
        if "@trade" in stream:
            data = {k: v for k, v in data.items() if k != "M"} | {"p": px(data["p"]), "X": "MARKET"}
        elif "@ticker" in stream:
            data = {k: v for k, v in data.items() if k not in ("b", "B", "a", "A", "x")} | {
                "c": px(data["c"]), "ps": data["s"]}
        elif "@depth" in stream:
            t_ms = receipt_ns // 1_000_000
            data = {"e": "depthUpdate", "E": t_ms, "T": t_ms, "s": stream.split("@")[0].upper(),
                    "U": 1, "u": 2, "pu": 0, "b": [[px(p), q] for p, q in data["bids"]],
                    "a": [[px(p), q] for p, q in data["asks"]]}
        body["data"] = data
        out.append((receipt_ns, orjson.dumps(body)))
    return out


def test_spot_and_futures_of_one_symbol_never_mix():
    spot = synthetic(("BTCUSDT",), 90)
    both = sorted(spot + futures_copy(spot), key=lambda x: x[0])
    alone, _, _ = run(spot, Settings())
    mixed, summary, row = run(both, Settings())
    # futures data changes nothing about spot: books, trades, tickers and cool-downs are apart
    key = lambda s: (s["strategy_id"], s["action"], s["metadata"]["event_time"], s["price"])  # noqa: E731
    assert sorted(map(key, mixed)) == sorted(map(key, alone))
    assert all(s["metadata"]["market"] == "spot" for s in mixed)
    assert summary["errors"] == {}
    assert row[C.SIGNALS_OTHER_MARKET] > 0  # futures candidates, held back by SIGNAL_MARKETS=spot

    both_markets, _, row = run(both, Settings(signal_markets=("spot", "usdm")))
    markets = Counter(s["metadata"]["market"] for s in both_markets)
    assert markets["spot"] == len(alone) and markets["usdm"] > 0
    assert row[C.SIGNALS_OTHER_MARKET] == 0
    assert_own_prices(both_markets, price_ranges(both), slack=0.001)


def test_futures_entries_of_configured_symbols_only():
    h = Harness(settings=small_settings(trading_symbols=("BTCUSDT",)))
    fut = lambda s: depth_msg(s, [["49999.0", "1"]], [["50001.0", "1"]], futures=True,  # noqa: E731
                              time_ms=RECEIPT_NS // 1_000_000)
    assert h.decode([fut("BTCUSDT"), fut("ETHUSDT")]).statuses == ["ok", "filtered"]
    assert h.store.symbol_ids("BTCUSDT") == {"spot": 0, "usdm": 1}
    assert h.store.symbol_id("BTCUSDT") == 0  # the API's name lookup gives the spot entry


# ----------------------------------------------------------------------------- time and numbers

def test_one_bad_timestamp_does_not_silence_a_symbol():
    """A trade and a book dated 2099 are ``bad_time``: the signals are those of the feed
    without them (the cool-down clock never moved); also with the default cool-downs."""
    feed = synthetic(("BTCUSDT",), 90)
    receipt = feed[40][0]
    bad = [(receipt, trade_msg("BTCUSDT", "67000.00", time_ms=4_070_908_800_000)),
           (receipt, client_envelope("btcusdt@depth20@100ms", {
               "lastUpdateId": 9, "bids": [["67000.00", "5"]], "asks": [["67000.10", "1"]]},
               4_070_908_800_000_000_000))]
    for cli in (EAGER, None):
        clean, _, _ = run(feed, Settings(), cli)
        dirty, summary, _ = run(feed[:41] + bad + feed[41:], Settings(), cli)
        assert summary["errors"] == {"bad_time": 2}
        key = lambda s: (s["strategy_id"], s["action"], s["metadata"]["event_time"])  # noqa: E731
        assert sorted(map(key, dirty)) == sorted(map(key, clean)) and clean


def test_implausible_quantity_never_reaches_a_signal():
    feed = synthetic(("BTCUSDT",), 30)
    huge = trade_msg("BTCUSDT", "67000.00", "1e308", time_ms=feed[10][0] // 1_000_000)
    signals, summary, _ = run(feed[:11] + [(feed[10][0], huge)] + feed[11:], Settings())
    assert summary["errors"] == {"bad_number": 1}
    for s in signals:
        assert all(v is None or abs(v) < 1e12 for v in s["indicators"].values()), s["indicators"]


# ----------------------------------------------------------------------------- symbol eviction

def test_a_junk_flood_locks_a_new_listing_out_only_until_the_junk_is_idle():
    h = Harness(settings=small_settings(max_symbols=4, symbol_idle_seconds=60))
    t0 = RECEIPT_NS
    junk = [trade_msg(f"JUNK{k}USDT", time_ms=t0 // 1_000_000) for k in range(4)]
    assert h.decode(junk, t0).statuses == ["ok"] * 4
    new = trade_msg("NEWUSDT", "2.5", time_ms=t0 // 1_000_000 + 10_000)
    assert h.decode([new], t0 + 10 * 10**9).statuses == ["symbol_table_full"]
    # JUNK1 stays active; JUNK0 is the one silent longest
    assert h.decode([trade_msg("JUNK1USDT", time_ms=t0 // 1_000_000 + 30_000)],
                    t0 + 30 * 10**9).statuses == ["ok"]
    later = trade_msg("NEWUSDT", "2.5", time_ms=t0 // 1_000_000 + 61_000)
    assert h.decode([later], t0 + 61 * 10**9).statuses == ["ok"]
    assert h.store.symbol_list() == ["NEWUSDT", "JUNK1USDT", "JUNK2USDT", "JUNK3USDT"]
    sid = h.sid("NEWUSDT")
    assert int(h.store.market[sid]["trade_end"]) == 1  # nothing of JUNK0's data is left
    assert float(h.store.trades[sid, 0]["price"]) == 2.5
    assert int(h.store.counters[0][C.SYMBOLS_EVICTED]) == 1
    assert int(h.store.symbols[sid]["generation"]) == 1
    assert np.isnan(h.store.pressure_history[sid]).all()
    # every other symbol is still found in the hash table: no new entry, no error
    more = [trade_msg(f"JUNK{k}USDT", time_ms=t0 // 1_000_000 + 62_000) for k in (1, 2, 3)]
    assert h.decode(more + [later], t0 + 62 * 10**9).statuses == ["ok"] * 4
    assert h.store.symbol_count == 4


def test_evicted_symbol_signals_under_its_new_name_with_its_own_cool_down():
    s = Settings(trading_symbols=None, max_symbols=1, symbol_idle_seconds=5)
    first = synthetic(("BTCUSDT",), 60)
    second = [(r + 3600 * 10**9, m.replace(b"btcusdt", b"ethusdt").replace(b"BTCUSDT", b"ETHUSDT"))
              for r, m in synthetic(("BTCUSDT",), 60, seed=6)]
    signals, summary, row = run(first + second, s, None)
    assert row[C.SYMBOLS_EVICTED] == 1
    names = [x["symbol"] for x in signals]
    assert "BTCUSDT" in names and "ETHUSDT" in names
    assert names == sorted(names, key=lambda n: n == "ETHUSDT")  # all BTC first, then ETH
    alone, _, _ = run(second, Settings(trading_symbols=None), None)
    assert len([n for n in names if n == "ETHUSDT"]) == len(alone)


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), min_size=1, max_size=80))
def test_symbol_table_stays_consistent_under_inserts_and_removals(ops):
    """Backward-shift deletion against a dict: every live name is found at its id, removed
    names are not (a tiny table, so probe chains wrap and collide)."""
    from rtsig.store import Store

    store = Store.in_memory(Settings(trading_symbols=None, max_symbols=16))
    live: dict[bytes, int] = {}
    free: list[int] = []
    for insert, k in ops:
        name = f"S{k}".encode()
        raw = np.frombuffer(name, dtype=np.uint8)
        h = np.uint64(symbol_hash(raw, 0, raw.size))
        if insert and name not in live:
            if free:  # reuse an id as an eviction does: out of the table, then back under the new name
                sid = free.pop()
                store.symbols[sid]["name_hash"] = h
                store.symbols[sid]["name_len"] = raw.size
                store.symbol_names[sid, :raw.size] = raw
                slots = store.symbol_slots
                j = int(h) & (slots.size - 1)
                while slots[j] != 0:
                    j = (j + 1) & (slots.size - 1)
                slots[j] = sid + 1
            else:
                sid = symbol_insert(store.header, store.symbols, store.symbol_names, store.symbol_slots,
                                    raw, 0, raw.size, h, 1, VENUE_SPOT)
                if sid < 0:
                    continue
            live[name] = int(sid)
        elif not insert and name in live:
            sid = live.pop(name)
            _slot_remove(store.symbols, store.symbol_slots, sid)
            free.append(sid)
        for other in {f"S{j}".encode() for j in range(41)}:
            r = np.frombuffer(other, dtype=np.uint8)
            found = symbol_find(store.symbols, store.symbol_names, store.symbol_slots, r, 0, r.size,
                                np.uint64(symbol_hash(r, 0, r.size)), VENUE_SPOT)
            assert found == live.get(other, -1), (other, found, live)
