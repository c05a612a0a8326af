"""``rtsig signals`` and ``rtsig config`` as a user runs them (subprocesses)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RTSIG = str(Path(sys.executable).with_name("rtsig"))
CAPTURES = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "shared/data/real/*.txt")))


def run(*args: str, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([RTSIG, *args], capture_output=True, input=stdin, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(not CAPTURES, reason="shared/data/real is not beside the checkout")
def test_signals_over_every_real_capture_exits_zero_with_zero_errors():
    proc = run("signals", *CAPTURES, env={"TRADING_SYMBOLS": "*"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    lines = sum(1 for path in CAPTURES for line in open(path, "rb")
                if line.strip() and not line.startswith(b"wss://"))
    assert summary["messages"] == lines
    assert summary["errors"] == {}
    assert sum(summary["kinds"].values()) + sum(summary["ignored"].values()) == lines


def test_signals_reads_stdin_and_counts_bad_lines():
    feed = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.0","q":"1.0","T":1,"m":true}}\nnot json\n'
    proc = run("signals", "-", stdin=feed)
    assert proc.returncode == 0
    summary = json.loads(proc.stderr)
    assert summary == {"messages": 2, "kinds": {"trade": 1}, "ignored": {}, "filtered": 0,
                       "errors": {"not_json": 1}, "signals": {}, "overruns": 0}


@pytest.mark.parametrize("args,needle", [
    (["signals", "-", "--set", "orderbook_skew.top_levels=99"], "orderbook_skew.top_levels"),
    (["signals", "-", "--set", "nope.x=1"], "a strategy id"),
    (["signals", "-", "--set", "orderbook_skew.nope=1"], "a parameter of orderbook_skew"),
    (["signals", "/does/not/exist"], "cannot read /does/not/exist"),
])
def test_bad_arguments_stop_with_one_line(args, needle):
    proc = run(*args, stdin=b"")
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_bad_setting_stops_with_one_line_naming_it():
    proc = run("signals", "-", env={"MIN_CONFIDENCE": "1.5"}, stdin=b"")
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == \
        "rtsig: MIN_CONFIDENCE='1.5' is invalid: expected a number >= 0 and <= 1"


def test_config_prints_every_strategy_parameter_with_its_source():
    proc = run("config", env={"ORDERBOOK_SKEW_BUY_THRESHOLD": "1.5"})
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    skew = config["strategies"]["orderbook_skew"]["parameters"]["buy_threshold"]
    assert skew == {"value": 1.5, "source": "env", "env": "ORDERBOOK_SKEW_BUY_THRESHOLD"}
    assert config["strategies"]["btc_dominance"]["enabled"] is False
    assert len(config["strategies"]) == 6


def test_help_for_every_command():
    for args in (["--help"], ["signals", "--help"], ["config", "--help"]):
        proc = run(*args)
        assert proc.returncode == 0 and b"usage" in proc.stdout
