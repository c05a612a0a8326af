"""``/healthz``, ``/ready`` and ``/metrics``: liveness, named readiness checks, Prometheus."""

from __future__ import annotations

import os
import time

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rtsig import counters as C
from rtsig.feeds.status import describe, feed_status
from web import types as T
from web.deps import WebDeps
from web.prometheus import ingest_crash_looping, ingest_not_running, not_running, registry_for
from web.route import Call, Reply, Route


def healthz(deps: WebDeps, call: Call) -> Reply:
    return Reply(T.Health("healthy", deps.settings.instance, os.getpid(),
                          round(deps.clock() - deps.started, 3)))


def checks(deps: WebDeps) -> dict[str, T.Check]:
    """Each readiness check by name."""
    out: dict[str, T.Check] = {}
    if deps.store is None:
        out["store"] = T.Check(False, "no shared-memory store attached")
    else:
        rows = np.array(deps.store.counters)
        now_ns = time.time_ns()  # heartbeats are wall-clock stamps of other processes
        ingest = rows[C.ROW_INGEST]
        # the ingest's gauges count only while it turns its loop (and not during a crash loop)
        down = ingest_not_running(rows, now_ns) or ingest_crash_looping(rows, now_ns)
        connected, subscribed = int(ingest[C.NATS_CONNECTED]), int(ingest[C.SUBSCRIBED])
        out["nats"] = T.Check(down is None and connected == 1 and subscribed == 1,
                              down if down else
                              "connected and subscribed" if connected and subscribed else
                              "ingest not connected to NATS" if not connected else
                              "connected but not subscribed")
        n = int(deps.store.layout.n_workers)
        why = {k: not_running(rows[C.ROW_WORKER0 + k], now_ns) for k in range(n)}
        failed = {k: w for k, w in why.items() if w is not None}
        detail = f"{n - len(failed)} of {n} alive"
        if failed:
            detail += f"; not alive: {list(failed)} ({'; '.join(f'worker {k}: {w}' for k, w in failed.items())})"
        out["workers"] = T.Check(not failed, detail)
        # the market-logic feeds (docs/CONTRACT.md §2c): their ages, information only
        for name, status in feed_status(ingest, now_ns).items():
            out[f"feed_{name}"] = T.Check(True, describe(status))
    health = deps.config.health(refresh=False)  # never waits on the store
    degraded = health["state"] != "primary"
    detail = f"{health['store']}: {health['state']}"
    if degraded:
        detail += f" (serving from {health['serving_from']}: {health['degraded']})"
    out["config_store"] = T.Check(True, detail, degraded)
    return out


def ready(deps: WebDeps, call: Call) -> Reply:
    results = checks(deps)
    failing = [name for name, c in results.items() if not c.ok]
    return Reply(T.Ready("not_ready" if failing else "ready", failing, results),
                 status=503 if failing else 200)


def metrics(deps: WebDeps, call: Call) -> Reply:
    if deps.store is None:
        return Reply(raw=b"", content_type=CONTENT_TYPE_LATEST)
    return Reply(raw=generate_latest(registry_for(deps.store)), content_type=CONTENT_TYPE_LATEST)


ROUTES = (
    Route("GET", "/healthz", "healthz", "Liveness: 200 while the web process runs", "health",
          healthz, T.Health, errors=(400,), enveloped=False),
    Route("GET", "/ready", "ready",
          "Readiness: the ingest running its loop, connected and subscribed to NATS; every worker"
          " running its loop; config store state", "health", ready, T.Ready, success=(200, 503),
          errors=(400,), enveloped=False),
    Route("GET", "/metrics", "metrics", "Prometheus metrics of every process of the host", "health",
          metrics, None, errors=(400,), content_type=CONTENT_TYPE_LATEST),
)
