"""What the trade engine (petrosa-tradeengine) accepts, checked on every signal rtsig makes.

``ENGINE_SIGNAL`` is written from the engine's own model (``contracts/signal.py``: required
fields, enums, ``confidence``/``*_pct`` in [0, 1], ISO ``timestamp``) and from what it drops
(reference/ecosystem.md: confidence < 0.6, older than 300 s); ``ENGINE_SUBJECTS`` from what it
subscribes to. A change that would make the engine reject a signal, or never receive it, fails
here — offline over the sample feed with extreme parameter settings, and live on the
per-strategy subject the engine hears.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime

import pytest

from rtsig import counters as C
from rtsig.offline import run_signals
from rtsig.settings import Settings
from rtsig.synthetic import MarketSimulator
from tests.live_helpers import SETTLE_S, SignalSink, connect, publish_all, settle

NUMBER = {"type": "number"}
ENGINE_SIGNAL = {
    "type": "object",
    "required": ["strategy_id", "symbol", "action", "confidence", "price", "quantity",
                 "current_price", "source", "strategy"],
    "properties": {
        "strategy_id": {"type": "string", "minLength": 1},
        "strategy": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "symbol": {"type": "string", "minLength": 1},
        "signal_id": {"type": "string"},
        "action": {"enum": ["buy", "sell", "hold", "close"]},
        # the model accepts [0, 1]; the engine then drops anything below 0.6
        "confidence": {"type": "number", "minimum": 0.6, "maximum": 1},
        "strength": {"enum": ["weak", "medium", "strong", "extreme"]},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "current_price": {"type": "number", "exclusiveMinimum": 0},
        "quantity": {"type": "number", "minimum": 0},  # 0: the engine sizes the order
        "timeframe": {"type": "string"},
        "order_type": {"enum": ["market", "limit", "stop", "stop_limit", "take_profit",
                                "take_profit_limit", "conditional_limit", "conditional_stop"]},
        "time_in_force": {"enum": ["GTC", "IOC", "FOK", "GTX"]},
        "stop_loss": {"type": "number", "exclusiveMinimum": 0},
        "take_profit": {"type": "number", "exclusiveMinimum": 0},
        "stop_loss_pct": {"type": "number", "minimum": 0, "maximum": 1},
        "take_profit_pct": {"type": "number", "minimum": 0, "maximum": 1},
        "position_size_pct": {"type": "number", "minimum": 0, "maximum": 1},
        "indicators": {"type": "object"},
        "metadata": {"type": "object", "required": ["market"],
                     "properties": {"market": {"enum": ["spot", "usdm"]}}},
        "timestamp": {"type": "string", "format": "date-time"},  # a numeric epoch fails there
    },
}
MAX_AGE_S = 300
"""The engine drops signals older than this."""
ENGINE_SUBJECTS = (re.compile(r"^signals\.trading\.[^.*>\s]+$"),  # it subscribes to signals.trading.*
                   re.compile(r"^cio\.intent\.trading\.[^.*>\s]+$"))  # or its risk service hears these


def violations(value, schema: dict, path: str = "signal") -> list[str]:
    """Every way ``value`` breaks ``schema`` (the JSON Schema keywords used above)."""
    out = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not one of {schema['enum']}")
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return out + [f"{path}: not an object"]
        out += [f"{path}.{k}: missing" for k in schema.get("required", ()) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value and value[k] is not None:
                out += violations(value[k], sub, f"{path}.{k}")
    elif kind == "string":
        if not isinstance(value, str) or len(value) < schema.get("minLength", 0):
            out.append(f"{path}: {value!r} is not a non-empty string")
        elif schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                out.append(f"{path}: {value!r} is not ISO 8601")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return out + [f"{path}: {value!r} is not a finite number"]
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: {value} <= {schema['exclusiveMinimum']}")
    return out


def assert_engine_accepts(signals: list[dict], now: datetime | None = None) -> None:
    assert signals, "no signal to check"
    for sig in signals:
        assert not violations(sig, ENGINE_SIGNAL), (violations(sig, ENGINE_SIGNAL), sig)
        if now is not None:
            age = (now - datetime.fromisoformat(sig["timestamp"])).total_seconds()
            assert age < MAX_AGE_S, sig["timestamp"]


def test_the_validator_rejects_what_the_engine_rejects():
    good = {"strategy_id": "s", "strategy": "s", "source": "rtsig", "symbol": "BTCUSDT",
            "action": "sell", "confidence": 0.7, "price": 1.0, "quantity": 0.0,
            "current_price": 1.0, "take_profit_pct": 0.5, "metadata": {"market": "spot"},
            "timestamp": "2024-01-01T00:00:00.000Z"}
    assert violations(good, ENGINE_SIGNAL) == []
    for change in ({"take_profit_pct": 1.5}, {"confidence": 0.59}, {"action": "long"},
                   {"timestamp": 1704067200}, {"take_profit": -3.0}, {"price": float("nan")},
                   {"metadata": {}}):
        assert violations({**good, **change}, ENGINE_SIGNAL), change
    for field in ENGINE_SIGNAL["required"]:
        assert violations({k: v for k, v in good.items() if k != field}, ENGINE_SIGNAL), field


EXTREMES = {
    "largest risk levels": {"RISK_STOP_LOSS_PCT": "0.999", "RISK_TAKE_PROFIT_PCT": "0.999"},
    "smallest risk levels": {"RISK_STOP_LOSS_PCT": "1e-9", "RISK_TAKE_PROFIT_PCT": "1e-9",
                             "SIGNAL_QUANTITY": "0"},
    "per-strategy risk and eager strategies": {
        "ORDERBOOK_SKEW_TAKE_PROFIT_PCT": "0.999", "TRADE_MOMENTUM_STOP_LOSS_PCT": "0.999",
        "ORDERBOOK_SKEW_BUY_THRESHOLD": "1.0001", "ORDERBOOK_SKEW_SELL_THRESHOLD": "0.9999",
        "ORDERBOOK_SKEW_BASE_CONFIDENCE": "0.95", "ORDERBOOK_SKEW_MIN_SPREAD_PERCENT": "100",
        "TRADE_MOMENTUM_BUY_THRESHOLD": "0", "TRADE_MOMENTUM_SELL_THRESHOLD": "0",
        "TICKER_VELOCITY_BUY_THRESHOLD": "0.0001", "TICKER_VELOCITY_SELL_THRESHOLD": "-0.0001",
        "TICKER_VELOCITY_MIN_PRICE_CHANGE": "0", "TICKER_VELOCITY_VOLUME_CONFIRMATION": "false",
        **{f"{s}_MIN_SIGNAL_INTERVAL": "0" for s in ("ORDERBOOK_SKEW", "TRADE_MOMENTUM",
                                                      "TICKER_VELOCITY")}},
    "futures too": {"SIGNAL_MARKETS": "spot,usdm", "TRADING_SYMBOLS": "*"},
}


@pytest.mark.parametrize("case", list(EXTREMES))
def test_every_offline_signal_is_one_the_engine_accepts(case, tmp_path):
    settings = Settings.from_env({"NATS_PUBLISHER_TOPIC": "signals.trading.{strategy_id}",
                                  **EXTREMES[case]})
    sim = MarketSimulator(("BTCUSDT", "ETHUSDT", "BNBUSDT"), seed=3)
    signals: list[dict] = []
    run_signals(((m, (t + 2) * 1_000_000) for t, m in sim.messages(120)), settings, signals.append)
    assert_engine_accepts(signals)
    assert {s["strategy_id"] for s in signals} >= {"orderbook_skew", "trade_momentum", "ticker_velocity"}
    for subject in {settings.publisher_subject(s["strategy_id"], s["symbol"]) for s in signals}:
        assert ENGINE_SUBJECTS[0].match(subject), subject


@pytest.mark.parametrize("topic,engine_listens", [
    ("signals.trading.{strategy_id}", True), ("cio.intent.trading.{strategy_id}", True),
    ("signals.trading", False), ("signals.trading.{strategy_id}.{symbol}", False)])
def test_only_the_documented_subjects_reach_the_engine(topic, engine_listens):
    subject = Settings(nats_publisher_topic=topic).publisher_subject("trade_momentum", "BTCUSDT")
    assert any(p.match(subject) for p in ENGINE_SUBJECTS) == engine_listens
    warned = any("never receives" in w for w in Settings(nats_publisher_topic=topic).engine_warnings())
    assert warned == (topic == "signals.trading")  # the default: a start-up warning says so


def test_live_signals_on_the_engine_subject_are_ones_it_accepts(nats_server, services):
    """``rtsig run`` with the per-strategy subject; the subscriber listens as the engine does."""
    env = {"NATS_PUBLISHER_TOPIC": "signals.trading.{strategy_id}",
           "ORDERBOOK_SKEW_BUY_THRESHOLD": "1.05", "ORDERBOOK_SKEW_SELL_THRESHOLD": "0.95"}
    service = services(nats_server.url, env=env)
    messages = [m for _, m in MarketSimulator(("BTCUSDT", "ETHUSDT", "BNBUSDT"), seed=4).messages(60)]

    async def go() -> list[dict]:
        nc = await connect(nats_server.url)
        try:
            sink = await SignalSink().subscribe(nc, "signals.trading.*")
            await publish_all(nc, service.in_subject, messages)
            await settle([service], len(messages))
            published = service.workers_sum(C.PUBLISHED)
            assert published > 0
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            return list(sink.signals)
        finally:
            await nc.close()

    signals = asyncio.run(go())
    # the feed's event times are 2024; the signal timestamp is when it was made: now
    assert_engine_accepts(signals, now=datetime.now(UTC))
    assert service.summary()["errors"] == {}
