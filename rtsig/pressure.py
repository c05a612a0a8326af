"""Order-book metrics per symbol, and the once-a-second pressure history behind ``/pressure``.

:func:`book_metrics` computes the depth metrics (:mod:`rtsig.depth`) of a consistent copy of a
symbol's newest book; :func:`every_book_metrics` those of every symbol in one pass. The
supervisor calls :meth:`PressureSampler.sample` once per wall-clock second: it writes every
symbol's net pressure and imbalance ratio into slot ``second % 3600`` of the shared
``pressure_history`` ring, so an hour of history is always there for the web processes to read
(:func:`history`). A slot's second is cleared before and stamped after its values are written;
a reader that sees the stamp change while copying drops that slot.
"""

from __future__ import annotations

import math

import numpy as np

from rtsig.depth import DM, depth_metrics
from rtsig.layout import IMBALANCE, PRESSURE, PRESSURE_HISTORY_S
from rtsig.store import Store


def book_metrics(store: Store, sid: int) -> tuple[np.ndarray, np.void] | None:
    """``(metrics row, book meta)`` of the newest book of ``sid``, or None if it has none."""
    book = store.latest_book(sid)
    if book is None:
        return None
    levels, bid_count, ask_count, meta = book
    return depth_metrics(levels[None], np.array([bid_count]), np.array([ask_count]))[0], meta


def every_book_metrics(store: Store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sids, metrics rows, receipt_ns)`` of the newest book of every symbol that has one."""
    sids, levels, bid_counts, ask_counts, receipt_ns = store.latest_books()
    return sids, depth_metrics(levels, bid_counts, ask_counts), receipt_ns


class PressureSampler:
    """Writes one history sample per second for every symbol (the supervisor owns it)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.last_second = 0

    def due(self, now_s: float) -> bool:
        return int(now_s) != self.last_second

    def sample(self, now_s: float) -> int:
        """Record the current pressure of every symbol at second ``int(now_s)``; symbols sampled."""
        second = int(now_s)
        self.last_second = second
        slot = second % PRESSURE_HISTORY_S
        store = self.store
        count = store.symbol_count
        values = np.full((count, 2), np.nan, dtype=np.float32)
        sids, metrics, _ = every_book_metrics(store)
        values[sids, PRESSURE] = metrics[:, DM["net_pressure"]]
        values[sids, IMBALANCE] = metrics[:, DM["imbalance_ratio"]]
        store.pressure_seconds[slot] = 0
        store.pressure_history[:count, slot, :] = values
        store.pressure_history[count:, slot, :] = np.nan
        store.pressure_seconds[slot] = second
        return len(sids)


def history(store: Store, sid: int, now_s: float, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch seconds, [pressure, imbalance] rows)`` of ``sid`` over the last ``seconds``,
    oldest first, skipping seconds without a sample or without a book."""
    stamps = store.pressure_seconds.copy()
    rows = store.pressure_history[sid].copy()
    again = store.pressure_seconds.copy()
    newest = int(now_s)
    keep = (stamps == again) & (stamps > newest - seconds) & (stamps <= newest) & (stamps > 0)
    keep &= ~np.isnan(rows[:, PRESSURE])
    order = np.argsort(stamps[keep], kind="stable")
    return stamps[keep][order], rows[keep][order].astype(np.float64)


def trend(seconds: np.ndarray, pressure: np.ndarray) -> tuple[str, float]:
    """``(rising|falling|stable, strength 0…1)`` from the least-squares slope of net pressure.

    The change the slope implies over the window is compared with the whole range of net
    pressure (200 points): 5 points or less either way is ``stable``.
    """
    if len(pressure) < 2 or seconds[-1] == seconds[0]:
        return "stable", 0.0
    t = seconds - seconds[0]
    slope = float(np.polyfit(t.astype(np.float64), pressure, 1)[0])
    change = slope * float(t[-1])
    strength = min(1.0, abs(change) / 200.0)
    if not math.isfinite(change) or abs(change) <= 5.0:
        return "stable", round(strength, 4) if math.isfinite(strength) else 0.0
    return ("rising" if change > 0 else "falling"), round(strength, 4)
