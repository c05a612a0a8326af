"""The heartbeat log line of docs/CONTRACT.md §6, from the counters of every process."""

from __future__ import annotations

import logging
import time

import numpy as np

from rtsig import codes
from rtsig import counters as C
from rtsig.registry import REALTIME_IDS

log = logging.getLogger("rtsig.heartbeat")
HEARTBEAT_MESSAGE = "HEARTBEAT: Realtime Strategies Statistics"


class Heartbeat:
    """Computes rates between successive calls; :meth:`log` writes the line."""

    def __init__(self, store, n_workers: int) -> None:
        self.store = store
        self.n_workers = n_workers
        self.started = time.monotonic()
        self._last_time = self.started
        self._last_messages = 0
        self._last_signals = 0

    def stats(self) -> dict:
        rows = np.array(self.store.counters)
        total = C.sum_rows(rows)
        workers = rows[C.ROW_WORKER0:C.ROW_WORKER0 + self.n_workers]
        now = time.monotonic()
        messages = int(total[C.MESSAGES_RECEIVED])
        strategies = {}
        signals = 0
        for number, sid in enumerate(REALTIME_IDS):
            n = int(total[C.signal_counter(number, 1)] + total[C.signal_counter(number, -1)])
            strategies[sid] = {"signals": n, "evaluated": int(total[C.EVALUATED_BASE + number])}
            signals += n
        elapsed = max(1e-9, now - self._last_time)
        stats = {
            "messages_processed": messages,
            "signals_generated": signals,
            "consumer_errors": int(sum(total[C.ERROR_BASE + k] for k in codes.ERROR_NAMES)),
            "input_dropped": {"cut_off_by_disconnect": int(total[C.INPUT_TRUNCATED]),
                              "backlog_limit": int(total[C.INPUT_DROPPED_OVER_LIMIT])},
            "publisher_errors": int(total[C.PUBLISH_ERRORS]),
            "publish_dropped": int(total[C.PUBLISH_DROPPED]),
            "messages_per_second": round((messages - self._last_messages) / elapsed, 1),
            "signals_per_minute": round((signals - self._last_signals) / elapsed * 60, 2),
            "uptime_seconds": round(now - self.started, 1),
            "strategies": strategies,
            "ignored": int(sum(total[C.IGNORED_BASE + k] for k in codes.IGNORED_NAMES)),
            "filtered": int(total[C.FILTERED]),
            "overruns": int(total[C.OVERRUNS]),
            "event_ring_full": int(total[C.EVENT_RING_FULL]),
            "consumer_lag_ms": round(float(workers[:, C.CONSUMER_LAG_NS].max()) / 1e6, 3) if len(workers) else 0.0,
            # the ingest's own word counts only while its loop turns (not stopped, hung or gone)
            "nats_connected": bool(rows[C.ROW_INGEST][C.NATS_CONNECTED]) and C.heartbeat_fresh(
                rows[C.ROW_INGEST], time.time_ns(), int(rows[C.ROW_SUPERVISOR][C.INGEST_STARTED_NS])),
            "latency_ms": {f"p{int(q * 100)}": _ms(C.quantile(total, C.PROCESSING_LATENCY, q))
                           for q in (0.5, 0.95, 0.99)},
        }
        self._last_time, self._last_messages, self._last_signals = now, messages, signals
        return stats

    def log(self, final: bool = False) -> dict:
        stats = self.stats()
        log.info(HEARTBEAT_MESSAGE, extra={**stats, "final": final})
        return stats


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
