"""The signal builder: floor, cool-down, strength, risk levels and every field of docs/CONTRACT.md §3."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.output import OUT_CONFIDENCE, OUT_CURRENT_PRICE, OUT_INDICATORS, OUT_METADATA, OUT_PRICE, OUT_WIDTH
from rtsig import codes
from rtsig import counters as C
from rtsig.params import ParameterTable
from rtsig.registry import strategy_number
from rtsig.settings import Settings
from rtsig.signals import (
    SIGNAL_ID_NAMESPACE,
    SignalBuilder,
    iso_utc_ms,
    risk_levels,
    serialize,
    signal_id_for,
    strength,
)

SKEW = strategy_number("orderbook_skew")
FIELDS = {"signal_id", "strategy_id", "strategy", "source", "symbol", "action", "confidence", "strength",
          "price", "quantity", "current_price", "timeframe", "order_type", "time_in_force", "stop_loss",
          "take_profit", "stop_loss_pct", "take_profit_pct", "indicators", "metadata", "timestamp"}


def make_builder(settings: Settings | None = None, cli: dict | None = None):
    settings = settings or Settings()
    params = ParameterTable(settings, 4, cli_overrides=cli)
    params.sync_symbols(["BTCUSDT", "ETHUSDT"])
    last = np.full((4, 3, 2), np.iinfo(np.int64).min, dtype=np.int64)
    counters = np.zeros(C.N_COUNTERS, dtype=np.int64)
    builder = SignalBuilder(settings, params, last, counters, ["BTCUSDT", "ETHUSDT"].__getitem__,
                            clock_ns=lambda: 1_704_067_200_123_456_789)
    return builder, counters


def row(confidence=0.75, price=50000.0, current=50000.5) -> np.ndarray:
    r = np.zeros(OUT_WIDTH)
    r[OUT_CONFIDENCE], r[OUT_PRICE], r[OUT_CURRENT_PRICE] = confidence, price, current
    r[OUT_INDICATORS:OUT_INDICATORS + 4] = [12.0, 8.0, 1.5, 0.002]
    r[OUT_METADATA:OUT_METADATA + 2] = [49999.5, 50000.5]
    return r


@pytest.mark.parametrize("confidence,expected", [
    (0.95, "extreme"), (0.9, "extreme"), (0.8999, "strong"), (0.7, "strong"), (0.6999, "medium"),
    (0.5, "medium"), (0.4999, "weak"), (0.0, "weak")])
def test_strength_bands(confidence, expected):
    assert strength(confidence) == expected


def test_risk_levels_match_the_seed_example_and_mirror_for_sells():
    assert risk_levels(codes.ACTION_BUY, 50000.0, 0.01, 0.015) == pytest.approx((49500.0, 50750.0))
    assert risk_levels(codes.ACTION_SELL, 50000.0, 0.01, 0.015) == pytest.approx((50500.0, 49250.0))


def test_every_contract_field_is_present_and_typed():
    builder, counters = make_builder()
    signal = builder.build(SKEW, 0, codes.ACTION_BUY, row(), 1_730_462_400_123, "abc-123")
    assert set(signal) == FIELDS
    assert signal["strategy_id"] == signal["strategy"] == signal["metadata"]["strategy"] == "orderbook_skew"
    assert signal["symbol"] == "BTCUSDT" and signal["action"] == "buy" and signal["source"] == "rtsig"
    assert (signal["confidence"], signal["strength"]) == (0.75, "strong")
    assert (signal["price"], signal["current_price"], signal["quantity"]) == (50000.0, 50000.5, 0.001)
    assert (signal["timeframe"], signal["order_type"], signal["time_in_force"]) == ("tick", "market", "GTC")
    assert signal["stop_loss"] == pytest.approx(49500.0) and signal["take_profit"] == pytest.approx(50750.0)
    assert signal["indicators"] == {"bid_volume": 12.0, "ask_volume": 8.0, "ratio": 1.5, "spread_percent": 0.002}
    meta = signal["metadata"]
    assert (meta["top_bid"], meta["top_ask"], meta["message_id"], meta["event_time"]) == \
        (49999.5, 50000.5, "abc-123", 1_730_462_400_123)
    assert meta["strategy_config"] == {"version": 0, "parameters": {}, "source": "default", "is_override": False}
    assert signal["timestamp"] == "2024-01-01T00:00:00.123Z"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", signal["signal_id"])
    assert signal["signal_id"] == str(uuid.uuid5(uuid.UUID(bytes=SIGNAL_ID_NAMESPACE),
                                                 "abc-123:orderbook_skew:buy"))
    assert orjson.loads(serialize(signal)) == signal
    assert counters[C.signal_counter(SKEW, codes.ACTION_BUY)] == 1


def test_confidence_floor_holds_back_and_does_not_start_the_cool_down():
    builder, counters = make_builder(Settings(min_confidence=0.7))
    assert builder.build(SKEW, 0, codes.ACTION_BUY, row(confidence=0.69), 1000, None) is None
    assert counters[C.SIGNALS_BELOW_CONFIDENCE] == 1
    assert builder.build(SKEW, 0, codes.ACTION_BUY, row(confidence=0.7), 2000, None) is not None


def test_cool_down_is_per_symbol_and_action_in_event_time():
    builder, counters = make_builder()  # min_signal_interval 60 s
    t0 = 1_730_462_400_000
    assert builder.build(SKEW, 0, codes.ACTION_BUY, row(), t0, None) is not None
    assert builder.build(SKEW, 0, codes.ACTION_BUY, row(), t0 + 59_999, None) is None
    assert counters[C.SIGNALS_COOLDOWN] == 1
    assert builder.build(SKEW, 0, codes.ACTION_SELL, row(), t0 + 1, None) is not None
    assert builder.build(SKEW, 1, codes.ACTION_BUY, row(), t0 + 1, None) is not None
    assert builder.build(SKEW, 0, codes.ACTION_BUY, row(), t0 + 60_000, None) is not None


def test_zero_interval_disables_the_cool_down():
    builder, _ = make_builder(cli={"orderbook_skew": {"min_signal_interval": 0}})
    assert all(builder.build(SKEW, 0, codes.ACTION_BUY, row(), 5, None) is not None for _ in range(3))


def test_strategy_risk_overrides_beat_the_global_defaults_and_show_in_metadata():
    builder, _ = make_builder(Settings(risk_stop_loss_pct=0.02),
                              cli={"orderbook_skew": {"take_profit_pct": 0.05}})
    signal = builder.build(SKEW, 0, codes.ACTION_SELL, row(price=100.0), 1, None)
    assert (signal["stop_loss_pct"], signal["take_profit_pct"]) == (0.02, 0.05)
    assert signal["stop_loss"] == pytest.approx(102.0) and signal["take_profit"] == pytest.approx(95.0)
    assert signal["metadata"]["strategy_config"]["parameters"] == {"take_profit_pct": 0.05}
    assert signal["metadata"]["strategy_config"]["source"] == "environment"


def test_message_id_is_omitted_when_the_input_had_none():
    builder, _ = make_builder()
    assert "message_id" not in builder.build(SKEW, 0, codes.ACTION_BUY, row(), 1, None)["metadata"]


def test_subject_per_strategy_option():
    signal = {"strategy_id": "trade_momentum", "symbol": "BTCUSDT"}
    builder, _ = make_builder(Settings(signal_subject_per_strategy=True))
    assert builder.subject(signal) == "signals.trading.trade_momentum"
    builder, _ = make_builder()
    assert builder.subject(signal) == "signals.trading"
    builder, _ = make_builder(Settings(nats_publisher_topic="cio.intent.trading.{strategy_id}"))
    assert builder.subject(signal) == "cio.intent.trading.trade_momentum"
    builder, _ = make_builder(Settings(nats_publisher_topic="s.{strategy_id}.{symbol}"))
    assert builder.subject(signal) == "s.trade_momentum.BTCUSDT"


def test_iso_utc_ms():
    assert iso_utc_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc_ms(1_730_462_400_125_999_999) == "2024-11-01T12:00:00.125Z"


@given(st.lists(st.integers(0, 4_102_444_800 * 10**9), min_size=1, max_size=20))
def test_iso_utc_ms_equals_datetime_in_any_order(epochs_ns):
    """The formatted second is cached: any sequence (same second, back and forth) stays right."""
    for epoch_ns in epochs_ns + epochs_ns[::-1]:
        seconds, ns = divmod(epoch_ns, 10**9)
        want = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + \
            f".{ns // 10**6:03d}Z"
        assert iso_utc_ms(epoch_ns) == want


@settings(max_examples=200)
@given(st.one_of(st.none(), st.text(min_size=1, max_size=40)), st.sampled_from(["orderbook_skew", "trade_momentum"]),
       st.sampled_from(["buy", "sell"]), st.text(min_size=1, max_size=12), st.integers(0, 2**45))
def test_signal_ids_are_uuid5_of_the_input_strategy_and_action(message_id, strategy, action, symbol, t_ms):
    """Deterministic: the same input gives the same id (JetStream redeliveries, replays, offline)."""
    key = message_id if message_id else f"{symbol}@{t_ms}"
    want = uuid.uuid5(uuid.UUID(bytes=SIGNAL_ID_NAMESPACE), f"{key}:{strategy}:{action}")
    got = signal_id_for(message_id, strategy, action, symbol, t_ms)
    assert got == str(want) and uuid.UUID(got).version == 5


def test_signal_ids_differ_by_input_strategy_action_and_market():
    ids = {signal_id_for(m, s, a, "BTCUSDT", 1, market) for m in ("m1", "m2", None) for s in ("x", "y")
           for a in ("buy", "sell") for market in ("spot", "usdm")}
    assert len(ids) == 24


