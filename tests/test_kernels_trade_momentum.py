"""trade_momentum kernel: hand-made boundary cases, Hypothesis agreement with tests/reference.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from tests import reference
from tests.kernel_cases import KERNEL_PARAMS, assert_same, defaults, momentum_params, outcome, run_momentum

ID = "trade_momentum"


def T(E, p, q=1.0, m=False):
    """One trade: event time (ms), price, quantity, is_buyer_maker (True = seller-initiated)."""
    return {"E": E, "p": p, "q": q, "m": m}


def momentum(trades, capacity=64, **overrides):
    """Kernel result for the last trade (checked against the reference)."""
    params = defaults(ID, **overrides)
    got, _ = run_momentum(trades, params, capacity=capacity)
    assert_same(got, reference.trade_momentum(trades, params))
    return got


def action(result):
    return ACTION_NONE if result is None else result[0]


# Only the price component: momentum = price_c = (p_last/128 - 1) · 10 000 / 156.25, exact.
PRICE_ONLY = {"price_weight": 1.0, "quantity_weight": 0.0, "maker_weight": 0.0,
              "price_scale_bps": 156.25}


def test_buy_signal_fills_the_row():
    trades = [T(0, 100.0, 1.0), T(500, 100.1, 2.0, m=True), T(1000, 100.2, 3.0)]
    act, confidence, price, current, ind, meta = momentum(trades)
    assert act == ACTION_BUY and price == current == 100.2 and meta == {}
    assert ind["price_component"] == 1.0  # 20 bps / 10 bps, clamped
    assert ind["quantity_component"] == 1.0  # 3 / mean 2, clamped
    assert ind["flow_component"] == pytest.approx((4.0 - 2.0) / 6.0)
    assert ind["momentum"] == pytest.approx((0.4 + 0.3 + 0.3 / 3) / 1.0)
    assert ind["window_trades"] == 3
    assert confidence == pytest.approx(0.68 + (0.8 - 0.7) / 0.3 * 0.27)


def test_sell_signal_seller_initiated():
    trades = [T(0, 100.0, 1.0, m=True), T(1000, 99.8, 1.0, m=True)]
    act, confidence, _, _, ind, _ = momentum(trades)
    assert act == ACTION_SELL
    assert ind["quantity_component"] == -1.0 and ind["flow_component"] == -1.0
    assert ind["momentum"] == -1.0 and confidence == 0.95  # the cap, exactly


def test_quantity_component_below_the_mean():
    trades = [T(0, 100.0, 3.0), T(1, 100.0, 1.0)]
    result = momentum(trades, buy_threshold=0.0, price_weight=0.0, maker_weight=0.0)
    assert result[4]["quantity_component"] == 0.5  # 1 / mean 2


@pytest.mark.parametrize("p_last, threshold, expected", [
    (129.0, 0.5, ACTION_NONE),  # momentum 0.5 == buy_threshold: strict
    (129.0, 0.4999999, ACTION_BUY),
    (129.0, 0.5000001, ACTION_NONE),
])
def test_buy_threshold_is_strict(p_last, threshold, expected):
    result = momentum([T(0, 128.0), T(1, p_last)], buy_threshold=threshold, **PRICE_ONLY)
    assert action(result) == expected


@pytest.mark.parametrize("threshold, expected", [
    (-0.5, ACTION_NONE),
    (-0.4999999, ACTION_SELL),
    (-0.5000001, ACTION_NONE),
])
def test_sell_threshold_is_strict(threshold, expected):
    result = momentum([T(0, 128.0), T(1, 127.0)], sell_threshold=threshold, **PRICE_ONLY)
    assert action(result) == expected


def test_threshold_of_one_can_never_be_exceeded():
    top = [T(0, 100.0), T(1, 101.0)]  # momentum = 1 exactly
    assert momentum(top)[4]["momentum"] == 1.0
    assert momentum(top, buy_threshold=1.0) is None
    bottom = [T(0, 100.0, m=True), T(1, 99.0, m=True)]
    assert momentum(bottom)[4]["momentum"] == -1.0
    assert momentum(bottom, sell_threshold=-1.0) is None


@pytest.mark.parametrize("quantity, floor, expected", [
    (0.5, 0.5, ACTION_BUY),  # equal to min_quantity: evaluated
    (0.5, 0.5000001, ACTION_NONE),  # smaller: stored, not evaluated
    (0.0, 0.0, ACTION_BUY),
])
def test_min_quantity_gates_the_current_trade(quantity, floor, expected):
    trades = [T(0, 100.0, 1.0), T(1, 100.2, quantity)]
    assert action(momentum(trades, min_quantity=floor, buy_threshold=0.5)) == expected


def test_min_quantity_does_not_filter_the_window():
    trades = [T(0, 100.0, 0.0001), T(1, 100.2, 1.0)]
    result = momentum(trades, min_quantity=0.5)
    assert result[4]["window_trades"] == 2


@pytest.mark.parametrize("decay_s, window_trades", [
    (5.0, 3),  # E difference == decay · 1000 stays in
    (4.999, 2),
    (2.5, 2),
    (2.4999, None),  # only the current trade left
])
def test_time_decay_boundary(decay_s, window_trades):
    trades = [T(0, 100.0), T(2500, 100.1), T(5000, 100.2)]
    result = momentum(trades, time_decay_seconds=decay_s, buy_threshold=0.0)
    if window_trades is None:
        assert result is None
    else:
        assert result[4]["window_trades"] == window_trades


def test_decay_filters_trade_by_trade():
    # an out-of-order old event time in the middle leaves the window, the trades around it stay
    trades = [T(4000, 100.0), T(0, 90.0), T(5000, 100.2)]
    result = momentum(trades, time_decay_seconds=2.0)
    assert result[4]["window_trades"] == 2
    assert result[4]["price_component"] == 1.0


def test_momentum_window_takes_the_last_trades():
    trades = [T(0, 50.0, 100.0, m=True), T(1, 100.0), T(2, 100.2)]
    both = {"buy_threshold": 0.0, "sell_threshold": 0.0}  # any non-zero momentum signals
    result = momentum(trades, momentum_window=2, **both)
    assert result[4]["window_trades"] == 2 and result[4]["flow_component"] == 1.0
    assert momentum(trades, momentum_window=3, **both)[4]["window_trades"] == 3


def test_fewer_trades_than_the_window():
    assert momentum([T(0, 100.0)]) is None  # one trade: no evaluation
    assert momentum([T(0, 100.0), T(1, 100.2)], momentum_window=1000)[4]["window_trades"] == 2


def test_zero_quantities_give_nothing():
    assert momentum([T(0, 100.0, 0.0), T(1, 100.2, 0.0)], min_quantity=0.0) is None


def test_zero_weights_give_nothing():
    trades = [T(0, 100.0), T(1, 100.2)]
    assert momentum(trades, price_weight=0.0, quantity_weight=0.0, maker_weight=0.0) is None


def test_price_scale_saturates():
    trades = [T(0, 128.0), T(1, 129.0)]  # 78.125 bps
    assert momentum(trades, **{**PRICE_ONLY, "price_scale_bps": 78.125}, buy_threshold=0.0)[4][
        "price_component"] == 1.0
    assert momentum(trades, **{**PRICE_ONLY, "price_scale_bps": 1.0}, buy_threshold=0.0)[4][
        "price_component"] == 1.0
    assert momentum(trades, **PRICE_ONLY, buy_threshold=0.0)[4]["price_component"] == 0.5


def test_ring_wrap_and_oldest_position():
    trades = [T(i * 10, 100.0 + 0.01 * i) for i in range(200)]
    params = defaults(ID)
    got, oldest = run_momentum(trades, params, capacity=64)
    assert_same(got, reference.trade_momentum(trades, params))
    assert got[4]["window_trades"] == 10 and oldest == 190


def test_window_is_capped_by_the_ring_capacity():
    trades = [T(i, 100.0 + 0.01 * i) for i in range(100)]
    params = defaults(ID, momentum_window=100)
    got, oldest = run_momentum(trades, params, capacity=64)
    assert got[4]["window_trades"] == 64 and oldest == 36
    assert_same(got, reference.trade_momentum(trades[-64:], params))


def test_later_trades_in_the_ring_are_not_read():
    trades = [T(0, 100.0), T(1, 100.2), T(2, 50.0, 100.0, m=True)]
    params = defaults(ID)
    got, oldest = run_momentum(trades, params, position=1)
    assert got[0] == ACTION_BUY and oldest == 0
    assert_same(got, reference.trade_momentum(trades[:2], params))


# Every parameter the kernel reads changes the outcome: (value A, value B, trades, other overrides)
_MIXED = [T(0, 100.0, 1.0, m=True), T(1000, 100.05, 1.0), T(2000, 100.1, 2.0)]
PARAMETER_CASES = {
    "price_weight": (0.4, 2.0, _MIXED, {"buy_threshold": 0.1}),
    "quantity_weight": (0.3, 2.0, _MIXED, {"buy_threshold": 0.1}),
    "maker_weight": (0.3, 2.0, _MIXED, {"buy_threshold": 0.1}),
    "buy_threshold": (0.5, 0.9, _MIXED, {}),
    "sell_threshold": (-0.5, -0.9, [T(0, 100.0, m=True), T(1, 99.95, m=True)], {}),
    "min_quantity": (1.0, 2.5, _MIXED, {}),
    "base_confidence": (0.68, 0.5, _MIXED, {}),
    "time_decay_seconds": (300.0, 1.5, _MIXED, {}),
    "momentum_window": (10, 2, _MIXED, {}),
    "price_scale_bps": (10.0, 100.0, _MIXED, {"buy_threshold": 0.1}),
}


def test_parameter_cases_cover_every_kernel_parameter():
    assert set(PARAMETER_CASES) == set(KERNEL_PARAMS[ID])


@pytest.mark.parametrize("name", sorted(PARAMETER_CASES))
def test_each_parameter_changes_the_outcome(name):
    a, b, trades, others = PARAMETER_CASES[name]
    first = momentum(trades, **{**others, name: a})
    second = momentum(trades, **{**others, name: b})
    assert first is not None or second is not None
    assert outcome(first) != outcome(second)


# --- Hypothesis: kernel == reference -------------------------------------------------------------

_step = st.tuples(
    st.one_of(st.just(0), st.integers(0, 2_000), st.integers(0, 5_000),
              st.integers(0, 600_000)),  # ms since the previous trade
    st.floats(-0.002, 0.002),  # relative price move
    st.one_of(st.just(0.0), st.floats(0.0, 10.0), st.floats(0.0, 10.0),
              st.sampled_from([0.001, 1.0])),
    st.booleans(),
)


@st.composite
def histories(draw, max_len=150):
    E = draw(st.integers(0, 2 * 10 ** 12))
    price = draw(st.floats(0.01, 1e5))
    drift = draw(st.floats(-0.001, 0.001))
    trades = []
    for dt, move, q, m in draw(st.lists(_step, min_size=2, max_size=max_len)):
        E += dt
        price *= 1 + drift + move
        trades.append(T(E, price, q, m))
    return trades


CAPACITY = 64


@settings(max_examples=200, deadline=None)
@given(histories(), momentum_params(max_window=60), st.data())
def test_kernel_matches_reference(trades, params, data):
    n, window = len(trades), params["momentum_window"]
    # any position whose window is still in the ring (later trades are there too, unread)
    max_back = n - 1 if n <= CAPACITY else min(n - 1, CAPACITY - window)
    position = n - 1 - data.draw(st.integers(0, max_back))
    want = reference.trade_momentum(trades[:position + 1], params)
    event("signal" if want else "no signal")
    got, oldest = run_momentum(trades, params, capacity=CAPACITY, position=position)
    assert_same(got, want)
    if got is not None:
        assert got[1] <= 0.95
        assert oldest == max(0, position - window + 1)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32), momentum_params(max_window=1000))
def test_large_windows_match_reference(seed, params):
    rng = random.Random(seed)
    E, price, trades = 0, rng.uniform(1, 1e4), []
    for _ in range(rng.randint(1, 1100)):
        E += rng.choice((0, rng.randint(0, 1000), rng.randint(0, 100_000)))
        price *= 1 + rng.uniform(-0.001, 0.0012)
        trades.append(T(E, price, rng.choice((0.0, rng.uniform(0, 5))), rng.random() < 0.45))
    want = reference.trade_momentum(trades, params)
    event("signal" if want else "no signal")
    got, _ = run_momentum(trades, params, capacity=1024)
    assert_same(got, want)
