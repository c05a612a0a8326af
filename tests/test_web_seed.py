"""What users of the replaced service expect: its response shapes, metric names and query habits.

* The market metrics answer bare objects with the seed's trend words, so the seed's own
  ``curl … | jq`` examples print what its README shows (run verbatim, host aside, against a
  real ``rtsig run``).
* ``/metrics`` carries the seed's dashboard names beside rtsig's, so its PromQL and its
  troubleshooting ``grep strategy_executions`` find something.
* ``POST …/rollback?symbol=ETHUSDT`` rolls the symbol back (never the global config; a different
  symbol in the body is a 409), and any
  query parameter a route does not know is a 400 naming it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtsig import codes
from rtsig import counters as C
from tests.decode_helpers import depth_msg
from tests.live_helpers import connect, settle
from tests.web_helpers import WebApp, balanced_book, failed, make_app, ok, web_app  # noqa: F401 - fixtures
from web.app import ROUTES

SKEW = "orderbook_skew"
SEED_HOST = "realtime-strategies:8080"


# ----------------------------------------------------------------------------- query parameters
def _path_of(route) -> str:
    return (route.path.replace("{strategy_id}", SKEW).replace("{symbol}", "BTCUSDT"))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method}-{r.operation_id}")
def test_every_route_rejects_an_unknown_query_parameter_naming_it(web_app: WebApp, route) -> None:
    web_app.book("BTCUSDT", *balanced_book(100.0, 2.0, 1.0))
    resp = web_app.request(route.method, _path_of(route), params={"colour": "blue"},
                           json={"changed_by": "alice", "parameters": {"top_levels": 6}})
    assert resp.status_code == 400, resp.text
    error = resp.json["error"]
    assert error["code"] == "VALIDATION_ERROR" and "colour" in error["message"]
    assert error["details"] == {"colour": "unknown query parameter"}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_the_documents_reject_unknown_query_parameters_too(web_app: WebApp, path: str) -> None:
    assert web_app.get(path, params={"v": "2"}).status_code == 400


def test_rollback_honours_symbol_in_the_query_as_the_replaced_service_did(web_app: WebApp) -> None:
    for value in (6, 7):
        ok(web_app.change(SKEW, {"top_levels": value}), 201 if value == 6 else 200)
    for value in (3, 4):
        ok(web_app.change(SKEW, {"top_levels": value}, symbol="ETHUSDT"), 201 if value == 3 else 200)
    data = ok(web_app.post(f"/api/v1/strategies/{SKEW}/rollback", {"changed_by": "alice"},
                           params={"symbol": "ETHUSDT"}))
    assert data["config"]["symbol"] == "ETHUSDT" and data["config"]["parameters"]["top_levels"] == 3
    assert data["audit"]["action"] == "ROLLBACK"
    # the global config was not touched
    assert ok(web_app.get(f"/api/v1/strategies/{SKEW}/config"))["parameters"]["top_levels"] == 7


def test_rollback_with_different_symbols_in_query_and_body_is_409(web_app: WebApp) -> None:
    ok(web_app.change(SKEW, {"top_levels": 3}, symbol="ETHUSDT"), 201)
    ok(web_app.change(SKEW, {"top_levels": 4}, symbol="ETHUSDT"), 200)
    resp = web_app.post(f"/api/v1/strategies/{SKEW}/rollback", {"changed_by": "alice", "symbol": "BTCUSDT"},
                        params={"symbol": "ETHUSDT"})
    assert failed(resp, 409, "CONFLICT")["details"]["symbol"]
    same = web_app.post(f"/api/v1/strategies/{SKEW}/rollback", {"changed_by": "alice", "symbol": "ethusdt"},
                        params={"symbol": "ETHUSDT"})
    assert ok(same)["config"]["parameters"]["top_levels"] == 3


# ----------------------------------------------------------------------------- shapes
def test_market_routes_answer_bare_objects_and_bare_errors(web_app: WebApp) -> None:
    web_app.book("BTCUSDT", [(100.0, 3.0)], [(100.5, 1.0)])
    depth = web_app.get("/api/v1/metrics/depth/BTCUSDT").json
    assert depth["pressure"]["interpretation"] == "bullish" and "success" not in depth
    summary = web_app.get("/api/v1/metrics/pressure/BTCUSDT", params={"timeframe": "5m"}).json["summary"]
    assert summary["trend"] in ("bullish", "bearish", "neutral")
    assert web_app.get("/api/v1/metrics/summary").json["market_sentiment"]["bullish_symbols"] == 1
    missing = web_app.get("/api/v1/metrics/depth/DOGEUSDT")
    assert missing.status_code == 404 and set(missing.json) == {"error"}
    assert web_app.get("/api/v1/metrics/all", params={"trend": "rising"}).status_code == 400
    no_route = web_app.get("/api/v1/metrics/nothing/here")
    assert no_route.status_code == 404 and set(no_route.json) == {"error"}


# ----------------------------------------------------------------------------- metric names
def scrape(app: WebApp) -> dict[tuple[str, tuple], float]:
    resp = app.get("/metrics")
    assert resp.status_code == 200
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_seeds_metric_names_carry_the_same_counters(make_app) -> None:
    app = make_app(n_workers=2)
    rows = app.store.counters
    ingest, w0, w1 = rows[C.ROW_INGEST], rows[C.ROW_WORKER0], rows[C.ROW_WORKER0 + 1]
    kind = {v: k for k, v in codes.KIND_NAMES.items()}
    ingest[C.KIND_BASE + kind["trade"]] = 7
    ingest[C.KIND_BASE + kind["depth"]] = 5
    w0[C.EVALUATED_BASE + 0] = 40
    w1[C.EVALUATED_BASE + 0] = 60
    w0[C.signal_counter(0, codes.ACTION_BUY)] = 2
    w1[C.signal_counter(0, codes.ACTION_SELL)] = 3
    C.observe(w1, C.STRATEGY_LATENCY_BASE, 50_000)
    now = time.time_ns()
    for row, lag_s in ((w0, 0.5), (w1, 2.5)):
        row[C.PROCESS_PID], row[C.ALIVE_NS], row[C.EVENT_LAG_NS] = os.getpid(), now, int(lag_s * 1e9)
    s = scrape(app)
    assert s[("realtime_messages_processed_total", ())] == 12
    assert s[("realtime_signals_generated_total", (("strategy", SKEW),))] == 5
    executions = {result: s[("realtime_strategy_executions_total", (("result", result), ("strategy", SKEW)))]
                  for result in ("signal", "no_signal", "error", "success")}
    assert executions == {"signal": 5, "no_signal": 95, "error": 0, "success": 100}
    assert s[("realtime_strategy_latency_bucket", (("le", "0.0001"), ("strategy", SKEW)))] == 1
    assert s[("realtime_strategy_latency_count", (("strategy", SKEW),))] == 1
    assert s[("realtime_consumer_lag", ())] == pytest.approx(2.5)
    w1[C.ALIVE_NS] = now - 60 * 10**9  # a worker that stopped turning its loop says nothing
    assert scrape(app)[("realtime_consumer_lag", ())] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the seed's examples, live
def run_seed_example(command: str, port: int) -> str:
    """One of the seed's shell examples, verbatim but for the host, through bash."""
    command = command.replace(SEED_HOST, f"127.0.0.1:{port}")
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, (command, proc.stderr)
    return proc.stdout


def test_the_seeds_curl_and_jq_examples_print_what_its_readme_shows(nats_server, services) -> None:
    service = services(nats_server.url, web=True)
    bids = [[f"{100.0 - 0.5 * k}", "3.0"] for k in range(10)]
    asks = [[f"{100.5 + 0.5 * k}", "1.0"] for k in range(10)]

    async def publish() -> None:
        nc = await connect(nats_server.url)
        try:
            await nc.publish(service.in_subject, depth_msg("btcusdt", bids, asks))
            await nc.flush()
            await settle([service], 1)
        finally:
            await nc.close()

    asyncio.run(publish())
    port = service.http_port
    pressure = json.loads(run_seed_example(
        "curl http://realtime-strategies:8080/api/v1/metrics/depth/BTCUSDT | jq '.pressure'", port))
    assert set(pressure) == {"buy_pressure", "sell_pressure", "net_pressure", "interpretation"}
    assert pressure["interpretation"] == "bullish" and pressure["net_pressure"] == pytest.approx(50.0)
    summary = json.loads(run_seed_example(
        'curl "http://realtime-strategies:8080/api/v1/metrics/pressure/BTCUSDT?timeframe=5m" | jq \'.summary\'',
        port))
    assert {"avg_pressure", "trend", "trend_strength"} <= set(summary)
    assert summary["trend"] in ("bullish", "bearish", "neutral")
    sentiment = json.loads(run_seed_example(
        "curl http://realtime-strategies:8080/api/v1/metrics/summary | jq '.market_sentiment'", port))
    assert {"bullish_symbols", "bearish_symbols", "neutral_symbols", "avg_net_pressure"} <= set(sentiment)
    assert sentiment["bullish_symbols"] == 1
    # the seed's configuration examples (no token on loopback) and its troubleshooting commands
    change = json.loads(run_seed_example(
        """curl -X POST http://realtime-strategies:8080/api/v1/strategies/orderbook_skew/config \\
  -H "Content-Type: application/json" \\
  -d '{
    "parameters": {
      "buy_threshold": 1.3,
      "sell_threshold": 0.75
    },
    "changed_by": "admin",
    "reason": "Adjusting sensitivity for current market conditions"
  }'""", port))
    assert change["success"] is True and change["data"]["config"]["parameters"]["buy_threshold"] == 1.3
    assert json.loads(run_seed_example(
        "curl -X POST http://realtime-strategies:8080/api/v1/strategies/cache/refresh", port))["success"]
    assert json.loads(run_seed_example("curl http://realtime-strategies:8080/api/v1/strategies", port))["success"]
    executions = run_seed_example("curl http://realtime-strategies:8080/metrics | grep strategy_executions", port)
    assert 'realtime_strategy_executions_total{result="success",strategy="orderbook_skew"}' in executions
    assert "realtime_strategy_latency_bucket" in run_seed_example(
        "curl http://realtime-strategies:8080/metrics | grep strategy_latency", port)
