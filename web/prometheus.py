"""``/metrics``: the counters of every process of the host in Prometheus text format.

Each process counts into its own row of the shared ``counters`` region (no locks, no
multiprocess files); this collector adds the rows up at scrape time and reports gauges from the
rows they belong to. Names are those of docs/CONTRACT.md §6.
"""

from __future__ import annotations

import time

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from rtsig import codes
from rtsig import counters as C
from rtsig.feeds.status import feed_metrics
from rtsig.registry import REALTIME_IDS, STRATEGIES
from rtsig.store import Store, owner_alive

PREFIX = "realtime_strategies_"
SEED_PREFIX = "realtime_"
"""The seed's dashboard names (docs/CONTRACT.md §6), exported beside rtsig's own."""


def not_running(row: np.ndarray, now_ns: int, since_ns: int = 0) -> str | None:
    """Why the process of a counter row is not running its loop (None: it is).

    Its gauges are believed only while it is: its pid exists and it stamped ``ALIVE_NS`` within
    ``C.HEARTBEAT_STALE_NS`` (and since ``since_ns``, its latest start, when known). A stopped
    (SIGSTOP), hung or dead process keeps its last gauges in shared memory; they mean nothing.
    """
    pid = int(row[C.PROCESS_PID])
    if pid <= 0:
        return "not started"
    if not owner_alive(pid, 0):
        return f"pid {pid} is gone"
    age = C.heartbeat_age_ns(row, now_ns, since_ns)
    if age is None:
        return f"pid {pid} has not turned its loop since its start"
    if age > C.HEARTBEAT_STALE_NS:
        return f"pid {pid} has not turned its loop for {age / 1e9:.1f} s"
    return None


def ingest_not_running(rows: np.ndarray, now_ns: int) -> str | None:
    """:func:`not_running` of the ingest, counting only heartbeats since its latest start."""
    why = not_running(rows[C.ROW_INGEST], now_ns, int(rows[C.ROW_SUPERVISOR][C.INGEST_STARTED_NS]))
    return None if why is None else f"ingest {why}"


def ingest_crash_looping(rows: np.ndarray, now_ns: int) -> str | None:
    """Why the ingest counts as crash-looping (None: it does not): restarted more than once in
    the last minute and the latest start less than ``C.CRASH_LOOP_HOLD_NS`` ago."""
    supervisor = rows[C.ROW_SUPERVISOR]
    restarts, started = int(supervisor[C.INGEST_RESTARTS]), int(supervisor[C.INGEST_STARTED_NS])
    if restarts > 1 and now_ns - started < C.CRASH_LOOP_HOLD_NS:
        return (f"ingest restarted {restarts} times in the last minute, the latest "
                f"{max(0, now_ns - started) / 1e9:.1f} s ago")
    return None


def workers_alive(rows: np.ndarray, n_workers: int, now_ns: int) -> list[bool]:
    return [not_running(rows[C.ROW_WORKER0 + k], now_ns) is None for k in range(n_workers)]


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

        yield counter("input_messages", "Messages the ingest read whole off its NATS connection.",
                      value=int(total[C.INPUT_FRAMED]))
        yield counter("input_dropped", "Messages lost by the ingest before decoding, by reason.",
                      ["reason"], [(["cut_off_by_disconnect"], int(total[C.INPUT_TRUNCATED])),
                                   (["backlog_limit"], int(total[C.INPUT_DROPPED_OVER_LIMIT]))])
        yield counter("messages_received", "Messages decoded by the ingest.",
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
                       (["cooldown"], int(total[C.SIGNALS_COOLDOWN])),
                       (["market"], int(total[C.SIGNALS_OTHER_MARKET])),
                       (["rebuilding_history"], int(total[C.SIGNALS_REBUILT]))])
        yield counter("symbols_evicted", "Idle symbols whose slot went to a new one (TRADING_SYMBOLS=*).",
                      value=int(total[C.SYMBOLS_EVICTED]))
        yield counter("input_redelivered", "JetStream deliveries already judged, skipped.",
                      value=int(total[C.INPUT_REDELIVERED]))
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
        backlog = int(total[C.INPUT_FRAMED]) - int(total[C.MESSAGES_HANDED_OFF]) \
            - int(total[C.INPUT_DROPPED_OVER_LIMIT])
        yield gauge("input_backlog_messages", "Messages read by the ingest, not yet handed to the workers.",
                    max(0, backlog))
        ingest = rows[C.ROW_INGEST]
        ingest_running = ingest_not_running(rows, now_ns) is None
        alive = workers_alive(rows, n_workers, now_ns)
        # a process that is not running its loop is not connected, whatever its row last said
        connected = ([int(ingest[C.NATS_CONNECTED]) if ingest_running else 0]
                     + [int(r[C.NATS_CONNECTED]) if a else 0 for r, a in zip(worker_rows, alive)])
        yield gauge("nats_connected",
                    "1 when the ingest and every worker run their loops and are connected to NATS.",
                    float(min(connected)))
        yield gauge("nats_subscribed", "1 when the ingest runs its loop and is subscribed to the input subject.",
                    float(ingest[C.SUBSCRIBED]) if ingest_running else 0.0)
        yield gauge("circuit_breaker_state",
                    "NATS connection state per process: 0 connected, 1 down, 2 connecting.",
                    labels=["name"],
                    samples=[(["nats_ingest"], float(ingest[C.CIRCUIT_STATE]))]
                    + [([f"nats_worker_{k}"], float(r[C.CIRCUIT_STATE])) for k, r in enumerate(worker_rows)])
        yield gauge("workers_alive", "Worker processes alive.", float(sum(alive)))
        yield gauge("workers_configured", "Worker processes configured (RTSIG_WORKERS).", float(n_workers))
        yield gauge("signals_held", "Signals held while NATS is down.",
                    float(sum(int(r[C.PUBLISH_BUFFERED]) for r in worker_rows)))
        states = [int(r[C.CONFIG_STORE_STATE]) for r in worker_rows]
        yield gauge("config_store_state",
                    "Config store as the workers read it: 0 primary, 1 fallback, 2 last known, 3 defaults.",
                    float(max(states, default=0)))
        yield from self._seed_names(total, worker_rows, alive)
        yield from feed_metrics(rows, now_ns, PREFIX)  # the market-logic feeds (docs/CONTRACT.md §2c)
        started = int(self.store.header[0]["created_ns"])
        yield gauge("uptime_seconds", "Seconds since rtsig run started.",
                    max(0.0, (now_ns - started) / 1e9) if started else 0.0)

    @staticmethod
    def _seed_names(total: np.ndarray, worker_rows: np.ndarray, alive: list[bool]):
        """The seed's "business metrics", so its dashboard queries and troubleshooting commands
        (``grep strategy_executions``) work as written; the same counters as rtsig's own names."""
        processed = CounterMetricFamily(SEED_PREFIX + "messages_processed",
                                        "Messages decoded and stored (the seed's name).")
        processed.add_metric([], int(sum(int(total[C.KIND_BASE + k]) for k in codes.KIND_NAMES)))
        yield processed
        generated = CounterMetricFamily(SEED_PREFIX + "signals_generated",
                                        "Signals generated, by strategy (the seed's name).",
                                        labels=["strategy"])
        executions = CounterMetricFamily(
            SEED_PREFIX + "strategy_executions",
            "Events judged, by strategy and result: signal, no_signal, error (none: a kernel cannot "
            "fail on an event), success = signal + no_signal (the seed's name).",
            labels=["strategy", "result"])
        latency = HistogramMetricFamily(SEED_PREFIX + "strategy_latency",
                                        "Kernel time per judged event in seconds, by strategy (the seed's name).",
                                        labels=["strategy"])
        for n, sid in enumerate(REALTIME_IDS):
            signals = sum(int(total[C.signal_counter(n, action)]) for action in codes.ACTION_NAMES)
            judged = int(total[C.EVALUATED_BASE + n])
            generated.add_metric([sid], signals)
            for result, value in (("signal", signals), ("no_signal", max(0, judged - signals)),
                                  ("error", 0), ("success", max(judged, signals))):
                executions.add_metric([sid, result], value)
            buckets, total_sum = _buckets(total, C.STRATEGY_LATENCY_BASE + n * C.HISTOGRAM_WIDTH,
                                          C.LATENCY_BOUNDS_S, 1e9)
            latency.add_metric([sid], buckets, total_sum)
        yield generated
        yield executions
        yield latency
        lag = max((int(r[C.EVENT_LAG_NS]) for r, a in zip(worker_rows, alive) if a), default=0)
        yield GaugeMetricFamily(SEED_PREFIX + "consumer_lag",
                                "Seconds from the event time of the newest judged message to its "
                                "judging, worst running worker (the seed's name).", value=lag / 1e9)

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
