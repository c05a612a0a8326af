"""Per-process counters in shared memory: one int64 row per process, summed by readers.

Only the owning process writes its row (no atomics needed); the web and the heartbeat add the
rows up. Jitted code increments these indexes directly.
"""

from __future__ import annotations

import bisect

import numpy as np

from rtsig import codes
from rtsig.registry import REALTIME_IDS, STRATEGIES

MESSAGES_RECEIVED = 0
KIND_BASE = 8  # + KIND_* (messages stored, by kind)
IGNORED_BASE = 16  # + IGN_*
ERROR_BASE = 24  # + ERR_*
FILTERED = 44
SIGNALS_BASE = 512  # + 2·strategy number + (0 buy, 1 sell); moved from 48 for nine strategies
SIGNALS_BELOW_CONFIDENCE = 60
SIGNALS_COOLDOWN = 61
OVERRUNS = 62
SYMBOLS_EVICTED = 63  # ingest: idle symbols whose id was given to a new one (TRADING_SYMBOLS=*)
SIGNALS_OTHER_MARKET = 64  # candidates from a market SIGNAL_MARKETS leaves out (futures by default)
EVALUATED_BASE = 296  # + strategy number: events judged (not overrun); moved from 56 for six strategies
N_STRATEGY_COUNTERS = len(REALTIME_IDS)
PUBLISHED = 65
PUBLISH_ERRORS = 66
PUBLISH_DROPPED = 67
EVENT_RING_FULL = 68
SLOW_CONSUMER = 69
RECONNECTS = 70
BACKPRESSURE_WAITS = 71  # the ingest waited for a worker to catch up
# gauges (the owning process overwrites them)
NATS_CONNECTED = 72  # 1 while connected
CIRCUIT_STATE = 73  # NATS connection state (no circuit breaker): 0 connected, 1 down, 2 connecting
SUBSCRIBED = 74
CONSUMER_LAG_NS = 75  # receipt → judged, of the newest event a worker handled
ALIVE_NS = 76  # wall clock of the process's last loop turn
PROCESS_PID = 77
PUBLISH_BUFFERED = 78  # signals held while NATS is down
CONFIG_EPOCH_SEEN = 79
CONFIG_CHANGES_BASE = 544  # + position in registry.STRATEGIES (the process that made the change); from 80
CONFIG_STORE_STATE = 88  # gauge: one of CONFIG_STATES, as this process last read the store
CONFIG_NOTICES = 89  # change notices received from NATS (other replicas or this host's API)
CONFIG_MIRROR_ERRORS = 90  # changes the fallback store could not copy
MESSAGES_HANDED_OFF = 91  # messages the ingest is done with: decoded, stored, events in the rings
INPUT_TRUNCATED = 92  # a message cut off mid-frame by a lost connection (never fully received)
INPUT_DROPPED_OVER_LIMIT = 93  # messages received while the ingest's backlog was over its byte limit
INGEST_RESTARTS = 94  # supervisor row, gauge: ingest (re)starts in the minute up to its latest one
INGEST_STARTED_NS = 95  # supervisor row, gauge: wall clock just before the ingest's latest start
CONFIG_STATES = ("primary", "fallback", "last_known", "defaults")
"""CONFIG_STORE_STATE values: the primary answered; the fallback did; neither did and the last
values read are used; no store has ever answered (environment and defaults only)."""
GAUGES = (NATS_CONNECTED, CIRCUIT_STATE, SUBSCRIBED, CONSUMER_LAG_NS, ALIVE_NS, PROCESS_PID,
          PUBLISH_BUFFERED, CONFIG_EPOCH_SEEN, CONFIG_STORE_STATE)

LATENCY_BOUNDS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the latency histogram buckets (seconds); one more bucket catches the rest."""
HISTOGRAM_WIDTH = len(LATENCY_BOUNDS_S) + 3  # buckets, +Inf bucket, sum (ns), count
PROCESSING_LATENCY = 96  # receipt → signal published: a histogram block
STRATEGY_LATENCY_BASE = 576  # + strategy number · HISTOGRAM_WIDTH; was PROCESSING_LATENCY + HISTOGRAM_WIDTH
CONFIDENCE_BOUNDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""Upper bounds of the per-strategy confidence histogram of published signals."""
CONFIDENCE_WIDTH = len(CONFIDENCE_BOUNDS) + 3  # buckets, +Inf bucket, sum (micro-units), count
CONFIDENCE_BASE = STRATEGY_LATENCY_BASE + len(REALTIME_IDS) * HISTOGRAM_WIDTH  # + number · width
# Feeds of the market-logic strategies (docs/CONTRACT.md §2c): index FEED_DOMINANCE/QUOTES/TRANSFERS.
FEED_MESSAGES_BASE = 320  # + feed: feed messages accepted (stored, and judged when they can be)
FEED_ERRORS_BASE = 324  # + feed · N_FEED_REASONS + reason (rtsig.feeds.messages.REASON_*)
N_FEED_REASONS = 12
FEED_LAST_TS_BASE = 360  # + feed, gauge (ingest): the newest accepted message's own time `ts` (ms)
FEED_LAST_RECEIPT_BASE = 364  # + feed, gauge (ingest): wall clock (ns) the newest one was received
TRANSFER_DIRECTION_BASE = 368  # + direction (to_exchange, from_exchange, other): transfers accepted
NO_PRICE = 372  # market-logic candidates dropped: no Binance price of their symbol yet
FEED_QUOTES_MIRRORED = 373  # USD-M futures books turned into quotes of the spread strategy
FEED_FILTERED = 374  # feed messages for a symbol outside TRADING_SYMBOLS or another shard's
N_COUNTERS = 1024  # 512 until the microstructure strategies (issue 19): 48–59, 80–87 and 114–295 are free
INPUT_FRAMED = N_COUNTERS - 1
SIGNALS_REBUILT = N_COUNTERS - 2
"""Worker: signals re-made while rebuilding history after a JetStream restart (not published)."""
INPUT_REDELIVERED = N_COUNTERS - 3
"""Ingest: JetStream deliveries already judged (redelivered after a reconnect): skipped."""
EVENT_LAG_NS = N_COUNTERS - 4
"""Worker, gauge: event time → judged, of the newest event it judged (``realtime_consumer_lag``)."""
"""Ingest: messages read off the NATS connection whole. Every one is handed off to the workers
(``MESSAGES_HANDED_OFF``), dropped over the backlog limit (``INPUT_DROPPED_OVER_LIMIT``) or still
in the backlog: nothing received leaves by another way."""

# Counter rows: one per process.
ROW_SUPERVISOR = 0  # also the offline runner's row
ROW_INGEST = 1
ROW_WEB = 2
ROW_WORKER0 = 4  # worker k uses ROW_WORKER0 + k

assert KIND_BASE + codes.N_KINDS <= IGNORED_BASE
assert IGNORED_BASE + codes.N_IGNORED <= ERROR_BASE
assert ERROR_BASE + codes.N_ERRORS <= FILTERED
assert FEED_FILTERED < SIGNALS_BASE and SIGNALS_BASE + 2 * len(REALTIME_IDS) <= CONFIG_CHANGES_BASE
assert PROCESSING_LATENCY + HISTOGRAM_WIDTH <= EVALUATED_BASE
assert EVALUATED_BASE + len(REALTIME_IDS) <= FEED_MESSAGES_BASE
assert FEED_ERRORS_BASE + 3 * N_FEED_REASONS <= FEED_LAST_TS_BASE
assert CONFIG_CHANGES_BASE + len(STRATEGIES) <= STRATEGY_LATENCY_BASE
assert MESSAGES_HANDED_OFF < PROCESSING_LATENCY
assert CONFIDENCE_BASE + len(REALTIME_IDS) * CONFIDENCE_WIDTH <= EVENT_LAG_NS

_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BOUNDS_S)
"""Bucket bounds in ns, for :func:`bisect.bisect_left` (a NumPy call per observation costs µs)."""


def observe(row: np.ndarray, block: int, latency_ns: int, n: int = 1) -> None:
    """Add ``n`` observations of one latency to the histogram block at ``block`` of a row."""
    bucket = bisect.bisect_left(_BOUNDS_NS, latency_ns)
    row[block + bucket] += n
    row[block + len(LATENCY_BOUNDS_S) + 1] += latency_ns * n
    row[block + len(LATENCY_BOUNDS_S) + 2] += n


def observe_confidence(row: np.ndarray, strategy_number: int, confidence: float) -> None:
    """Count one published signal's confidence in its strategy's histogram."""
    block = CONFIDENCE_BASE + strategy_number * CONFIDENCE_WIDTH
    bucket = bisect.bisect_left(CONFIDENCE_BOUNDS, confidence)
    row[block + bucket] += 1
    row[block + len(CONFIDENCE_BOUNDS) + 1] += int(round(confidence * 1e6))
    row[block + len(CONFIDENCE_BOUNDS) + 2] += 1


def histogram(total: np.ndarray, block: int, bounds: tuple[float, ...] = LATENCY_BOUNDS_S,
              sum_scale: float = 1e9) -> tuple[list[int], float, int]:
    """``(cumulative bucket counts incl. +Inf, sum, count)`` of a summed row's histogram block.

    Latency sums are kept in ns (``sum_scale`` 1e9 → seconds), confidence sums in micro-units.
    """
    n = len(bounds) + 1
    cumulative = np.cumsum(total[block:block + n]).tolist()
    return cumulative, float(total[block + n]) / sum_scale, int(total[block + n + 1])


HEARTBEAT_STALE_NS = 2_000_000_000
"""A process whose ``ALIVE_NS`` is older than this is stopped, hung or gone: the ingest stamps it
every 0.1 s, a worker every 0.2 s, so a loop that has not turned for 2 s does not turn."""
RESTART_WINDOW_NS = 60_000_000_000
"""``INGEST_RESTARTS`` counts the ingest's restarts within this time (the last minute)."""
CRASH_LOOP_HOLD_NS = 3_000_000_000
"""An ingest restarted more than once in the last minute is not ready until this long after its
latest start: it must survive a moment before it counts (readiness, docs/OPERATIONS.md)."""


def heartbeat_age_ns(row: np.ndarray, now_ns: int, since_ns: int = 0) -> int | None:
    """Age of a process row's heartbeat; None if it has not stamped one since ``since_ns`` (its
    latest start, when the supervisor recorded it: an older stamp is a previous incarnation's)."""
    alive_ns = int(row[ALIVE_NS])
    if alive_ns <= 0 or alive_ns < since_ns:
        return None
    return max(0, now_ns - alive_ns)


def heartbeat_fresh(row: np.ndarray, now_ns: int, since_ns: int = 0) -> bool:
    """The process turned its loop within ``HEARTBEAT_STALE_NS`` (and since ``since_ns``)."""
    age = heartbeat_age_ns(row, now_ns, since_ns)
    return age is not None and age <= HEARTBEAT_STALE_NS


def quantile(total: np.ndarray, block: int, q: float) -> float | None:
    """Upper bucket bound (seconds) below which a fraction ``q`` of observations fall."""
    cumulative, _, count = histogram(total, block)
    if count == 0:
        return None
    for bound, c in zip(LATENCY_BOUNDS_S + (float("inf"),), cumulative):
        if c >= q * count:
            return bound
    return float("inf")


def signal_counter(strategy_number: int, action: int) -> int:
    return SIGNALS_BASE + 2 * strategy_number + (0 if action == codes.ACTION_BUY else 1)


def sum_rows(rows: np.ndarray) -> np.ndarray:
    """Counters of every process added up (gauges are not meaningful in the sum)."""
    return rows.sum(axis=0) if rows.ndim == 2 else rows


def summarize(rows: np.ndarray) -> dict:
    """Counters of several process rows added up, as the summary dict of ``rtsig signals``."""
    total = sum_rows(rows)

    def pick(base: int, names: dict[int, str]) -> dict[str, int]:
        return {name: int(total[base + code]) for code, name in names.items() if total[base + code]}

    signals = {}
    for number, sid in enumerate(REALTIME_IDS):
        n = int(total[signal_counter(number, codes.ACTION_BUY)] + total[signal_counter(number, codes.ACTION_SELL)])
        if n:
            signals[sid] = n
    return {
        "messages": int(total[MESSAGES_RECEIVED]),
        "kinds": pick(KIND_BASE, codes.KIND_NAMES),
        "ignored": pick(IGNORED_BASE, codes.IGNORED_NAMES),
        "filtered": int(total[FILTERED]),
        "errors": pick(ERROR_BASE, codes.ERROR_NAMES),
        "signals": signals,
        "overruns": int(total[OVERRUNS]),
    }
