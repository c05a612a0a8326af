"""``/metrics``: the counters of every process of the host in Prometheus text format.

Each process counts into its own row of the shared ``counters`` region (no locks, no
multiprocess files); this collector adds the rows up at scrape time and reports gauges from the
rows they belong to. Names are those of interfaces.md §6.
"""

from __future__ import annotations

import time

import numpy as np
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.registry import CollectorRegistry

from rtsig import codes
from rtsig import counters as C
from rtsig.registry import REALTIME_IDS, STRATEGIES
from rtsig.store import Store, owner_alive

PREFIX = "realtime_strategies_"
ALIVE_WITHIN_NS = 3_000_000_000
"""A worker counts as alive when its pid exists and its loop turned within this time."""


def workers_alive(rows: np.ndarray, n_workers: int, now_ns: int) -> list[bool]:
    return [owner_alive(int(rows[C.ROW_WORKER0 + k][C.PROCESS_PID]), 0)
            and now_ns - int(rows[C.ROW_WORKER0 + k][C.ALIVE_NS]) < ALIVE_WITHIN_NS
            for k in range(n_workers)]


class CountersCollector:
    """A prometheus-client collector over the store's counter rows."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        rows = np.array(self.store.counters)
        total = C.sum_rows(rows)
        n_workers = int(self.store.layout.n_workers)
        worker_rows = rows[C.ROW_WORKER0:C.ROW_WORKER0 + n_workers]
        now_ns = time.time_ns()

        def counter(name: str, doc: str, labels: list[str] | None = None, samples=None, value=None):
            family = CounterMetricFamily(PREFIX + name, doc, labels=labels)
            if labels is None:
                family.add_metric([], value)
            else:
                for label_values, v in samples:
                    family.add_metric(label_values, v)
            return family

        yield counter("messages_received", "Messages received from NATS.",
                      value=int(total[C.MESSAGES_RECEIVED]))
        yield counter("messages_processed", "Messages decoded and stored, by type.", ["type"],
                      [([name], int(total[C.KIND_BASE + k])) for k, name in codes.KIND_NAMES.items()])
        yield counter("messages_errors", "Messages dropped as invalid, by reason.", ["reason"],
                      [([name], int(total[C.ERROR_BASE + k])) for k, name in codes.ERROR_NAMES.items()])
        yield counter("messages_ignored", "Valid messages no strategy uses, by kind.", ["kind"],
                      [([name], int(total[C.IGNORED_BASE + k])) for k, name in codes.IGNORED_NAMES.items()])
        yield counter("messages_filtered", "Messages of symbols outside TRADING_SYMBOLS.",
                      value=int(total[C.FILTERED]))
        yield counter("signals_generated", "Signals generated, by strategy and action.",
                      ["strategy", "action"],
                      [([sid, name], int(total[C.signal_counter(n, action)]))
                       for n, sid in enumerate(REALTIME_IDS)
                       for action, name in codes.ACTION_NAMES.items()])
        yield counter("signals_suppressed", "Candidates not published, by reason.", ["reason"],
                      [(["below_confidence"], int(total[C.SIGNALS_BELOW_CONFIDENCE])),
                       (["cooldown"], int(total[C.SIGNALS_COOLDOWN]))])
        yield counter("signals_published", "Signals handed to NATS.", value=int(total[C.PUBLISHED]))
        yield counter("publish_errors", "Failed signal publishes (held and retried).",
                      value=int(total[C.PUBLISH_ERRORS]))
        yield counter("signals_dropped", "Signals dropped because the hold buffer was full.",
                      value=int(total[C.PUBLISH_DROPPED]))
        yield counter("evaluations", "Events judged, by strategy.", ["strategy"],
                      [([sid], int(total[C.EVALUATED_BASE + n])) for n, sid in enumerate(REALTIME_IDS)])
        yield counter("backpressure_waits", "Times the ingest waited for a worker to catch up.",
                      value=int(total[C.BACKPRESSURE_WAITS]))
        yield counter("nats_reconnects", "NATS reconnections of every process.",
                      value=int(total[C.RECONNECTS]))
        yield counter("config_changes", "Configuration changes made on this host, by strategy.",
                      ["strategy"],
                      [([sid], int(total[C.CONFIG_CHANGES_BASE + i])) for i, sid in enumerate(STRATEGIES)])
        yield counter("config_mirror_errors", "Changes the fallback config store could not copy.",
                      value=int(total[C.CONFIG_MIRROR_ERRORS]))
        yield counter("config_notices", "Configuration change notices received over NATS.",
                      value=int(total[C.CONFIG_NOTICES]))

        yield self._histogram("processing_latency_seconds",
                              "Receipt of the message to the signal handed to NATS.", total,
                              C.PROCESSING_LATENCY, C.LATENCY_BOUNDS_S, 1e9)
        latency = HistogramMetricFamily(PREFIX + "strategy_latency_seconds",
                                        "Kernel time per judged event, by strategy.", labels=["strategy"])
        confidence = HistogramMetricFamily(PREFIX + "signal_confidence",
                                           "Confidence of generated signals, by strategy.",
                                           labels=["strategy"])
        for n, sid in enumerate(REALTIME_IDS):
            buckets, total_sum = _buckets(total, C.STRATEGY_LATENCY_BASE + n * C.HISTOGRAM_WIDTH,
                                          C.LATENCY_BOUNDS_S, 1e9)
            latency.add_metric([sid], buckets, total_sum)
            buckets, total_sum = _buckets(total, C.CONFIDENCE_BASE + n * C.CONFIDENCE_WIDTH,
                                          C.CONFIDENCE_BOUNDS, 1e6)
            confidence.add_metric([sid], buckets, total_sum)
        yield latency
        yield confidence

        def gauge(name: str, doc: str, value=None, labels=None, samples=()):
            family = GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)
            for label_values, v in samples:
                family.add_metric(label_values, v)
            return family

        lag = max((int(r[C.CONSUMER_LAG_NS]) for r in worker_rows), default=0)
        yield gauge("consumer_lag_seconds", "Receipt to judged, newest event, worst worker.", lag / 1e9)
        ingest = rows[C.ROW_INGEST]
        connected = [int(ingest[C.NATS_CONNECTED])] + [int(r[C.NATS_CONNECTED]) for r in worker_rows]
        yield gauge("nats_connected", "1 when the ingest and every worker are connected to NATS.",
                    float(min(connected)))
        yield gauge("nats_subscribed", "1 when the ingest is subscribed to the input subject.",
                    float(ingest[C.SUBSCRIBED]))
        yield gauge("circuit_breaker_state",
                    "NATS connection circuit per process: 0 closed, 1 open, 2 half-open.",
                    labels=["name"],
                    samples=[(["nats_ingest"], float(ingest[C.CIRCUIT_STATE]))]
                    + [([f"nats_worker_{k}"], float(r[C.CIRCUIT_STATE])) for k, r in enumerate(worker_rows)])
        alive = workers_alive(rows, n_workers, now_ns)
        yield gauge("workers_alive", "Worker processes alive.", float(sum(alive)))
        yield gauge("workers_configured", "Worker processes configured (RTSIG_WORKERS).", float(n_workers))
        yield gauge("signals_held", "Signals held while NATS is down.",
                    float(sum(int(r[C.PUBLISH_BUFFERED]) for r in worker_rows)))
        states = [int(r[C.CONFIG_STORE_STATE]) for r in worker_rows]
        yield gauge("config_store_state",
                    "Config store as the workers read it: 0 primary, 1 fallback, 2 last known, 3 defaults.",
                    float(max(states, default=0)))
        started = int(self.store.header[0]["created_ns"])
        yield gauge("uptime_seconds", "Seconds since rtsig run started.",
                    max(0.0, (now_ns - started) / 1e9) if started else 0.0)

    @staticmethod
    def _histogram(name: str, doc: str, total: np.ndarray, block: int, bounds, scale: float):
        family = HistogramMetricFamily(PREFIX + name, doc)
        buckets, total_sum = _buckets(total, block, bounds, scale)
        family.add_metric([], buckets, total_sum)
        return family


def _buckets(total: np.ndarray, block: int, bounds, scale: float):
    cumulative, total_sum, _ = C.histogram(total, block, bounds, scale)
    labels = [f"{b:g}" for b in bounds] + ["+Inf"]
    return list(zip(labels, cumulative)), total_sum


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CountersCollector(store))
    return registry
