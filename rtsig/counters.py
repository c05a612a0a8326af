"""Per-process counters in shared memory: one int64 row per process, summed by readers.

Only the owning process writes its row (no atomics needed); the web and the heartbeat add the
rows up. Jitted code increments these indexes directly.
"""

from __future__ import annotations

import numpy as np

from rtsig import codes
from rtsig.registry import REALTIME_IDS

MESSAGES_RECEIVED = 0
KIND_BASE = 8  # + KIND_* (messages stored, by kind)
IGNORED_BASE = 16  # + IGN_*
ERROR_BASE = 24  # + ERR_*
FILTERED = 44
SIGNALS_BASE = 48  # + 2·strategy number + (0 buy, 1 sell)
SIGNALS_BELOW_CONFIDENCE = 60
SIGNALS_COOLDOWN = 61
OVERRUNS = 62
EVENTS_EVALUATED = 63
EVENTS_SKIPPED_SMALL_TRADE = 64
PUBLISHED = 65
PUBLISH_ERRORS = 66
PUBLISH_DROPPED = 67
EVENT_RING_FULL = 68
N_COUNTERS = 128

assert KIND_BASE + codes.N_KINDS <= IGNORED_BASE
assert IGNORED_BASE + codes.N_IGNORED <= ERROR_BASE
assert ERROR_BASE + codes.N_ERRORS <= FILTERED
assert SIGNALS_BASE + 2 * len(REALTIME_IDS) <= SIGNALS_BELOW_CONFIDENCE


def signal_counter(strategy_number: int, action: int) -> int:
    return SIGNALS_BASE + 2 * strategy_number + (0 if action == codes.ACTION_BUY else 1)


def summarize(rows: np.ndarray) -> dict:
    """Counters of several process rows added up, as the summary dict of ``rtsig signals``."""
    total = rows.sum(axis=0) if rows.ndim == 2 else rows

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
