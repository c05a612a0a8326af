"""orderbook_skew kernel: hand-made boundary cases, Hypothesis agreement with tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings

from kernels import orderbook_skew
from kernels.output import OUT_WIDTH
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import DEPTH_LEVELS
from tests import reference
from tests.kernel_cases import (
    KERNEL_PARAMS,
    assert_same,
    book,
    books,
    defaults,
    outcome,
    param_array,
    run_skew,
    skew_params,
)

ID = "orderbook_skew"


def skew(bids, asks, **overrides):
    """Kernel result (checked against the reference) with default parameters plus overrides."""
    params = defaults(ID, **overrides)
    got = run_skew(bids, asks, params)
    assert_same(got, reference.orderbook_skew(bids, asks, params))
    return got


def action(result):
    return ACTION_NONE if result is None else result[0]


# A book whose ratio and spread are exact in binary: best bid 64, best ask 64.5 → spread 0.78125 %.
BID, ASK = 64.0, 64.5
WIDE = 0.78125


def test_buy_signal_fills_the_row():
    got = skew([(100.0, 3.0), (99.99, 1.0)], [(100.02, 1.0), (100.03, 1.0)], top_levels=1)
    act, confidence, price, current, indicators, metadata = got
    assert act == ACTION_BUY
    assert price == 100.0 and current == pytest.approx(100.01)
    assert indicators["bid_volume"] == 3.0 and indicators["ask_volume"] == 1.0
    assert indicators["ratio"] == 3.0
    assert indicators["spread_percent"] == pytest.approx(0.02)
    assert metadata == {"top_bid": 100.0, "top_ask": 100.02}
    # imb = clamp((3 - 1.2) / 1.2) = 1, spr = 1 - 0.02 / 0.1 = 0.8
    assert confidence == pytest.approx(0.70 + 0.25 * (0.6 * 1 + 0.4 * 0.8) / 1.0)


def test_sell_signal_uses_best_ask():
    act, confidence, price, current, indicators, _ = skew([(100.0, 1.0)], [(100.02, 4.0)])
    assert act == ACTION_SELL and price == 100.02
    assert indicators["ratio"] == 0.25
    imb = (0.8 - 0.25) / 0.8
    assert confidence == pytest.approx(0.70 + 0.25 * (0.6 * imb + 0.4 * 0.8))


@pytest.mark.parametrize("bid_qty, expected", [
    (3.0, ACTION_NONE),  # ratio 1.5 == buy_threshold: strict
    (3.0000001, ACTION_BUY),
    (2.9999999, ACTION_NONE),
])
def test_buy_threshold_is_strict(bid_qty, expected):
    assert action(skew([(BID, bid_qty)], [(ASK, 2.0)], buy_threshold=1.5, min_spread_percent=1)) \
        == expected


@pytest.mark.parametrize("bid_qty, expected", [
    (1.0, ACTION_NONE),  # ratio 0.5 == sell_threshold: strict
    (0.9999999, ACTION_SELL),
    (1.0000001, ACTION_NONE),
])
def test_sell_threshold_is_strict(bid_qty, expected):
    assert action(skew([(BID, bid_qty)], [(ASK, 2.0)], sell_threshold=0.5, min_spread_percent=1)) \
        == expected


@pytest.mark.parametrize("max_spread, expected", [
    (WIDE, ACTION_BUY),  # spread == min_spread_percent is still allowed (> is the refusal)
    (0.78124, ACTION_NONE),
    (0.8, ACTION_BUY),
])
def test_spread_limit_is_inclusive(max_spread, expected):
    result = skew([(BID, 4.0)], [(ASK, 1.0)], min_spread_percent=max_spread)
    assert action(result) == expected
    if max_spread == WIDE:
        assert result[4]["spread_percent"] == WIDE
        # spr = 0 at the limit, imbalance saturated: confidence = base + (cap - base) * 0.6
        assert result[1] == pytest.approx(0.70 + 0.25 * 0.6)


@pytest.mark.parametrize("floor, expected", [
    (5.0, ACTION_BUY),  # B + A == min_total_volume is enough
    (5.0000001, ACTION_NONE),
    (0.0, ACTION_BUY),
])
def test_min_total_volume_boundary(floor, expected):
    assert action(skew([(BID, 4.0)], [(ASK, 1.0)], min_total_volume=floor,
                       min_spread_percent=1)) == expected


@pytest.mark.parametrize("bids, asks", [
    ([], [(100.02, 1.0)]),
    ([(100.0, 1.0)], []),
    ([], []),
    ([(100.0, 5.0)], [(100.02, 0.0)]),  # A = 0
    ([(100.0, 0.0)], [(100.02, 0.0)]),  # both zero
])
def test_empty_or_zero_sides_give_nothing(bids, asks):
    assert skew(bids, asks, min_total_volume=0.0) is None


def test_zero_bid_volume_is_a_strong_sell():
    act, _, _, _, indicators, _ = skew([(100.0, 0.0)], [(100.02, 1.0)], min_total_volume=0.0)
    assert act == ACTION_SELL and indicators["ratio"] == 0.0


def test_top_levels_is_capped_by_the_book():
    bids = [(100.0 - i * 0.01, 1.0) for i in range(3)]
    asks = [(100.02, 1.0)]
    result = skew(bids, asks, top_levels=20)
    assert result[4]["bid_volume"] == 3.0 and result[4]["ask_volume"] == 1.0
    assert skew(bids, asks, top_levels=1) is None  # ratio 1


def test_levels_past_the_counts_are_not_read():
    levels, _, _ = book([(100.0, 3.0), (99.9, 50.0)], [(100.02, 1.0), (100.03, 50.0)])
    out = np.zeros(OUT_WIDTH)
    params = param_array(ID, defaults(ID, top_levels=20))
    assert orderbook_skew(levels, 1, 1, params, out) == ACTION_BUY
    assert out[3] == 3.0 and out[4] == 1.0


def test_full_depth_book():
    bids = [(100.0 - i * 0.01, 1.0 + i) for i in range(DEPTH_LEVELS)]
    asks = [(100.01 + i * 0.01, 1.0) for i in range(DEPTH_LEVELS)]
    result = skew(bids, asks, top_levels=20)
    assert result[4]["bid_volume"] == sum(1.0 + i for i in range(20))


def test_confidence_reaches_the_cap_exactly():
    # locked book (spread 0 → spr = 1) and saturated imbalance → base + (cap - base) · 1
    result = skew([(100.0, 10.0)], [(100.0, 1.0)], base_confidence=0.9)
    assert result[1] == 0.95
    result = skew([(100.0, 10.0)], [(100.0, 1.0)], base_confidence=0.95)
    assert result[1] == 0.95


def test_zero_weights_give_base_confidence():
    result = skew([(100.0, 3.0)], [(100.02, 1.0)], imbalance_weight=0.0, spread_weight=0.0,
                  base_confidence=0.61)
    assert result[0] == ACTION_BUY and result[1] == 0.61


def test_one_weight_alone():
    only_spread = skew([(100.0, 3.0)], [(100.02, 1.0)], imbalance_weight=0.0)
    assert only_spread[1] == pytest.approx(0.70 + 0.25 * 0.8)
    only_imbalance = skew([(100.0, 3.0)], [(100.02, 1.0)], spread_weight=0.0)
    assert only_imbalance[1] == pytest.approx(0.95)


def test_zero_sell_threshold_never_sells():
    assert skew([(100.0, 0.0)], [(100.02, 1.0)], sell_threshold=0.0, min_total_volume=0) is None


# Every parameter the kernel reads changes the outcome (docs/STRATEGIES.md: none is decorative).
# (parameter, value A, value B, bids, asks, other overrides)
_SKEWED = ([(100.0, 3.0), (99.99, 1.0)], [(100.02, 1.0), (100.03, 3.0)])
PARAMETER_CASES = {
    "top_levels": (1, 2, *_SKEWED, {}),
    "buy_threshold": (2.9, 3.1, *_SKEWED, {"top_levels": 1}),
    "sell_threshold": (0.4, 0.3, [(100.0, 1.0)], [(100.02, 3.0)], {}),
    "min_spread_percent": (0.1, 0.01, *_SKEWED, {"top_levels": 1}),
    "base_confidence": (0.7, 0.6, *_SKEWED, {"top_levels": 1}),
    "imbalance_weight": (0.6, 0.0, *_SKEWED, {"top_levels": 1}),
    "spread_weight": (0.4, 0.0, *_SKEWED, {"top_levels": 1}),
    "min_total_volume": (1.0, 10.0, *_SKEWED, {"top_levels": 1}),
}


def test_parameter_cases_cover_every_kernel_parameter():
    assert set(PARAMETER_CASES) == set(KERNEL_PARAMS[ID])


@pytest.mark.parametrize("name", sorted(PARAMETER_CASES))
def test_each_parameter_changes_the_outcome(name):
    a, b, bids, asks, others = PARAMETER_CASES[name]
    first = skew(bids, asks, **{**others, name: a})
    second = skew(bids, asks, **{**others, name: b})
    assert first is not None
    assert outcome(first) != outcome(second)


# --- Hypothesis: kernel == reference -------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(books(), skew_params())
def test_kernel_matches_reference(side_lists, params):
    bids, asks = side_lists
    want = reference.orderbook_skew(bids, asks, params)
    event("signal" if want else "no signal")
    got = run_skew(bids, asks, params)
    assert_same(got, want)
    if got is not None:
        assert got[1] <= 0.95
