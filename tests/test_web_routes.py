"""Every route of the operator API (docs/CONTRACT.md §4) through ``falcon.testing``, no server.

The app runs over real components: an in-memory store that books reach through the real
decoder, the real depth metrics (rtsig/depth.py), the real pressure sampler and a real SQLite config
store. Expected market figures are computed here in plain Python from the book's decimal
strings; expected parameter facts come from the registry. Every ``/api/v1`` response any test
receives is checked for the envelope (``tests.web_helpers.WebApp.request``).
"""

# ruff: noqa: F811 - the fixtures make_app and web_app are imported from tests/web_helpers.py
from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtsig import codes
from rtsig import counters as C
from rtsig.config import ConfigService
from rtsig.config.stores import SQLITE_FILE
from rtsig.registry import STRATEGIES
from tests.servers import free_port
from tests.web_helpers import (
    API,
    NOW_S,
    STRATEGY_IDS,
    WebApp,
    balanced_book,
    build_app,
    check_bare,
    check_envelope,
    failed,
    make_app,  # noqa: F401 - fixture
    ok,
    stored_levels,
    web_app,  # noqa: F401 - fixture
    web_settings,
)
from tests.web_helpers import MARKET as MARKET_PREFIX
from web.app import ROUTES
from web.guard import RateLimiter
from web.route import Route

SKEW = "orderbook_skew"
MOMENTUM = "trade_momentum"
S = f"{API}/strategies"
M = f"{API}/metrics"
Level = tuple[float, float]


# ============================================================================ plain-Python oracles
def iso_ms(epoch_s: float) -> str:
    """ISO-8601 UTC with milliseconds and Z, computed independently of web.market."""
    whole = math.floor(epoch_s)
    ms = round((epoch_s - whole) * 1000)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def expected_depth(symbol: str, bids: list[Level], asks: list[Level], received_s: float,
                   now_s: float) -> dict:
    """Every field of ``GET /metrics/depth/{symbol}`` from docs/CONTRACT.md §4, by hand."""
    bid_volume = sum(q for _, q in bids)
    ask_volume = sum(q for _, q in asks)
    total = bid_volume + ask_volume
    buy = 100.0 * bid_volume / total
    sell = 100.0 * ask_volume / total
    net = buy - sell
    best_bid, best_ask = bids[0][0], asks[0][0]
    mid = (best_bid + best_ask) / 2.0
    vwap_bid = sum(p * q for p, q in bids) / bid_volume
    vwap_ask = sum(p * q for p, q in asks) / ask_volume

    def strongest(levels: list[Level]) -> dict:
        top = max(q for _, q in levels)
        price, volume = next((p, q) for p, q in levels if q == top)  # a tie goes to the top
        return {"price": price, "volume": volume}

    return {
        "symbol": symbol,
        "timestamp": iso_ms(received_s),
        "imbalance": {"ratio": (bid_volume - ask_volume) / total,
                      "percent": 100.0 * (bid_volume - ask_volume) / total,
                      "bid_volume": bid_volume, "ask_volume": ask_volume},
        "pressure": {"buy_pressure": buy, "sell_pressure": sell, "net_pressure": net,
                     "interpretation": "bullish" if net > 20 else "bearish" if net < -20 else "neutral"},
        "liquidity": {"total": total,
                      "bid_depth_5": sum(q for _, q in bids[:5]), "ask_depth_5": sum(q for _, q in asks[:5]),
                      "bid_depth_10": sum(q for _, q in bids[:10]),
                      "ask_depth_10": sum(q for _, q in asks[:10])},
        "spread": {"best_bid": best_bid, "best_ask": best_ask, "spread_abs": best_ask - best_bid,
                   "spread_bps": (best_ask - best_bid) / mid * 10_000.0, "mid_price": mid},
        "vwap": {"bid": vwap_bid, "ask": vwap_ask, "spread": vwap_ask - vwap_bid},
        "order_book_quality": {"bid_levels": len(bids), "ask_levels": len(asks),
                               "total_levels": len(bids) + len(asks),
                               "age_ms": round((now_s - received_s) * 1000)},
        "strongest_levels": {"bid": strongest(bids), "ask": strongest(asks)},
    }


def net_pressure(bids: list[Level], asks: list[Level]) -> float:
    b, a = sum(q for _, q in bids), sum(q for _, q in asks)
    return 100.0 * (b - a) / (b + a)


def as_float32(x: float) -> float:
    """The history ring keeps float32: what a sample of ``x`` reads back as."""
    return float(np.float32(x))


def least_squares_trend(seconds: list[int], values: list[float]) -> tuple[str, float]:
    """docs/DESIGN.md: the least-squares change over the window; > ±5 points is a trend, in the
    seed's words (net pressure rising is bullish)."""
    if len(values) < 2:
        return "neutral", 0.0
    t = [s - seconds[0] for s in seconds]
    mt, mv = sum(t) / len(t), sum(values) / len(values)
    slope = sum((a - mt) * (b - mv) for a, b in zip(t, values)) / sum((a - mt) ** 2 for a in t)
    change = slope * t[-1]
    strength = min(1.0, abs(change) / 200.0)
    if abs(change) <= 5.0:
        return "neutral", strength
    return ("bullish" if change > 0 else "bearish"), strength


def assert_tree_close(got: Any, want: Any, where: str = "") -> None:
    """Equal structure; floats within the API's rounding (6-8 decimals), the rest exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for key in want:
            assert_tree_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), (where, got)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6), (where, got, want)
    else:
        assert type(got) is type(want) and got == want, (where, got, want)


# ============================================================================ envelope: every route
def _valid_request(route: Route, app: WebApp) -> tuple[str, dict]:
    """A path and request kwargs that must succeed for ``route`` (state prepared as needed)."""
    path = route.path.replace("{strategy_id}", SKEW).replace("{symbol}", "BTCUSDT")
    kwargs: dict = {}
    if route.operation_id in ("deleteGlobalConfig", "rollback"):
        app.change(SKEW, {"top_levels": 6})
        app.change(SKEW, {"top_levels": 7})
    if route.operation_id == "deleteSymbolConfig":
        app.change(SKEW, {"top_levels": 6}, symbol="BTCUSDT")
    if route.method == "DELETE":
        kwargs["params"] = {"changed_by": "alice"}
    if route.operation_id in ("updateGlobalConfig", "updateSymbolConfig"):
        kwargs["json"] = {"parameters": {"top_levels": 9}, "changed_by": "alice"}
    if route.operation_id == "rollback":
        kwargs["json"] = {"changed_by": "alice"}
    return path, kwargs


@pytest.mark.parametrize("route", [r for r in ROUTES if r.path.startswith(API)],
                         ids=lambda r: r.operation_id)
def test_every_api_route_answers_a_success_envelope_with_a_documented_status(web_app: WebApp,
                                                                            route: Route) -> None:
    """Each /api/v1 route, called correctly, answers {success, data, error: null, metadata} with a success status it documents."""
    web_app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    path, kwargs = _valid_request(route, web_app)
    resp = web_app.request(route.method, path, **kwargs)
    assert resp.status_code in route.success, (resp.status_code, resp.text)
    if route.enveloped:
        body = check_envelope(resp)
        assert body["success"] is True and body["data"] is not None
    else:
        assert check_bare(resp)


def test_unknown_paths_and_methods_under_api_answer_the_envelope(web_app: WebApp) -> None:
    """A path no route has is a 404 NOT_FOUND envelope; a method a path does not support is a 405 envelope."""
    failed(web_app.get(f"{API}/no/such/route"), 404, "NOT_FOUND")
    resp = web_app.request("PUT", S)
    assert resp.status_code == 405 and check_envelope(resp)["success"] is False


# ============================================================================ strategy catalogue
def test_strategy_list_has_every_registry_strategy_with_the_documented_fields(make_app) -> None:
    """GET /strategies lists the six strategies with §4's fields, enabled from the settings, and reflects stored configs."""
    app = make_app(strategy_enabled={sid: sid == MOMENTUM for sid in STRATEGIES})
    listed = ok(app.get(S))
    assert [s["strategy_id"] for s in listed] == list(STRATEGY_IDS)
    for item in listed:
        st = STRATEGIES[item["strategy_id"]]
        assert {"strategy_id", "name", "description", "enabled", "has_global_config",
                "symbol_overrides", "parameter_count"} <= set(item)
        assert (item["name"], item["description"]) == (st.name, st.description)
        assert item["enabled"] is (st.strategy_id == MOMENTUM)
        assert item["parameter_count"] == len(st.params)
        assert item["has_global_config"] is False and item["symbol_overrides"] == []

    ok(app.change(SKEW, {"top_levels": 8}), 201)
    ok(app.change(SKEW, {"top_levels": 9}, symbol="ethusdt"), 201)
    ok(app.change(SKEW, {"top_levels": 3}, symbol="BTCUSDT"), 201)
    ok(app.change(MOMENTUM, {"momentum_window": 20}, symbol="BTCUSDT"), 201)
    listed = {s["strategy_id"]: s for s in ok(app.get(S))}
    assert (listed[SKEW]["has_global_config"], listed[SKEW]["symbol_overrides"]) == \
        (True, ["BTCUSDT", "ETHUSDT"])
    assert (listed[MOMENTUM]["has_global_config"], listed[MOMENTUM]["symbol_overrides"]) == (False, ["BTCUSDT"])
    assert listed["ticker_velocity"]["symbol_overrides"] == []


@pytest.mark.parametrize("strategy_id", STRATEGY_IDS)
def test_schema_describes_every_registry_parameter(web_app: WebApp, strategy_id: str) -> None:
    """GET /{id}/schema gives name, type, description, default, min, max and unit of each registry parameter, in order."""
    data = ok(web_app.get(f"{S}/{strategy_id}/schema"))
    st = STRATEGIES[strategy_id]
    assert data["strategy_id"] == strategy_id
    assert [p["name"] for p in data["parameters"]] == [p.name for p in st.params]
    for got, param in zip(data["parameters"], st.params):
        assert got["type"] == {int: "int", float: "float", bool: "bool"}[param.type]
        assert (got["description"], got["default"], got["min"], got["max"], got["unit"]) == \
            (param.description, param.default, param.min, param.max, param.unit)
        assert got["default"] is None or isinstance(got["default"], (bool, int, float))


@pytest.mark.parametrize("strategy_id", STRATEGY_IDS)
def test_defaults_are_the_registry_defaults(make_app, strategy_id: str) -> None:
    """GET /{id}/defaults gives every parameter's registry default, whatever the environment or the store set."""
    first = STRATEGIES[strategy_id].params[0]
    app = make_app(strategy_env_params={strategy_id: {"min_signal_interval": 7}})
    ok(app.change(strategy_id, {first.name: first.max if first.max is not None else 999}), 201)
    data = ok(app.get(f"{S}/{strategy_id}/defaults"))
    assert data == {"strategy_id": strategy_id, "parameters": STRATEGIES[strategy_id].defaults()}


STRATEGY_ROUTES = [r for r in ROUTES if "{strategy_id}" in r.path]


@pytest.mark.parametrize("route", STRATEGY_ROUTES, ids=lambda r: r.operation_id)
def test_unknown_strategy_is_404_not_found(web_app: WebApp, route: Route) -> None:
    """Every route with a strategy id answers 404 NOT_FOUND for an id outside the registry."""
    path = route.path.replace("{strategy_id}", "no_such_strategy").replace("{symbol}", "BTCUSDT")
    kwargs: dict = {}
    if route.body:
        kwargs["json"] = {"parameters": {"top_levels": 6}, "changed_by": "alice"} \
            if "parameters" in {f.name for f in msgspec.structs.fields(route.body)} else {"changed_by": "alice"}
    if route.method == "DELETE":
        kwargs["params"] = {"changed_by": "alice"}
    error = failed(web_app.request(route.method, path, **kwargs), 404, "NOT_FOUND")
    assert "no_such_strategy" in error["message"]


# ============================================================================ effective configs
def test_global_config_resolves_environment_over_defaults(make_app) -> None:
    """Without a stored config the global config is environment → default, version 0, with per-parameter sources."""
    app = make_app(strategy_env_params={SKEW: {"sell_threshold": 0.5}})
    data = ok(app.get(f"{S}/{SKEW}/config"))
    defaults = STRATEGIES[SKEW].defaults()
    assert data["parameters"] == {**defaults, "sell_threshold": 0.5}
    assert (data["strategy_id"], data["symbol"], data["version"], data["source"], data["is_override"]) == \
        (SKEW, None, 0, "environment", False)
    assert (data["created_at"], data["updated_at"]) == (None, None)
    assert data["parameter_sources"] == {name: "environment" if name == "sell_threshold" else "default"
                                         for name in defaults}
    plain = ok(app.get(f"{S}/{MOMENTUM}/config"))
    assert (plain["source"], plain["version"], plain["parameters"]) == \
        ("default", 0, STRATEGIES[MOMENTUM].defaults())


def test_symbol_config_layers_override_over_global_over_environment(make_app) -> None:
    """GET …/config/{symbol}: symbol override → stored global → environment → default, per parameter."""
    app = make_app(strategy_env_params={SKEW: {"sell_threshold": 0.5}})
    ok(app.change(SKEW, {"top_levels": 8, "buy_threshold": 1.4}), 201)
    ok(app.change(SKEW, {"buy_threshold": 1.6}, symbol="BTCUSDT"), 201)

    glob = ok(app.get(f"{S}/{SKEW}/config"))
    assert (glob["source"], glob["version"], glob["is_override"]) == ("sqlite", 1, False)
    assert glob["created_at"] and glob["updated_at"]

    data = ok(app.get(f"{S}/{SKEW}/config/btcusdt"))
    assert (data["symbol"], data["source"], data["version"], data["is_override"]) == ("BTCUSDT", "sqlite", 1, True)
    assert data["parameters"] == {**STRATEGIES[SKEW].defaults(), "top_levels": 8, "buy_threshold": 1.6,
                                  "sell_threshold": 0.5}
    sources = data["parameter_sources"]
    assert (sources["buy_threshold"], sources["top_levels"], sources["sell_threshold"],
            sources["base_confidence"]) == ("sqlite (BTCUSDT)", "sqlite", "environment", "default")

    other = ok(app.get(f"{S}/{SKEW}/config/ETHUSDT"))
    assert (other["is_override"], other["version"], other["parameters"]["buy_threshold"]) == (False, 1, 1.4)


@pytest.mark.parametrize("symbol", ["DOGEUSDT", "BTC-USD!", "x" * 30])
def test_config_of_a_symbol_this_service_does_not_trade_is_404(web_app: WebApp, symbol: str) -> None:
    """GET, POST and DELETE of a symbol outside TRADING_SYMBOLS (or not a symbol) are 404 NOT_FOUND."""
    path = f"{S}/{SKEW}/config/{symbol}"
    failed(web_app.get(path), 404, "NOT_FOUND")
    failed(web_app.post(path, {"parameters": {"top_levels": 6}, "changed_by": "alice"}), 404, "NOT_FOUND")
    failed(web_app.delete(path, params={"changed_by": "alice"}), 404, "NOT_FOUND")
    assert ok(web_app.get(f"{S}/{SKEW}/audit")) == []


# ============================================================================ changes
def test_post_creates_with_201_then_updates_with_200_merging_and_auditing(web_app: WebApp) -> None:
    """A first POST creates the level (201, version 1, CREATE audit); the next merges into it (200, version 2, UPDATE)."""
    first = ok(web_app.change(SKEW, {"top_levels": 8}, reason="deeper"), 201)
    assert first["validate_only"] is False
    assert first["config"]["version"] == 1 and first["config"]["parameters"]["top_levels"] == 8
    audit = first["audit"]
    assert (audit["action"], audit["strategy_id"], audit["symbol"], audit["old_parameters"],
            audit["new_parameters"], audit["old_version"], audit["new_version"], audit["changed_by"],
            audit["reason"]) == ("CREATE", SKEW, None, None, {"top_levels": 8}, 0, 1, "alice", "deeper")

    second = ok(web_app.change(SKEW, {"buy_threshold": 1.5}, changed_by="bob"), 200)
    assert second["config"]["version"] == 2
    assert second["config"]["parameters"] == {**STRATEGIES[SKEW].defaults(), "top_levels": 8, "buy_threshold": 1.5}
    assert (second["audit"]["action"], second["audit"]["old_parameters"], second["audit"]["new_parameters"],
            second["audit"]["old_version"], second["audit"]["new_version"]) == \
        ("UPDATE", {"top_levels": 8}, {"top_levels": 8, "buy_threshold": 1.5}, 1, 2)

    stored = ok(web_app.get(f"{S}/{SKEW}/config"))
    assert stored["version"] == 2 and stored["parameters"] == second["config"]["parameters"]
    trail = ok(web_app.get(f"{S}/{SKEW}/audit"))
    assert [(r["action"], r["new_version"], r["changed_by"]) for r in trail] == \
        [("UPDATE", 2, "bob"), ("CREATE", 1, "alice")]
    assert trail[0]["id"] == second["audit"]["id"] and trail[1]["id"] == first["audit"]["id"]

    symbol = ok(web_app.change(SKEW, {"top_levels": 3}, symbol="ETHUSDT"), 201)
    assert (symbol["config"]["version"], symbol["config"]["is_override"], symbol["audit"]["symbol"]) == \
        (1, True, "ETHUSDT")


def test_validate_only_previews_the_change_and_stores_nothing(web_app: WebApp) -> None:
    """validate_only: 200 with the would-be config, no audit, nothing stored, no epoch bump, counter or announcement."""
    epoch = web_app.epoch
    data = ok(web_app.change(SKEW, {"top_levels": 12}, validate_only=True), 200)
    assert data["validate_only"] is True and data["audit"] is None
    assert data["config"]["parameters"]["top_levels"] == 12 and data["config"]["version"] == 1

    stored = ok(web_app.get(f"{S}/{SKEW}/config"))
    assert stored["version"] == 0 and stored["parameters"]["top_levels"] == 5
    assert ok(web_app.get(f"{S}/{SKEW}/audit")) == []
    assert web_app.config.audit(SKEW) == []
    assert (web_app.epoch, web_app.config_changes(SKEW), web_app.announced) == (epoch, 0, [])

    invalid = failed(web_app.change(SKEW, {"top_levels": 0}, validate_only=True), 422, "VALIDATION_ERROR")
    assert set(invalid["details"]) == {"top_levels"}


@pytest.mark.parametrize("raw", [b'{"parameters": {"top_levels": 6}, "changed_by": ', b"not json at all",
                                 b"[1, 2, 3]", b'"a string"', b"42", b"null", b""],
                         ids=["truncated", "not_json", "array", "string", "number", "null", "empty"])
def test_a_body_that_is_not_a_json_object_is_400(web_app: WebApp, raw: bytes) -> None:
    """Malformed JSON, a JSON value that is not an object, or no body at all: 400 VALIDATION_ERROR, nothing stored."""
    resp = web_app.request("POST", f"{S}/{SKEW}/config", body=raw, headers={"Content-Type": "application/json"})
    failed(resp, 400, "VALIDATION_ERROR")
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["version"] == 0


def test_an_unknown_body_field_is_422_naming_it(web_app: WebApp) -> None:
    """A body field the route does not define is a 422 with one detail naming that field."""
    error = failed(web_app.post(f"{S}/{SKEW}/config", {"parameters": {"top_levels": 6}, "changed_by": "alice",
                                                       "colour": "blue"}), 422, "VALIDATION_ERROR")
    assert error["details"] == {"colour": "unknown field"}
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["version"] == 0


def test_missing_required_body_fields_are_422_one_detail_each(web_app: WebApp) -> None:
    """parameters and changed_by are required: each missing (or blank) one is its own 422 detail."""
    error = failed(web_app.post(f"{S}/{SKEW}/config", {"reason": "x"}), 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"parameters", "changed_by"}
    error = failed(web_app.post(f"{S}/{SKEW}/config", {"parameters": {"top_levels": 6}, "changed_by": "  "}),
                   422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"changed_by"}
    error = failed(web_app.post(f"{S}/{SKEW}/config", {"parameters": {}, "changed_by": "alice"}),
                   422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"parameters"}


def test_bad_parameter_values_are_422_with_one_detail_per_bad_field(web_app: WebApp) -> None:
    """Out-of-range, wrong-type and unknown parameters each get their own 422 detail; the valid ones are not stored either."""
    bad = {"top_levels": 0, "buy_threshold": 1.0, "sell_threshold": 1.5, "base_confidence": True,
           "min_total_volume": -1, "no_such_parameter": 3}
    error = failed(web_app.change(SKEW, {**bad, "spread_weight": 0.5}), 422, "VALIDATION_ERROR")
    assert set(error["details"]) == set(bad)
    assert all(isinstance(v, str) and v for v in error["details"].values())
    config = ok(web_app.get(f"{S}/{SKEW}/config"))
    assert config["version"] == 0 and config["parameters"]["spread_weight"] == 0.4
    error = failed(web_app.change(MOMENTUM, {"momentum_window": 2.5}), 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"momentum_window"}


@pytest.mark.parametrize("value", ["1.5", "true"])
def test_a_parameter_sent_as_a_json_string_is_422(web_app: WebApp, value: str) -> None:
    """The API validates types: a JSON string for a number/boolean parameter is a 422 (the documented schema allows only numbers, booleans and null)."""
    name = "buy_threshold" if value == "1.5" else "volume_confirmation"
    sid = SKEW if value == "1.5" else "ticker_velocity"
    error = failed(web_app.change(sid, {name: value}), 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {name}
    assert ok(web_app.get(f"{S}/{sid}/config"))["version"] == 0


def test_expected_version_mismatch_is_409_with_the_current_version(web_app: WebApp) -> None:
    """expected_version guards a change: a mismatch is 409 CONFLICT with details.current_version; a match goes through."""
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    ok(web_app.change(SKEW, {"top_levels": 7}), 200)
    error = failed(web_app.change(SKEW, {"top_levels": 8}, expected_version=1), 409, "CONFLICT")
    assert error["details"]["current_version"] == 2
    error = failed(web_app.change(SKEW, {"top_levels": 8}, expected_version=0), 409, "CONFLICT")
    assert error["details"]["current_version"] == 2
    error = failed(web_app.change(SKEW, {"top_levels": 8}, symbol="BTCUSDT", expected_version=3), 409, "CONFLICT")
    assert error["details"]["current_version"] == 0
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["parameters"]["top_levels"] == 7

    data = ok(web_app.change(SKEW, {"top_levels": 8}, expected_version=2), 200)
    assert data["config"]["version"] == 3
    ok(web_app.change(SKEW, {"top_levels": 9}, symbol="BTCUSDT", expected_version=0), 201)
    failed(web_app.change(SKEW, {"top_levels": 8}, expected_version=-1), 422, "VALIDATION_ERROR")


# ============================================================================ delete
def test_delete_needs_changed_by(web_app: WebApp) -> None:
    """DELETE without changed_by is 422 naming the field; a blank one is refused (a bad query value) naming it too; nothing is deleted."""
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    for params in ({}, {"reason": "cleanup"}):
        error = failed(web_app.delete(f"{S}/{SKEW}/config", params=params), 422, "VALIDATION_ERROR")
        assert set(error["details"]) == {"changed_by"}, params
    for blank in ("", "   "):
        resp = web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": blank})
        assert resp.status_code in (400, 422), resp.text
        assert set(failed(resp, resp.status_code, "VALIDATION_ERROR")["details"]) == {"changed_by"}
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["version"] == 1
    assert [r["action"] for r in ok(web_app.get(f"{S}/{SKEW}/audit"))] == ["CREATE"]


def test_delete_of_a_missing_config_is_404(web_app: WebApp) -> None:
    """Deleting a level nothing was stored at (or already deleted) is 404 NOT_FOUND."""
    failed(web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": "alice"}), 404, "NOT_FOUND")
    failed(web_app.delete(f"{S}/{SKEW}/config/BTCUSDT", params={"changed_by": "alice"}), 404, "NOT_FOUND")
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    ok(web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": "alice"}))
    failed(web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": "alice"}), 404, "NOT_FOUND")


def test_delete_falls_back_to_the_next_level_down_and_is_audited(web_app: WebApp) -> None:
    """DELETE of an override leaves the global config in force; DELETE of the global one leaves defaults; both audited."""
    ok(web_app.change(SKEW, {"top_levels": 8}), 201)
    ok(web_app.change(SKEW, {"top_levels": 3}, symbol="BTCUSDT"), 201)
    data = ok(web_app.delete(f"{S}/{SKEW}/config/BTCUSDT", params={"changed_by": "carol", "reason": "not needed"}))
    assert (data["config"]["is_override"], data["config"]["parameters"]["top_levels"]) == (False, 8)
    assert (data["audit"]["action"], data["audit"]["old_parameters"], data["audit"]["new_parameters"],
            data["audit"]["new_version"], data["audit"]["reason"]) == \
        ("DELETE", {"top_levels": 3}, None, 2, "not needed")
    assert ok(web_app.get(f"{S}/{SKEW}/config/BTCUSDT"))["parameters"]["top_levels"] == 8

    failed(web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": "carol", "expected_version": 5}),
           409, "CONFLICT")
    data = ok(web_app.delete(f"{S}/{SKEW}/config", params={"changed_by": "carol", "expected_version": 1}))
    assert (data["config"]["source"], data["config"]["version"], data["config"]["parameters"]) == \
        ("default", 0, STRATEGIES[SKEW].defaults())
    listed = {s["strategy_id"]: s for s in ok(web_app.get(S))}[SKEW]
    assert (listed["has_global_config"], listed["symbol_overrides"]) == (False, [])

    again = ok(web_app.change(SKEW, {"top_levels": 4}), 201)
    assert (again["audit"]["action"], again["config"]["version"]) == ("CREATE", 3)


# ============================================================================ audit
def _history(app: WebApp) -> None:
    ok(app.change(SKEW, {"top_levels": 6}, changed_by="alice"), 201)           # global v1
    ok(app.change(SKEW, {"top_levels": 7}, symbol="BTCUSDT", changed_by="bob"), 201)  # BTC v1
    ok(app.change(SKEW, {"top_levels": 8}, changed_by="carol"), 200)           # global v2
    ok(app.change(SKEW, {"top_levels": 9}, symbol="BTCUSDT", changed_by="dave"), 200)  # BTC v2
    ok(app.change(MOMENTUM, {"momentum_window": 20}, changed_by="erin"), 201)  # other strategy


def test_audit_is_newest_first_per_strategy_and_filters_by_symbol(web_app: WebApp) -> None:
    """GET /{id}/audit lists that strategy's records newest first with §4's fields; ?symbol= keeps that symbol's."""
    _history(web_app)
    trail = ok(web_app.get(f"{S}/{SKEW}/audit"))
    assert [r["changed_by"] for r in trail] == ["dave", "carol", "bob", "alice"]
    for r in trail:
        assert {"id", "strategy_id", "symbol", "action", "old_parameters", "new_parameters", "old_version",
                "new_version", "changed_by", "changed_at", "reason"} <= set(r)
        assert r["strategy_id"] == SKEW
    assert [r["changed_at"] for r in trail] == sorted((r["changed_at"] for r in trail), reverse=True)
    btc = ok(web_app.get(f"{S}/{SKEW}/audit", params={"symbol": "btcusdt"}))
    assert [(r["symbol"], r["new_version"], r["changed_by"]) for r in btc] == \
        [("BTCUSDT", 2, "dave"), ("BTCUSDT", 1, "bob")]
    assert ok(web_app.get(f"{S}/{SKEW}/audit", params={"symbol": "ETHUSDT"})) == []
    assert [r["changed_by"] for r in ok(web_app.get(f"{S}/{MOMENTUM}/audit"))] == ["erin"]
    failed(web_app.get(f"{S}/{SKEW}/audit", params={"symbol": "DOGEUSDT"}), 404, "NOT_FOUND")


def test_audit_limit_keeps_the_newest_and_is_bounded(web_app: WebApp) -> None:
    """limit=n returns the n newest; 1 and 1000 are accepted; 0, 1001, negative or non-integer limits are 400."""
    _history(web_app)
    resp = web_app.get(f"{S}/{SKEW}/audit", params={"limit": "2"})
    assert [r["changed_by"] for r in ok(resp)] == ["dave", "carol"]
    assert check_envelope(resp)["metadata"]["count"] == 2
    assert len(ok(web_app.get(f"{S}/{SKEW}/audit", params={"limit": "1"}))) == 1
    assert len(ok(web_app.get(f"{S}/{SKEW}/audit", params={"limit": "1000"}))) == 4
    for bad in ("0", "-1", "1001", "abc", "2.5"):
        error = failed(web_app.get(f"{S}/{SKEW}/audit", params={"limit": bad}), 400, "VALIDATION_ERROR")
        assert set(error["details"]) == {"limit"}, bad


# ============================================================================ rollback
def test_rollback_defaults_to_the_previous_version(web_app: WebApp) -> None:
    """POST /{id}/rollback without target_version stores the previous version's parameters as a new ROLLBACK version."""
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    ok(web_app.change(SKEW, {"buy_threshold": 1.5}), 200)
    data = ok(web_app.post(f"{S}/{SKEW}/rollback", {"changed_by": "alice", "reason": "undo"}))
    assert data["config"]["version"] == 3
    assert data["config"]["parameters"] == {**STRATEGIES[SKEW].defaults(), "top_levels": 6}
    assert (data["audit"]["action"], data["audit"]["old_version"], data["audit"]["new_version"],
            data["audit"]["new_parameters"], data["audit"]["reason"]) == \
        ("ROLLBACK", 2, 3, {"top_levels": 6}, "undo")
    assert ok(web_app.get(f"{S}/{SKEW}/audit", params={"limit": "1"}))[0]["action"] == "ROLLBACK"


def test_rollback_to_an_explicit_version_and_of_a_symbol_override(web_app: WebApp) -> None:
    """target_version restores exactly that version; symbol rolls back that symbol's override only."""
    for n in (6, 7, 8):
        web_app.change(SKEW, {"top_levels": n})
    ok(web_app.change(SKEW, {"top_levels": 2}, symbol="BTCUSDT"), 201)
    ok(web_app.change(SKEW, {"top_levels": 3}, symbol="BTCUSDT"), 200)
    data = ok(web_app.post(f"{S}/{SKEW}/rollback", {"target_version": 1, "changed_by": "alice"}))
    assert (data["config"]["version"], data["config"]["parameters"]["top_levels"]) == (4, 6)
    data = ok(web_app.post(f"{S}/{SKEW}/rollback", {"symbol": "btcusdt", "changed_by": "alice"}))
    assert (data["config"]["symbol"], data["config"]["is_override"], data["config"]["version"],
            data["config"]["parameters"]["top_levels"]) == ("BTCUSDT", True, 3, 2)
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["parameters"]["top_levels"] == 6


def test_rollback_to_a_bad_version_is_refused(web_app: WebApp) -> None:
    """Nothing stored, no earlier version or a version outside 1…current-1 → 404; a deletion → 409; below 1 or not an integer → 422."""
    body = {"changed_by": "alice"}
    failed(web_app.post(f"{S}/{SKEW}/rollback", body), 404, "NOT_FOUND")
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    error = failed(web_app.post(f"{S}/{SKEW}/rollback", body), 404, "NOT_FOUND")  # no earlier version
    assert "no earlier version" in error["message"]
    ok(web_app.change(SKEW, {"top_levels": 7}), 200)
    for target in (2, 3, 99):
        error = failed(web_app.post(f"{S}/{SKEW}/rollback", {**body, "target_version": target}), 404,
                       "NOT_FOUND")
        assert "from 1 to 1" in error["message"], target
    for target in (0, -1, "1", 1.5, True):
        error = failed(web_app.post(f"{S}/{SKEW}/rollback", {**body, "target_version": target}), 422,
                       "VALIDATION_ERROR")
        assert set(error["details"]) == {"target_version"}, target
    ok(web_app.delete(f"{S}/{SKEW}/config", params=body))  # v3 is a deletion
    ok(web_app.change(SKEW, {"top_levels": 9}), 201)  # v4
    error = failed(web_app.post(f"{S}/{SKEW}/rollback", {**body, "target_version": 3}), 409, "CONFLICT")
    assert "deletion" in error["message"]
    assert ok(web_app.get(f"{S}/{SKEW}/config"))["version"] == 4
    failed(web_app.post(f"{S}/{SKEW}/rollback", {}), 422, "VALIDATION_ERROR")


# ============================================================================ cache refresh
def test_cache_refresh_rereads_the_store_now_and_wakes_the_workers(make_app) -> None:
    """A change made by another host stays unseen until the TTL, unless POST /cache/refresh drops the cache (and bumps the epoch)."""
    here = make_app()
    other_host = make_app()  # same SQLite config store, its own shared memory
    assert ok(here.get(f"{S}/{SKEW}/config"))["version"] == 0  # cached now (TTL 60 s)
    ok(other_host.change(SKEW, {"top_levels": 11}), 201)
    assert ok(here.get(f"{S}/{SKEW}/config"))["version"] == 0, "served from the cache"

    epoch = here.epoch
    data = ok(here.post(f"{S}/cache/refresh"))
    assert data == {"refreshed": True, "store": "sqlite", "state": "primary", "stored_configs": 1}
    assert here.epoch == epoch + 1
    config = ok(here.get(f"{S}/{SKEW}/config"))
    assert (config["version"], config["parameters"]["top_levels"]) == (1, 11)


# ============================================================================ token
MUTATIONS = [
    pytest.param("POST", f"{S}/{SKEW}/config", {"json": {"parameters": {"top_levels": 6}, "changed_by": "alice"}},
                 id="updateGlobalConfig"),
    pytest.param("POST", f"{S}/{SKEW}/config/BTCUSDT",
                 {"json": {"parameters": {"top_levels": 6}, "changed_by": "alice"}}, id="updateSymbolConfig"),
    pytest.param("DELETE", f"{S}/{MOMENTUM}/config", {"params": {"changed_by": "alice"}}, id="deleteGlobalConfig"),
    pytest.param("DELETE", f"{S}/{MOMENTUM}/config/ETHUSDT", {"params": {"changed_by": "alice"}},
                 id="deleteSymbolConfig"),
    pytest.param("POST", f"{S}/{MOMENTUM}/rollback", {"json": {"changed_by": "alice"}}, id="rollback"),
    pytest.param("POST", f"{S}/cache/refresh", {}, id="refreshCache"),
]


def _prepare_for_mutations(app: WebApp, token: str | None = None) -> None:
    """Stored configs so that every entry of MUTATIONS can succeed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for body in ({"momentum_window": 20}, {"momentum_window": 30}):
        ok(app.post(f"{S}/{MOMENTUM}/config", {"parameters": body, "changed_by": "setup"}, headers=headers),
           201 if body["momentum_window"] == 20 else 200)
    ok(app.post(f"{S}/{MOMENTUM}/config/ETHUSDT", {"parameters": {"momentum_window": 5}, "changed_by": "setup"},
                headers=headers), 201)


@pytest.mark.parametrize("method,path,kwargs", MUTATIONS)
def test_with_a_token_set_changes_need_the_right_bearer_token(make_app, method: str, path: str,
                                                             kwargs: dict) -> None:
    """RTSIG_API_TOKEN set: no Authorization → 401, a wrong token or scheme → 403, the right one → success."""
    app = make_app(api_token="s3cret")
    _prepare_for_mutations(app, "s3cret")
    epoch = app.epoch
    error = failed(app.request(method, path, **kwargs), 401, "UNAUTHORIZED")
    assert "Bearer" in error["message"]
    for header in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearer "):
        failed(app.request(method, path, headers={"Authorization": header}, **kwargs), 403, "UNAUTHORIZED")
    assert app.epoch == epoch, "a refused change touched nothing"
    resp = app.request(method, path, headers={"Authorization": "Bearer s3cret"}, **kwargs)
    assert resp.status_code in (200, 201), resp.text
    assert app.epoch == epoch + 1


def test_a_missing_token_answer_says_how_to_authenticate(make_app) -> None:
    """401 carries WWW-Authenticate: Bearer."""
    app = make_app(api_token="s3cret")
    resp = app.post(f"{S}/{SKEW}/config", {"parameters": {"top_levels": 6}, "changed_by": "alice"})
    failed(resp, 401, "UNAUTHORIZED")
    assert resp.headers["www-authenticate"].lower().startswith("bearer")


def test_with_a_token_set_reads_need_no_token(make_app) -> None:
    """GETs (catalogue, schema, defaults, configs, audit, market, health) are open even when a token is set."""
    app = make_app(api_token="s3cret")
    app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    for path in (S, f"{S}/{SKEW}/schema", f"{S}/{SKEW}/defaults", f"{S}/{SKEW}/config",
                 f"{S}/{SKEW}/config/BTCUSDT", f"{S}/{SKEW}/audit", f"{M}/depth/BTCUSDT",
                 f"{M}/pressure/BTCUSDT", f"{M}/summary", f"{M}/all"):
        ok(app.get(path))
    assert app.get("/healthz").status_code == 200


def test_without_a_token_set_changes_need_none(web_app: WebApp) -> None:
    """No RTSIG_API_TOKEN: a change without Authorization goes through (any Authorization is ignored)."""
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    ok(web_app.post(f"{S}/{SKEW}/config", {"parameters": {"top_levels": 7}, "changed_by": "alice"},
                    headers={"Authorization": "Bearer anything"}), 200)


# ============================================================================ rate limit
def test_rate_limit_is_per_author_with_retry_after(make_app) -> None:
    """RateLimiter(2): an author's third change within a minute is 429 with Retry-After; others are unaffected; the window slides."""
    now = [1000.0]
    app = make_app(limiter=RateLimiter(2, clock=lambda: now[0]))
    ok(app.change(SKEW, {"top_levels": 6}, changed_by="alice"), 201)
    now[0] += 10
    ok(app.change(SKEW, {"top_levels": 7}, changed_by="alice"), 200)
    now[0] += 5
    resp = app.change(SKEW, {"top_levels": 8}, changed_by="alice")
    error = failed(resp, 429, "RATE_LIMITED")
    assert resp.headers["retry-after"] == "45"
    assert error["details"] == {"limit_per_minute": 2, "retry_after_seconds": 45}
    failed(app.delete(f"{S}/{SKEW}/config", params={"changed_by": "alice"}), 429, "RATE_LIMITED")
    failed(app.post(f"{S}/{SKEW}/rollback", {"changed_by": "alice"}), 429, "RATE_LIMITED")
    assert ok(app.get(f"{S}/{SKEW}/config"))["parameters"]["top_levels"] == 7

    ok(app.change(SKEW, {"top_levels": 9}, changed_by="bob"), 200)
    now[0] += 45  # alice's first change leaves the window
    ok(app.change(SKEW, {"top_levels": 10}, changed_by="alice"), 200)
    failed(app.change(SKEW, {"top_levels": 11}, changed_by="alice"), 429, "RATE_LIMITED")


# ============================================================================ store down
@pytest.fixture
def store_down_app(make_app) -> WebApp:
    """An app whose config store is a MySQL URI on a port nothing listens on (refused at once)."""
    return make_app(mysql_uri=f"mysql://rtsig:pw@127.0.0.1:{free_port()}/rtsig")


@pytest.mark.parametrize("method,path,kwargs", MUTATIONS[:5])
def test_a_change_while_the_config_store_is_down_is_503_unavailable(store_down_app: WebApp, method: str,
                                                                   path: str, kwargs: dict) -> None:
    """Writes with the config store unreachable: 503 UNAVAILABLE with Retry-After, and no epoch, counter or announcement."""
    resp = store_down_app.request(method, path, **kwargs)
    error = failed(resp, 503, "UNAVAILABLE")
    assert "unreachable" in error["message"]
    assert int(resp.headers["retry-after"]) > 0
    assert (store_down_app.epoch, store_down_app.announced) == (0, [])
    assert all(store_down_app.config_changes(sid) == 0 for sid in STRATEGY_IDS)


def test_reads_while_the_config_store_is_down_serve_defaults_and_say_so(store_down_app: WebApp) -> None:
    """GET config still answers (200) from environment/defaults, with metadata naming the degraded store."""
    resp = store_down_app.get(f"{S}/{SKEW}/config")
    data = ok(resp)
    assert (data["version"], data["parameters"]) == (0, STRATEGIES[SKEW].defaults())
    meta = check_envelope(resp)["metadata"]
    assert (meta["config_store"], meta["config_state"]) == ("mysql", "defaults")
    assert "unreachable" in meta["degraded"]


# ============================================================================ propagation
CHANGES: dict[str, Callable[[WebApp], Any]] = {
    "create": lambda a: a.change(SKEW, {"top_levels": 9}),
    "update": lambda a: a.change(SKEW, {"top_levels": 9}),
    "symbol_create": lambda a: a.change(SKEW, {"top_levels": 9}, symbol="ETHUSDT"),
    "delete": lambda a: a.delete(f"{S}/{SKEW}/config", params={"changed_by": "alice"}),
    "rollback": lambda a: a.post(f"{S}/{SKEW}/rollback", {"changed_by": "alice"}),
}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_every_committed_change_bumps_the_epoch_counts_and_announces_once(web_app: WebApp, kind: str) -> None:
    """A committed POST/DELETE/rollback bumps header.config_epoch by 1, counts one change for its strategy in the web row, and announces once."""
    if kind != "create":
        ok(web_app.change(SKEW, {"top_levels": 6}), 201)
        ok(web_app.change(SKEW, {"top_levels": 7}), 200)
    web_app.announced.clear()
    epoch, count = web_app.epoch, web_app.config_changes(SKEW)
    resp = CHANGES[kind](web_app)
    data = ok(resp, resp.status_code)
    assert resp.status_code in (200, 201)
    assert web_app.epoch == epoch + 1
    assert web_app.config_changes(SKEW) == count + 1
    assert all(web_app.config_changes(sid) == 0 for sid in STRATEGY_IDS if sid != SKEW)
    assert len(web_app.announced) == 1
    announced = web_app.announced[0]
    assert (announced.config.strategy_id, announced.config.version, announced.audit.id) == \
        (SKEW, data["config"]["version"], data["audit"]["id"])


def test_refused_changes_bump_nothing(web_app: WebApp) -> None:
    """validate_only, 422, 409 and 404 answers leave the epoch, the counters and the announcements alone."""
    ok(web_app.change(SKEW, {"top_levels": 6}), 201)
    web_app.announced.clear()
    epoch, count = web_app.epoch, web_app.config_changes(SKEW)
    ok(web_app.change(SKEW, {"top_levels": 8}, validate_only=True))
    failed(web_app.change(SKEW, {"top_levels": 99}), 422, "VALIDATION_ERROR")
    failed(web_app.change(SKEW, {"top_levels": 8}, expected_version=7), 409, "CONFLICT")
    failed(web_app.delete(f"{S}/{SKEW}/config/BTCUSDT", params={"changed_by": "alice"}), 404, "NOT_FOUND")
    failed(web_app.post(f"{S}/{SKEW}/rollback", {"changed_by": "alice"}), 404, "NOT_FOUND")
    assert (web_app.epoch, web_app.config_changes(SKEW), web_app.announced) == (epoch, count, [])


# ============================================================================ market: depth
DEPTH_BIDS = [(100.0 - 0.5 * i, 1.0 + 0.25 * (i % 4) + (2.5 if i == 7 else 0.0)) for i in range(20)]
DEPTH_ASKS = [(100.5 + 0.5 * i, 0.5 + 0.75 * (i % 3)) for i in range(12)]


def test_depth_of_a_known_book_equals_an_independent_computation(web_app: WebApp) -> None:
    """Every field of GET /metrics/depth/{symbol} matches a plain-Python computation over all stored levels (age from the injected clock)."""
    received = NOW_S - 1.25
    web_app.book("ETHUSDT", DEPTH_BIDS, DEPTH_ASKS, received_s=received)
    resp = web_app.get(f"{M}/depth/ETHUSDT")
    got = ok(resp)
    bids, asks = stored_levels(DEPTH_BIDS, DEPTH_ASKS)
    want = expected_depth("ETHUSDT", bids, asks, received, NOW_S)
    assert_tree_close(got, want)
    assert got["order_book_quality"]["age_ms"] == 1250
    assert got["strongest_levels"]["bid"] == {"price": 96.5, "volume": 4.25}
    assert got["strongest_levels"]["ask"]["price"] == 101.5, "a tie goes to the level nearest the top"

    web_app.clock.advance(2.0)
    assert ok(web_app.get(f"{M}/depth/ethusdt"))["order_book_quality"]["age_ms"] == 3250


def test_depth_uses_only_the_newest_book_and_at_most_twenty_levels(web_app: WebApp) -> None:
    """A newer book replaces the older one; levels past the store's 20 are not counted in B, A or the depths."""
    web_app.book("BTCUSDT", *balanced_book(50_000.0, 1.0, 1.0), received_s=NOW_S - 5)
    bids = [(50_000.0 - i, 1.0 + i) for i in range(25)]
    asks = [(50_001.0 + i, 2.0) for i in range(25)]
    web_app.book("BTCUSDT", bids, asks, received_s=NOW_S - 0.5)
    got = ok(web_app.get(f"{M}/depth/BTCUSDT"))
    want = expected_depth("BTCUSDT", *stored_levels(bids[:20], asks[:20]), NOW_S - 0.5, NOW_S)
    assert_tree_close(got, want)
    assert got["order_book_quality"]["total_levels"] == 40
    assert got["imbalance"]["bid_volume"] == sum(1.0 + i for i in range(20))


@pytest.mark.parametrize("bid_qty,ask_qty,interpretation", [
    (61.0, 39.0, "bullish"), (60.0, 40.0, "neutral"), (50.0, 50.0, "neutral"),
    (40.0, 60.0, "neutral"), (39.0, 61.0, "bearish")])
def test_depth_interpretation_thresholds(web_app: WebApp, bid_qty: float, ask_qty: float,
                                         interpretation: str) -> None:
    """interpretation is bullish when net pressure > 20, bearish when < −20, neutral otherwise (±20 itself is neutral)."""
    web_app.book("BTCUSDT", [(100.0, bid_qty)], [(100.5, ask_qty)])
    pressure = ok(web_app.get(f"{M}/depth/BTCUSDT"))["pressure"]
    assert pressure["net_pressure"] == pytest.approx(bid_qty - ask_qty, abs=1e-6)
    assert pressure["buy_pressure"] == pytest.approx(bid_qty, abs=1e-6)
    assert pressure["interpretation"] == interpretation


@pytest.mark.parametrize("symbol", ["DOGEUSDT", "BNBUSDT", "no-such"])
def test_depth_and_pressure_of_an_unknown_or_unseen_symbol_are_404(web_app: WebApp, symbol: str) -> None:
    """A symbol never seen, or a traded one without a book yet (BNBUSDT), is 404 NOT_FOUND on depth and pressure."""
    web_app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    failed(web_app.get(f"{M}/depth/{symbol}"), 404, "NOT_FOUND")
    failed(web_app.get(f"{M}/pressure/{symbol}"), 404, "NOT_FOUND")


def test_market_routes_without_market_data_are_503(make_app) -> None:
    """A web process with no store attached answers 503 UNAVAILABLE on every market route."""
    app = make_app(with_store=False)
    for path in (f"{M}/depth/BTCUSDT", f"{M}/pressure/BTCUSDT", f"{M}/summary", f"{M}/all"):
        failed(app.get(path), 503, "UNAVAILABLE")
    ok(app.get(f"{S}/{SKEW}/config"))


# ============================================================================ market: pressure history
OFFSETS = [0, 1, 30, 59, 60, 61, 150, 299, 300, 301, 600, 899, 900, 901, 1800, 3599]
"""Seconds before "now" at which samples are written (3600 would reuse slot 0's ring slot)."""


def _sample_history(app: WebApp, symbol: str = "BTCUSDT") -> dict[int, tuple[float, float]]:
    """One sample at each offset, each from its own book; second → (net pressure, imbalance) as stored."""
    now = int(NOW_S)
    written = {}
    for k, offset in enumerate(sorted(OFFSETS, reverse=True)):
        bids, asks = [(100.0, 1.0 + 0.37 * k)], [(100.1, 1.0 + 0.11 * (k % 5))]
        app.book(symbol, bids, asks, received_s=now - offset)
        assert app.sample(now - offset + 0.4) == 1
        b, a = bids[0][1], asks[0][1]
        written[now - offset] = (as_float32(net_pressure(bids, asks)), as_float32((b - a) / (b + a)))
    return written


@pytest.mark.parametrize("timeframe,span", [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600)])
def test_pressure_timeframe_selects_exactly_its_samples(web_app: WebApp, timeframe: str, span: int) -> None:
    """?timeframe= returns exactly the samples of its last 60/300/900/3600 s, oldest first, with summary avg/max/min and trend."""
    written = _sample_history(web_app)
    now = int(NOW_S)
    inside = sorted(s for s in written if now - span < s <= now)
    data = ok(web_app.get(f"{M}/pressure/BTCUSDT", params={"timeframe": timeframe, "max_points": "3600"}))
    assert (data["timeframe"], data["total_data_points"], data["returned_data_points"]) == \
        (timeframe, len(inside), len(inside))
    assert [p["timestamp"] for p in data["pressure_history"]] == [iso_ms(s) for s in inside]
    assert [p["timestamp"] for p in data["imbalance_history"]] == [iso_ms(s) for s in inside]
    for point, s in zip(data["pressure_history"], inside):
        assert point["pressure"] == pytest.approx(written[s][0], abs=1e-5)
    for point, s in zip(data["imbalance_history"], inside):
        assert point["imbalance"] == pytest.approx(written[s][1], abs=1e-7)
    values = [written[s][0] for s in inside]
    summary = data["summary"]
    assert summary["avg_pressure"] == pytest.approx(sum(values) / len(values), abs=1e-5)
    assert summary["max_pressure"] == pytest.approx(max(values), abs=1e-5)
    assert summary["min_pressure"] == pytest.approx(min(values), abs=1e-5)
    direction, strength = least_squares_trend(inside, values)
    assert summary["trend"] == direction
    assert summary["trend_strength"] == pytest.approx(strength, abs=1e-4)


def test_pressure_defaults_to_5m_and_thins_to_max_points_keeping_the_newest(web_app: WebApp) -> None:
    """Default timeframe 5m; max_points=n returns n evenly spread points of the window (the newest kept) and says how many there were."""
    written = _sample_history(web_app)
    now = int(NOW_S)
    inside = sorted(s for s in written if now - 300 < s <= now)
    data = ok(web_app.get(f"{M}/pressure/BTCUSDT"))
    assert (data["timeframe"], data["total_data_points"]) == ("5m", len(inside))
    thin = ok(web_app.get(f"{M}/pressure/BTCUSDT", params={"timeframe": "1h", "max_points": "5"}))
    assert (thin["total_data_points"], thin["returned_data_points"]) == (len(OFFSETS), 5)
    stamps = [p["timestamp"] for p in thin["pressure_history"]]
    assert len(stamps) == 5 and stamps == sorted(stamps) and len(set(stamps)) == 5
    assert set(stamps) <= {iso_ms(s) for s in written}
    assert stamps[-1] == iso_ms(now)
    assert len(thin["imbalance_history"]) == 5
    assert thin["summary"]["avg_pressure"] == pytest.approx(sum(v for v, _ in written.values()) / len(written),
                                                            abs=1e-5), "the summary covers every sample, not the thinned ones"


def test_pressure_without_samples_has_an_empty_history(web_app: WebApp) -> None:
    """A symbol with a book but no samples yet: 0 points, null avg/max/min, stable trend, current pressure from the book."""
    web_app.book("BTCUSDT", [(100.0, 3.0)], [(100.5, 1.0)])
    data = ok(web_app.get(f"{M}/pressure/BTCUSDT", params={"timeframe": "1m"}))
    assert (data["total_data_points"], data["returned_data_points"], data["pressure_history"]) == (0, 0, [])
    summary = data["summary"]
    assert (summary["avg_pressure"], summary["max_pressure"], summary["min_pressure"], summary["trend"]) == \
        (None, None, None, "neutral")
    assert summary["current_pressure"] == pytest.approx(50.0, abs=1e-6)


@pytest.mark.parametrize("params", [{"timeframe": "2m"}, {"timeframe": "1H"}, {"max_points": "0"},
                                    {"max_points": "3601"}, {"max_points": "ten"}])
def test_pressure_bad_query_is_400(web_app: WebApp, params: dict) -> None:
    """An unknown timeframe or a max_points outside 1…3600 is 400 naming the parameter."""
    web_app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    error = failed(web_app.get(f"{M}/pressure/BTCUSDT", params=params), 400, "VALIDATION_ERROR")
    assert set(error["details"]) == set(params)


# ============================================================================ market: summary and all
MARKET = {  # symbol → (bid qty per level, ask qty per level, mid)
    "BTCUSDT": (9.0, 1.0, 50_000.0),  # net +80
    "ETHUSDT": (3.0, 1.0, 3_000.0),  # +50
    "BNBUSDT": (1.3, 1.0, 600.0),  # ≈ +13
    "SOLUSDT": (1.0, 1.0, 150.0),  # 0
    "XRPUSDT": (1.0, 1.2, 2.0),  # ≈ −9
    "ADAUSDT": (1.0, 2.0, 1.0),  # ≈ −33
    "DOGEUSDT": (1.0, 4.0, 0.5),  # −60
}


def _market(app: WebApp) -> dict[str, dict]:
    """Put every MARKET book in the store; symbol → its expected depth metrics."""
    out = {}
    for symbol, (bq, aq, mid) in MARKET.items():
        bids, asks = balanced_book(mid, bq, aq, levels=4, tick=mid / 10_000)
        app.book(symbol, bids, asks, received_s=NOW_S - 2)
        out[symbol] = expected_depth(symbol, *stored_levels(bids, asks), NOW_S - 2, NOW_S)
    return out


def test_summary_counts_sentiment_and_ranks_the_top_five(make_app) -> None:
    """GET /metrics/summary: counts per interpretation, averages, total liquidity and the top-5 buy/sell pressure lists."""
    app = make_app(trading_symbols=None)
    want = _market(app)
    data = ok(app.get(f"{M}/summary"))
    assert data["symbols_tracked"] == len(MARKET)
    moods = [w["pressure"]["interpretation"] for w in want.values()]
    sentiment = data["market_sentiment"]
    assert (sentiment["bullish_symbols"], sentiment["bearish_symbols"], sentiment["neutral_symbols"]) == \
        (moods.count("bullish"), moods.count("bearish"), moods.count("neutral")) == (2, 2, 3)
    nets = [w["pressure"]["net_pressure"] for w in want.values()]
    assert sentiment["avg_net_pressure"] == pytest.approx(sum(nets) / len(nets), abs=1e-5)
    ratios = [w["imbalance"]["ratio"] for w in want.values()]
    assert sentiment["avg_imbalance_ratio"] == pytest.approx(sum(ratios) / len(ratios), abs=1e-6)
    bps = [w["spread"]["spread_bps"] for w in want.values()]
    assert data["liquidity"]["avg_spread_bps"] == pytest.approx(sum(bps) / len(bps), abs=1e-5)
    assert data["liquidity"]["total_liquidity"] == pytest.approx(sum(w["liquidity"]["total"] for w in want.values()))

    top = data["top_pressure_symbols"]
    by_buy = sorted(want, key=lambda s: -want[s]["pressure"]["buy_pressure"])[:5]
    by_sell = sorted(want, key=lambda s: -want[s]["pressure"]["sell_pressure"])[:5]
    assert [t["symbol"] for t in top["highest_buy_pressure"]] == by_buy
    assert [t["symbol"] for t in top["highest_sell_pressure"]] == by_sell
    assert by_buy[:2] == ["BTCUSDT", "ETHUSDT"] and by_sell[:2] == ["DOGEUSDT", "ADAUSDT"]
    for t in top["highest_buy_pressure"]:
        assert t["buy_pressure"] == pytest.approx(want[t["symbol"]]["pressure"]["buy_pressure"], abs=1e-6)
        assert t["net_pressure"] == pytest.approx(want[t["symbol"]]["pressure"]["net_pressure"], abs=1e-6)
    for t in top["highest_sell_pressure"]:
        assert t["sell_pressure"] == pytest.approx(want[t["symbol"]]["pressure"]["sell_pressure"], abs=1e-6)


def test_summary_of_an_empty_market(web_app: WebApp) -> None:
    """No books yet: zero symbols tracked, null averages, empty top lists."""
    data = ok(web_app.get(f"{M}/summary"))
    assert data["symbols_tracked"] == 0
    assert data["market_sentiment"]["avg_net_pressure"] is None
    assert data["top_pressure_symbols"] == {"highest_buy_pressure": [], "highest_sell_pressure": []}


def test_all_lists_every_symbol_with_its_metrics(make_app) -> None:
    """GET /metrics/all: per symbol timestamp, net_pressure, imbalance_percent, spread_bps, total_liquidity, mid_price, trend."""
    app = make_app(trading_symbols=None)
    want = _market(app)
    data = ok(app.get(f"{M}/all"))
    assert [r["symbol"] for r in data["symbols"]] == sorted(MARKET)
    assert data["pagination"] == {"total": 7, "limit": 50, "offset": 0, "has_next": False}
    for row in data["symbols"]:
        w = want[row["symbol"]]
        assert row["timestamp"] == w["timestamp"] and row["trend"] == "neutral"
        for key, value in (("net_pressure", w["pressure"]["net_pressure"]),
                           ("imbalance_percent", w["imbalance"]["percent"]),
                           ("spread_bps", w["spread"]["spread_bps"]),
                           ("total_liquidity", w["liquidity"]["total"]),
                           ("mid_price", w["spread"]["mid_price"])):
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-6), (row["symbol"], key)


def test_all_filters_by_symbols_and_pressure_range(make_app) -> None:
    """symbols= (any case, unknown ones ignored), min_pressure and max_pressure (inclusive) filter the rows."""
    app = make_app(trading_symbols=None)
    want = _market(app)
    rows = ok(app.get(f"{M}/all", params={"symbols": "ethusdt, BTCUSDT,NOPEUSDT"}))["symbols"]
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT"]

    def net(s: str) -> float:
        return want[s]["pressure"]["net_pressure"]

    rows = ok(app.get(f"{M}/all", params={"min_pressure": "0"}))["symbols"]
    assert [r["symbol"] for r in rows] == sorted(s for s in MARKET if net(s) >= -1e-9)
    assert "SOLUSDT" in [r["symbol"] for r in rows], "net pressure 0 is inside min_pressure=0"
    rows = ok(app.get(f"{M}/all", params={"min_pressure": "-40", "max_pressure": "20"}))["symbols"]
    assert [r["symbol"] for r in rows] == sorted(s for s in MARKET if -40 <= net(s) <= 20)
    rows = ok(app.get(f"{M}/all", params={"max_pressure": "-50", "symbols": "DOGEUSDT,BTCUSDT"}))["symbols"]
    assert [r["symbol"] for r in rows] == ["DOGEUSDT"]


def test_all_filters_by_the_five_minute_trend(make_app) -> None:
    """trend= keeps the symbols whose 5-minute least-squares pressure trend is bullish (rising), bearish or neutral."""
    app = make_app(trading_symbols=None)
    _market(app)
    now = int(NOW_S)
    for k in range(10):  # BTC's bid grows, DOGE's shrinks; the others keep their books
        app.book("SOLUSDT", [(150.0, 1.0 + k)], [(150.1, 1.0)], received_s=now - 9 + k)
        app.book("XRPUSDT", [(2.0, 10.0 - k)], [(2.001, 1.0)], received_s=now - 9 + k)
        app.sample(now - 9 + k)
    assert [r["symbol"] for r in ok(app.get(f"{M}/all", params={"trend": "bullish"}))["symbols"]] == ["SOLUSDT"]
    assert [r["symbol"] for r in ok(app.get(f"{M}/all", params={"trend": "bearish"}))["symbols"]] == ["XRPUSDT"]
    stable = ok(app.get(f"{M}/all", params={"trend": "neutral"}))["symbols"]
    assert [r["symbol"] for r in stable] == sorted(set(MARKET) - {"SOLUSDT", "XRPUSDT"})
    rows = {r["symbol"]: r for r in ok(app.get(f"{M}/all"))["symbols"]}
    assert (rows["SOLUSDT"]["trend"], rows["XRPUSDT"]["trend"], rows["BTCUSDT"]["trend"]) == \
        ("bullish", "bearish", "neutral")


@pytest.mark.parametrize("sort_by,key", [("symbol", None), ("pressure", ("pressure", "net_pressure")),
                                         ("imbalance", ("imbalance", "ratio")),
                                         ("liquidity", ("liquidity", "total"))])
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_all_sorts_by_each_key_both_ways(make_app, sort_by: str, key: tuple[str, str] | None,
                                        sort_order: str) -> None:
    """sort_by=symbol|pressure|imbalance|liquidity with sort_order=asc|desc orders the rows by that value."""
    app = make_app(trading_symbols=None)
    want = _market(app)

    def value(s: str) -> str | float:
        return s if key is None else want[s][key[0]][key[1]]

    expected = sorted(MARKET, key=value, reverse=sort_order == "desc")
    rows = ok(app.get(f"{M}/all", params={"sort_by": sort_by, "sort_order": sort_order}))["symbols"]
    assert [r["symbol"] for r in rows] == expected


def test_all_pages_with_limit_and_offset(make_app) -> None:
    """limit/offset page the sorted rows; pagination gives total, limit, offset and has_next."""
    app = make_app(trading_symbols=None)
    _market(app)
    ordered = sorted(MARKET)
    seen = []
    for offset in (0, 3, 6):
        data = ok(app.get(f"{M}/all", params={"limit": "3", "offset": str(offset)}))
        seen += [r["symbol"] for r in data["symbols"]]
        assert data["pagination"] == {"total": 7, "limit": 3, "offset": offset, "has_next": offset + 3 < 7}
    assert seen == ordered
    data = ok(app.get(f"{M}/all", params={"limit": "3", "offset": "7"}))
    assert data["symbols"] == [] and data["pagination"]["has_next"] is False
    data = ok(app.get(f"{M}/all", params={"limit": "2", "offset": "1", "sort_by": "pressure",
                                          "sort_order": "desc"}))
    assert [r["symbol"] for r in data["symbols"]] == ["ETHUSDT", "BNBUSDT"]


def test_all_with_min_pressure_above_max_pressure_is_an_empty_page(make_app) -> None:
    app = make_app()
    app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    data = ok(app.get(f"{M}/all", params={"min_pressure": "10", "max_pressure": "-10"}))
    assert data["symbols"] == [] and data["pagination"]["total"] == 0


@pytest.mark.parametrize("params", [{"sort_by": "volume"},
                                    {"sort_order": "up"}, {"trend": "up"}, {"limit": "0"},
                                    {"offset": "-1"}, {"min_pressure": "abc"}, {"max_pressure": "101"}])
def test_all_bad_query_is_400(make_app, params: dict) -> None:
    """min_pressure above max_pressure, an unknown sort key/order/trend, or out-of-range numbers are 400."""
    app = make_app(trading_symbols=None)
    _market(app)
    error = failed(app.get(f"{M}/all", params=params), 400, "VALIDATION_ERROR")
    assert set(error["details"]) <= set(params) and error["details"]


# ============================================================================ health
def test_healthz_is_200_while_the_process_runs(web_app: WebApp) -> None:
    """GET /healthz: 200 {"status": "healthy", pid, instance, uptime from the injected clock}."""
    resp = web_app.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "healthy", "instance": "default", "pid": os.getpid(), "uptime_seconds": 12.5}


def _mark_ready(app: WebApp) -> None:
    """Set the gauges the ingest and the workers keep in their counter rows while they run."""
    rows = app.store.counters
    rows[C.ROW_INGEST][C.NATS_CONNECTED] = 1
    rows[C.ROW_INGEST][C.SUBSCRIBED] = 1
    rows[C.ROW_INGEST][C.PROCESS_PID] = os.getpid()
    rows[C.ROW_INGEST][C.ALIVE_NS] = time.time_ns()
    for k in range(app.store.layout.n_workers):
        rows[C.ROW_WORKER0 + k][C.PROCESS_PID] = os.getpid()
        rows[C.ROW_WORKER0 + k][C.ALIVE_NS] = time.time_ns()


def test_ready_is_503_naming_each_failing_check(make_app) -> None:
    """GET /ready with no ingest and no workers: 503 with nats and workers failing, config store ok."""
    app = make_app(n_workers=2)
    app.config.refresh()  # a web worker's first read, started when it boots (/ready never waits for it)
    resp = app.get("/ready")
    assert resp.status_code == 503
    body = resp.json
    assert body["status"] == "not_ready" and body["failing"] == ["nats", "workers"]
    assert body["checks"]["nats"]["ok"] is False and body["checks"]["nats"]["detail"] == "ingest not started"
    assert body["checks"]["workers"]["ok"] is False and "0 of 2" in body["checks"]["workers"]["detail"]
    assert body["checks"]["config_store"] == {"ok": True, "degraded": False, "detail": "sqlite: primary"}


def test_ready_is_200_when_ingest_and_every_worker_are_up(make_app) -> None:
    """Ingest connected and subscribed, every worker's pid alive and loop fresh: 200 ready, nothing failing."""
    app = make_app(n_workers=2)
    _mark_ready(app)
    resp = app.get("/ready")
    assert resp.status_code == 200, resp.text
    assert resp.json["status"] == "ready" and resp.json["failing"] == []
    assert resp.json["checks"]["workers"]["detail"] == "2 of 2 alive"


def test_ready_names_the_one_check_that_fails(make_app) -> None:
    """Subscribed missing → only nats fails; one worker's loop stale → only workers fails; no store → store fails."""
    app = make_app(n_workers=2)
    _mark_ready(app)
    app.store.counters[C.ROW_INGEST][C.SUBSCRIBED] = 0
    resp = app.get("/ready")
    assert resp.status_code == 503 and resp.json["failing"] == ["nats"]
    assert resp.json["checks"]["nats"]["detail"] == "connected but not subscribed"
    _mark_ready(app)
    app.store.counters[C.ROW_WORKER0 + 1][C.ALIVE_NS] = time.time_ns() - 60 * 10**9
    resp = app.get("/ready")
    assert resp.status_code == 503 and resp.json["failing"] == ["workers"]
    assert "1 of 2 alive" in resp.json["checks"]["workers"]["detail"]
    resp = make_app(with_store=False).get("/ready")
    assert resp.status_code == 503 and resp.json["failing"] == ["store"]


def test_ready_reports_a_degraded_config_store_without_failing(store_down_app: WebApp) -> None:
    """Config store down: the config_store check stays ok but says degraded (served from defaults)."""
    _mark_ready(store_down_app)
    resp = store_down_app.get("/ready")
    assert resp.status_code == 200, resp.text
    check = resp.json["checks"]["config_store"]
    assert check["ok"] is True and check["degraded"] is True and "defaults" in check["detail"]


# ============================================================================ /metrics
SPEC_METRICS = {  # docs/CONTRACT.md §6: name → (type, label names)
    "realtime_strategies_messages_processed_total": ("counter", {"type"}),
    "realtime_strategies_messages_errors_total": ("counter", {"reason"}),
    "realtime_strategies_messages_ignored_total": ("counter", {"kind"}),
    "realtime_strategies_processing_latency_seconds": ("histogram", set()),
    "realtime_strategies_strategy_latency_seconds": ("histogram", {"strategy"}),
    "realtime_strategies_signals_generated_total": ("counter", {"strategy", "action"}),
    "realtime_strategies_consumer_lag_seconds": ("gauge", set()),
    "realtime_strategies_nats_connected": ("gauge", set()),
    "realtime_strategies_circuit_breaker_state": ("gauge", {"name"}),
    "realtime_strategies_workers_alive": ("gauge", set()),
    "realtime_strategies_config_changes_total": ("counter", {"strategy"}),
}


def scrape(app: WebApp) -> tuple[dict[str, str], dict[tuple[str, tuple], float]]:
    """``(family name → type, (sample name, sorted labels) → value)`` of GET /metrics."""
    resp = app.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    types, samples = {}, {}
    for family in text_string_to_metric_families(resp.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def test_metrics_export_every_spec_name_with_its_type_and_labels(make_app) -> None:
    """GET /metrics parses as Prometheus text and has every §6 name, of the right type, with the documented labels."""
    app = make_app(n_workers=2)
    types, samples = scrape(app)
    for name, (kind, labels) in SPEC_METRICS.items():
        family = name[:-len("_total")] if kind == "counter" else name
        assert types.get(family) == kind, (name, types.get(family))
        sample_name = name if kind != "histogram" else f"{name}_bucket"
        keys = [k for k in samples if k[0] == sample_name]
        assert keys, name
        assert all({label for label, _ in k[1]} - {"le"} == labels for k in keys), (name, keys[:3])
    strategies = {dict(k[1])["strategy"] for k in samples if k[0] == "realtime_strategies_config_changes_total"}
    assert strategies == set(STRATEGY_IDS)


def test_metrics_follow_the_counters_of_every_process_row(make_app) -> None:
    """Counters are summed over the process rows, gauges come from their owners, histograms from their blocks."""
    app = make_app(n_workers=2)
    rows = app.store.counters
    ok(app.change(SKEW, {"top_levels": 6}), 201)
    ok(app.change(SKEW, {"top_levels": 7}), 200)
    ok(app.change(MOMENTUM, {"momentum_window": 20}), 201)
    ingest, w0, w1, sup = (rows[C.ROW_INGEST], rows[C.ROW_WORKER0], rows[C.ROW_WORKER0 + 1],
                           rows[C.ROW_SUPERVISOR])
    kind = {v: k for k, v in codes.KIND_NAMES.items()}
    error = {v: k for k, v in codes.ERROR_NAMES.items()}
    ignored = {v: k for k, v in codes.IGNORED_NAMES.items()}
    ingest[C.KIND_BASE + kind["trade"]] = 7
    sup[C.KIND_BASE + kind["trade"]] = 3
    ingest[C.ERROR_BASE + error["crossed_book"]] = 4
    ingest[C.IGNORED_BASE + ignored["depth_diff"]] = 6
    w0[C.signal_counter(0, codes.ACTION_BUY)] = 2
    w1[C.signal_counter(0, codes.ACTION_BUY)] = 1
    w1[C.signal_counter(1, -1)] = 5
    C.observe(w0, C.PROCESSING_LATENCY, 3_000_000, n=2)
    C.observe(w1, C.PROCESSING_LATENCY, 200_000_000)
    C.observe(w1, C.STRATEGY_LATENCY_BASE + 1 * C.HISTOGRAM_WIDTH, 50_000)
    w0[C.CONSUMER_LAG_NS] = 250_000_000
    w1[C.CONSUMER_LAG_NS] = 1_500_000_000
    ingest[C.NATS_CONNECTED] = w0[C.NATS_CONNECTED] = w1[C.NATS_CONNECTED] = 1
    ingest[C.CIRCUIT_STATE], w0[C.CIRCUIT_STATE], w1[C.CIRCUIT_STATE] = 1, 0, 2
    ingest[C.PROCESS_PID] = w0[C.PROCESS_PID] = w1[C.PROCESS_PID] = os.getpid()
    ingest[C.ALIVE_NS] = w0[C.ALIVE_NS] = time.time_ns()
    w1[C.ALIVE_NS] = time.time_ns() - 60 * 10**9  # its loop stopped turning

    _, s = scrape(app)
    p = "realtime_strategies_"
    assert s[(f"{p}messages_processed_total", (("type", "trade"),))] == 10
    assert s[(f"{p}messages_processed_total", (("type", "depth"),))] == 0
    assert s[(f"{p}messages_errors_total", (("reason", "crossed_book"),))] == 4
    assert s[(f"{p}messages_ignored_total", (("kind", "depth_diff"),))] == 6
    assert s[(f"{p}signals_generated_total", (("action", "buy"), ("strategy", "orderbook_skew")))] == 3
    assert s[(f"{p}signals_generated_total", (("action", "sell"), ("strategy", "trade_momentum")))] == 5
    assert s[(f"{p}signals_generated_total", (("action", "sell"), ("strategy", "orderbook_skew")))] == 0
    assert s[(f"{p}processing_latency_seconds_bucket", (("le", "0.0025"),))] == 0
    assert s[(f"{p}processing_latency_seconds_bucket", (("le", "0.005"),))] == 2
    assert s[(f"{p}processing_latency_seconds_bucket", (("le", "0.25"),))] == 3
    assert s[(f"{p}processing_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert s[(f"{p}processing_latency_seconds_count", ())] == 3
    assert s[(f"{p}processing_latency_seconds_sum", ())] == pytest.approx(0.206)
    assert s[(f"{p}strategy_latency_seconds_bucket", (("le", "0.0001"), ("strategy", "trade_momentum")))] == 1
    assert s[(f"{p}strategy_latency_seconds_count", (("strategy", "orderbook_skew"),))] == 0
    assert s[(f"{p}consumer_lag_seconds", ())] == pytest.approx(1.5)
    assert s[(f"{p}nats_connected", ())] == 0  # worker 1 is not running its loop
    assert s[(f"{p}circuit_breaker_state", (("name", "nats_ingest"),))] == 1
    assert s[(f"{p}circuit_breaker_state", (("name", "nats_worker_1"),))] == 2
    assert s[(f"{p}workers_alive", ())] == 1
    assert s[(f"{p}config_changes_total", (("strategy", SKEW),))] == 2
    assert s[(f"{p}config_changes_total", (("strategy", MOMENTUM),))] == 1
    assert s[(f"{p}config_changes_total", (("strategy", "ticker_velocity"),))] == 0

    w1[C.ALIVE_NS] = time.time_ns()  # its loop turns again
    _, s = scrape(app)
    assert s[(f"{p}nats_connected", ())] == 1 and s[(f"{p}workers_alive", ())] == 2
    w1[C.NATS_CONNECTED] = 0  # one worker lost NATS
    _, s = scrape(app)
    assert s[(f"{p}nats_connected", ())] == 0


def test_metrics_count_books_the_decoder_stored(web_app: WebApp) -> None:
    """Books decoded by the ingest show up as messages_processed_total{type="depth"}."""
    for k in range(3):
        web_app.book("BTCUSDT", *balanced_book(100.0, 1.0 + k, 1.0))
    _, s = scrape(web_app)
    assert s[("realtime_strategies_messages_processed_total", (("type", "depth"),))] == 3
    assert s[("realtime_strategies_messages_received_total", ())] == 3


# ============================================================================ /openapi.json and /docs
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if isinstance(node.get("$ref"), str) else []) + \
            [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_is_a_valid_openapi_3_1_document(web_app: WebApp) -> None:
    """/openapi.json validates against the OpenAPI 3.1 schema (openapi_spec_validator if installed, else the OAS 3.1 JSON Schema schemathesis ships) and every $ref resolves."""
    resp = web_app.get("/openapi.json")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    doc = resp.json
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    try:
        from openapi_spec_validator import validate as validate_spec
    except ImportError:
        from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
        errors = [str(e) for e in OPENAPI_31_VALIDATOR.iter_errors(doc)]
        assert errors == []
    else:
        validate_spec(doc)
    for ref in set(_refs(doc)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def documented(route: Route) -> list[tuple[str, str | None]]:
    """``(path in /openapi.json, strategy)`` of a route: once per strategy for the config routes."""
    if route.per_strategy:
        return [(route.path.replace("{strategy_id}", sid), sid) for sid in STRATEGY_IDS]
    return [(route.path, None)]


def test_openapi_lists_every_route_with_every_documented_status(web_app: WebApp) -> None:
    """Each route of web.app.ROUTES is an operation (the config routes one per strategy) with its id, path and query parameters, request body and every success and error status."""
    doc = web_app.get("/openapi.json").json
    assert set(doc["paths"]) == {path for r in ROUTES for path, _ in documented(r)}
    op_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(op_ids) == len(set(op_ids)) == sum(len(documented(r)) for r in ROUTES)
    for route in ROUTES:
        for path, sid in documented(route):
            op = doc["paths"][path][route.method.lower()]
            assert op["operationId"] == route.operation_id + (f"_{sid}" if sid else "")
            assert set(op["responses"]) == {str(s) for s in route.success + route.errors}, route.operation_id
            in_path = set(re.findall(r"{(\w+)}", path))
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == in_path and all(p["required"] for p in op["parameters"] if p["in"] == "path")
            assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == \
                {f.name for f in msgspec.structs.fields(route.query)}
            assert ("requestBody" in op) == bool(route.body)
            for status in route.errors:
                schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/"
                                          + ("BareError" if route.path.startswith(MARKET_PREFIX) else "ErrorEnvelope")}
            if route.mutating:
                assert {"bearer": []} in op["security"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for route in ROUTES:  # every status docs/CONTRACT.md §4 gives a change
        if route.mutating and route.operation_id != "refreshCache":
            for path, _ in documented(route):
                assert {"400", "401", "403", "404", "409", "422", "429", "503"} <= \
                    set(doc["paths"][path][route.method.lower()]["responses"])


def test_openapi_documents_each_strategys_own_parameters(web_app: WebApp) -> None:
    """A change body's parameters are that strategy's: names, JSON types and ranges from the registry."""
    schemas = web_app.get("/openapi.json").json["components"]["schemas"]
    for sid, st in STRATEGIES.items():
        name = "".join(part.title() for part in sid.split("_")) + "Parameters"
        props = schemas[name]["properties"]
        assert set(props) == {p.name for p in st.params} and schemas[name]["additionalProperties"] is False
        for p in st.params:
            schema = props[p.name]
            options = schema.get("anyOf", [schema])
            kinds = {o["type"] for o in options}
            assert kinds == ({bool: {"boolean"}, int: {"integer"}, float: {"number"}}[p.type]
                             | ({"null"} if p.optional else set())), (sid, p.name, schema)
            typed = next(o for o in options if o["type"] != "null")
            if p.min is not None:
                assert typed["exclusiveMinimum" if p.min_exclusive else "minimum"] == p.min
            if p.max is not None:
                assert typed["exclusiveMaximum" if p.max_exclusive else "maximum"] == p.max


def test_docs_page_uses_only_local_assets_and_they_are_served(web_app: WebApp) -> None:
    """/docs is HTML that references no http(s):// URL; every asset it references is under /docs/static and served with 200."""
    resp = web_app.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert all(a.startswith("/docs/static/") for a in assets), assets
    assert "/openapi.json" in html
    types = {"css": "text/css", "js": "application/javascript", "png": "image/png"}
    for asset in assets:
        got = web_app.get(asset)
        assert got.status_code == 200 and len(got.content) > 0, asset
        assert got.headers["content-type"].startswith(types[asset.rsplit(".", 1)[1]]), asset
    assert web_app.get("/docs/static/nope.js").status_code == 404


# ============================================================================ persistence
def test_a_change_through_the_api_is_persisted_in_the_sqlite_store(tmp_path) -> None:
    """A change made through the API is in RTSIG_DATA_DIR/config.sqlite3: a fresh config service (a restart) reads it back."""
    settings = web_settings(tmp_path)
    app = build_app(settings)
    reader = ConfigService(settings)
    try:
        ok(app.change(SKEW, {"top_levels": 6}, reason="persist"), 201)
        assert (tmp_path / SQLITE_FILE).is_file()
        reader.refresh()
        effective = reader.effective(SKEW)
        assert (effective.version, effective.source, effective.parameters["top_levels"]) == (1, "sqlite", 6)
        assert [(r.action, r.reason) for r in reader.audit(SKEW)] == [("CREATE", "persist")]
    finally:
        app.config.close()
        reader.close()
