"""microprice, order_flow_imbalance, trade_flow_imbalance kernels: hand-made cases and Hypothesis
agreement with tests/reference.py (docs/STRATEGIES.md "Microstructure strategies")."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import microprice, ofi_record, order_flow_imbalance, trade_flow_imbalance
from kernels.output import OUT_OLDEST_POSITION, OUT_WIDTH
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import OFI_COUNT, OFI_HISTORY, OFI_STATE_WIDTH
from tests import reference
from tests.kernel_cases import _as_tuple, assert_same, book, books, defaults, param_array, trade_ring

MP, OFI, TFI = "microprice", "order_flow_imbalance", "trade_flow_imbalance"


def run_microprice(bids, asks, params):
    levels, nb, na = book(bids, asks)
    out = np.full(OUT_WIDTH, np.nan)
    return _as_tuple(MP, microprice(levels, nb, na, param_array(MP, params), out), out)


def run_ofi(snapshots, params):
    """Record every snapshot in order (as the worker does), judge after the last one."""
    state = np.zeros(OFI_STATE_WIDTH)
    history = np.full((OFI_HISTORY, 3), np.nan)  # never-written rows must never be read
    array = param_array(OFI, params)
    out = np.full(OUT_WIDTH, np.nan)
    action = ACTION_NONE
    for t, bid, qb, ask, qa in snapshots:
        ofi_record(state, history, bid, qb, ask, qa, np.int64(t))
        action = order_flow_imbalance(state, history, np.int64(t), bid, ask, array, out)
    return _as_tuple(OFI, action, out), state


def run_tfi(trades, params, capacity=64):
    ring = trade_ring(trades, capacity)
    out = np.full(OUT_WIDTH, np.nan)
    action = trade_flow_imbalance(ring, len(trades) - 1, param_array(TFI, params), out)
    return _as_tuple(TFI, action, out), out[OUT_OLDEST_POSITION]


def mp(bids, asks, **overrides):
    params = defaults(MP, **overrides)
    got = run_microprice(bids, asks, params)
    assert_same(got, reference.microprice(bids, asks, params))
    return got


def ofi(snapshots, **overrides):
    params = defaults(OFI, **overrides)
    got, _ = run_ofi(snapshots, params)
    assert_same(got, reference.order_flow_imbalance(snapshots, params))
    return got


def tfi(trades, **overrides):
    params = defaults(TFI, **overrides)
    got, _ = run_tfi(trades, params)
    assert_same(got, reference.trade_flow_imbalance(trades, params))
    return got


def T(E, q=1.0, m=False, p=100.0):
    return {"E": E, "p": p, "q": q, "m": m}


# --- microprice ----------------------------------------------------------------------------------

def test_microprice_buy_fills_the_row():
    # mid 100, spread 2 bps; Qb = 3, Qa = 1: micro = (100.01·3 + 99.99·1) / 4 = 100.005 → +0.5 bps
    act, confidence, price, current, ind, meta = mp([(99.99, 3.0)], [(100.01, 1.0)], top_levels=1)
    assert act == ACTION_BUY and price == 99.99 and current == pytest.approx(100.0)
    assert ind["microprice"] == pytest.approx(100.005)
    assert ind["deviation_bps"] == pytest.approx(0.5)
    assert ind["imbalance"] == 0.5 and ind["spread_bps"] == pytest.approx(2.0)
    assert meta == {"top_bid": 99.99, "top_ask": 100.01}
    assert confidence == 0.95  # excess (0.5 − 0.1) / 0.1 ≥ 1: the cap


def test_microprice_sell_and_confidence_inside_the_range():
    act, confidence, price, _, ind, _ = mp([(99.99, 1.0)], [(100.01, 3.0)], top_levels=1,
                                           sell_threshold_bps=-0.4)
    assert act == ACTION_SELL and price == 100.01
    assert confidence == pytest.approx(0.65 + 0.30 * (0.5 - 0.4) / 0.4)


def test_microprice_threshold_is_strict_and_spread_gates():
    bids, asks = [(99.99, 3.0)], [(100.01, 1.0)]
    dev = mp(bids, asks, top_levels=1, buy_threshold_bps=1.0)  # 0.5 bps: no
    assert dev is None
    assert mp(bids, asks, top_levels=1, max_spread_bps=1.9) is None
    assert mp(bids, asks, top_levels=1, max_spread_bps=2.0000001)[0] == ACTION_BUY


def test_microprice_top_levels_and_volume_floor():
    bids = [(99.99, 1.0), (99.98, 5.0)]
    asks = [(100.01, 1.0), (100.02, 1.0)]
    assert mp(bids, asks, top_levels=1) is None  # balanced at the best level
    assert mp(bids, asks, top_levels=2)[0] == ACTION_BUY
    assert mp(bids, asks, top_levels=2, min_total_volume=8.0000001) is None
    assert mp([(99.99, 0.0)], [(100.01, 0.0)], min_total_volume=0.0) is None
    assert mp([], asks) is None


@settings(max_examples=300, deadline=None)
@given(books(), st.fixed_dictionaries({
    "top_levels": st.integers(1, 20),
    "buy_threshold_bps": st.one_of(st.floats(1e-4, 1.0), st.floats(1e-4, 50.0)),
    "sell_threshold_bps": st.one_of(st.floats(-1.0, -1e-4), st.floats(-50.0, -1e-4)),
    "max_spread_bps": st.floats(1e-3, 200.0),
    "min_total_volume": st.one_of(st.just(0.0), st.floats(0.0, 20.0)),
    "base_confidence": st.floats(0.0, 0.95),
}))
def test_microprice_matches_reference(book_sides, params):
    bids, asks = book_sides
    params = defaults(MP, **params)
    assert_same(run_microprice(bids, asks, params), reference.microprice(bids, asks, params))


# --- order_flow_imbalance ------------------------------------------------------------------------

def test_ofi_contributions_by_hand():
    prev = (0, 100.0, 2.0, 101.0, 3.0)
    assert reference.ofi_contribution(prev, (1, 100.0, 5.0, 101.0, 3.0)) == 3.0  # bid size +3
    assert reference.ofi_contribution(prev, (1, 100.5, 1.0, 101.0, 3.0)) == 1.0  # bid up: +q_b
    assert reference.ofi_contribution(prev, (1, 99.5, 1.0, 101.0, 3.0)) == -2.0  # bid down: −q_b prev
    assert reference.ofi_contribution(prev, (1, 100.0, 2.0, 100.5, 4.0)) == -4.0  # ask down: −q_a
    assert reference.ofi_contribution(prev, (1, 100.0, 2.0, 101.5, 4.0)) == 3.0  # ask up: +q_a prev


def rising(n, step_ms=100, qty=1.0):
    """Best bid and ask up one tick per snapshot: each contribution is q_b + q_a prev = 2·qty."""
    return [(i * step_ms, 100.0 + 0.01 * i, qty, 100.02 + 0.01 * i, qty) for i in range(n)]


def test_ofi_buy_fills_the_row():
    act, confidence, price, current, ind, meta = ofi(rising(12))  # 11 contributions of +2
    assert act == ACTION_BUY and price == pytest.approx(100.11)
    assert current == pytest.approx(100.12)
    assert ind["ofi"] == 22.0 and ind["mean_depth"] == 1.0 and ind["ofi_normalized"] == 22.0
    assert ind["updates"] == 11 and ind["span_seconds"] == pytest.approx(1.0)
    assert confidence == 0.95
    assert meta == {"top_bid": pytest.approx(100.11), "top_ask": pytest.approx(100.13)}


def test_ofi_sell_threshold_min_updates_and_window():
    falling = [(t, 200.0 - b, q, 200.0 - b + 0.02, q)
               for t, b, q, _, _ in [(i * 100, 0.01 * i, 1.0, 0, 0) for i in range(12)]]
    act, confidence, *_ = ofi(falling, sell_threshold=-16.0)
    assert act == ACTION_SELL and confidence == pytest.approx(0.65 + 0.30 * (22 - 16) / 16)
    assert ofi(falling, sell_threshold=-22.0) is None  # strict
    assert ofi(rising(12), min_updates=12) is None
    assert ofi(rising(12), min_updates=11)[0] == ACTION_BUY
    # window 0.5 s keeps the contributions with t ≥ 1100 − 500: 6 of them, ofi 12
    assert ofi(rising(12), window_seconds=0.5, min_updates=1)[4]["updates"] == 6


def test_ofi_history_keeps_the_newest_256_contributions():
    snaps = rising(300, step_ms=1)
    result = ofi(snaps, window_seconds=3600, min_updates=1)
    assert result[4]["updates"] == OFI_HISTORY
    _, state = run_ofi(snaps, defaults(OFI))
    assert state[OFI_COUNT] == 299


def test_ofi_first_snapshot_has_no_contribution():
    assert ofi(rising(1), min_updates=1) is None


_snapshot_deltas = st.tuples(
    st.integers(-200, 3000),  # event time step, ms (out of order sometimes)
    st.sampled_from([-2, -1, 0, 0, 1, 2]),  # bid move in ticks
    st.one_of(st.just(0.0), st.floats(0.0, 10.0)),
    st.sampled_from([-2, -1, 0, 0, 1, 2]),
    st.one_of(st.just(0.0), st.floats(0.0, 10.0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_snapshot_deltas, min_size=1, max_size=300), st.fixed_dictionaries({
    "window_seconds": st.one_of(st.floats(0.001, 3600.0), st.sampled_from([1.0, 10.0])),
    "buy_threshold": st.one_of(st.floats(1e-3, 2.0), st.floats(1e-3, 50.0)),
    "sell_threshold": st.one_of(st.floats(-2.0, -1e-3), st.floats(-50.0, -1e-3)),
    "min_updates": st.integers(1, 256),
    "base_confidence": st.floats(0.0, 0.95),
}))
def test_ofi_matches_reference(deltas, params):
    t, bid, ask, snaps = 1_000_000, 100.0, 100.05, []
    for dt, db, qb, da, qa in deltas:
        t, bid = t + dt, round(bid + 0.01 * db, 2)
        ask = round(max(bid + 0.01, ask + 0.01 * da), 2)
        snaps.append((t, bid, qb, ask, qa))
    params = defaults(OFI, **params)
    got, _ = run_ofi(snaps, params)
    assert_same(got, reference.order_flow_imbalance(snaps, params))


# --- trade_flow_imbalance ------------------------------------------------------------------------

def test_tfi_buy_fills_the_row():
    trades = [T(i * 100, 1.0, m=(i == 0), p=100.0 + i) for i in range(10)]  # 9 buys, 1 sell
    act, confidence, price, current, ind, meta = tfi(trades)
    assert act == ACTION_BUY and price == current == 109.0 and meta == {}
    assert ind == {"imbalance": pytest.approx(0.8), "buy_volume": 9.0, "sell_volume": 1.0,
                   "window_trades": 10, "span_seconds": pytest.approx(0.9)}
    assert confidence == pytest.approx(0.65 + (0.8 - 0.6) / 0.4 * 0.30)


def test_tfi_strict_threshold_and_confidence():
    trades = [T(i * 100, 1.0, m=(i % 5 == 0)) for i in range(10)]  # imbalance 0.6 exactly
    assert tfi(trades) is None  # 0.6 is not > 0.6
    act, confidence, *_ = tfi(trades, buy_threshold=0.5)
    assert act == ACTION_BUY and confidence == pytest.approx(0.65 + (0.6 - 0.5) / 0.5 * 0.30)
    sells = [T(i, 1.0, m=True) for i in range(10)]
    act, confidence, *_ = tfi(sells)
    assert act == ACTION_SELL and confidence == 0.95
    assert tfi(sells, sell_threshold=-1.0) is None  # |t| = 1 never fires


def test_tfi_min_trades_volume_window_and_max_trades():
    trades = [T(i * 1000, 1.0) for i in range(10)]
    assert tfi(trades, min_trades=11) is None
    assert tfi(trades, min_volume=10.0000001) is None
    assert tfi(trades, min_volume=10.0)[0] == ACTION_BUY
    assert tfi(trades, window_seconds=5.0, min_trades=2)[4]["window_trades"] == 6  # 9000−5000 in
    assert tfi(trades, max_window_trades=4, min_trades=2)[4]["window_trades"] == 4
    _, oldest = run_tfi(trades, defaults(TFI, max_window_trades=4))
    assert oldest == 6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-500, 5000), st.one_of(st.just(0.0), st.floats(0.0, 50.0)),
                          st.booleans()), min_size=1, max_size=60),
       st.fixed_dictionaries({
           "window_seconds": st.one_of(st.floats(0.001, 600.0), st.sampled_from([1.0, 5.0])),
           "max_window_trades": st.integers(2, 60),
           "buy_threshold": st.one_of(st.floats(0.0, 0.5), st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0])),
           "sell_threshold": st.one_of(st.floats(-0.5, 0.0), st.floats(-1.0, 0.0), st.sampled_from([0.0, -1.0])),
           "min_trades": st.integers(2, 30),
           "min_volume": st.one_of(st.just(0.0), st.floats(0.0, 100.0)),
           "base_confidence": st.floats(0.0, 0.95),
       }))
def test_tfi_matches_reference(steps, params):
    t, trades = 10_000_000, []
    for dt, q, m in steps:
        t += dt
        trades.append(T(t, q, m, p=100.0 + len(trades)))
    params = defaults(TFI, **params)
    got, oldest = run_tfi(trades, params)
    assert_same(got, reference.trade_flow_imbalance(trades, params))
    assert oldest == max(0, len(trades) - params["max_window_trades"])
