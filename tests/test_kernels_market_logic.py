"""The market-logic strategies (btc_dominance, cross_exchange_spread, onchain_metrics) against the
slow references of tests/reference.py: hand-made cases on the kernels, and Hypothesis streams of
market data and feed messages through the whole offline path (feed parsing, feed rings, events,
the venue table kept in event order, the kernels, the signal builder)."""

from __future__ import annotations

import datetime
import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels import btc_dominance, cross_exchange_spread, onchain_metrics
from kernels.output import (
    OUT_CODE,
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_INDICATORS,
    OUT_PRICE,
    OUT_QUANTITY,
    OUT_WIDTH,
    RESULT_NO_PRICE,
    ROTATIONS,
    TRIGGERS,
)
from rtsig.codes import ACTION_NONE
from rtsig.layout import (
    DIRECTIONS,
    DOMINANCE_DTYPE,
    DOMINANCE_RING,
    MAX_VENUES,
    NAME_BYTES,
    TRANSFER_DTYPE,
    TRANSFER_RING,
)
from rtsig.offline import OfflineRun
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from tests import reference

T0 = 1_730_462_400_000
HOUR = 3_600_000
SUBJECTS = ("market.global.dominance", "market.quotes", "onchain.transfers")


def params(sid, **overrides):
    p = STRATEGIES[sid].defaults()
    p.update(overrides)
    return p


def close(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12))


# ----------------------------------------------------------------------------- kernels, by hand

def run_dominance(samples, **overrides):
    p = params("btc_dominance", **overrides)
    ring = np.zeros(DOMINANCE_RING, dtype=DOMINANCE_DTYPE)
    for k, (ts, d, price) in enumerate(samples):
        ring[k]["ts_ms"], ring[k]["dominance"] = ts, d
        ring[k]["price"] = np.nan if price is None else price
    out = np.zeros(OUT_WIDTH)
    action = btc_dominance(ring, len(samples) - 1, STRATEGIES["btc_dominance"].as_array(p), out)
    want = reference.btc_dominance(samples, p)
    if want is None:
        assert action == ACTION_NONE
    elif want == reference.NO_PRICE:
        assert action == RESULT_NO_PRICE
    else:
        assert action == want[0]
        assert close(out[OUT_CONFIDENCE], want[1]) and out[OUT_PRICE] == want[2]
        assert [out[OUT_INDICATORS + k] for k in range(3)] == list(want[4].values())
        assert ROTATIONS[int(out[OUT_CODE])] == want[5]["rotation"]
    return want


def test_dominance_rules_in_order():
    day = 24 * HOUR
    # 1: above high and rising → buy 0.80, to_btc (even though |change| < change_threshold)
    got = run_dominance([(T0 - day, 70.5, 1.0), (T0, 71.0, 50000.0)])
    assert got[:2] == (reference.BUY, 0.80) and got[5]["rotation"] == "to_btc"
    # 2: below low and falling → sell 0.75, to_alts
    got = run_dominance([(T0 - day, 39.9, 1.0), (T0, 39.0, 50000.0)])
    assert got[:2] == (reference.SELL, 0.75) and got[5]["rotation"] == "to_alts"
    # 3: momentum: +7.5 pp → 0.60 + 0.35 · 0.5
    got = run_dominance([(T0 - day, 50.0, 1.0), (T0, 57.5, 50000.0)])
    assert got[0] == reference.BUY and got[1] == pytest.approx(0.775) and got[5]["rotation"] == "momentum"
    # a change just below the threshold: nothing; no sample old enough: nothing
    assert run_dominance([(T0 - day, 50.0, 1.0), (T0, 54.99, 50000.0)]) is None
    assert run_dominance([(T0 - day + 1, 50.0, 1.0), (T0, 60.0, 50000.0)]) is None
    # the newest sample old enough is the past one, not the oldest
    got = run_dominance([(T0 - 2 * day, 40.0, 1.0), (T0 - day, 55.0, 1.0), (T0, 56.0, 1.0)])
    assert got is None
    # a rotation without a BTCUSDT price is no_price
    assert run_dominance([(T0 - day, 50.0, None), (T0, 60.0, None)]) == reference.NO_PRICE
    # window_hours changes which sample is the past one
    got = run_dominance([(T0 - 2 * HOUR, 50.0, 1.0), (T0, 56.0, 1.0)], window_hours=2)
    assert got[0] == reference.BUY


def run_spread(quotes, t, **overrides):
    p = params("cross_exchange_spread", **overrides)
    names = ["binance", "binance_futures"] + sorted(set(quotes) - {"binance", "binance_futures"},
                                                   reverse=True)  # numbers not in name order
    table = np.full((MAX_VENUES, 3), np.nan)
    venue_names = np.zeros((MAX_VENUES, NAME_BYTES), dtype=np.uint8)
    for v, name in enumerate(names):
        venue_names[v, :len(name)] = np.frombuffer(name.encode(), dtype=np.uint8)
        if name in quotes:
            table[v] = quotes[name]
    out = np.zeros(OUT_WIDTH)
    action = cross_exchange_spread(table, t, STRATEGIES["cross_exchange_spread"].as_array(p),
                                   venue_names, out)
    want = reference.cross_exchange_spread(quotes, t, p)
    if want is None:
        assert action == ACTION_NONE
    else:
        assert action == want[0]
        assert close(out[OUT_CONFIDENCE], want[1])
        assert (out[OUT_PRICE], out[OUT_CURRENT_PRICE]) == (want[2], want[3])
        assert [out[OUT_INDICATORS + k] for k in range(3)] == list(want[4].values())
        assert names[int(out[OUT_CODE])] == want[5]["venue"]
        assert out[OUT_QUANTITY] == want[5]["quantity"]
    return want


def test_spread_buys_on_binance_when_it_is_cheaper_and_sizes_the_position():
    got = run_spread({"binance": (100.0, 100.2, T0), "coinbase": (101.0, 101.2, T0)}, T0)
    assert got[0] == reference.BUY and got[2] == 100.2  # Binance's ask
    assert got[5] == {"venue": "coinbase", "buy_venue": "binance", "sell_venue": "coinbase",
                      "quantity": math.floor(500 / 100.2 * 1e8) / 1e8}
    assert got[1] == pytest.approx(min(0.95, 0.60 + 0.35 * min(1, (got[4]["spread_percent"] - 0.5) / 0.5)))
    got = run_spread({"binance": (100.0, 100.2, T0), "kraken": (99.0, 99.2, T0)}, T0)
    assert got[0] == reference.SELL and got[2] == 100.0 and got[5]["buy_venue"] == "kraken"


def test_spread_ignores_stale_quotes_and_takes_the_widest_venue_ties_by_name():
    assert run_spread({"binance": (100.0, 100.2, T0), "coinbase": (101.0, 101.2, T0 - 10_001)}, T0) is None
    assert run_spread({"binance": (100.0, 100.2, T0), "coinbase": (101.0, 101.2, T0 - 10_000)}, T0)
    assert run_spread({"binance": (100.0, 100.2, T0 - 20_000), "okx": (101.0, 101.2, T0)}, T0) is None
    got = run_spread({"binance": (100.0, 100.2, T0), "okx": (101.0, 101.2, T0),
                      "kraken": (99.2, 99.4, T0), "bitstamp": (101.0, 101.2, T0)}, T0)
    assert got[5]["venue"] == "bitstamp"
    assert run_spread({"binance": (100.0, 100.2, T0), "okx": (100.3, 100.5, T0)}, T0) is None
    assert run_spread({"binance": (100.0, 100.2, T0), "okx": (100.3, 100.5, T0)}, T0,
                      spread_threshold_percent=0.2)[0] == reference.BUY


def run_onchain(transfers, chain="btc", **overrides):
    p = params("onchain_metrics", **overrides)
    ring = np.zeros(TRANSFER_RING, dtype=TRANSFER_DTYPE)
    for k, (ts, value, direction, price) in enumerate(transfers):
        ring[k]["ts_ms"], ring[k]["value"] = ts, value
        ring[k]["direction"] = DIRECTIONS.index(direction)
        ring[k]["price"] = np.nan if price is None else price
    out = np.zeros(OUT_WIDTH)
    action = onchain_metrics(ring, len(transfers) - 1, 0 if chain == "btc" else 1,
                             STRATEGIES["onchain_metrics"].as_array(p), out)
    want = reference.onchain_metrics(transfers, chain, p)
    if want is None:
        assert action == ACTION_NONE
    elif want == reference.NO_PRICE:
        assert action == RESULT_NO_PRICE
    else:
        assert action == want[0] and close(out[OUT_CONFIDENCE], want[1])
        assert [out[OUT_INDICATORS + k] for k in range(4)] == list(want[4].values())
        assert TRIGGERS[int(out[OUT_CODE])] == want[5]["trigger"]
    return want


def test_onchain_whales_and_flows():
    got = run_onchain([(T0, 100.0, "to_exchange", 50000.0)])
    assert got[:2] == (reference.SELL, 0.65) and got[5]["trigger"] == "whale"
    got = run_onchain([(T0, 1000.0, "from_exchange", 50000.0)])  # 10× the threshold: the cap
    assert got[:2] == (reference.BUY, 0.95)
    got = run_onchain([(T0, 1000.0, "from_exchange", 3000.0)], chain="eth")
    assert got[:2] == (reference.BUY, 0.65)
    # flows: 30 in, 10 out in the window → net 50 % ≥ 10 → sell
    got = run_onchain([(T0 - 61 * 60_000, 500.0, "from_exchange", 1.0), (T0 - 60_000, 10.0, "from_exchange", 1.0),
                       (T0, 30.0, "to_exchange", 1.0)])
    assert got[0] == reference.SELL and got[4]["net_flow_percent"] == 50.0
    assert got[1] == pytest.approx(0.60 + 0.35 * 40 / 90)
    assert run_onchain([(T0 - 60_000, 10.0, "from_exchange", 1.0), (T0, 30.0, "to_exchange", 1.0)],
                       exchange_flow_threshold_percent=60) is None
    assert run_onchain([(T0, 30.0, "to_exchange", 1.0)], exchange_flow_threshold_percent=100)[1] == 0.60
    assert run_onchain([(T0, 150.0, "to_exchange", None)]) == reference.NO_PRICE
    assert run_onchain([(T0 - 40 * 60_000, 50.0, "from_exchange", 1.0), (T0, 30.0, "to_exchange", 1.0)],
                       flow_window_minutes=30)[0] == reference.SELL


# ----------------------------------------------------------------------------- streams, offline

def offline(lines, **overrides):
    """Signals of ``rtsig signals`` on these lines, every market-logic signal kept (no floor, no
    cool-down), on a small store."""
    s = Settings().with_overrides(max_symbols=8, book_ring=4, trade_ring=1024, ticker_ring=64,
                                  min_confidence=0.0, trading_symbols=("BTCUSDT", "ETHUSDT"))
    cli = {sid: {"min_signal_interval": 0, **overrides.get(sid, {})}
           for sid in ("btc_dominance", "cross_exchange_spread", "onchain_metrics")}
    signals = []
    run = OfflineRun(s, signals.append, cli_overrides=cli)
    for line in lines:
        run.feed(line, T0 * 1_000_000 + 10 ** 15)  # receipt far ahead: no bad_time
    run.finish()
    return [x for x in signals if x["strategy_id"] in cli]


def feed_line(subject, data):
    return orjson.dumps({"subject": subject, "data": data})


def trade_line(symbol, ts, price):
    return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": {
        "e": "trade", "E": ts, "s": symbol, "t": ts, "p": f"{price:.2f}", "q": "1.00000000", "T": ts,
        "m": False, "M": True}})


def book_line(symbol, ts, bid, ask):
    stamp = datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return orjson.dumps({"stream": f"{symbol.lower()}@depth5", "timestamp": stamp, "data": {
        "lastUpdateId": ts, "bids": [[f"{bid:.2f}", "1.0"]], "asks": [[f"{ask:.2f}", "1.0"]]}})


def signal_tuple(sig):
    return (sig["action"], sig["confidence"], sig["price"], sig["current_price"], sig["indicators"])


def want_tuple(want):
    action = "buy" if want[0] == reference.BUY else "sell"
    indicators = dict(want[4])
    if "window_hours" in indicators:
        indicators["window_hours"] = int(indicators["window_hours"])
    return (action, want[1], want[2], want[3], indicators)


def same(got, want):
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want):
        assert g[0] == w[0] and close(g[1], w[1]) and g[2:4] == w[2:4], (g, w)
        assert g[4].keys() == w[4].keys() and all(close(g[4][k], w[4][k]) for k in g[4]), (g, w)


dominance_items = st.lists(st.one_of(
    st.tuples(st.just("trade"), st.integers(1, 6 * HOUR), st.integers(1, 10 ** 7)),
    st.tuples(st.just("dom"), st.one_of(st.integers(0, 8).map(lambda h: h * HOUR), st.integers(1, 8 * HOUR)),
              st.one_of(st.sampled_from([3500, 3900, 4500, 5000, 5600, 6500, 7100, 8000]),
                        st.integers(0, 10_000)))), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dominance_items, st.integers(1, 4), st.sampled_from([0.5, 2.0, 5.0]),
       st.sampled_from([(70.0, 40.0), (55.0, 45.0)]))
def test_dominance_stream_matches_the_reference(items, window, change, thresholds):
    p = params("btc_dominance", window_hours=window, change_threshold=change,
               high_threshold=thresholds[0], low_threshold=thresholds[1], min_signal_interval=0)
    lines, samples, want, price = [], [], [], None
    for kind, dt, value in items:
        if kind == "trade":
            price = value / 100
            lines.append(trade_line("BTCUSDT", T0 + dt, price))
            continue
        samples.append((T0 + dt, value / 100, price))
        lines.append(feed_line(SUBJECTS[0], {"ts": T0 + dt, "btc_dominance": value / 100, "source": "cg"}))
        result = reference.btc_dominance(samples, p)
        if result is not None and result != reference.NO_PRICE:
            want.append(want_tuple(result))
    got = offline(lines, btc_dominance={k: p[k] for k in ("window_hours", "change_threshold",
                                                          "high_threshold", "low_threshold")})
    same([signal_tuple(s) for s in got], want)
    assert all(s["symbol"] == "BTCUSDT" and s["timeframe"] == "1h" for s in got)
    assert all(s["metadata"]["dominance_source"] == "cg" for s in got)


spread_items = st.lists(st.one_of(
    st.tuples(st.just("book"), st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.just("binance"),
              st.integers(9_900, 10_100), st.integers(0, 30_000)),
    st.tuples(st.just("quote"), st.sampled_from(["BTCUSDT", "ETHUSDT"]),
              st.sampled_from(["coinbase", "kraken", "okx"]), st.integers(9_900, 10_100),
              st.integers(0, 30_000))), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spread_items, st.sampled_from([0.1, 0.5, 1.0]), st.sampled_from([1.0, 10.0]))
def test_spread_stream_matches_the_reference(items, threshold, max_age):
    """Every Binance book and every venue quote is a trigger; the venue table is each venue's
    newest quote in arrival order (what the symbol's worker keeps)."""
    p = params("cross_exchange_spread", spread_threshold_percent=threshold, max_quote_age_seconds=max_age)
    lines, tables, want = [], {}, []
    now = T0
    for kind, symbol, venue, cents, dt in items:
        price = cents / 100
        if kind == "book":
            now += 100  # books move forward in time (their envelope timestamp)
            ts, bid, ask = now, price, (cents + 2) / 100
            lines.append(book_line(symbol, ts, bid, ask))
        else:
            ts, bid, ask = T0 + dt, price, (cents + 1) / 100
            lines.append(feed_line(SUBJECTS[1], {"ts": ts, "venue": venue, "symbol": symbol,
                                                 "bid": bid, "ask": ask}))
        table = tables.setdefault(symbol, {})
        table[venue] = (bid, ask, ts)
        result = reference.cross_exchange_spread(table, ts, p)
        if result is not None:
            want.append((want_tuple(result), result[5]))
    got = offline(lines, cross_exchange_spread={"spread_threshold_percent": threshold,
                                                "max_quote_age_seconds": max_age})
    same([signal_tuple(s) for s in got], [w for w, _ in want])
    for sig, (_, meta) in zip(got, want):
        assert sig["quantity"] == meta["quantity"] and sig["timeframe"] == "tick"
        assert {k: sig["metadata"][k] for k in ("venue", "buy_venue", "sell_venue")} == \
            {k: meta[k] for k in ("venue", "buy_venue", "sell_venue")}


onchain_items = st.lists(st.one_of(
    st.tuples(st.just("trade"), st.sampled_from(["btc", "eth"]), st.integers(0, 120 * 60_000),
              st.integers(1, 10 ** 7), st.just("")),
    st.tuples(st.just("tx"), st.sampled_from(["btc", "eth"]), st.integers(0, 120 * 60_000),
              st.integers(0, 300_000), st.sampled_from(DIRECTIONS))), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(onchain_items, st.sampled_from([0.0, 10.0, 50.0, 100.0]), st.sampled_from([1, 60]))
def test_onchain_stream_matches_the_reference(items, threshold, window):
    p = params("onchain_metrics", exchange_flow_threshold_percent=threshold, flow_window_minutes=window)
    lines, want = [], []
    prices = {"btc": None, "eth": None}
    history = {"btc": [], "eth": []}
    for n, (kind, chain, dt, value, direction) in enumerate(items):
        symbol = "BTCUSDT" if chain == "btc" else "ETHUSDT"
        if kind == "trade":
            prices[chain] = value / 100
            lines.append(trade_line(symbol, T0 + dt, prices[chain]))
            continue
        coins = value / 1000
        lines.append(feed_line(SUBJECTS[2], {"ts": T0 + dt, "chain": chain, "txid": f"t{n}", "value": coins,
                                             "direction": direction, "exchange": "binance"}))
        if direction == "other":
            continue
        history[chain].append((T0 + dt, coins, direction, prices[chain]))
        result = reference.onchain_metrics(history[chain], chain, p)
        if result is not None and result != reference.NO_PRICE:
            want.append((want_tuple(result), result[5]["trigger"], f"t{n}", symbol))
    got = offline(lines, onchain_metrics={"exchange_flow_threshold_percent": threshold,
                                          "flow_window_minutes": window})
    same([signal_tuple(s) for s in got], [w[0] for w in want])
    for sig, (_, trigger, txid, symbol) in zip(got, want):
        assert (sig["metadata"]["trigger"], sig["metadata"]["txid"], sig["symbol"]) == (trigger, txid, symbol)
        assert sig["metadata"]["exchange"] == "binance" and sig["timeframe"] == "event"
