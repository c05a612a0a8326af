"""Each market-logic feed's age and counts in ``/ready`` (information, never a failure) and in
``/metrics``, through ``falcon.testing`` over a real in-memory store whose ingest row is written
by the feed path exactly as the live ingest writes it."""

# ruff: noqa: F811 - the fixture make_app is imported from tests/web_helpers.py
from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from rtsig import counters as C
from rtsig.feeds.path import FeedPath
from rtsig.layout import FEED_DOMINANCE, FEED_QUOTES
from tests.test_readiness import N_WORKERS, ready, running
from tests.web_helpers import make_app  # noqa: F401 - fixture


def samples(app) -> dict[tuple, float]:
    resp = app.get("/metrics")
    assert resp.status_code == 200
    return {(s.name.removeprefix("realtime_strategies_"), tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def test_feed_ages_are_reported_and_never_fail_readiness(make_app):
    app = running(make_app(n_workers=N_WORKERS))
    status, body = ready(app)
    assert status == 200, body
    for name in ("dominance", "quotes", "onchain"):
        check = body["checks"][f"feed_{name}"]
        assert check["ok"] is True and check["detail"].startswith("no message yet"), check
    metrics = samples(app)
    assert ("feed_age_seconds", (("feed", "quotes"),)) not in metrics  # absent before the first

    path = FeedPath(app.store, app.settings, C.ROW_INGEST)
    now_ns = time.time_ns()
    ts = now_ns // 1_000_000 - 90_000  # the aggregator's figure is 90 s old
    path.handle(FEED_DOMINANCE, b'{"ts": %d, "btc_dominance": 57.3, "source": "coingecko"}' % ts, now_ns)
    path.handle(FEED_QUOTES, b'{"ts": 1, "venue": "coinbase"}', now_ns)  # missing fields
    status, body = ready(app)
    assert status == 200
    detail = body["checks"]["feed_dominance"]["detail"]
    assert detail.startswith("last message ") and "1 accepted, 0 rejected" in detail, detail
    assert "its data 9" in detail  # 90 s and a little
    assert body["checks"]["feed_quotes"]["detail"].endswith("0 accepted, 1 rejected")
    metrics = samples(app)
    assert metrics[("feed_messages_total", (("feed", "dominance"),))] == 1
    assert metrics[("feed_errors_total", (("feed", "quotes"), ("reason", "missing_field")))] == 1
    assert 0 <= metrics[("feed_age_seconds", (("feed", "dominance"),))] < 3600
    assert 89 <= metrics[("feed_data_age_seconds", (("feed", "dominance"),))] < 3600
    assert ("feed_age_seconds", (("feed", "onchain"),)) not in metrics
