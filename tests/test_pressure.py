"""The per-second pressure history: what the sampler writes and what a timeframe reads back; and
the one-pass read of every symbol's newest book it samples from."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsig.layout import IMBALANCE, PRESSURE, PRESSURE_HISTORY_S
from rtsig.pressure import PressureSampler, book_metrics, every_book_metrics, history, trend
from tests.decode_helpers import Harness, depth_msg
from tests.reference import depth_metrics as reference_depth

T0 = 1_800_000_000


def book(harness: Harness, symbol: str, bid_qty: float, ask_qty: float) -> None:
    harness.decode([depth_msg(symbol, [["100.0", f"{bid_qty}"]], [["100.1", f"{ask_qty}"]])])


def test_a_sample_holds_each_symbols_net_pressure_and_imbalance_and_nan_without_a_book():
    h = Harness()
    book(h, "btcusdt", 3.0, 1.0)
    h.store.add_symbol("NOBOOKUSDT")
    assert PressureSampler(h.store).sample(T0 + 0.7) == 1
    slot = T0 % PRESSURE_HISTORY_S
    assert h.store.pressure_seconds[slot] == T0
    ref = reference_depth([(100.0, 3.0)], [(100.1, 1.0)])
    row = h.store.pressure_history[h.sid("BTCUSDT"), slot]
    assert math.isclose(row[PRESSURE], ref["net_pressure"], rel_tol=1e-6)
    assert math.isclose(row[IMBALANCE], ref["imbalance_ratio"], rel_tol=1e-6)
    assert np.isnan(h.store.pressure_history[h.sid("NOBOOKUSDT"), slot]).all()


def test_every_book_in_one_pass_equals_each_book_read_alone():
    h = Harness()
    for k, symbol in enumerate(["btcusdt", "ethusdt", "bnbusdt", "xrpusdt"]):
        for update in range(k + 1):  # books at different ring positions
            book(h, symbol, 1.0 + k + update, 2.0 + update)
    h.store.add_symbol("NOBOOKUSDT")
    sids, levels, bid_counts, ask_counts, receipt_ns = h.store.latest_books()
    assert sorted(h.store.symbol_name(s) for s in sids) == ["BNBUSDT", "BTCUSDT", "ETHUSDT", "XRPUSDT"]
    for k, sid in enumerate(sids):
        one = h.store.latest_book(int(sid))
        assert np.array_equal(levels[k], one[0], equal_nan=True)
        assert (bid_counts[k], ask_counts[k], receipt_ns[k]) == (one[1], one[2], int(one[3]["receipt_ns"]))
    many_sids, metrics, _ = every_book_metrics(h.store)
    for sid, row in zip(many_sids, metrics):
        assert np.array_equal(row, book_metrics(h.store, int(sid))[0], equal_nan=True)


def test_a_book_caught_mid_write_is_read_again_alone_or_left_out():
    h = Harness()
    book(h, "btcusdt", 3.0, 1.0)
    book(h, "ethusdt", 1.0, 3.0)
    eth = h.sid("ETHUSDT")
    slot = (int(h.store.market[eth]["book_end"]) - 1) & (h.store.layout.book_ring - 1)
    complete = int(h.store.book_meta[eth, slot]["seq"])
    h.store.book_meta[eth, slot]["seq"] = complete - 1  # the writer is inside this slot
    sids, *_ = h.store.latest_books()
    assert [h.store.symbol_name(s) for s in sids] == ["BTCUSDT"]
    h.store.book_meta[eth, slot]["seq"] = complete
    sids, *_ = h.store.latest_books()
    assert sorted(h.store.symbol_name(s) for s in sids) == ["BTCUSDT", "ETHUSDT"]


def test_a_timeframe_returns_exactly_its_seconds_oldest_first_across_the_ring_wrap():
    h = Harness()
    sampler = PressureSampler(h.store)
    start = T0 - T0 % PRESSURE_HISTORY_S - 30  # the ring wraps 30 s into this run
    for k in range(100):
        book(h, "btcusdt", 1.0 + k, 1.0)
        sampler.sample(start + k)
    sid = h.sid("BTCUSDT")
    now = start + 99
    seconds, rows = history(h.store, sid, now, 60)
    assert list(seconds) == list(range(now - 59, now + 1))
    expected = [reference_depth([(100.0, 1.0 + k)], [(100.1, 1.0)])["net_pressure"] for k in range(40, 100)]
    assert np.allclose(rows[:, PRESSURE], expected, rtol=1e-6)
    assert len(history(h.store, sid, now, 3600)[0]) == 100
    assert len(history(h.store, sid, now + 3600, 3600)[0]) == 0, "samples an hour old are gone"


def test_a_slot_being_rewritten_is_not_read():
    h = Harness()
    book(h, "btcusdt", 2.0, 1.0)
    PressureSampler(h.store).sample(T0)
    h.store.pressure_seconds[T0 % PRESSURE_HISTORY_S] = 0  # the sampler's "being written" mark
    assert len(history(h.store, h.sid("BTCUSDT"), T0, 60)[0]) == 0


@given(st.lists(st.floats(-100, 100), min_size=2, max_size=200))
@settings(max_examples=50, deadline=None)
def test_trend_follows_the_least_squares_change_over_the_window(values):
    seconds = np.arange(len(values), dtype=np.int64) + T0
    direction, strength = trend(seconds, np.array(values))
    n = len(values)
    mean_t, mean_v = (n - 1) / 2, sum(values) / n
    var = sum((t - mean_t) ** 2 for t in range(n))
    slope = sum((t - mean_t) * (v - mean_v) for t, v in enumerate(values)) / var
    change = slope * (n - 1)
    assert 0.0 <= strength <= 1.0
    assert math.isclose(strength, min(1.0, abs(change) / 200), abs_tol=1e-3)
    if abs(change) > 5.0 + 1e-6:
        assert direction == ("rising" if change > 0 else "falling")
    elif abs(change) < 5.0 - 1e-6:
        assert direction == "stable"
