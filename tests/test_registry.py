"""The parameter registry against docs/STRATEGIES.md.

The expected tables below are copied from the spec's text by hand — names, defaults and ranges —
and never derived from ``rtsig.registry``; the registry must match them exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsig.errors import SettingsError
from rtsig.registry import CONFIDENCE_CAP, REALTIME_IDS, STRATEGIES, param_index, strategy, strategy_number

INF = math.inf
CAP = 0.95

# (name, type, default, lo, lo_inclusive, hi, hi_inclusive); None bound = unbounded.
# Types: the spec's "1–20"-style integer counts and windows are ints, the bool is a bool.
ORDERBOOK_SKEW = [
    ("top_levels", int, 5, 1, True, 20, True),
    ("buy_threshold", float, 1.2, 1, False, None, None),
    ("sell_threshold", float, 0.8, 0, True, 1, True),
    ("min_spread_percent", float, 0.1, 0, False, None, None),
    ("base_confidence", float, 0.70, 0, True, CAP, True),
    ("imbalance_weight", float, 0.6, 0, True, None, None),
    ("spread_weight", float, 0.4, 0, True, None, None),
    ("min_total_volume", float, 0.001, 0, True, None, None),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
TRADE_MOMENTUM = [
    ("price_weight", float, 0.4, 0, True, None, None),
    ("quantity_weight", float, 0.3, 0, True, None, None),
    ("maker_weight", float, 0.3, 0, True, None, None),
    ("buy_threshold", float, 0.7, 0, True, 1, True),
    ("sell_threshold", float, -0.7, -1, True, 0, True),
    ("min_quantity", float, 0.001, 0, True, None, None),
    ("base_confidence", float, 0.68, 0, True, CAP, True),
    ("time_decay_seconds", float, 300, 0, False, None, None),
    ("momentum_window", int, 10, 2, True, 1000, True),
    ("price_scale_bps", float, 10, 0, False, None, None),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
TICKER_VELOCITY = [
    ("time_window", int, 60, 5, True, 3600, True),
    ("buy_threshold", float, 0.5, 0, False, None, None),
    ("sell_threshold", float, -0.5, None, None, 0, False),
    ("min_price_change", float, 0.1, 0, True, None, None),
    ("base_confidence", float, 0.65, 0, True, CAP, True),
    ("acceleration_weight", float, 0.5, 0, True, 1, True),
    ("volume_confirmation", bool, True, None, None, None, None),
    ("min_volume_change", float, 0.2, 0, True, None, None),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
# Microstructure strategies (issue 19): docs/STRATEGIES.md
MICROPRICE = [
    ("top_levels", int, 5, 1, True, 20, True),
    ("buy_threshold_bps", float, 0.1, 0, False, None, None),
    ("sell_threshold_bps", float, -0.1, None, None, 0, False),
    ("max_spread_bps", float, 10.0, 0, False, None, None),
    ("min_total_volume", float, 0.001, 0, True, None, None),
    ("base_confidence", float, 0.65, 0, True, CAP, True),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
ORDER_FLOW_IMBALANCE = [
    ("window_seconds", float, 10.0, 0, False, 3600, True),
    ("buy_threshold", float, 3.0, 0, False, None, None),
    ("sell_threshold", float, -3.0, None, None, 0, False),
    ("min_updates", int, 10, 1, True, 256, True),
    ("base_confidence", float, 0.65, 0, True, CAP, True),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
TRADE_FLOW_IMBALANCE = [
    ("window_seconds", float, 30.0, 0, False, 3600, True),
    ("max_window_trades", int, 500, 2, True, 1000, True),
    ("buy_threshold", float, 0.6, 0, True, 1, True),
    ("sell_threshold", float, -0.6, -1, True, 0, True),
    ("min_trades", int, 10, 2, True, 1000, True),
    ("min_volume", float, 0.0, 0, True, None, None),
    ("base_confidence", float, 0.65, 0, True, CAP, True),
    ("min_signal_interval", int, 60, 0, True, None, None),
]
REALTIME_TABLES = {
    "orderbook_skew": ORDERBOOK_SKEW,
    "trade_momentum": TRADE_MOMENTUM,
    "ticker_velocity": TICKER_VELOCITY,
    "microprice": MICROPRICE,
    "order_flow_imbalance": ORDER_FLOW_IMBALANCE,
    "trade_flow_imbalance": TRADE_FLOW_IMBALANCE,
}
# Market-logic strategies: the spec gives names and defaults only.
MARKET_LOGIC_DEFAULTS = {
    "btc_dominance": {"high_threshold": 70.0, "low_threshold": 40.0, "change_threshold": 5.0,
                      "window_hours": 24, "min_signal_interval": 14400},
    "cross_exchange_spread": {"spread_threshold_percent": 0.5, "min_signal_interval": 300,
                              "max_position_size": 500, "max_quote_age_seconds": 10},
    "onchain_metrics": {"whale_threshold_btc": 100, "whale_threshold_eth": 1000,
                        "exchange_flow_threshold_percent": 10.0, "flow_window_minutes": 60,
                        "min_signal_interval": 3600},
}
COMMON_OPTIONAL = ("stop_loss_pct", "take_profit_pct")
ALL_IDS = ("orderbook_skew", "trade_momentum", "ticker_velocity",
           "btc_dominance", "cross_exchange_spread", "onchain_metrics",
           "microprice", "order_flow_imbalance", "trade_flow_imbalance")


def _spec_names(sid: str) -> list[str]:
    if sid in REALTIME_TABLES:
        names = [row[0] for row in REALTIME_TABLES[sid]]
    else:
        names = list(MARKET_LOGIC_DEFAULTS[sid])
    return names + list(COMMON_OPTIONAL)


# ----------------------------------------------------------------------------- the tables

def test_six_strategies_with_the_spec_ids():
    assert set(STRATEGIES) == set(ALL_IDS)
    # every strategy is judged by a kernel in the workers: the realtime ones first
    assert REALTIME_IDS == ALL_IDS
    assert [strategy_number(s) for s in REALTIME_IDS] == list(range(9))  # new ones appended
    assert CONFIDENCE_CAP == CAP


@pytest.mark.parametrize("sid", ALL_IDS)
def test_parameter_names_are_exactly_the_spec_table_plus_common(sid):
    names = [p.name for p in STRATEGIES[sid].params]
    assert sorted(names) == sorted(_spec_names(sid))
    assert len(names) == len(set(names))


@pytest.mark.parametrize("sid,row", [(s, r) for s, t in REALTIME_TABLES.items() for r in t],
                         ids=lambda x: x if isinstance(x, str) else x[0])
def test_realtime_parameter_type_default_and_range(sid, row):
    name, typ, default, lo, lo_inc, hi, hi_inc = row
    p = STRATEGIES[sid].param(name)
    assert p.type is typ
    assert p.default == default
    assert type(p.default) in ((typ,) if typ is not float else (float, int))
    assert not p.optional
    if lo is None:
        assert p.min is None
    else:
        assert p.min == lo and p.min_exclusive is (not lo_inc)
    if hi is None:
        assert p.max is None
    else:
        assert p.max == hi and p.max_exclusive is (not hi_inc)
    assert p.description


@pytest.mark.parametrize("sid", MARKET_LOGIC_DEFAULTS)
def test_market_logic_defaults(sid):
    st = STRATEGIES[sid]
    defaults = st.defaults()
    for name, value in MARKET_LOGIC_DEFAULTS[sid].items():
        assert defaults[name] == value, name
    # every default is inside its own range
    for p in st.params:
        assert p.validate(p.default, f"{sid}.{p.name}") == p.default


@pytest.mark.parametrize("sid", ALL_IDS)
def test_common_risk_overrides_are_optional_fractions(sid):
    st = STRATEGIES[sid]
    sl, tp = st.param("stop_loss_pct"), st.param("take_profit_pct")
    assert sl.optional and tp.optional and sl.default is None and tp.default is None
    assert sl.validate(None, "x") is None and tp.validate(None, "x") is None
    assert sl.validate(0.02, "x") == 0.02 and tp.validate(0.999, "x") == 0.999
    # (0, 1): no level at or below zero, and the trade engine rejects a percentage above 1
    for bad in (0, 1, -0.1, 1.5, 2.5):
        for p in (sl, tp):
            with pytest.raises(SettingsError):
                p.validate(bad, "x")
    assert st.param("min_signal_interval").validate(0, "x") == 0  # 0 disables the cool-down


@pytest.mark.parametrize("sid", ALL_IDS)
def test_defaults_pass_their_own_validation(sid):
    st = STRATEGIES[sid]
    assert st.validate(st.defaults()) == st.defaults()


# ----------------------------------------------------------------------------- env names

@pytest.mark.parametrize("sid", ALL_IDS)
def test_env_names(sid):
    st = STRATEGIES[sid]
    for p in st.params:
        assert st.env_name(p.name) == sid.upper() + "_" + p.name.upper()
    assert st.enabled_env_name == "STRATEGY_ENABLED_" + sid.upper()


def test_env_name_examples_and_uniqueness():
    assert STRATEGIES["orderbook_skew"].env_name("buy_threshold") == "ORDERBOOK_SKEW_BUY_THRESHOLD"
    assert STRATEGIES["trade_momentum"].env_name("momentum_window") == \
        "TRADE_MOMENTUM_MOMENTUM_WINDOW"
    names = [st.env_name(p.name) for st in STRATEGIES.values() for p in st.params]
    assert len(names) == len(set(names))


# ----------------------------------------------------------------------------- validation

def _probes(row):
    """(value, accepted?) around each bound of a spec row."""
    name, typ, default, lo, lo_inc, hi, hi_inc = row
    step = 1 if typ is int else 1e-9
    out = []
    if lo is not None:
        out += [(lo, lo_inc), (lo - step, False), (lo + step, True)]
    else:
        out += [(-1e12 if typ is float else -10**9, True)] if hi is None or hi > -1e12 else []
    if hi is not None:
        out += [(hi, hi_inc), (hi + step, False), (hi - step, True)]
    else:
        out += [(1e12 if typ is float else 10**9, True)]
    return [(typ(v) if typ is int else v, ok) for v, ok in out]


BOUND_CASES = [(sid, row[0], value, ok)
               for sid, table in REALTIME_TABLES.items() for row in table if row[1] is not bool
               for value, ok in _probes(row)]


@pytest.mark.parametrize("sid,name,value,ok", BOUND_CASES)
def test_bounds_inclusive_and_exclusive(sid, name, value, ok):
    p = STRATEGIES[sid].param(name)
    if ok:
        assert p.validate(value, f"{sid}.{name}") == value
        assert p.validate(str(value), f"{sid}.{name}") == value  # env strings parse the same
    else:
        with pytest.raises(SettingsError) as info:
            p.validate(value, f"{sid}.{name}")
        assert info.value.name == f"{sid}.{name}"
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("true", True), ("FALSE", False), ("1", True), ("0", False),
    ("yes", True), ("no", False), ("on", True), ("off", False), (" True ", True),
])
def test_bool_parsing(value, expected):
    p = STRATEGIES["ticker_velocity"].param("volume_confirmation")
    assert p.validate(value, "v") is expected


@pytest.mark.parametrize("value", ["maybe", "2", "", "tru", 0.5, None])
def test_bad_bool_rejected(value):
    p = STRATEGIES["ticker_velocity"].param("volume_confirmation")
    with pytest.raises(SettingsError):
        p.validate(value, "ticker_velocity.volume_confirmation")


@pytest.mark.parametrize("value", ["2.5", 2.5, "five", True, False, None, "", "nan", float("nan")])
def test_integer_parameter_rejects_non_integers(value):
    p = STRATEGIES["orderbook_skew"].param("top_levels")
    with pytest.raises(SettingsError):
        p.validate(value, "orderbook_skew.top_levels")


def test_integer_parameter_accepts_integral_values():
    p = STRATEGIES["orderbook_skew"].param("top_levels")
    for value in (7, 7.0, "7", " 7 "):
        got = p.validate(value, "orderbook_skew.top_levels")
        assert got == 7 and type(got) is int


@pytest.mark.parametrize("value", ["abc", True, None, float("inf"), float("nan"), "inf", "-inf",
                                   [1.3], {"v": 1}])
def test_float_parameter_rejects_non_numbers(value):
    p = STRATEGIES["orderbook_skew"].param("buy_threshold")
    with pytest.raises(SettingsError):
        p.validate(value, "orderbook_skew.buy_threshold")


def test_float_parameter_accepts_ints_and_strings():
    p = STRATEGIES["orderbook_skew"].param("buy_threshold")
    for value in (2, 2.0, "2", "2.0", "2e0"):
        got = p.validate(value, "orderbook_skew.buy_threshold")
        assert got == 2.0 and type(got) is float


def test_error_text_names_where_value_and_accepted():
    with pytest.raises(SettingsError) as info:
        STRATEGIES["orderbook_skew"].validate({"top_levels": 99})
    text = str(info.value)
    assert text.startswith("orderbook_skew.top_levels=99")
    assert ">= 1" in text and "<= 20" in text


def test_unknown_parameter_rejected():
    with pytest.raises(SettingsError) as info:
        STRATEGIES["orderbook_skew"].validate({"nope": 1})
    assert "orderbook_skew.nope" in str(info.value)
    assert "top_levels" in info.value.accepted  # lists what exists


def test_validate_accepts_partial_mapping_and_coerces():
    got = STRATEGIES["ticker_velocity"].validate({"time_window": "90",
                                                  "volume_confirmation": "off"})
    assert got == {"time_window": 90, "volume_confirmation": False}


def test_validation_errors_gives_one_error_per_bad_field():
    st = STRATEGIES["orderbook_skew"]
    values = {"top_levels": 0, "buy_threshold": 1.0, "sell_threshold": 0.5, "nope": 3,
              "base_confidence": 0.99, "min_signal_interval": -5, "spread_weight": 0.2}
    errors = st.validation_errors(values)
    assert set(errors) == {"top_levels", "buy_threshold", "nope", "base_confidence",
                           "min_signal_interval"}
    for name, message in errors.items():
        assert isinstance(message, str) and "\n" not in message
        assert f"orderbook_skew.{name}" in message
    assert st.validation_errors({"top_levels": 3, "stop_loss_pct": None}) == {}


def test_unknown_strategy():
    with pytest.raises(KeyError) as info:
        strategy("nope")
    assert "orderbook_skew" in str(info.value)
    assert strategy("trade_momentum") is STRATEGIES["trade_momentum"]


# ----------------------------------------------------------------------------- kernel arrays

@pytest.mark.parametrize("sid", ALL_IDS)
def test_as_array_order_equals_param_index(sid):
    st = STRATEGIES[sid]
    # distinct valid values, so a swapped position would show
    values = {}
    for k, p in enumerate(st.params):
        if p.type is bool:
            values[p.name] = False
        elif p.name == "stop_loss_pct":
            values[p.name] = 0.0123
        elif p.name == "take_profit_pct":
            values[p.name] = 0.0456
        else:
            lo = p.min if p.min is not None else -10.0
            hi = p.max if p.max is not None else lo + 100
            v = lo + (hi - lo) * (k + 1) / (len(st.params) + 2)
            values[p.name] = int(math.ceil(v)) if p.type is int else v
    values = st.validate(values)
    arr = st.as_array(values)
    assert arr.dtype == np.float64 and arr.shape == (len(st.params),)
    for name, value in values.items():
        assert arr[param_index(sid, name)] == float(value), name
    assert sorted(param_index(sid, p.name) for p in st.params) == list(range(len(st.params)))


def test_as_array_fills_defaults_bools_and_nan():
    st = STRATEGIES["ticker_velocity"]
    arr = st.as_array({"time_window": 120})
    assert arr[param_index("ticker_velocity", "time_window")] == 120.0
    assert arr[param_index("ticker_velocity", "buy_threshold")] == 0.5
    assert arr[param_index("ticker_velocity", "volume_confirmation")] == 1.0
    assert math.isnan(arr[param_index("ticker_velocity", "stop_loss_pct")])
    assert math.isnan(arr[param_index("ticker_velocity", "take_profit_pct")])
    arr = st.as_array({"volume_confirmation": False})
    assert arr[param_index("ticker_velocity", "volume_confirmation")] == 0.0


# ----------------------------------------------------------------------------- realtime / enabled

@pytest.mark.parametrize("sid", ALL_IDS)
def test_market_logic_strategies_not_realtime_but_enabled(sid):
    st = STRATEGIES[sid]
    realtime = sid in REALTIME_TABLES
    assert st.realtime is realtime
    assert st.enabled_by_default  # idle without feed data (docs/STRATEGIES.md, market-logic)
    assert st.name and st.description
