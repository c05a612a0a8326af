"""Settings from the environment (docs/CONTRACT.md §5): defaults, every variable read, every bad value.

The expected defaults and variable names are written here from the spec text, not taken from
``rtsig.settings``; a bad value must raise :class:`SettingsError` whose ``str()`` is the one line
start-up prints: the variable, the value and what is accepted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rtsig.errors import RtsigError, SettingsError
from rtsig.settings import Settings

RTSIG = str(Path(sys.executable).with_name("rtsig"))
SETTINGS_SOURCE = Path(__file__).resolve().parents[1] / "rtsig" / "settings.py"

REALTIME = ("orderbook_skew", "trade_momentum", "ticker_velocity")
MARKET_LOGIC = ("btc_dominance", "cross_exchange_spread", "onchain_metrics")
MICROSTRUCTURE = ("microprice", "order_flow_imbalance", "trade_flow_imbalance")  # docs/STRATEGIES.md


# ----------------------------------------------------------------------------- defaults

SPEC_DEFAULTS = {
    # docs/CONTRACT.md §5, the value in parentheses after each name
    "nats_url": "nats://localhost:4222",
    "nats_consumer_topic": "binance.websocket.data",
    "nats_publisher_topic": "signals.trading",
    "nats_consumer_group": "realtime-strategies-group",
    "trading_symbols": ("BTCUSDT", "ETHUSDT", "BNBUSDT"),
    "mongodb_uri": None,
    "mongodb_database": "petrosa",
    "mysql_uri": None,
    "config_cache_ttl_seconds": 60,
    "http_port": 8080,
    "heartbeat_interval_seconds": 60,
    "api_token": None,
    "min_confidence": 0.6,
    "signal_source": "rtsig",
    "signal_quantity": 0.001,
    "risk_stop_loss_pct": 0.01,
    "risk_take_profit_pct": 0.015,
    "signal_subject_per_strategy": False,
    "strategy_env_params": {},
    # §5, added in wave 2
    "nats_futures_topic": None,
    "signal_markets": ("spot",),
    "reference_max_age_seconds": 60,
    "book_price_tolerance_percent": 5,
    "max_clock_skew_seconds": 300,
    "symbol_idle_seconds": 3600,
}


@pytest.mark.parametrize("field,expected", sorted(SPEC_DEFAULTS.items()))
def test_defaults_from_an_empty_environment_are_the_spec_defaults(field, expected):
    settings = Settings.from_env({})
    assert getattr(settings, field) == expected


def test_default_strategies_enabled_are_all_six():
    enabled = Settings.from_env({}).strategy_enabled
    assert {sid: on for sid, on in enabled.items()} == {sid: True for sid in REALTIME + MARKET_LOGIC
                                                       + MICROSTRUCTURE}
    assert Settings.from_env({}).realtime_enabled == (True,) * 9


def test_log_format_default_is_json_outside_a_terminal():
    expected = "text" if sys.stderr.isatty() else "json"
    assert Settings.from_env({}).log_format == expected


def test_log_format_default_is_json_in_a_subprocess_without_a_terminal():
    code = "from rtsig.settings import Settings; print(Settings.from_env({}).log_format)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "json"


def test_dataclass_defaults_equal_from_env_defaults():
    """``Settings()`` (what tests build) and an empty environment agree except the machine-sized
    worker count and the terminal-dependent log format."""
    built, read = Settings(), Settings.from_env({})
    for field in SPEC_DEFAULTS:
        assert getattr(built, field) == getattr(read, field), field
    assert dict(built.strategy_enabled) == dict(read.strategy_enabled)
    assert read.workers >= 1


def test_empty_or_blank_variables_count_as_unset():
    # (not TRADING_SYMBOLS: an empty symbol list is refused, tests/test_newcomer.py)
    blank = {"NATS_URL": "", "HTTP_PORT": "  ", "MIN_CONFIDENCE": "",
             "ORDERBOOK_SKEW_TOP_LEVELS": " ", "STRATEGY_ENABLED_TRADE_MOMENTUM": ""}
    assert Settings.from_env(blank) == Settings.from_env({})


def test_from_env_without_argument_reads_os_environ(monkeypatch):
    monkeypatch.setenv("SIGNAL_SOURCE", "from-os-environ")
    assert Settings.from_env().signal_source == "from-os-environ"


# ----------------------------------------------------------------------------- every variable read

SECTION_5_VARIABLES = frozenset({
    "NATS_URL", "NATS_CONSUMER_TOPIC", "NATS_PUBLISHER_TOPIC", "NATS_CONSUMER_GROUP",
    "TRADING_SYMBOLS", "MONGODB_URI", "MONGODB_DATABASE", "MYSQL_URI", "CONFIG_CACHE_TTL_SECONDS",
    "HTTP_PORT", "FASTAPI_PORT", "HEARTBEAT_INTERVAL_SECONDS", "RTSIG_WORKERS", "RTSIG_WEB_WORKERS",
    "RTSIG_MAX_SYMBOLS", "RTSIG_DATA_DIR", "RTSIG_API_TOKEN", "MIN_CONFIDENCE", "SIGNAL_SOURCE",
    "SIGNAL_QUANTITY", "RISK_STOP_LOSS_PCT", "RISK_TAKE_PROFIT_PCT", "SIGNAL_SUBJECT_PER_STRATEGY",
    "LOG_LEVEL", "LOG_FORMAT"})
"""Every fixed variable name of docs/CONTRACT.md §5 (the per-strategy ones come from the registry)."""

# variable -> (a valid non-default value, field, the value the field must then have)
EVERY_VARIABLE = {
    "NATS_URL": ("nats://10.0.0.5:4333", "nats_url", "nats://10.0.0.5:4333"),
    "NATS_CONSUMER_TOPIC": ("binance.other", "nats_consumer_topic", "binance.other"),
    "NATS_PUBLISHER_TOPIC": ("signals.other", "nats_publisher_topic", "signals.other"),
    "NATS_CONSUMER_GROUP": ("group-b", "nats_consumer_group", "group-b"),
    "TRADING_SYMBOLS": ("SOLUSDT", "trading_symbols", ("SOLUSDT",)),
    "MONGODB_URI": ("mongodb://db:27017", "mongodb_uri", "mongodb://db:27017"),
    "MONGODB_DATABASE": ("otherdb", "mongodb_database", "otherdb"),
    "MYSQL_URI": ("mysql://u:p@db/x", "mysql_uri", "mysql://u:p@db/x"),
    "CONFIG_CACHE_TTL_SECONDS": ("5", "config_cache_ttl_seconds", 5.0),
    "HTTP_PORT": ("9090", "http_port", 9090),
    "FASTAPI_PORT": ("9191", "http_port", 9191),
    "HTTP_HOST": ("0.0.0.0", "http_host", "0.0.0.0"),
    "HEARTBEAT_INTERVAL_SECONDS": ("15", "heartbeat_interval_seconds", 15.0),
    "RTSIG_WORKERS": ("7", "workers", 7),
    "RTSIG_WEB_WORKERS": ("5", "web_workers", 5),
    "RTSIG_MAX_SYMBOLS": ("50", "max_symbols", 50),
    "RTSIG_BOOK_RING": ("64", "book_ring", 64),
    "RTSIG_TRADE_RING": ("4096", "trade_ring", 4096),
    "RTSIG_TICKER_RING": ("128", "ticker_ring", 128),
    "RTSIG_EVENT_RING": ("2048", "event_ring", 2048),
    "RTSIG_PUBLISH_BUFFER": ("12", "publish_buffer", 12),
    "RTSIG_INSTANCE": ("blue-2", "instance", "blue-2"),
    "RTSIG_DATA_DIR": ("/tmp/rtsig-data", "data_dir", Path("/tmp/rtsig-data")),
    "RTSIG_API_TOKEN": ("s3cret", "api_token", "s3cret"),
    "RTSIG_CONFIG_SUBJECT": ("ops.config", "config_subject", "ops.config"),
    "RTSIG_CHANGE_RATE_LIMIT": ("5", "change_rate_limit", 5),
    "MIN_CONFIDENCE": ("0.75", "min_confidence", 0.75),
    "SIGNAL_SOURCE": ("other-source", "signal_source", "other-source"),
    "SIGNAL_QUANTITY": ("0.5", "signal_quantity", 0.5),
    "RISK_STOP_LOSS_PCT": ("0.02", "risk_stop_loss_pct", 0.02),
    "RISK_TAKE_PROFIT_PCT": ("0.03", "risk_take_profit_pct", 0.03),
    "SIGNAL_SUBJECT_PER_STRATEGY": ("true", "signal_subject_per_strategy", True),
    "NATS_FUTURES_TOPIC": ("binance.futures.websocket.data", "nats_futures_topic",
                           "binance.futures.websocket.data"),
    "SIGNAL_MARKETS": ("spot,USDM", "signal_markets", ("spot", "usdm")),
    "RTSIG_REFERENCE_MAX_AGE_SECONDS": ("30", "reference_max_age_seconds", 30.0),
    "RTSIG_BOOK_PRICE_TOLERANCE_PERCENT": ("2.5", "book_price_tolerance_percent", 2.5),
    "RTSIG_MAX_CLOCK_SKEW_SECONDS": ("60", "max_clock_skew_seconds", 60.0),
    "RTSIG_SYMBOL_IDLE_SECONDS": ("600", "symbol_idle_seconds", 600.0),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "LOG_FORMAT": ("text" if not sys.stderr.isatty() else "json", "log_format",
                   "text" if not sys.stderr.isatty() else "json"),
}
for _sid in REALTIME + MARKET_LOGIC:
    EVERY_VARIABLE[f"STRATEGY_ENABLED_{_sid.upper()}"] = ("false", "strategy_enabled", None)
EVERY_VARIABLE["MARKET_DOMINANCE_SUBJECT"] = ("dom.x", "market_dominance_subject", "dom.x")
EVERY_VARIABLE["MARKET_QUOTES_SUBJECT"] = ("quotes.x", "market_quotes_subject", "quotes.x")
EVERY_VARIABLE["ONCHAIN_TRANSFERS_SUBJECT"] = ("chain.x", "onchain_transfers_subject", "chain.x")


def _nats_login_files() -> dict[str, Path]:
    """A seed, a .creds and a PEM file for the NATS login variables (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    import nkeys

    root = Path(tempfile.mkdtemp(prefix="rtsig-settings-"))
    atexit.register(shutil.rmtree, root, True)
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
    files = {"seed": root / "user.nk", "creds": root / "user.creds", "pem": root / "ca.pem"}
    files["seed"].write_text(seed + "\n")
    files["creds"].write_text(f"-----BEGIN NATS USER JWT-----\neyJhbGciOi.e30.sig\n------END NATS USER JWT------\n"
                              f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    files["pem"].write_text("-----BEGIN CERTIFICATE-----\n")
    return files


EVERY_VARIABLE.update({
    "NATS_CONSUMER_STREAM": ("INPUT_1", "nats_consumer_stream", "INPUT_1"),
    "NATS_CONSUMER_STREAM_CREATE": ("true", "nats_consumer_stream_create", True),
    "NATS_CONSUMER_STREAM_MAX_AGE": ("90m", "nats_consumer_stream_max_age_seconds", 5400.0),
    "NATS_CONSUMER_REBUILD_SECONDS": ("60", "nats_consumer_rebuild_seconds", 60.0),
    "RTSIG_SHARD": ("1/3", "shard_index", 1),
    "RTSIG_SHARD_COUNT": ("3", "shard_count", 3),
})
COVERED_BY_OWN_TESTS = {"RTSIG_SHARD_INDEX"}  # needs RTSIG_SHARD_COUNT: test_shard_from_a_pod_ordinal


def test_shard_from_k_of_n_or_from_a_statefulset_pod_ordinal():
    assert (Settings.from_env({"RTSIG_SHARD": " 2 / 3 "}).shard_index,
            Settings.from_env({"RTSIG_SHARD": "2/3"}).shard_count) == (2, 3)
    pod = Settings.from_env({"RTSIG_SHARD_INDEX": "rtsig-2", "RTSIG_SHARD_COUNT": "3"})
    assert (pod.shard_index, pod.shard_count) == (2, 3)
    assert Settings.from_env({"RTSIG_SHARD_INDEX": "1", "RTSIG_SHARD_COUNT": "2"}).shard_index == 1
    assert (Settings.from_env({}).shard_index, Settings.from_env({}).shard_count) == (0, 1)
    with pytest.raises(SettingsError, match="RTSIG_SHARD_INDEX"):
        Settings.from_env({"RTSIG_SHARD_INDEX": "rtsig-3", "RTSIG_SHARD_COUNT": "3"})


NATS_FILES = _nats_login_files()
for _var, _field, _file in (("NATS_CREDS", "nats_creds", "creds"), ("NATS_NKEY_SEED", "nats_nkey_seed", "seed"),
                            ("NATS_TLS_CA", "nats_tls_ca", "pem"), ("NATS_TLS_CERT", "nats_tls_cert", "pem"),
                            ("NATS_TLS_KEY", "nats_tls_key", "pem")):
    EVERY_VARIABLE[_var] = (str(NATS_FILES[_file]), _field, NATS_FILES[_file])

# one non-default valid value per strategy parameter (docs/STRATEGIES.md), as an env string
PARAM_VALUES = {
    "orderbook_skew": {"top_levels": ("7", 7), "buy_threshold": ("1.5", 1.5),
                       "sell_threshold": ("0.5", 0.5), "min_spread_percent": ("0.2", 0.2),
                       "base_confidence": ("0.8", 0.8), "imbalance_weight": ("0.9", 0.9),
                       "spread_weight": ("0.1", 0.1), "min_total_volume": ("1", 1.0)},
    "trade_momentum": {"price_weight": ("0.5", 0.5), "quantity_weight": ("0.2", 0.2),
                       "maker_weight": ("0.1", 0.1), "buy_threshold": ("0.6", 0.6),
                       "sell_threshold": ("-0.6", -0.6), "min_quantity": ("0.01", 0.01),
                       "base_confidence": ("0.7", 0.7), "time_decay_seconds": ("120", 120.0),
                       "momentum_window": ("20", 20), "price_scale_bps": ("25", 25.0)},
    "ticker_velocity": {"time_window": ("120", 120), "buy_threshold": ("0.8", 0.8),
                        "sell_threshold": ("-0.8", -0.8), "min_price_change": ("0.3", 0.3),
                        "base_confidence": ("0.7", 0.7), "acceleration_weight": ("0.25", 0.25),
                        "volume_confirmation": ("false", False), "min_volume_change": ("1", 1.0)},
    "btc_dominance": {"high_threshold": ("75", 75.0), "low_threshold": ("35", 35.0),
                      "change_threshold": ("3", 3.0), "window_hours": ("12", 12)},
    "cross_exchange_spread": {"spread_threshold_percent": ("0.7", 0.7),
                              "max_position_size": ("250", 250.0),
                              "max_quote_age_seconds": ("30", 30.0)},
    "onchain_metrics": {"whale_threshold_btc": ("50", 50.0), "whale_threshold_eth": ("500", 500.0),
                        "exchange_flow_threshold_percent": ("20", 20.0),
                        "flow_window_minutes": ("30", 30)},
}
for _sid, _values in PARAM_VALUES.items():
    _values["min_signal_interval"] = ("5", 5)
    _values["stop_loss_pct"] = ("0.05", 0.05)
    _values["take_profit_pct"] = ("0.07", 0.07)


@pytest.mark.parametrize("variable", sorted(EVERY_VARIABLE))
def test_every_variable_is_read(variable):
    value, field, expected = EVERY_VARIABLE[variable]
    default = getattr(Settings.from_env({}), field)
    got = getattr(Settings.from_env({variable: value}), field)
    assert got != default, f"{variable}={value!r} did not change {field}"
    if field == "strategy_enabled":
        sid = variable.removeprefix("STRATEGY_ENABLED_").lower()
        assert got[sid] is False and all(got[s] for s in REALTIME if s != sid)
    else:
        assert got == expected


@pytest.mark.parametrize("sid,param", [(s, p) for s, vals in PARAM_VALUES.items() for p in vals])
def test_every_strategy_parameter_variable_is_read(sid, param):
    raw, expected = PARAM_VALUES[sid][param]
    variable = f"{sid}_{param}".upper()
    settings = Settings.from_env({variable: raw})
    assert settings.strategy_env_params == {sid: {param: expected}}
    assert type(settings.strategy_env_params[sid][param]) is type(expected)


def test_parameter_variable_null_clears_an_optional_override():
    settings = Settings.from_env({"ORDERBOOK_SKEW_STOP_LOSS_PCT": "null"})
    assert settings.strategy_env_params == {"orderbook_skew": {"stop_loss_pct": None}}


def test_every_variable_named_in_settings_source_is_covered_here():
    """A variable added to settings.py without a test here fails this test."""
    names = set(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"', SETTINGS_SOURCE.read_text()))
    covered = set(EVERY_VARIABLE) | COVERED_BY_OWN_TESTS
    assert names - covered == set(), f"untested variables: {sorted(names - covered)}"


def test_all_spec_variables_are_covered():
    assert SECTION_5_VARIABLES <= set(EVERY_VARIABLE)


# ----------------------------------------------------------------------------- HTTP port alias

def test_fastapi_port_is_an_alias_of_http_port():
    assert Settings.from_env({"FASTAPI_PORT": "8181"}).http_port == 8181


def test_http_port_wins_over_fastapi_port():
    assert Settings.from_env({"HTTP_PORT": "9000", "FASTAPI_PORT": "8181"}).http_port == 9000


def test_bad_fastapi_port_is_named_when_it_is_the_one_used():
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"FASTAPI_PORT": "http"})
    assert info.value.name == "FASTAPI_PORT"


# ----------------------------------------------------------------------------- symbols

@pytest.mark.parametrize("raw", ["*", " * "])
def test_star_means_all_symbols(raw):
    settings = Settings.from_env({"TRADING_SYMBOLS": raw})
    assert settings.trading_symbols is None
    assert settings.symbol_allowed("ANYTHINGUSDT")


def test_symbols_upper_cased_deduplicated_in_order():
    settings = Settings.from_env({"TRADING_SYMBOLS": "btcusdt, ethusdt ,BTCUSDT,,solusdt,EthUsdt"})
    assert settings.trading_symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert settings.symbol_allowed("ETHUSDT") and not settings.symbol_allowed("XRPUSDT")


# ----------------------------------------------------------------------------- bad values

# (variable, bad value, a word the "accepted" part must contain)
BAD_VALUES = [
    ("NATS_URL", "http://localhost:4222", "nats://"),
    ("NATS_URL", "ws://localhost:8080", "nats://"),
    ("NATS_CONSUMER_STREAM", "in.put", "stream name"),
    ("NATS_CONSUMER_STREAM_MAX_AGE", "-1h", "duration"),
    ("NATS_CONSUMER_STREAM_MAX_AGE", "1 week", "duration"),
    ("RTSIG_SHARD", "3/3", "k/N"),
    ("RTSIG_SHARD", "1", "k/N"),
    ("RTSIG_SHARD_COUNT", "0", "integer"),
    ("NATS_CREDS", "/nonexistent/user.creds", "creds"),
    ("NATS_CREDS", str(NATS_FILES["seed"]), "USER NKEY SEED"),
    ("NATS_NKEY_SEED", str(NATS_FILES["pem"]), "nkey seed"),
    ("NATS_NKEY_SEED", "/nonexistent/user.nk", "nkey seed"),
    ("NATS_TLS_CA", "/nonexistent/ca.pem", "readable file"),
    ("NATS_URL", "localhost:4222", "nats://"),
    ("NATS_CONSUMER_TOPIC", "binance websocket", "subject"),
    ("NATS_CONSUMER_TOPIC", "binance.*", "subject"),
    ("NATS_PUBLISHER_TOPIC", "signals.>", "subject"),
    ("NATS_PUBLISHER_TOPIC", "signals..trading", "subject"),
    ("NATS_PUBLISHER_TOPIC", ".signals", "subject"),
    ("NATS_CONSUMER_GROUP", "a group", "subject"),
    ("TRADING_SYMBOLS", ",", "BTCUSDT"),
    ("TRADING_SYMBOLS", "BTC USDT", "BTCUSDT"),
    ("TRADING_SYMBOLS", "BTCUSDT,ETH$", "BTCUSDT"),
    ("CONFIG_CACHE_TTL_SECONDS", "sixty", "number"),
    ("MONGODB_URI", "http://db:27017", "mongodb://"),
    ("MONGODB_URI", "mongodb://", "mongodb://"),
    ("MYSQL_URI", "mysql://db", "mysql://user:password@host"),
    ("MYSQL_URI", "postgres://db/x", "mysql://user:password@host"),
    ("MYSQL_URI", "mysql://db:port/x", "mysql://user:password@host"),
    ("RTSIG_CONFIG_SUBJECT", "rtsig.config.*", "subject"),
    ("CONFIG_CACHE_TTL_SECONDS", "-1", ">= 0"),
    ("HTTP_PORT", "http", "integer"),
    ("HTTP_HOST", "0.0.0.0:8080", "IP address"),
    ("HTTP_HOST", "my host", "IP address"),
    ("HTTP_PORT", "0", ">= 1"),
    ("HTTP_PORT", "65536", "<= 65535"),
    ("HTTP_PORT", "80.5", "integer"),
    ("FASTAPI_PORT", "-3", ">= 1"),
    ("HEARTBEAT_INTERVAL_SECONDS", "0", "> 0"),
    ("HEARTBEAT_INTERVAL_SECONDS", "inf", "number"),
    ("HEARTBEAT_INTERVAL_SECONDS", "nan", "number"),
    ("RTSIG_WORKERS", "0", ">= 1"),
    ("RTSIG_WORKERS", "two", "integer"),
    ("RTSIG_WORKERS", "65", "<= 64"),
    ("RTSIG_WEB_WORKERS", "0", ">= 1"),
    ("RTSIG_MAX_SYMBOLS", "0", ">= 1"),
    ("RTSIG_MAX_SYMBOLS", "lots", "integer"),
    ("RTSIG_BOOK_RING", "6", "power of two"),
    ("RTSIG_BOOK_RING", "2", ">= 4"),
    ("RTSIG_BOOK_RING", "2048", "<= 1024"),
    ("RTSIG_TRADE_RING", "3000", "power of two"),
    ("RTSIG_TICKER_RING", "100", "power of two"),
    ("RTSIG_EVENT_RING", "1000", "1024"),
    ("RTSIG_PUBLISH_BUFFER", "-1", ">= 0"),
    ("RTSIG_INSTANCE", "Has Space", "a-z"),
    ("RTSIG_INSTANCE", "UPPER", "a-z"),
    ("RTSIG_INSTANCE", "x" * 33, "1-32"),
    ("RTSIG_INSTANCE", "../etc", "a-z"),
    ("MIN_CONFIDENCE", "1.5", "<= 1"),
    ("MIN_CONFIDENCE", "-0.1", ">= 0"),
    ("MIN_CONFIDENCE", "high", "number"),
    ("SIGNAL_QUANTITY", "-0.001", ">= 0"),
    ("RISK_STOP_LOSS_PCT", "0", "> 0"),
    ("RISK_STOP_LOSS_PCT", "1", "< 1"),
    ("RISK_STOP_LOSS_PCT", "1%", "number"),
    ("RISK_TAKE_PROFIT_PCT", "0", "> 0"),
    ("RISK_TAKE_PROFIT_PCT", "1", "< 1"),
    ("RISK_TAKE_PROFIT_PCT", "2.5", "< 1"),
    ("TICKER_VELOCITY_TAKE_PROFIT_PCT", "1", "< 1"),
    ("NATS_PUBLISHER_TOPIC", "signals.*", "wildcards"),
    ("NATS_PUBLISHER_TOPIC", "signals.x{strategy_id}", "{strategy_id}"),
    ("NATS_PUBLISHER_TOPIC", "signals.{strategy}", "{symbol}"),
    ("NATS_FUTURES_TOPIC", "binance.>", "wildcards"),
    ("SIGNAL_MARKETS", "coinm", "spot, usdm"),
    ("SIGNAL_MARKETS", ",", "spot, usdm"),
    ("RTSIG_REFERENCE_MAX_AGE_SECONDS", "0", "> 0"),
    ("RTSIG_BOOK_PRICE_TOLERANCE_PERCENT", "0", "> 0"),
    ("RTSIG_BOOK_PRICE_TOLERANCE_PERCENT", "100", "< 100"),
    ("RTSIG_MAX_CLOCK_SKEW_SECONDS", "-5", "> 0"),
    ("RTSIG_SYMBOL_IDLE_SECONDS", "soon", "number"),
    ("SIGNAL_SUBJECT_PER_STRATEGY", "maybe", "true or false"),
    ("SIGNAL_SUBJECT_PER_STRATEGY", "2", "true or false"),
    ("LOG_LEVEL", "verbose", "DEBUG"),
    ("LOG_LEVEL", "trace", "INFO"),
    ("LOG_FORMAT", "xml", "json"),
    ("STRATEGY_ENABLED_ORDERBOOK_SKEW", "maybe", "true or false"),
    ("STRATEGY_ENABLED_BTC_DOMINANCE", "sometimes", "true or false"),
    ("MARKET_QUOTES_SUBJECT", "market.*", "without wildcards"),
    ("ORDERBOOK_SKEW_TOP_LEVELS", "0", ">= 1"),
    ("ORDERBOOK_SKEW_TOP_LEVELS", "21", "<= 20"),
    ("ORDERBOOK_SKEW_TOP_LEVELS", "2.5", "integer"),
    ("ORDERBOOK_SKEW_BUY_THRESHOLD", "1", "> 1"),
    ("ORDERBOOK_SKEW_SELL_THRESHOLD", "1.01", "<= 1"),
    ("ORDERBOOK_SKEW_BASE_CONFIDENCE", "0.96", "<= 0.95"),
    ("ORDERBOOK_SKEW_MIN_SPREAD_PERCENT", "0", "> 0"),
    ("ORDERBOOK_SKEW_MIN_SIGNAL_INTERVAL", "-1", ">= 0"),
    ("TRADE_MOMENTUM_MOMENTUM_WINDOW", "1", ">= 2"),
    ("TRADE_MOMENTUM_SELL_THRESHOLD", "0.1", "<= 0"),
    ("TRADE_MOMENTUM_TIME_DECAY_SECONDS", "0", "> 0"),
    ("TICKER_VELOCITY_TIME_WINDOW", "4", ">= 5"),
    ("TICKER_VELOCITY_SELL_THRESHOLD", "0", "< 0"),
    ("TICKER_VELOCITY_VOLUME_CONFIRMATION", "maybe", "boolean"),
    ("TICKER_VELOCITY_STOP_LOSS_PCT", "1", "< 1"),
    ("BTC_DOMINANCE_HIGH_THRESHOLD", "abc", "number"),
]


def _ids(case):
    return f"{case[0]}={case[1]}"


_NULL_FOR_REQUIRED = pytest.param(
    "ORDERBOOK_SKEW_MIN_SIGNAL_INTERVAL", "null", "integer",
    id="ORDERBOOK_SKEW_MIN_SIGNAL_INTERVAL=null",
)


@pytest.mark.parametrize("variable,value,accepted_word",
                         [pytest.param(*c, id=_ids(c)) for c in BAD_VALUES] + [_NULL_FOR_REQUIRED])
def test_bad_value_raises_one_line_naming_variable_value_and_accepted(variable, value,
                                                                       accepted_word):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    err = info.value
    text = str(err)
    assert "\n" not in text
    assert text.startswith(variable), text
    assert value.strip() in text, text
    assert accepted_word in err.accepted and err.accepted in text, text
    assert err.name == variable
    assert isinstance(err, ValueError) and isinstance(err, RtsigError)


def test_market_logic_strategy_may_be_set_disabled_explicitly():
    env = {f"STRATEGY_ENABLED_{sid.upper()}": "false" for sid in MARKET_LOGIC}
    assert not any(Settings.from_env(env).strategy_enabled[sid] for sid in MARKET_LOGIC)


def test_market_logic_strategies_are_enabled_by_default_and_read_their_feed_subjects():
    settings = Settings.from_env({})
    assert all(settings.strategy_enabled[sid] for sid in MARKET_LOGIC)
    assert settings.feed_subjects == ("market.global.dominance", "market.quotes", "onchain.transfers")
    settings = Settings.from_env({"MARKET_DOMINANCE_SUBJECT": "d.x", "MARKET_QUOTES_SUBJECT": "q.x",
                                  "ONCHAIN_TRANSFERS_SUBJECT": "o.x",
                                  "STRATEGY_ENABLED_BTC_DOMINANCE": "true"})
    assert settings.feed_subjects == ("d.x", "q.x", "o.x")
    assert settings.strategy_enabled["btc_dominance"]


def test_bool_spellings():
    for raw in ("true", "TRUE", "1", "yes", "on", " On "):
        assert Settings.from_env({"SIGNAL_SUBJECT_PER_STRATEGY": raw}).signal_subject_per_strategy
    for raw in ("false", "0", "no", "off", "OFF"):
        settings = Settings.from_env({"SIGNAL_SUBJECT_PER_STRATEGY": raw})
        assert not settings.signal_subject_per_strategy


def test_power_of_two_rings_accept_their_bounds():
    s = Settings.from_env({"RTSIG_BOOK_RING": "4", "RTSIG_TRADE_RING": "1024",
                           "RTSIG_TICKER_RING": "64", "RTSIG_EVENT_RING": "1024"})
    assert (s.book_ring, s.trade_ring, s.ticker_ring, s.event_ring) == (4, 1024, 64, 1024)
    assert Settings.from_env({"RTSIG_BOOK_RING": "1024"}).book_ring == 1024


def test_nats_url_cluster_list_is_accepted():
    url = "nats://a:4222,nats://b:4222"
    assert Settings.from_env({"NATS_URL": url}).nats_url == url


# ----------------------------------------------------------------------------- the CLI

def _env_without_rtsig_vars(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("RTSIG_", "NATS_", "STRATEGY_", "ORDERBOOK_", "TRADE_",
                                 "TICKER_", "BTC_", "CROSS_", "ONCHAIN_", "RISK_", "SIGNAL_"))
                   or k in ("TRADING_SYMBOLS", "HTTP_PORT", "FASTAPI_PORT", "MIN_CONFIDENCE",
                            "LOG_LEVEL", "LOG_FORMAT"))}
    env.update(extra)
    return env


@pytest.mark.parametrize("variable,value", [
    ("RTSIG_BOOK_RING", "6"),
    ("STRATEGY_ENABLED_BTC_DOMINANCE", "sometimes"),
    ("ORDERBOOK_SKEW_TOP_LEVELS", "0"),
    ("HTTP_PORT", "not-a-port"),
])
def test_rtsig_config_with_a_bad_variable_exits_2_with_one_line(variable, value):
    proc = subprocess.run([RTSIG, "config"], capture_output=True, timeout=120,
                          env=_env_without_rtsig_vars(**{variable: value}))
    assert proc.returncode == 2, (proc.stdout[-500:], proc.stderr[-2000:])
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, proc.stderr.decode()
    assert variable in lines[0] and value in lines[0]
    assert proc.stdout == b""


def test_rtsig_config_with_good_environment_exits_0():
    proc = subprocess.run([RTSIG, "config"], capture_output=True, timeout=120,
                          env=_env_without_rtsig_vars(ORDERBOOK_SKEW_TOP_LEVELS="7"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert b'"top_levels"' in proc.stdout


def test_a_bad_database_uri_is_reported_without_its_password():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"MYSQL_URI": "mysql://admin:hunter2@db"})
    assert "hunter2" not in str(err.value) and "admin:***@db" in str(err.value)


# ----------------------------------------------------------------------------- the trade engine

@pytest.mark.parametrize("topic,per_strategy,subject", [
    ("signals.trading", False, "signals.trading"),
    ("signals.trading", True, "signals.trading.trade_momentum"),
    ("signals.trading.{strategy_id}", False, "signals.trading.trade_momentum"),
    ("signals.trading.{strategy_id}", True, "signals.trading.trade_momentum"),
    ("cio.intent.trading.{strategy_id}", False, "cio.intent.trading.trade_momentum"),
    ("sig.{symbol}.{strategy_id}", False, "sig.ETH_X__.trade_momentum"),
])
def test_publisher_subject_fills_placeholders(topic, per_strategy, subject):
    env = {"NATS_PUBLISHER_TOPIC": topic, "SIGNAL_SUBJECT_PER_STRATEGY": str(per_strategy)}
    assert Settings.from_env(env).publisher_subject("trade_momentum", "ETH.X*>") == subject


def test_engine_warnings_name_what_the_engine_defeats():
    assert Settings.from_env({"NATS_PUBLISHER_TOPIC": "signals.trading.{strategy_id}"}).engine_warnings() == []
    warnings = Settings.from_env({"MIN_CONFIDENCE": "0.5", "TRADE_MOMENTUM_MIN_SIGNAL_INTERVAL": "3"}
                                 ).engine_warnings()
    assert len(warnings) == 3
    assert "MIN_CONFIDENCE=0.5" in warnings[0]
    assert "TRADE_MOMENTUM_MIN_SIGNAL_INTERVAL=3" in warnings[1]
    assert "signals.trading.*" in warnings[2]
    # a disabled strategy's cool-down does not matter
    quiet = Settings.from_env({"NATS_PUBLISHER_TOPIC": "cio.intent.trading.{strategy_id}",
                               "STRATEGY_ENABLED_TRADE_MOMENTUM": "false",
                               "TRADE_MOMENTUM_MIN_SIGNAL_INTERVAL": "3"})
    assert quiet.engine_warnings() == []
