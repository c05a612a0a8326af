"""The operator API of a running ``rtsig run`` (Gunicorn + Falcon) on a real NATS server.

Depth metrics of a published book equal an independent plain-Python computation; ``/ready`` is
200 while everything is up and 503 naming the NATS check when NATS stops; ``/metrics`` carries
the counters of the ingest and every worker and they move under load; a configuration change
through HTTP reaches every worker within 1 s.
"""

from __future__ import annotations

import asyncio
import math
import time

import orjson
from prometheus_client.parser import text_string_to_metric_families

from rtsig import codes
from rtsig import counters as C
from rtsig.registry import REALTIME_IDS
from tests.decode_helpers import depth_msg
from tests.live_helpers import N_WORKERS, Service, connect, cooldown_env, feed, publish_all, settle, wait_until
from tests.reference import depth_metrics as reference_depth

BIDS = [(100.0 - 0.5 * i, 1.0 + 0.25 * (i % 4)) for i in range(12)]
ASKS = [(100.5 + 0.5 * i, 0.5 + 0.75 * (i % 3)) for i in range(9)]
CLOSE = 1e-9


def get_json(service: Service, path: str) -> tuple[int, dict]:
    status, body = service.http("GET", path)
    return status, orjson.loads(body) if body else {}


def close(a: float | None, b: float) -> bool:
    if a is None:
        return math.isnan(b)
    return math.isclose(a, b, rel_tol=CLOSE, abs_tol=1e-9)


def metrics(service: Service) -> dict[tuple[str, tuple], float]:
    status, body = service.http("GET", "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_depth_metrics_of_a_published_book_match_an_independent_computation(nats_server, services):
    service = services(nats_server.url, web=True)

    async def publish() -> None:
        nc = await connect(nats_server.url)
        try:
            await nc.publish(service.in_subject, depth_msg("ethusdt", [[f"{p}", f"{q}"] for p, q in BIDS],
                                                            [[f"{p}", f"{q}"] for p, q in ASKS]))
            await nc.flush()
            await settle([service], 1)
        finally:
            await nc.close()

    asyncio.run(publish())
    status, body = get_json(service, "/api/v1/metrics/depth/ETHUSDT")
    assert status == 200, body
    data, ref = body, reference_depth(BIDS, ASKS)  # a bare object, as the seed's examples read it
    assert data["symbol"] == "ETHUSDT"
    checks = {("imbalance", "ratio"): ref["imbalance_ratio"], ("imbalance", "bid_volume"): ref["bid_volume"],
              ("imbalance", "ask_volume"): ref["ask_volume"],
              ("imbalance", "percent"): ref["imbalance_ratio"] * 100,
              ("pressure", "buy_pressure"): ref["buy_pressure"],
              ("pressure", "sell_pressure"): ref["sell_pressure"],
              ("pressure", "net_pressure"): ref["net_pressure"],
              ("liquidity", "total"): ref["total_liquidity"],
              ("liquidity", "bid_depth_5"): ref["bid_depth_5"], ("liquidity", "ask_depth_5"): ref["ask_depth_5"],
              ("liquidity", "bid_depth_10"): ref["bid_depth_10"],
              ("liquidity", "ask_depth_10"): ref["ask_depth_10"],
              ("spread", "best_bid"): ref["best_bid"], ("spread", "best_ask"): ref["best_ask"],
              ("spread", "spread_abs"): ref["spread_abs"], ("spread", "spread_bps"): ref["spread_bps"],
              ("spread", "mid_price"): ref["mid_price"],
              ("vwap", "bid"): ref["vwap_bid"], ("vwap", "ask"): ref["vwap_ask"],
              ("vwap", "spread"): ref["vwap_spread"]}
    for (group, name), expected in checks.items():
        assert math.isclose(data[group][name], expected, rel_tol=1e-6, abs_tol=1e-9), (group, name)
    assert data["strongest_levels"]["bid"] == {"price": ref["strongest_bid_price"],
                                               "volume": ref["strongest_bid_volume"]}
    assert data["strongest_levels"]["ask"] == {"price": ref["strongest_ask_price"],
                                               "volume": ref["strongest_ask_volume"]}
    quality = data["order_book_quality"]
    assert (quality["bid_levels"], quality["ask_levels"], quality["total_levels"]) == (12, 9, 21)
    assert data["pressure"]["interpretation"] == ("bullish" if ref["net_pressure"] > 20 else
                                                  "bearish" if ref["net_pressure"] < -20 else "neutral")
    # the supervisor samples the book into the pressure history once per second
    wait_until(lambda: get_json(service, "/api/v1/metrics/pressure/ETHUSDT?timeframe=1m")[1]
               ["total_data_points"] >= 2, 10.0, "two pressure samples")
    history = get_json(service, "/api/v1/metrics/pressure/ETHUSDT?timeframe=1m")[1]
    assert all(math.isclose(p["pressure"], ref["net_pressure"], rel_tol=1e-5)
               for p in history["pressure_history"])
    assert get_json(service, "/api/v1/metrics/depth/XRPUSDT")[0] == 404


def test_ready_names_nats_when_it_stops(nats_server, services):
    service = services(nats_server.url, web=True)
    status, body = get_json(service, "/ready")
    assert status == 200 and body["status"] == "ready", body
    assert set(body["checks"]) == {"nats", "workers", "config_store", "feed_dominance", "feed_quotes",
                                   "feed_onchain"}
    nats_server.stop()
    wait_until(lambda: get_json(service, "/ready")[0] == 503, 15.0, "/ready to report NATS down")
    status, body = get_json(service, "/ready")
    assert "nats" in body["failing"] and body["checks"]["nats"]["ok"] is False
    assert body["checks"]["workers"]["ok"] is True
    assert get_json(service, "/healthz")[0] == 200, "liveness does not depend on NATS"


def test_metrics_carry_the_ingest_and_every_worker_and_move_under_load(nats_server, services):
    service = services(nats_server.url, env=cooldown_env(0), web=True)
    before = metrics(service)
    messages = feed(30, 5)

    async def load() -> None:
        nc = await connect(nats_server.url)
        try:
            await publish_all(nc, service.in_subject, messages, rate=None)
            await settle([service], len(messages))
        finally:
            await nc.close()

    asyncio.run(load())
    after = metrics(service)
    assert total(after, "realtime_strategies_messages_received_total") - \
        total(before, "realtime_strategies_messages_received_total") == len(messages)
    assert total(after, "realtime_strategies_input_messages_total") - \
        total(before, "realtime_strategies_input_messages_total") == len(messages)
    assert total(after, "realtime_strategies_input_dropped_total") == 0
    assert after[("realtime_strategies_input_backlog_messages", ())] == 0
    processed = total(after, "realtime_strategies_messages_processed_total")
    assert processed == service.ingest(C.MESSAGES_RECEIVED) - service.ingest(C.FILTERED) > 0
    generated = total(after, "realtime_strategies_signals_generated_total")
    per_worker = [sum(service.worker(k, C.signal_counter(n, action)) for n in range(len(REALTIME_IDS))
                      for action in codes.ACTION_NAMES) for k in range(N_WORKERS)]
    assert generated == sum(per_worker) > 0 and all(n > 0 for n in per_worker), per_worker
    assert total(after, "realtime_strategies_evaluations_total") > 0
    assert after[("realtime_strategies_processing_latency_seconds_count", ())] == \
        total(after, "realtime_strategies_signals_published_total") > 0
    assert after[("realtime_strategies_workers_alive", ())] == N_WORKERS
    assert after[("realtime_strategies_nats_connected", ())] == 1
    for name in ("realtime_strategies_messages_errors_total", "realtime_strategies_messages_ignored_total",
                 "realtime_strategies_strategy_latency_seconds_bucket",
                 "realtime_strategies_consumer_lag_seconds", "realtime_strategies_circuit_breaker_state",
                 "realtime_strategies_config_changes_total", "realtime_strategies_signal_confidence_bucket"):
        assert any(n == name for n, _ in after), name


def test_a_change_through_http_reaches_every_worker_within_one_second(nats_server, services):
    service = services(nats_server.url, web=True, env={"RTSIG_API_TOKEN": "s3cret"})
    epochs = [service.worker(k, C.CONFIG_EPOCH_SEEN) for k in range(N_WORKERS)]
    body = {"parameters": {"buy_threshold": 1.9}, "changed_by": "ops", "reason": "test"}
    path = "/api/v1/strategies/orderbook_skew/config/BTCUSDT"
    assert service.http("POST", path, body)[0] == 401
    started = time.monotonic()
    status, raw = service.http("POST", path, body, {"Authorization": "Bearer s3cret"})
    assert status == 201, raw
    took = wait_until(lambda: all(service.worker(k, C.CONFIG_EPOCH_SEEN) > e for k, e in enumerate(epochs)),
                      5.0, "every worker to reload")
    assert time.monotonic() - started <= 1.0, f"took {took:.2f} s after the response"
    status, cfg = get_json(service, path)
    assert cfg["data"]["parameters"]["buy_threshold"] == 1.9 and cfg["data"]["version"] == 1
    assert get_json(service, "/api/v1/strategies/orderbook_skew/audit")[1]["data"][0]["changed_by"] == "ops"
    samples = metrics(service)
    assert samples[("realtime_strategies_config_changes_total", (("strategy", "orderbook_skew"),))] == 1


def test_every_metric_the_dashboard_and_deploy_files_use_is_exported_by_a_running_instance(
        nats_server, services):
    from tests.test_deploy_files import EXPORTED_METRICS

    service = services(nats_server.url, web=True)
    status, body = service.http("GET", "/metrics")
    assert status == 200
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name, kind in EXPORTED_METRICS.items():
        base = name[:-len("_total")] if kind == "counter" and name.endswith("_total") else name
        assert families.get(base) == kind, f"{name} ({kind}) not in /metrics: {families.get(base)}"
