"""``rtsig signals`` and ``rtsig config`` as a user runs them (subprocesses)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtsig.registry import STRATEGIES

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


def test_config_prints_every_strategy_parameter_with_its_source(tmp_path):
    proc = run("config", env={"ORDERBOOK_SKEW_BUY_THRESHOLD": "1.5", "RTSIG_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    skew = config["strategies"]["orderbook_skew"]["parameters"]["buy_threshold"]
    assert skew == {"value": 1.5, "source": "env", "env": "ORDERBOOK_SKEW_BUY_THRESHOLD"}
    assert config["strategies"]["btc_dominance"]["enabled"] is True
    assert len(config["strategies"]) == len(STRATEGIES)


def test_config_shows_stored_values_and_which_store_and_level_holds_them(tmp_path):
    from rtsig.config.service import ConfigService
    from rtsig.settings import Settings

    env = {"RTSIG_DATA_DIR": str(tmp_path), "ORDERBOOK_SKEW_TOP_LEVELS": "7"}
    config = ConfigService(Settings.from_env(env))
    config.update("orderbook_skew", None, {"buy_threshold": 1.4}, "ops", "global")
    config.update("orderbook_skew", "ETHUSDT", {"sell_threshold": 0.6}, "ops", "one symbol")
    config.close()
    proc = run("config", "--symbol", "ethusdt", env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    params = out["strategies"]["orderbook_skew"]["parameters"]
    assert params["buy_threshold"] == {"value": 1.4, "source": "store", "store": "sqlite",
                                       "env": "ORDERBOOK_SKEW_BUY_THRESHOLD"}
    assert params["sell_threshold"]["value"] == 0.6
    assert params["sell_threshold"]["store"] == "sqlite (ETHUSDT)"
    assert params["top_levels"] == {"value": 7, "source": "env", "env": "ORDERBOOK_SKEW_TOP_LEVELS"}
    assert params["spread_weight"]["source"] == "default"
    assert out["strategies"]["orderbook_skew"]["version"] == 1
    assert out["config_store"]["store"] == "sqlite" and out["config_store"]["state"] == "primary"
    assert run("config", "--symbol", "NOPE", env=env).returncode == 2


def test_config_masks_database_passwords(tmp_path):
    proc = run("config", env={"RTSIG_DATA_DIR": str(tmp_path),
                              "MYSQL_URI": "mysql://rtsig:hunter2@127.0.0.1:1/rtsig"})
    assert proc.returncode == 0, proc.stderr
    assert b"hunter2" not in proc.stdout
    out = json.loads(proc.stdout)
    assert out["settings"]["mysql_uri"] == "mysql://rtsig:***@127.0.0.1:1/rtsig"
    assert out["config_store"]["state"] == "defaults", "nothing listens on port 1"


def test_help_for_every_command():
    for args in (["--help"], ["signals", "--help"], ["config", "--help"]):
        proc = run(*args)
        assert proc.returncode == 0 and b"usage" in proc.stdout


def test_run_refuses_a_taken_http_port_with_one_line_and_leaves_no_segment():
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run("run", env={"HTTP_PORT": str(port), "RTSIG_INSTANCE": "tport",
                               "NATS_URL": "nats://127.0.0.1:1"})
    assert proc.returncode == 2
    assert proc.stderr.decode().strip().splitlines()[-1] == (
        f"rtsig: HTTP_PORT='{port}' is invalid: expected a free TCP port "
        "(address already in use; or run with --no-web)")
    assert not Path("/dev/shm/rtsig-tport").exists()
