"""Judging events on their own data: an overwritten entry is an overrun, never a newer verdict."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from rtsig import counters as C
from rtsig.decode import Decoder
from rtsig.params import ParameterTable
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from rtsig.signals import SignalBuilder
from rtsig.store import Store
from workers.judge import EventJudge

RECEIPT_NS = 1_800_000_000_000_000_000
"""Receipt time of every message: after every event time here (none is ``bad_time``)."""


def depth(bid_qty: float, ask_qty: float, t_ms: int) -> bytes:
    bids = [[f"{100 - i * 0.01:.8f}", f"{bid_qty:.8f}"] for i in range(5)]
    asks = [[f"{100.01 + i * 0.01:.8f}", f"{ask_qty:.8f}"] for i in range(5)]
    return orjson.dumps({"stream": "btcusdt@depth20", "data": {"lastUpdateId": t_ms, "bids": bids, "asks": asks},
                         "timestamp": f"2024-11-01T12:00:{t_ms // 1000:02d}.{t_ms % 1000:03d}000Z"})


def trade(price: float, qty: float, buyer_maker: bool, t_ms: int) -> bytes:
    return orjson.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "E": t_ms, "s": "BTCUSDT", "t": t_ms,
                                                              "p": f"{price:.8f}", "q": f"{qty:.8f}", "T": t_ms,
                                                              "m": buyer_maker, "M": True}})


def ticker(price: float, volume: float, t_ms: int) -> bytes:
    return orjson.dumps({"stream": "btcusdt@ticker", "data": {"e": "24hrTicker", "E": t_ms, "s": "BTCUSDT",
                                                               "c": f"{price:.8f}", "v": f"{volume:.8f}",
                                                               "q": "1.0"}})


@pytest.fixture
def rig():
    judged = ("orderbook_skew", "trade_momentum", "ticker_velocity")  # one verdict per event here
    settings = Settings(trading_symbols=("BTCUSDT",), book_ring=4, trade_ring=1024, ticker_ring=64,
                        strategy_enabled={sid: sid in judged for sid in STRATEGIES})
    store = Store.in_memory(settings, n_workers=1)
    params = ParameterTable(settings, settings.max_symbols,
                            cli_overrides={s: {"min_signal_interval": 0} for s in
                                           ("orderbook_skew", "trade_momentum", "ticker_velocity")})
    builder = SignalBuilder(settings, params, store.last_signal_ms, store.counters[0], store.symbol_name)
    judge = EventJudge(store, params, builder, 0, 64)
    return store, judge


def decode(store, messages: list[bytes], capacity: int = 4096, overwrite: bool = True):
    """Decode all; with ``overwrite`` the rings act as if judged, so later messages may overwrite
    earlier entries (as after a worker restart re-judges events) — what an overrun is about."""
    dec = Decoder(store, 0, False, capacity=capacity)
    for m in messages:
        assert dec.add(m, RECEIPT_NS)
    events, ids = [], []
    while True:
        n = dec.decode()
        events.append(dec.events[:n].copy())
        ids.append(dec.message_ids[:n].copy())
        if overwrite:
            store.release_all()
        if not dec.blocked:
            out = SimpleNamespace(events=np.concatenate(events), message_ids=np.concatenate(ids))
            return out, len(out.events)


def test_the_decoder_waits_rather_than_overwrite_an_unjudged_book(rig):
    store, judge = rig
    dec = Decoder(store, 0, False, capacity=16)
    for i in range(6):
        dec.add(depth(10.0, 1.0, 1000 + i), RECEIPT_NS)
    n = dec.decode()
    assert (n, dec.blocked, list(dec.last_status)) == (4, True, [0, 0, 0, 0])  # ring of 4
    assert dec.decode() == 0 and dec.blocked  # still waiting: nothing judged
    judge.judge(dec.events, dec.message_ids, 0, 4)
    assert dec.decode() == 2 and not dec.blocked
    assert store.counters[0][C.OVERRUNS] == 0 and store.counters[0][C.MESSAGES_RECEIVED] == 6


def test_a_book_overwritten_before_judging_is_an_overrun(rig):
    store, judge = rig
    skewed = depth(10.0, 1.0, 1000)
    dec, n = decode(store, [skewed] + [depth(1.0, 1.0, 2000 + i) for i in range(4)])
    assert n == 5
    signals = judge.judge(dec.events, dec.message_ids, 0, 1)  # its slot now holds a later book
    assert signals == [] and store.counters[0][C.OVERRUNS] == 1
    # judged in time, the same event signals
    dec, n = decode(store, [skewed])
    assert [s["action"] for s in judge.judge(dec.events, dec.message_ids, 0, n)] == ["buy"]


def test_a_trade_window_partly_overwritten_is_an_overrun(rig):
    store, judge = rig
    rising = [trade(100 + i * 0.1, 1.0, False, 1000 + i) for i in range(10)]
    dec, n = decode(store, rising)
    first = judge.judge(dec.events, dec.message_ids, n - 1, 1)
    assert [s["action"] for s in first] == ["buy"]
    events = dec.events
    decode(store, [trade(100, 1.0, True, 5000 + i) for i in range(1020)])  # wraps the 1024 ring
    assert judge.judge(events, dec.message_ids, n - 1, 1) == []
    assert store.counters[0][C.OVERRUNS] == 1


def test_a_ticker_window_that_reaches_overwritten_entries_is_an_overrun(rig):
    store, judge = rig
    # 70 tickers 0.5 s apart: the last one's 60 s window needs entries the 64-slot ring lost
    dec, n = decode(store, [ticker(100 * (1 + 0.0002 * i), 1000 + i, 1_000_000 + i * 500) for i in range(70)])
    judge.judge(dec.events, dec.message_ids, n - 1, 1)
    assert store.counters[0][C.OVERRUNS] == 1
    # one second apart the window (61 entries) still fits: judged, no overrun
    dec, n = decode(store, [ticker(100, 1000, 2_000_000 + i * 1000) for i in range(70)])
    judge.judge(dec.events, dec.message_ids, n - 1, 1)
    assert store.counters[0][C.OVERRUNS] == 1
