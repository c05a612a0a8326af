"""rtsig.depth (the web API's order-book metrics, NumPy) against tests/reference.py, one book at
a time and many in one call; Store.latest_books against the one-book seqlock read; and the
processes that only read metrics staying free of Numba."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsig.depth import DEPTH_METRIC_NAMES, DEPTH_METRICS_WIDTH, depth_metrics
from rtsig.layout import DEPTH_LEVELS
from tests import reference
from tests.kernel_cases import book, books, close, run_depth

NAN_WITHOUT_BOOK = {"imbalance_ratio", "buy_pressure", "sell_pressure", "net_pressure",
                    "best_bid", "best_ask", "spread_abs", "spread_bps", "mid_price",
                    "vwap_bid", "vwap_ask", "vwap_spread", "strongest_bid_price",
                    "strongest_bid_volume", "strongest_ask_price", "strongest_ask_volume"}


def metrics(bids, asks):
    got = run_depth(bids, asks)
    want = reference.depth_metrics(bids, asks)
    assert set(got) == set(want) == set(DEPTH_METRIC_NAMES)
    for name in DEPTH_METRIC_NAMES:
        assert close(float(got[name]), float(want[name])), (name, got[name], want[name])
    return got


def test_simple_book():
    m = metrics([(100.0, 3.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)])
    assert m["bid_volume"] == 4.0 and m["ask_volume"] == 2.0 and m["total_liquidity"] == 6.0
    assert m["imbalance_ratio"] == pytest.approx(2 / 6)
    assert m["buy_pressure"] == pytest.approx(400 / 6)
    assert m["sell_pressure"] == pytest.approx(200 / 6)
    assert m["net_pressure"] == pytest.approx(200 / 6)
    assert m["best_bid"] == 100.0 and m["best_ask"] == 101.0
    assert m["spread_abs"] == 1.0 and m["mid_price"] == 100.5
    assert m["spread_bps"] == pytest.approx(1 / 100.5 * 10_000)
    assert m["vwap_bid"] == pytest.approx((300 + 99) / 4)
    assert m["vwap_ask"] == pytest.approx(101.5)
    assert m["vwap_spread"] == pytest.approx(101.5 - 399 / 4)
    assert (m["strongest_bid_price"], m["strongest_bid_volume"]) == (100.0, 3.0)
    assert m["bid_levels"] == 2 and m["ask_levels"] == 2


def test_depth_5_and_10_and_all_levels():
    bids = [(100.0 - i, 1.0 + i) for i in range(DEPTH_LEVELS)]
    asks = [(101.0 + i, 1.0) for i in range(DEPTH_LEVELS)]
    m = metrics(bids, asks)
    assert m["bid_depth_5"] == sum(1.0 + i for i in range(5))
    assert m["bid_depth_10"] == sum(1.0 + i for i in range(10))
    assert m["bid_volume"] == sum(1.0 + i for i in range(20))
    assert m["ask_depth_5"] == 5.0 and m["ask_depth_10"] == 10.0 and m["ask_volume"] == 20.0
    assert m["strongest_bid_price"] == 81.0


def test_thin_book_depths():
    m = metrics([(100.0, 2.0)], [(101.0, 1.0), (102.0, 1.0)])
    assert m["bid_depth_5"] == m["bid_depth_10"] == 2.0
    assert m["ask_depth_10"] == 2.0


def test_strongest_level_tie_goes_to_the_top():
    m = metrics([(100.0, 1.0), (99.0, 5.0), (98.0, 5.0)], [(101.0, 5.0), (102.0, 5.0)])
    assert m["strongest_bid_price"] == 99.0 and m["strongest_ask_price"] == 101.0


def test_empty_book_is_all_nan_but_counts_and_sums():
    m = metrics([], [])
    for name in NAN_WITHOUT_BOOK:
        assert math.isnan(m[name]), name
    for name in ("bid_volume", "ask_volume", "total_liquidity", "bid_depth_5", "ask_depth_10",
                 "bid_levels", "ask_levels"):
        assert m[name] == 0.0, name


def test_one_empty_side():
    m = metrics([(100.0, 2.0)], [])
    assert m["buy_pressure"] == 100.0 and m["imbalance_ratio"] == 1.0
    assert m["best_bid"] == 100.0 and math.isnan(m["best_ask"])
    assert math.isnan(m["spread_abs"]) and math.isnan(m["mid_price"])
    assert math.isnan(m["vwap_ask"]) and math.isnan(m["vwap_spread"])
    assert math.isnan(m["strongest_ask_price"]) and m["ask_levels"] == 0


def test_zero_quantities():
    m = metrics([(100.0, 0.0), (99.0, 0.0)], [(101.0, 0.0)])
    assert m["total_liquidity"] == 0.0
    assert math.isnan(m["imbalance_ratio"]) and math.isnan(m["vwap_bid"])
    assert m["spread_abs"] == 1.0
    assert (m["strongest_bid_price"], m["strongest_bid_volume"]) == (100.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(books())
def test_matches_reference(book_sides):
    metrics(*book_sides)


@settings(max_examples=50, deadline=None)
@given(st.lists(books(), min_size=1, max_size=8))
def test_many_books_in_one_call_equal_each_book_alone(books):
    """Vectorising over books must not mix them: row n is book n's metrics."""
    built = [book(bids, asks) for bids, asks in books]
    levels = np.stack([b[0] for b in built])
    out = depth_metrics(levels, np.array([b[1] for b in built]), np.array([b[2] for b in built]))
    assert out.shape == (len(books), DEPTH_METRICS_WIDTH)
    for row, (bids, asks) in zip(out, books):
        want = reference.depth_metrics(bids, asks)
        for i, name in enumerate(DEPTH_METRIC_NAMES):
            assert close(float(row[i]), float(want[name])), (name, row[i], want[name])


def test_read_only_levels_are_accepted():
    levels, nb, na = book([(100.0, 2.0)], [(101.0, 1.0)])
    levels.flags.writeable = False
    out = depth_metrics(levels[None], np.array([nb]), np.array([na]))
    assert out[0, DEPTH_METRIC_NAMES.index("bid_volume")] == 2.0


def test_processes_that_only_read_metrics_do_not_load_numba():
    """The supervisor, the pressure sampler and the web server stay free of Numba (~70 MiB RSS
    each); only the ingest and the workers, which run jitted code, load it."""
    code = ("import sys; import rtsig.supervisor, rtsig.pressure, rtsig.store, web.server, web.app; "
            "print('numba' in sys.modules, 'llvmlite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
