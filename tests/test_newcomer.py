"""A newcomer's first five minutes (issue 18): what used to be silent, misleading or accepted.

Refused input (empty or hyphenated TRADING_SYMBOLS, a negative replay rate), a demo that cannot
start saying so in one line with a non-zero exit, replay's progress and time shift, risk levels
rounded to the price's decimals, `rtsig signals --config-store`, the Numba progress lines and the
text log format's numbers.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numba
import orjson
import pytest

from rtsig.compile_progress import compile_progress
from rtsig.demo import DemoError, choose_instance, choose_port
from rtsig.errors import SettingsError
from rtsig.logs import TextFormatter
from rtsig.offline import OfflineRun
from rtsig.replay import SAME_TIMES_NOTE, TimeShifter, _progress
from rtsig.settings import Settings
from rtsig.signals import price_decimals
from rtsig.store import Store
from rtsig.synthetic import MarketSimulator

RTSIG = str(Path(sys.executable).with_name("rtsig"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RTSIG_", "NATS_", "TRADING_", "HTTP_", "MONGODB_", "MYSQL_"))}
    return {**env, **extra}


def _feed() -> list[bytes]:
    return [m for _, m in MarketSimulator().messages(180)]


# ----------------------------------------------------------------------------- refused input

@pytest.mark.parametrize("value,hint", [
    ("", "unset it for the default"),
    ("BTC-USDT", "e.g. BTCUSDT"),
    ("btc/usdt,ETHUSDT", "e.g. BTCUSDT,ETHUSDT"),
    ("BTC.USDT", "e.g. BTCUSDT"),
])
def test_trading_symbols_that_would_filter_everything_are_refused(value, hint):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"TRADING_SYMBOLS": value})
    assert "TRADING_SYMBOLS=" in str(err.value) and hint in str(err.value)
    proc = subprocess.run([RTSIG, "config"], env=_env(TRADING_SYMBOLS=value),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and hint in proc.stderr, proc.stderr


def test_trading_symbols_still_accepts_binance_names():
    assert Settings.from_env({"TRADING_SYMBOLS": "btcusdt, BTCUSDT_250328"}).trading_symbols == \
        ("BTCUSDT", "BTCUSDT_250328")
    assert Settings.from_env({"TRADING_SYMBOLS": "*"}).trading_symbols is None
    assert Settings.from_env({}).trading_symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT")


@pytest.mark.parametrize("args,message", [
    (["replay", "--rate", "-1", "x"], "--rate: -1 is invalid: expected a number >= 0"),
    (["replay", "--rate", "nan", "x"], "--rate: nan is invalid"),
    (["replay", "--count", "0", "x"], "--count: 0 is invalid"),
    (["replay", "--rate", "fast", "x"], "'fast' is not a number"),
    (["tail", "--count", "-3"], "--count: -3 is invalid"),
])
def test_replay_and_tail_refuse_impossible_numbers(args, message):
    proc = subprocess.run([RTSIG, *args], env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- the demo

@pytest.fixture
def live_segment():
    """A shared-memory store owned by this (running) test process."""
    name = f"newcomer-{os.getpid()}"
    settings = Settings.from_env({}).with_overrides(max_symbols=16, instance=name)
    store = Store.create(settings, register_symbols=False)
    try:
        yield name
    finally:
        store.unlink()
        store.close()


def test_demo_refuses_an_explicit_instance_in_use(live_segment):
    with pytest.raises(DemoError, match=f"RTSIG_INSTANCE='{live_segment}' is in use by running pid {os.getpid()}"):
        choose_instance(live_segment)
    assert choose_instance(live_segment + "-free") == live_segment + "-free"


def test_demo_exits_1_with_one_line_when_its_instance_is_in_use(live_segment, tmp_path):
    started = time.monotonic()
    proc = subprocess.run([RTSIG, "demo"], env=_env(RTSIG_INSTANCE=live_segment,
                                                    RTSIG_DATA_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"rtsig demo: RTSIG_INSTANCE='{live_segment}' is in use by running pid "
                     f"{os.getpid()} (another `rtsig run` or demo): stop it, or choose another name"]
    assert time.monotonic() - started < 30  # refused before NATS or the service start


def test_demo_port_explicit_and_taken_is_refused_else_a_free_one():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        taken = s.getsockname()[1]
        settings = Settings.from_env({"HTTP_PORT": str(taken)})
        with pytest.raises(DemoError, match=f"HTTP_PORT={taken} is in use"):
            choose_port(settings, explicit=True)
        other = choose_port(settings, explicit=False)
        assert other != taken and other > 0


# ----------------------------------------------------------------------------- replay

def test_time_shift_moves_every_time_and_keeps_rounds_in_order():
    messages = _feed()[:400]
    now = 1_900_000_000_000
    shifter = TimeShifter(clock_ms=lambda: now)
    shifter.new_round()
    first = [orjson.loads(shifter(m)) for m in messages]
    original = [orjson.loads(m) for m in messages]
    offset = None
    for before, after in zip(original, first):
        assert after["message_id"] == before["message_id"]
        for key in ("E", "T", "O", "C"):
            if key in before["data"]:
                delta = after["data"][key] - before["data"][key]
                offset = delta if offset is None else offset
                assert delta == offset, key
        assert after["data"].get("bids") == before["data"].get("bids")
    assert min(d["data"]["E"] for d in first if "E" in d["data"]) == now
    assert first[0]["timestamp"].startswith("2030-03-17T") and first[0]["timestamp"].endswith("Z")
    newest = shifter.newest_ms
    shifter.new_round()  # the clock has not moved: the next round starts after the last one
    second = orjson.loads(shifter(messages[1]))
    assert second["data"]["E"] == newest + 1
    assert shifter(b"not json") == b"not json"


def test_a_second_pass_over_the_same_data_gives_no_signals_unless_shifted():
    """Why a repeated replay is silent: the cool-downs are on event time (the live service's
    builder, through the offline runner that shares it)."""
    messages = _feed()
    settings = Settings.from_env({})

    def passes(second: list[bytes]) -> tuple[int, int]:
        signals: list[dict] = []
        run = OfflineRun(settings, signals.append)
        t = time.time_ns()  # receipt times: now (an event time ahead of its receipt is bad_time)
        for m in messages:
            t += 1_000_000
            run.feed(m, t)
        run.finish()  # judges what is decoded; the run goes on
        first = len(signals)
        for m in second:
            t += 1_000_000
            run.feed(m, t)
        run.finish()
        return first, len(signals) - first

    first, repeated = passes(messages)
    assert first > 10
    assert repeated <= first // 5, (first, repeated)
    shifter = TimeShifter()  # the wall clock, as `replay --shift-time`
    shifter.new_round()
    first_again, shifted = passes([shifter(m) for m in messages])
    assert first_again == first and shifted >= first * 0.8, (first, shifted)


def test_progress_line_has_total_percentage_and_eta():
    line = _progress(5_000, 7_091, 1, 2.5, 0)
    assert "5,000 / 7,091" in line and "70.5 %" in line and "2,000 msg/s" in line
    assert "ETA 0:01" in line
    assert "round 2" in _progress(9_000, 7_091, 2, 4.5, 0)
    assert "3 lost" in _progress(10, None, 1, 1.0, 3) and "%" not in _progress(10, None, 1, 1.0, 0)


@pytest.mark.slow
def test_replay_final_line_says_why_a_repeat_is_silent(tmp_path):
    from rtsig.natsbin import EmbeddedNats

    feed = tmp_path / "f.jsonl"
    feed.write_bytes(b"\n".join(_feed()[:50]) + b"\n")
    nats = EmbeddedNats().start()
    try:
        finals = []
        for extra in ([], ["--shift-time"]):
            proc = subprocess.run([RTSIG, "replay", str(feed), "--rate", "0", *extra],
                                  env=_env(NATS_URL=nats.url), capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            finals.append(orjson.loads(proc.stderr.decode().strip().splitlines()[-1]))
    finally:
        nats.stop()
    assert finals[0]["published"] == 50 and finals[0]["event_times"] == "as recorded"
    assert finals[0]["note"] == SAME_TIMES_NOTE and "--shift-time" in SAME_TIMES_NOTE
    assert finals[1]["event_times"] == "shifted" and "note" not in finals[1]


# ----------------------------------------------------------------------------- signals

def test_price_decimals():
    assert price_decimals(3400.03) == 2
    assert price_decimals(3400.0) == 0
    assert price_decimals(67000.1, 67000.01) == 2
    assert price_decimals(0.00012345) == 8
    assert price_decimals(1e-05) == 5
    assert price_decimals(float("nan")) == 0


def test_risk_levels_carry_no_float_noise():
    signals: list[dict] = []
    run = OfflineRun(Settings.from_env({}), signals.append)
    for n, m in enumerate(_feed()):
        run.feed(m, time.time_ns() + n)
    run.finish()
    assert len(signals) > 10
    for sig in signals:
        places = price_decimals(sig["price"], sig["current_price"])
        for key in ("stop_loss", "take_profit"):
            assert price_decimals(sig[key]) <= places, (key, sig[key], sig["price"])
        assert sig["stop_loss"] == pytest.approx(
            sig["price"] * (1 - sig["stop_loss_pct"] if sig["action"] == "buy"
                            else 1 + sig["stop_loss_pct"]), abs=10 ** -places)


def test_signals_config_store_uses_the_stored_parameters(tmp_path):
    from rtsig.config.service import ConfigService

    feed = tmp_path / "f.jsonl"
    feed.write_bytes(b"\n".join(_feed()) + b"\n")
    env = _env(RTSIG_DATA_DIR=str(tmp_path))

    def run(*extra: str) -> tuple[list[dict], dict]:
        proc = subprocess.run([RTSIG, "signals", str(feed), *extra], env=env, capture_output=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        out = [orjson.loads(line) for line in proc.stdout.splitlines()]
        return out, orjson.loads(proc.stderr.decode().strip().splitlines()[-1])

    plain, _ = run()
    service = ConfigService(Settings.from_env({"RTSIG_DATA_DIR": str(tmp_path)}))
    try:
        service.update("orderbook_skew", None, {"buy_threshold": 9.0, "sell_threshold": 0.11},
                       changed_by="test", reason="only extreme books")
        service.update("trade_momentum", "ETHUSDT", {"min_signal_interval": 3600},
                       changed_by="test", reason="one per side per hour on ETH")
    finally:
        service.close()
    stored, summary = run("--config-store")
    assert summary["config_store"] == "sqlite"
    def skew(sigs: list[dict]) -> list[dict]:
        return [s for s in sigs if s["strategy_id"] == "orderbook_skew"]

    assert len(skew(plain)) > len(skew(stored))
    for sig in skew(stored):
        meta = sig["metadata"]["strategy_config"]
        assert meta["source"] == "sqlite" and meta["parameters"]["buy_threshold"] == 9.0
    eth = [s for s in stored if s["strategy_id"] == "trade_momentum" and s["symbol"] == "ETHUSDT"]
    assert len({s["action"] for s in eth}) == len(eth)  # at most one per side in the hour
    overridden, _ = run("--config-store", "--set", "orderbook_skew.buy_threshold=1.5")
    assert any(s["metadata"]["strategy_config"]["parameters"].get("buy_threshold") == 1.5
               for s in skew(overridden))
    # without the flag the store is not read, as before
    assert [s["signal_id"] for s in run()[0]] == [s["signal_id"] for s in plain]


# ----------------------------------------------------------------------------- start-up output

def test_compile_progress_names_each_module_once_and_says_nothing_on_a_cache_hit():
    lines: list[str] = []

    @numba.njit
    def double(x):
        return x * 2

    @numba.njit
    def twice(x):
        return double(x) + double(x)

    with compile_progress(lines.append) as tally:
        twice(1)
        twice(1.5)
    assert tally["functions"] == 2 and tally["modules"] == [__name__]
    assert len(lines) == 2
    assert lines[0].startswith(f"Numba: compiling {__name__} — not in the cache")
    assert "a minute or two" in lines[0]
    assert lines[1].startswith("Numba: compiled 2 functions in 1 modules")
    lines.clear()
    with compile_progress(lines.append) as tally:
        twice(2)  # compiled already
    assert lines == [] and tally["functions"] == 0


def test_text_log_lines_carry_their_numbers():
    fmt = TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("rtsig.heartbeat", logging.INFO, __file__, 1,
                               "HEARTBEAT: Realtime Strategies Statistics", (), None)
    for key, value in {"messages_processed": 7091, "signals_per_minute": 2.5,
                       "strategies": {"orderbook_skew": {"signals": 3}}, "final": False}.items():
        setattr(record, key, value)
    line = fmt.format(record)
    assert line == ('INFO HEARTBEAT: Realtime Strategies Statistics messages_processed=7091 '
                    'signals_per_minute=2.5 strategies={"orderbook_skew":{"signals":3}} final=false')
