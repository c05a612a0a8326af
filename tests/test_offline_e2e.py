"""End to end, offline: a generated stream that crosses every threshold gives exactly the signals
an independent plain-Python pipeline predicts (json.loads + tests/reference.py + floor/cool-down).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from rtsig.registry import STRATEGIES
from rtsig.synthetic import MarketSimulator
from tests import reference

ROOT = Path(__file__).resolve().parents[1]
RTSIG = str(Path(sys.executable).with_name("rtsig"))
MIN_CONFIDENCE = 0.6


def _params(strategy_id: str, overrides: dict | None = None) -> dict:
    return {**STRATEGIES[strategy_id].defaults(), **(overrides or {})}


def _event_ms_from_envelope(envelope: dict) -> int:
    ts = datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00"))
    return int(ts.timestamp() * 1000)


def reference_pipeline(lines: list[bytes], overrides: dict[str, dict]) -> list[dict]:
    """Expected signals: plain JSON decoding, reference formulas, floor and cool-down."""
    params = {sid: _params(sid, overrides.get(sid)) for sid in (
        "orderbook_skew", "trade_momentum", "ticker_velocity",
        "microprice", "order_flow_imbalance", "trade_flow_imbalance")}
    books: dict[str, list[tuple]] = defaultdict(list)
    trades: dict[str, list[dict]] = defaultdict(list)
    tickers: dict[str, list[tuple]] = defaultdict(list)
    last_signal: dict[tuple, int] = {}
    expected = []
    for line in lines:
        env = json.loads(line)
        symbol, kind = env["stream"].split("@")[0].upper(), env["stream"].split("@")[1]
        data = env["data"]
        if kind.startswith("depth"):
            bids = [(float(p), float(q)) for p, q in data["bids"] if float(q) > 0]
            asks = [(float(p), float(q)) for p, q in data["asks"] if float(q) > 0]
            event_ms = _event_ms_from_envelope(env)
            results = [("orderbook_skew", reference.orderbook_skew(bids, asks, params["orderbook_skew"])),
                       ("microprice", reference.microprice(bids, asks, params["microprice"]))]
            if bids and asks:
                books[symbol].append((event_ms, bids[0][0], bids[0][1], asks[0][0], asks[0][1]))
                results.append(("order_flow_imbalance", reference.order_flow_imbalance(
                    books[symbol][-300:], params["order_flow_imbalance"])))
        elif kind == "trade":
            event_ms = data["E"]
            trades[symbol].append({"E": data["E"], "p": float(data["p"]), "q": float(data["q"]),
                                   "m": data["m"]})
            results = [("trade_momentum", reference.trade_momentum(trades[symbol], params["trade_momentum"])),
                       ("trade_flow_imbalance", reference.trade_flow_imbalance(
                           trades[symbol], params["trade_flow_imbalance"]))]
        elif kind == "ticker":
            event_ms = data["E"]
            tickers[symbol].append((data["E"], float(data["c"]), float(data["v"])))
            results = [("ticker_velocity", reference.ticker_velocity(tickers[symbol], 0,
                                                                     params["ticker_velocity"]))]
        else:
            continue
        for strategy, result in results:
            if result is not None and result != reference.OVERRUN:
                _expect(expected, last_signal, params, strategy, symbol, event_ms, env, result)
    return expected


def _expect(expected, last_signal, params, strategy, symbol, event_ms, env, result) -> None:
    """Append the signal of one candidate unless the floor or the cool-down drops it."""
    action, confidence, price, current_price, indicators, metadata = result
    if confidence < MIN_CONFIDENCE:
        return
    key = (strategy, symbol, action)
    interval_ms = params[strategy]["min_signal_interval"] * 1000
    if interval_ms > 0 and key in last_signal and event_ms - last_signal[key] < interval_ms:
        return
    last_signal[key] = event_ms
    expected.append({"strategy_id": strategy, "symbol": symbol,
                     "action": "buy" if action == reference.BUY else "sell",
                     "confidence": confidence, "price": price, "current_price": current_price,
                     "indicators": indicators, "metadata": metadata, "event_time": event_ms,
                     "message_id": env["message_id"]})


def run_cli(feed: Path, *flags: str) -> tuple[list[dict], dict]:
    env = {**os.environ, "TRADING_SYMBOLS": "BTCUSDT,ETHUSDT,BNBUSDT", "MIN_CONFIDENCE": "0.6"}
    proc = subprocess.run([RTSIG, "signals", str(feed), *flags], capture_output=True, env=env,
                          timeout=300, check=True)
    signals = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    return signals, summary


def assert_same(actual: list[dict], expected: list[dict]) -> None:
    assert [(s["strategy_id"], s["symbol"], s["action"], s["metadata"]["event_time"]) for s in actual] == \
        [(e["strategy_id"], e["symbol"], e["action"], e["event_time"]) for e in expected]
    for got, want in zip(actual, expected):
        assert math.isclose(got["confidence"], want["confidence"], rel_tol=1e-9)
        assert got["price"] == want["price"]
        assert math.isclose(got["current_price"], want["current_price"], rel_tol=1e-12)
        assert got["metadata"]["message_id"] == want["message_id"]
        for name, value in want["indicators"].items():
            assert math.isclose(got["indicators"][name], value, rel_tol=1e-9, abs_tol=1e-12), name
        for name, value in want["metadata"].items():
            assert got["metadata"][name] == value


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> tuple[Path, list[bytes]]:
    lines = [msg for _, msg in MarketSimulator(seed=11).messages(200)]
    path = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def test_generated_stream_gives_exactly_the_reference_signals(feed):
    path, lines = feed
    actual, summary = run_cli(path)
    expected = reference_pipeline(lines, {})
    kinds_fired = {(e["strategy_id"], e["action"]) for e in expected}
    assert kinds_fired >= {(s, a) for s in ("orderbook_skew", "trade_momentum", "ticker_velocity")
                           for a in ("buy", "sell")}, "the feed must cross every threshold both ways"
    assert_same(actual, expected)
    assert summary["errors"] == {} and summary["overruns"] == 0
    assert summary["messages"] == len(lines)
    assert sum(summary["signals"].values()) == len(expected)


def test_parameters_change_the_signals_exactly_as_the_reference_predicts(feed):
    path, lines = feed
    overrides = {
        "orderbook_skew": {"buy_threshold": 2.5, "sell_threshold": 0.5, "min_signal_interval": 5},
        "trade_momentum": {"momentum_window": 25, "buy_threshold": 0.5, "sell_threshold": -0.5,
                           "min_signal_interval": 0},
        "ticker_velocity": {"time_window": 30, "volume_confirmation": False, "min_signal_interval": 10},
    }
    flags = [f"--set={sid}.{name}={value}" for sid, values in overrides.items()
             for name, value in values.items()]
    actual, _ = run_cli(path, *flags)
    expected = reference_pipeline(lines, overrides)
    baseline = reference_pipeline(lines, {})
    assert len(expected) != len(baseline)
    assert_same(actual, expected)
    changed = actual[0]["metadata"]["strategy_config"]
    assert changed["source"] == "environment" and changed["parameters"]
