"""Helpers shared by the kernel tests: build the store's arrays from plain data, run a kernel and
turn its output row into the reference's tuple, compare numbers, draw parameters."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from kernels import orderbook_skew, ticker_velocity, trade_momentum
from kernels.output import (
    INDICATOR_NAMES,
    METADATA_NAMES,
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_INDICATORS,
    OUT_METADATA,
    OUT_OLDEST_POSITION,
    OUT_PRICE,
    OUT_WIDTH,
    RESULT_OVERRUN,
)
from rtsig.codes import ACTION_NONE
from rtsig.depth import DEPTH_METRIC_NAMES, depth_metrics
from rtsig.layout import ASK, BID, DEPTH_LEVELS, PRICE, QTY, TICKER_DTYPE, TRADE_DTYPE
from rtsig.registry import STRATEGIES
from tests import reference

KERNEL_PARAMS = {
    sid: tuple(p.name for p in STRATEGIES[sid].params
               if p.name not in ("min_signal_interval", "stop_loss_pct", "take_profit_pct"))
    for sid in ("orderbook_skew", "trade_momentum", "ticker_velocity")
}
"""The parameters each kernel reads (the common ones belong to the signal builder)."""


def defaults(strategy_id: str, **overrides) -> dict:
    params = STRATEGIES[strategy_id].defaults()
    params.update(overrides)
    return params


def param_array(strategy_id: str, params: dict) -> np.ndarray:
    return STRATEGIES[strategy_id].as_array(params)


# --- building the store's arrays -----------------------------------------------------------------

def book(bids, asks):
    """``levels``, bid_count, ask_count from lists of (price, qty), best first."""
    levels = np.full((2, DEPTH_LEVELS, 2), np.nan)  # rows past the counts must never be read
    for side, rows in ((BID, bids), (ASK, asks)):
        for i, (price, qty) in enumerate(rows):
            levels[side, i, PRICE] = price
            levels[side, i, QTY] = qty
    return levels, len(bids), len(asks)


def trade_ring(trades, capacity):
    """A ring with positions 0..len-1 of dict trades ``{"E", "p", "q", "m"}`` in slot p & (C-1)."""
    ring = np.zeros(capacity, dtype=TRADE_DTYPE)
    ring["event_time_ms"] = -(10 ** 12)  # junk in never-written slots
    ring["price"] = np.nan
    for position, t in enumerate(trades):
        slot = position & (capacity - 1)
        ring["event_time_ms"][slot] = t["E"]
        ring["trade_id"][slot] = position
        ring["price"][slot] = t["p"]
        ring["quantity"][slot] = t["q"]
        ring["is_buyer_maker"][slot] = t["m"]
    return ring


def ticker_ring(tickers, capacity):
    """A ring with positions 0..len-1 of (E, c, v) tuples, and the lowest position still in it."""
    ring = np.zeros(capacity, dtype=TICKER_DTYPE)
    ring["last_price"] = np.nan
    for position, (E, c, v) in enumerate(tickers):
        slot = position & (capacity - 1)
        ring["event_time_ms"][slot] = E
        ring["last_price"][slot] = c
        ring["base_volume"][slot] = v
        ring["quote_volume"][slot] = c * v
    return ring, max(0, len(tickers) - capacity)


# --- running kernels -----------------------------------------------------------------------------

def _as_tuple(strategy_id, action, out):
    if action == ACTION_NONE:
        return None
    indicators = {name: out[OUT_INDICATORS + i]
                  for i, name in enumerate(INDICATOR_NAMES[strategy_id])}
    metadata = {name: out[OUT_METADATA + i] for i, name in enumerate(METADATA_NAMES[strategy_id])}
    return (action, out[OUT_CONFIDENCE], out[OUT_PRICE], out[OUT_CURRENT_PRICE], indicators,
            metadata)


def run_skew(bids, asks, params):
    levels, nb, na = book(bids, asks)
    out = np.full(OUT_WIDTH, np.nan)
    action = orderbook_skew(levels, nb, na, param_array("orderbook_skew", params), out)
    return _as_tuple("orderbook_skew", action, out)


def run_momentum(trades, params, capacity=64, position=None):
    """Kernel result for the trade at ``position`` (default: the last), oldest position read."""
    ring = trade_ring(trades, capacity)
    position = len(trades) - 1 if position is None else position
    out = np.full(OUT_WIDTH, np.nan)
    action = trade_momentum(ring, position, param_array("trade_momentum", params), out)
    return _as_tuple("trade_momentum", action, out), out[OUT_OLDEST_POSITION]


def run_velocity(tickers, params, capacity=64):
    """Kernel result (or reference.OVERRUN) for the last ticker, and the oldest position read."""
    ring, lowest = ticker_ring(tickers, capacity)
    out = np.full(OUT_WIDTH, np.nan)
    action = ticker_velocity(ring, len(tickers) - 1, lowest,
                             param_array("ticker_velocity", params), out)
    if action == RESULT_OVERRUN:
        return reference.OVERRUN, None
    return _as_tuple("ticker_velocity", action, out), out[OUT_OLDEST_POSITION]


def run_depth(bids, asks):
    """rtsig.depth's metrics of one book, by name."""
    levels, nb, na = book(bids, asks)
    out = depth_metrics(levels[None], np.array([nb]), np.array([na]))[0]
    return {name: out[i] for i, name in enumerate(DEPTH_METRIC_NAMES)}


# --- comparing -----------------------------------------------------------------------------------

def close(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_same(got, want):
    """Kernel tuple vs reference tuple: same action, every number within 1e-9 relative."""
    if want is None or got is None or isinstance(want, str) or isinstance(got, str):
        assert got == want, (got, want)
        return
    assert got[0] == want[0], (got, want)
    for name, g, w in zip(("confidence", "price", "current_price"), got[1:4], want[1:4]):
        assert close(float(g), float(w)), (name, g, w)
    for part in (4, 5):
        assert got[part].keys() == want[part].keys()
        for name in want[part]:
            assert close(float(got[part][name]), float(want[part][name])), \
                (name, got[part][name], want[part][name])


def outcome(result):
    """What a parameter change must alter: the action and the confidence."""
    return None if result is None else (result[0], round(float(result[1]), 12))


# --- drawing parameters inside their registry ranges ---------------------------------------------

def _weight():
    return st.one_of(st.just(0.0), st.floats(0.0, 3.0), st.floats(0.1, 3.0), st.floats(0.1, 3.0))


def _volume_floor():
    return st.one_of(st.just(0.0), st.floats(0.0, 20.0))


def skew_params():
    return st.fixed_dictionaries({
        "top_levels": st.integers(1, 20),
        "buy_threshold": st.floats(1.0, 3.0, exclude_min=True),
        "sell_threshold": st.floats(0.0, 1.0),
        "min_spread_percent": st.floats(0.001, 1.0),
        "base_confidence": st.floats(0.0, 0.95),
        "imbalance_weight": _weight(),
        "spread_weight": _weight(),
        "min_total_volume": _volume_floor(),
    })


def momentum_params(max_window=60):
    return st.fixed_dictionaries({
        "price_weight": _weight(),
        "quantity_weight": _weight(),
        "maker_weight": _weight(),
        # often low, so that signals are common enough to compare
        "buy_threshold": st.one_of(st.floats(0.0, 0.4), st.floats(0.0, 1.0),
                                   st.sampled_from([0.0, 1.0])),
        "sell_threshold": st.one_of(st.floats(-0.4, 0.0), st.floats(-1.0, 0.0),
                                    st.sampled_from([0.0, -1.0])),
        "min_quantity": st.one_of(st.just(0.0), st.floats(0.0, 0.5)),
        "base_confidence": st.floats(0.0, 0.95),
        "time_decay_seconds": st.one_of(st.floats(0.001, 600.0), st.sampled_from([1.0, 5.0])),
        "momentum_window": st.integers(2, max_window),
        "price_scale_bps": st.floats(0.01, 100.0),
    })


def velocity_params():
    return st.fixed_dictionaries({
        "time_window": st.integers(5, 3600),
        "buy_threshold": st.one_of(st.floats(0.001, 0.2), st.floats(0.001, 3.0)),
        "sell_threshold": st.one_of(st.floats(-0.2, -0.001), st.floats(-3.0, -0.001)),
        "min_price_change": st.one_of(st.just(0.0), st.floats(0.0, 2.0)),
        "base_confidence": st.floats(0.0, 0.95),
        "acceleration_weight": st.floats(0.0, 1.0),
        "volume_confirmation": st.booleans(),
        "min_volume_change": st.one_of(st.just(0.0), st.floats(0.0, 3.0)),
    })


_quantity = st.one_of(st.just(0.0), st.floats(0.0, 100.0), st.sampled_from([0.5, 1.0, 2.0]))


@st.composite
def books(draw):
    """``(bids, asks)``: 0-20 levels a side around a random mid, best first, zero quantities and
    ties included, a crossed-free spread that may be zero."""
    mid = draw(st.floats(0.01, 1e5))
    half_spread = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.005)))
    bids, asks = [], []
    for rows, sign in ((bids, -1), (asks, 1)):
        price = mid * (1 + sign * half_spread)
        for _ in range(draw(st.integers(0, DEPTH_LEVELS))):
            rows.append((price, draw(_quantity)))
            price += sign * mid * draw(st.floats(1e-6, 1e-3))
    return bids, asks
