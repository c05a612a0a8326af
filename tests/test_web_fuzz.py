"""Property-based fuzzing of every operation of ``/openapi.json`` against the Falcon app (schemathesis).

The app is the real one over real parts (tests/web_helpers.py): an in-memory store with books
decoded by the real decoder and a pressure history written by the real sampler, a SQLite config
store in a temporary directory, no token and no rate limit, so generated requests reach the
handlers instead of stopping at 401 or 429. Every response must pass every check schemathesis
has (no 5xx, documented status, body schema, content type and headers, schema-valid requests
accepted and schema-invalid ones rejected, undocumented methods refused with 405 and ``Allow``,
…); any finding fails the test.

Random data rarely reaches the interesting answers (a known symbol's book, a stored config, a
409, a 429, a 503), so a second test sends hand-made cases for every documented status of every
operation through the same checks.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks, not_a_server_error

from rtsig import counters as C
from tests.servers import free_port
from tests.web_helpers import NOW_S, STRATEGY_IDS, WebApp, balanced_book, build_app, web_settings
from web.app import ROUTES
from web.guard import RateLimiter

load_all_checks()
CHECKS = list(REGISTRY.get_all())
"""Every check schemathesis has."""
PER_STRATEGY = {r.path for r in ROUTES if r.per_strategy}
"""Template paths documented once per strategy (each with its own parameters)."""


def documented_operations() -> set[tuple[str, str]]:
    return {(r.method, r.path.replace("{strategy_id}", sid) if r.per_strategy else r.path)
            for r in ROUTES for sid in (STRATEGY_IDS if r.per_strategy else (None,))}


def seed(app: WebApp) -> WebApp:
    """Two books, ten seconds of pressure history, a live ingest and worker, one stored config."""
    now = int(NOW_S)
    for k in range(10):
        app.book("BTCUSDT", *balanced_book(50_000.0, 1.0 + k, 2.0, levels=5), received_s=now - 9 + k)
        app.book("ETHUSDT", *balanced_book(3_000.0, 3.0, 1.0 + 0.5 * k, levels=20), received_s=now - 9 + k)
        app.sample(now - 9 + k)
    rows = app.store.counters
    rows[C.ROW_INGEST][C.NATS_CONNECTED] = rows[C.ROW_INGEST][C.SUBSCRIBED] = 1
    rows[C.ROW_INGEST][C.PROCESS_PID] = os.getpid()
    rows[C.ROW_WORKER0][C.PROCESS_PID] = os.getpid()
    worker_turned(app)
    return app


def worker_turned(app: WebApp) -> None:
    """What a running worker does on every loop turn: stamp its alive time (keeps /ready at 200)."""
    app.store.counters[C.ROW_INGEST][C.ALIVE_NS] = app.store.counters[C.ROW_WORKER0][C.ALIVE_NS] = time.time_ns()


# The schema must exist when pytest collects this module, so the fuzzed app is built at import;
# its config store is a SQLite file in a temporary directory removed at the end of the module.
_DATA_DIR = tempfile.TemporaryDirectory(prefix="rtsig-web-fuzz-")
FUZZED = seed(build_app(web_settings(Path(_DATA_DIR.name)), limiter=RateLimiter(0)))
schema = schemathesis.openapi.from_wsgi("/openapi.json", FUZZED.client.app)


@pytest.fixture(scope="module", autouse=True)
def _cleanup_fuzzed_app() -> Iterator[None]:
    """Close the fuzzed app's config store and remove its directory after the module."""
    yield
    FUZZED.config.close()
    _DATA_DIR.cleanup()


def test_the_fuzzed_schema_has_every_route() -> None:
    """schemathesis sees exactly the operations of web.app.ROUTES (none lost in loading)."""
    seen = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert seen == documented_operations()


@schema.parametrize()
@settings(max_examples=int(os.environ.get("RTSIG_FUZZ_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
def test_fuzzed_requests_get_documented_statuses_schemas_and_content_types(case) -> None:
    """Generated requests (valid and invalid) pass every check (RTSIG_FUZZ_EXAMPLES=400: ~20k cases)."""
    worker_turned(FUZZED)
    case.call_and_validate(checks=CHECKS)


# ============================================================================ hand-made cases
def _store_down_app(tmp: Path) -> WebApp:
    return build_app(web_settings(tmp, mysql_uri=f"mysql://rtsig:pw@127.0.0.1:{free_port()}/rtsig"))


CONFIG = "/api/v1/strategies/{strategy_id}/config"
SYMBOL_CONFIG = "/api/v1/strategies/{strategy_id}/config/{symbol}"
ROLLBACK = "/api/v1/strategies/{strategy_id}/rollback"
CHANGE = {"parameters": {"top_levels": 6}, "changed_by": "alice"}
SKEW = {"strategy_id": "orderbook_skew"}
SKEW_BTC = {"strategy_id": "orderbook_skew", "symbol": "BTCUSDT"}

# (app, method, path template, Case kwargs, expected status). Each case gets a fresh app of its kind:
# "main" (seeded; orderbook_skew stored at version 2 and with a BTCUSDT override), "token"
# (RTSIG_API_TOKEN=s3cret), "limited" (RateLimiter(1), alice's change already made), "down" (config
# store unreachable), "bare" (no store attached).
CASES: list[tuple[str, str, str, dict, int]] = [
    ("main", "GET", "/api/v1/strategies", {}, 200),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/schema", {"path_parameters": SKEW}, 200),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/defaults", {"path_parameters": SKEW}, 200),
    ("main", "GET", CONFIG, {"path_parameters": SKEW}, 200),
    ("main", "GET", SYMBOL_CONFIG, {"path_parameters": SKEW_BTC}, 200),
    ("main", "GET", SYMBOL_CONFIG, {"path_parameters": {**SKEW, "symbol": "DOGEUSDT"}}, 404),
    ("main", "POST", CONFIG, {"path_parameters": {"strategy_id": "trade_momentum"},
                              "body": {"parameters": {"momentum_window": 20}, "changed_by": "alice"}}, 201),
    ("main", "POST", CONFIG, {"path_parameters": SKEW, "body": {**CHANGE, "reason": "r"}}, 200),
    ("main", "POST", CONFIG, {"path_parameters": SKEW, "body": {**CHANGE, "validate_only": True}}, 200),
    ("main", "POST", SYMBOL_CONFIG, {"path_parameters": {**SKEW, "symbol": "ETHUSDT"}, "body": CHANGE}, 201),
    ("main", "POST", SYMBOL_CONFIG, {"path_parameters": SKEW_BTC, "body": CHANGE}, 200),
    ("main", "POST", CONFIG, {"path_parameters": SKEW, "body": {**CHANGE, "expected_version": 99}}, 409),
    ("main", "POST", CONFIG, {"path_parameters": SKEW,
                              "body": {"parameters": {"top_levels": 0, "nope": 1}, "changed_by": "alice"}}, 422),
    ("main", "POST", CONFIG, {"path_parameters": SKEW, "body": {**CHANGE, "colour": "blue"}}, 422),
    ("main", "POST", CONFIG, {"path_parameters": SKEW, "body": [1, 2]}, 400),
    ("main", "DELETE", SYMBOL_CONFIG, {"path_parameters": SKEW_BTC, "query": {"changed_by": "alice"}}, 200),
    ("main", "DELETE", SYMBOL_CONFIG, {"path_parameters": {**SKEW, "symbol": "ETHUSDT"},
                                       "query": {"changed_by": "alice"}}, 404),
    ("main", "DELETE", CONFIG, {"path_parameters": SKEW, "query": {"reason": "no author"}}, 422),
    ("main", "DELETE", CONFIG, {"path_parameters": SKEW,
                                "query": {"changed_by": "alice", "expected_version": 99}}, 409),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/audit", {"path_parameters": SKEW}, 200),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/audit", {"path_parameters": SKEW,
                                                               "query": {"symbol": "BTCUSDT", "limit": 2}}, 200),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/audit", {"path_parameters": SKEW, "query": {"limit": 0}}, 400),
    ("main", "GET", "/api/v1/strategies/{strategy_id}/audit", {"path_parameters": SKEW,
                                                               "query": {"symbol": "DOGEUSDT"}}, 404),
    ("main", "POST", ROLLBACK, {"path_parameters": SKEW, "body": {"changed_by": "alice"}}, 200),
    ("main", "POST", ROLLBACK, {"path_parameters": SKEW, "body": {"changed_by": "alice", "target_version": 99}}, 404),
    ("main", "POST", ROLLBACK, {"path_parameters": SKEW, "body": {"changed_by": "alice", "target_version": "2"}}, 422),
    ("main", "POST", ROLLBACK, {"path_parameters": SKEW, "query": {"symbol": "ETHUSDT"},
                                "body": {"changed_by": "alice", "symbol": "BTCUSDT"}}, 409),
    ("main", "POST", ROLLBACK, {"path_parameters": {"strategy_id": "onchain_metrics"},
                                "body": {"changed_by": "alice"}}, 404),
    ("main", "POST", "/api/v1/strategies/cache/refresh", {}, 200),
    ("main", "GET", "/api/v1/metrics/depth/{symbol}", {"path_parameters": {"symbol": "BTCUSDT"}}, 200),
    ("main", "GET", "/api/v1/metrics/depth/{symbol}", {"path_parameters": {"symbol": "BNBUSDT"}}, 404),
    ("main", "GET", "/api/v1/metrics/pressure/{symbol}", {"path_parameters": {"symbol": "ETHUSDT"},
                                                          "query": {"timeframe": "1m", "max_points": 4}}, 200),
    ("main", "GET", "/api/v1/metrics/pressure/{symbol}", {"path_parameters": {"symbol": "ETHUSDT"},
                                                          "query": {"timeframe": "2m"}}, 400),
    ("main", "GET", "/api/v1/metrics/pressure/{symbol}", {"path_parameters": {"symbol": "NOPE"}}, 404),
    ("main", "GET", "/api/v1/metrics/summary", {}, 200),
    ("main", "GET", "/api/v1/metrics/all", {"query": {"sort_by": "pressure", "sort_order": "desc", "limit": 1,
                                                      "trend": "bullish", "min_pressure": -100}}, 200),
    ("main", "GET", "/api/v1/metrics/all", {"query": {"min_pressure": 50, "max_pressure": 0}}, 200),
    ("main", "GET", "/api/v1/metrics/all", {"query": {"sort_by": "volume"}}, 400),
    ("main", "GET", "/healthz", {"query": {"verbose": "1"}}, 400),
    ("main", "GET", "/ready", {"query": {"verbose": "1"}}, 400),
    ("main", "GET", "/metrics", {"query": {"name": "x"}}, 400),
    ("main", "GET", "/api/v1/metrics/summary", {"query": {"x": "1"}}, 400),
    ("main", "GET", "/healthz", {}, 200),
    ("main", "GET", "/ready", {}, 200),
    ("main", "GET", "/metrics", {}, 200),
    ("token", "POST", CONFIG, {"path_parameters": SKEW, "body": CHANGE}, 401),
    ("token", "POST", CONFIG, {"path_parameters": SKEW, "body": CHANGE,
                               "headers": {"Authorization": "Bearer wrong"}}, 403),
    ("token", "POST", "/api/v1/strategies/cache/refresh", {}, 401),
    ("token", "POST", "/api/v1/strategies/cache/refresh", {"headers": {"Authorization": "Bearer nope"}}, 403),
    ("token", "POST", CONFIG, {"path_parameters": SKEW, "body": CHANGE,
                               "headers": {"Authorization": "Bearer s3cret"}}, 201),
    ("limited", "POST", CONFIG, {"path_parameters": SKEW, "body": CHANGE}, 429),
    ("limited", "DELETE", CONFIG, {"path_parameters": SKEW, "query": {"changed_by": "alice"}}, 429),
    ("limited", "POST", ROLLBACK, {"path_parameters": SKEW, "body": {"changed_by": "alice"}}, 429),
    ("down", "POST", CONFIG, {"path_parameters": SKEW, "body": CHANGE}, 503),
    ("down", "DELETE", SYMBOL_CONFIG, {"path_parameters": SKEW_BTC, "query": {"changed_by": "alice"}}, 503),
    ("down", "POST", ROLLBACK, {"path_parameters": SKEW, "body": {"changed_by": "alice"}}, 503),
    ("down", "GET", CONFIG, {"path_parameters": SKEW}, 200),
    ("bare", "GET", "/api/v1/metrics/depth/{symbol}", {"path_parameters": {"symbol": "BTCUSDT"}}, 503),
    ("bare", "GET", "/api/v1/metrics/summary", {}, 503),
    ("bare", "GET", "/api/v1/metrics/all", {}, 503),
    ("bare", "GET", "/ready", {}, 503),
]


def case_app(kind: str, tmp: Path) -> WebApp:
    """A fresh app of one kind of CASES, its config store under ``tmp``."""
    if kind == "main":
        app = seed(build_app(web_settings(tmp), limiter=RateLimiter(0)))
        for change in ({"top_levels": 7}, {"top_levels": 8}):
            assert app.change("orderbook_skew", change).status_code in (200, 201)
        assert app.change("orderbook_skew", {"top_levels": 3}, symbol="BTCUSDT").status_code == 201
        return app
    if kind == "token":
        return build_app(web_settings(tmp, api_token="s3cret"))
    if kind == "limited":
        app = build_app(web_settings(tmp), limiter=RateLimiter(1))
        assert app.change("orderbook_skew", {"top_levels": 7}).status_code == 201  # alice's one change
        return app
    if kind == "down":
        return _store_down_app(tmp)
    assert kind == "bare", kind
    return build_app(web_settings(tmp), with_store=False)


def resolve(path: str, kwargs: dict) -> tuple[str, dict]:
    """The documented path of a case: a per-strategy path takes the strategy from the case."""
    if path not in PER_STRATEGY:
        return path, kwargs
    params = dict(kwargs.get("path_parameters", {}))
    path = path.replace("{strategy_id}", params.pop("strategy_id"))
    kwargs = {k: v for k, v in kwargs.items() if k != "path_parameters"}
    return path, ({**kwargs, "path_parameters": params} if params else kwargs)


def test_hand_made_cases_cover_every_documented_error_status() -> None:
    """Together the hand-made cases produce every error status some operation documents (400 … 503)."""
    documented = {status for r in ROUTES for status in r.errors}
    assert documented <= {status for *_, status in CASES}


def test_hand_made_cases_cover_every_route() -> None:
    """Every route of web.app.ROUTES is exercised by at least one hand-made case."""
    assert {(r.method, r.path) for r in ROUTES} <= {(m, p) for _, m, p, _, _ in CASES}


@pytest.mark.parametrize("app_name,method,path,kwargs,status", CASES,
                         ids=[f"{a}-{m}-{p.rsplit('/', 2)[-2]}/{p.rsplit('/', 1)[-1]}-{s}"
                              for a, m, p, _, s in CASES])
def test_hand_made_cases_answer_as_documented(tmp_path: Path, app_name: str, method: str, path: str,
                                              kwargs: dict, status: int) -> None:
    """A chosen request gets the expected status, and that response passes the same four schema checks as the fuzzed ones."""
    app = case_app(app_name, tmp_path)
    if app.store is not None:
        worker_turned(app)
    try:
        app_schema = schemathesis.openapi.from_wsgi("/openapi.json", app.client.app)
        path, kwargs = resolve(path, kwargs)
        case = app_schema[path][method].Case(**kwargs)
        response = case.call()
        assert response.status_code == status, response.text[:2000]
        # a documented "dependency down" 503 is the expected answer here, not a server fault
        checks = CHECKS if status < 500 else [c for c in CHECKS if c is not not_a_server_error]
        case.validate_response(response, checks=checks)
    finally:
        app.config.close()
