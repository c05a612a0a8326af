"""ticker_velocity kernel: hand-made boundary cases, Hypothesis agreement with the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kernels import ticker_velocity
from kernels.output import OUT_WIDTH, RESULT_OVERRUN
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from tests import reference
from tests.kernel_cases import (
    KERNEL_PARAMS,
    assert_same,
    defaults,
    outcome,
    param_array,
    run_velocity,
    ticker_ring,
    velocity_params,
)

ID = "ticker_velocity"


def velocity(tickers, capacity=64, **overrides):
    """Kernel result for the last ticker (checked against the reference)."""
    params = defaults(ID, **overrides)
    got, _ = run_velocity(tickers, params, capacity=capacity)
    lowest = max(0, len(tickers) - capacity)
    assert_same(got, reference.ticker_velocity(tickers, lowest, params))
    return got


def action(result):
    return ACTION_NONE if result is None else result[0]


def vel(a, b):
    (E_i, c_i, _), (E_j, c_j, _) = a, b
    return (c_j - c_i) / c_i * 100 / ((E_j - E_i) / 60_000)


# one minute, +1 %, volume +1 %: velocity 1 %/min
RISING = [(0, 100.0, 1000.0), (30_000, 100.5, 1005.0), (60_000, 101.0, 1010.0)]


def test_buy_signal_fills_the_row():
    act, confidence, price, current, ind, meta = velocity(RISING)
    assert act == ACTION_BUY and price == current == 101.0 and meta == {}
    assert ind["velocity"] == pytest.approx(1.0)
    assert ind["price_change_percent"] == pytest.approx(1.0)
    assert ind["time_window"] == 60.0
    assert ind["volume_change_percent"] == pytest.approx(1.0)
    acc = vel(RISING[1], RISING[2]) - vel(RISING[0], RISING[1])
    assert ind["acceleration"] == pytest.approx(acc)
    assert confidence == pytest.approx(0.65 + 0.05 + 0.5 * (acc / 10))


def test_sell_signal():
    falling = [(0, 100.0, 1000.0), (30_000, 99.0, 1005.0), (60_000, 98.5, 1010.0)]
    act, confidence, _, _, ind, _ = velocity(falling)
    assert act == ACTION_SELL and ind["velocity"] == pytest.approx(-1.5)
    acc = vel(falling[1], falling[2]) - vel(falling[0], falling[1])  # > 0: decelerating fall
    assert confidence == pytest.approx(0.65 + 0.1 + 0.5 * (-acc / 10))


def test_time_window_boundary_is_inclusive():
    assert velocity(RISING, time_window=60)[4]["time_window"] == 60.0  # E diff == 60 000 ms
    shifted = [(-1, 100.0, 1000.0)] + RISING[1:]  # one ms too old: two samples left
    assert velocity(shifted, time_window=60) is None


@pytest.mark.parametrize("first_ms, expected", [
    (45_000, ACTION_BUY),  # span 15 s == time_window / 4: enough
    (45_001, ACTION_NONE),
])
def test_span_must_reach_a_quarter_of_the_window(first_ms, expected):
    tickers = [(first_ms, 100.0, 1000.0), (52_500, 100.1, 1005.0), (60_000, 100.2, 1010.0)]
    assert action(velocity(tickers, time_window=60)) == expected


def test_three_samples_needed():
    assert velocity(RISING[::2]) is None
    assert velocity(RISING[-1:]) is None


# 128 → 129 over one minute: change 0.78125 % and velocity 0.78125 %/min, both exact
EXACT = [(0, 128.0, 1024.0), (30_000, 128.5, 1028.0), (60_000, 129.0, 1032.0)]  # volume +0.78125 %
EXACT_DOWN = [(0, 128.0, 1024.0), (30_000, 127.5, 1028.0), (60_000, 127.0, 1032.0)]


@pytest.mark.parametrize("floor, expected", [
    (0.78125, ACTION_BUY),  # |change| == min_price_change: enough (< is the refusal)
    (0.7813, ACTION_NONE),
])
def test_min_price_change_boundary(floor, expected):
    assert action(velocity(EXACT, min_price_change=floor)) == expected


@pytest.mark.parametrize("threshold, expected", [
    (0.78125, ACTION_NONE),  # velocity == buy_threshold: strict
    (0.78124, ACTION_BUY),
])
def test_buy_threshold_is_strict(threshold, expected):
    assert action(velocity(EXACT, buy_threshold=threshold)) == expected


@pytest.mark.parametrize("threshold, expected", [
    (-0.78125, ACTION_NONE),
    (-0.78124, ACTION_SELL),
])
def test_sell_threshold_is_strict(threshold, expected):
    assert action(velocity(EXACT_DOWN, sell_threshold=threshold)) == expected


@pytest.mark.parametrize("floor, confirm, expected", [
    (0.78125, True, ACTION_BUY),  # growth == min_volume_change: enough (≥)
    (0.7813, True, ACTION_NONE),
    (0.7813, False, ACTION_BUY),  # confirmation off: volume ignored
])
def test_volume_confirmation_boundary(floor, confirm, expected):
    result = velocity(EXACT, min_volume_change=floor, volume_confirmation=confirm)
    assert action(result) == expected
    if result is not None:
        assert result[4]["volume_change_percent"] == 0.78125


def test_zero_first_volume():
    tickers = [(0, 100.0, 0.0), (30_000, 100.5, 10.0), (60_000, 101.0, 20.0)]
    assert velocity(tickers) is None
    result = velocity(tickers, volume_confirmation=False)
    assert result[0] == ACTION_BUY and math.isnan(result[4]["volume_change_percent"])


def test_falling_volume_blocks_a_confirmed_signal():
    tickers = [(0, 100.0, 1000.0), (30_000, 100.5, 990.0), (60_000, 101.0, 980.0)]
    assert velocity(tickers) is None
    assert velocity(tickers, volume_confirmation=False)[4]["volume_change_percent"] == \
        pytest.approx(-2.0)


def test_midpoint_tie_goes_to_the_earlier_sample():
    tickers = [(0, 100.0, 1000.0), (20_000, 101.0, 1000.0), (40_000, 101.2, 1000.0),
               (60_000, 101.5, 1010.0)]
    result = velocity(tickers)
    earlier = vel(tickers[1], tickers[3]) - vel(tickers[0], tickers[1])
    later = vel(tickers[2], tickers[3]) - vel(tickers[0], tickers[2])
    assert earlier != pytest.approx(later)
    assert result[4]["acceleration"] == pytest.approx(earlier)


def test_midpoint_nearest_interior_sample():
    tickers = [(0, 100.0, 1000.0), (10_000, 100.1, 1000.0), (27_000, 100.3, 1000.0),
               (32_000, 100.9, 1000.0), (60_000, 101.5, 1010.0)]
    result = velocity(tickers)
    assert result[4]["acceleration"] == pytest.approx(
        vel(tickers[3], tickers[4]) - vel(tickers[0], tickers[3]))  # 32 s is 2 s from 30 s


@pytest.mark.parametrize("tickers", [
    [(0, 100.0, 1000.0), (0, 100.5, 1005.0), (60_000, 101.0, 1010.0)],  # E_k == E_first
    [(0, 100.0, 1000.0), (60_000, 100.5, 1005.0), (60_000, 101.0, 1010.0)],  # E_k == E_last
    [(0, 100.0, 1000.0), (30_000, 0.0, 1005.0), (60_000, 101.0, 1010.0)],  # c_k == 0
    [(0, 0.0, 1000.0), (30_000, 100.0, 1005.0), (60_000, 101.0, 1010.0)],  # c_first == 0
])
def test_zero_divisors_give_nothing(tickers):
    assert velocity(tickers) is None


def test_duplicate_times_are_fine_when_another_interior_sample_exists():
    tickers = [(0, 100.0, 1000.0), (0, 100.1, 1000.0), (30_000, 100.5, 1005.0),
               (60_000, 101.0, 1010.0)]
    assert velocity(tickers)[0] == ACTION_BUY


def test_confidence_is_capped():
    steep = [(0, 100.0, 1000.0), (20_000, 100.5, 1005.0), (60_000, 110.0, 1010.0)]
    result = velocity(steep, base_confidence=0.9, acceleration_weight=1.0)
    assert result[1] == 0.95


def test_overrun_when_the_window_reaches_overwritten_entries():
    tickers = [(i * 10_000, 100.0 + 0.1 * i, 1000.0 + i) for i in range(7)]  # all within 60 s
    assert velocity(tickers, capacity=4) == reference.OVERRUN
    ring, lowest = ticker_ring(tickers, 4)
    assert lowest == 3
    out = np.zeros(OUT_WIDTH)
    assert ticker_velocity(ring, 6, 3, param_array(ID, defaults(ID)), out) == RESULT_OVERRUN


def test_no_overrun_when_the_oldest_entry_is_outside_the_window():
    tickers = [(i * 20_000, 100.0 + 0.5 * i, 1000.0 + i) for i in range(12)]
    params = defaults(ID)
    got, oldest = run_velocity(tickers, params, capacity=8)  # positions 4..11 in the ring
    assert_same(got, reference.ticker_velocity(tickers, 4, params))
    assert got[0] == ACTION_BUY and got[4]["time_window"] == 60.0  # samples 8..11: 160 s .. 220 s
    assert oldest == 7  # the entry that ended the walk was read


def test_no_overrun_from_position_zero():
    got, oldest = run_velocity(RISING, defaults(ID), capacity=4)
    assert got[0] == ACTION_BUY and oldest == 0


def test_later_entries_in_the_ring_are_not_read():
    ring, _ = ticker_ring(RISING + [(70_000, 50.0, 0.0)], 64)
    out = np.zeros(OUT_WIDTH)
    assert ticker_velocity(ring, 2, 0, param_array(ID, defaults(ID)), out) == ACTION_BUY
    assert out[2] == 101.0


# Every parameter the kernel reads changes the outcome: (value A, value B, tickers, overrides)
_ACCEL = [(0, 100.0, 1000.0), (30_000, 100.2, 1002.0), (60_000, 101.0, 1010.0)]
PARAMETER_CASES = {
    "time_window": (60, 40, RISING, {}),
    "buy_threshold": (0.5, 1.5, RISING, {}),
    "sell_threshold": (-0.5, -1.5, [(0, 100.0, 1000.0), (30_000, 99.5, 1005.0),
                                    (60_000, 99.0, 1010.0)], {}),
    "min_price_change": (0.1, 2.0, RISING, {}),
    "base_confidence": (0.65, 0.5, RISING, {}),
    "acceleration_weight": (0.5, 0.0, _ACCEL, {}),
    "volume_confirmation": (False, True, [(0, 100.0, 1000.0), (30_000, 100.5, 1000.0),
                                          (60_000, 101.0, 1000.0)], {}),
    "min_volume_change": (0.2, 5.0, RISING, {}),
}


def test_parameter_cases_cover_every_kernel_parameter():
    assert set(PARAMETER_CASES) == set(KERNEL_PARAMS[ID])


@pytest.mark.parametrize("name", sorted(PARAMETER_CASES))
def test_each_parameter_changes_the_outcome(name):
    a, b, tickers, others = PARAMETER_CASES[name]
    first = velocity(tickers, **{**others, name: a})
    second = velocity(tickers, **{**others, name: b})
    assert first is not None
    assert outcome(first) != outcome(second)


# --- Hypothesis: kernel == reference -------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(velocity_params(), st.data())
def test_kernel_matches_reference(params, data):
    window_ms = params["time_window"] * 1000
    max_step = window_ms // data.draw(st.integers(2, 12))
    E = data.draw(st.integers(0, 2 * 10 ** 12))
    price = data.draw(st.floats(0.01, 1e5))
    volume = data.draw(st.one_of(st.just(0.0), st.floats(0.0, 1e6)))
    drift = data.draw(st.floats(-0.01, 0.01))
    n = data.draw(st.integers(2, 100))  # steps; fewer than 3 samples: see the hand-made cases
    steps = data.draw(st.lists(st.tuples(
        st.one_of(st.just(max_step), st.integers(0, max_step), st.integers(0, max_step),
                  st.just(0), st.integers(0, 3 * window_ms)),
        st.floats(-0.005, 0.005),
        st.floats(-0.001, 0.01),
    ), min_size=n, max_size=n))
    tickers = [(E, price, volume)]
    for dt, move, growth in steps:
        E += dt
        price *= 1 + drift + move
        volume *= 1 + growth
        tickers.append((E, price, volume))
    capacity = data.draw(st.sampled_from([16, 64]))  # 16: overruns are common
    lowest = max(0, len(tickers) - capacity)
    want = reference.ticker_velocity(tickers, lowest, params)
    event("overrun" if want == reference.OVERRUN else "signal" if want else "no signal")
    got, oldest = run_velocity(tickers, params, capacity=capacity)
    assert_same(got, want)
    if got is not None and got != reference.OVERRUN:
        assert got[1] <= 0.95
        start = len(tickers) - 1  # the oldest sample: the walk also read the entry before it
        while start > lowest and tickers[-1][0] - tickers[start - 1][0] <= window_ms:
            start -= 1
        assert oldest == (start - 1 if start > lowest else lowest)
