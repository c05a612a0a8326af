"""Each feed's age and counts, from the ingest's counter row: for ``/ready`` (information, never
a failure: the market-logic strategies are idle without feed data) and ``/metrics``.

No Numba here: the web processes import this.
"""

from __future__ import annotations

import numpy as np

from rtsig import counters as C
from rtsig.layout import FEED_NAMES

REASON_NAMES = {1: "not_json", 2: "not_object", 3: "missing_field", 4: "bad_field", 5: "bad_number",
                6: "bad_time", 7: "bad_symbol", 8: "bad_chain", 9: "bad_direction", 10: "bad_venue",
                11: "oversized"}
"""``rtsig.feeds.messages.REASON_NAMES`` (repeated so that this module stays import-light)."""


def feed_status(row: np.ndarray, now_ns: int) -> dict[str, dict]:
    """Per feed: messages accepted, rejected, seconds since the newest was received and how old
    its data (``ts``) was then — None before the first message."""
    out = {}
    for feed, name in enumerate(FEED_NAMES):
        received_ns = int(row[C.FEED_LAST_RECEIPT_BASE + feed])
        ts_ms = int(row[C.FEED_LAST_TS_BASE + feed])
        base = C.FEED_ERRORS_BASE + feed * C.N_FEED_REASONS
        out[name] = {
            "messages": int(row[C.FEED_MESSAGES_BASE + feed]),
            "rejected": int(row[base:base + C.N_FEED_REASONS].sum()),
            "age_seconds": max(0.0, (now_ns - received_ns) / 1e9) if received_ns > 0 else None,
            "data_age_seconds": max(0.0, now_ns / 1e9 - ts_ms / 1e3) if ts_ms > 0 else None,
        }
    return out


def describe(status: dict) -> str:
    """One line for ``/ready``'s ``feed_<name>`` check."""
    counts = f"{status['messages']} accepted, {status['rejected']} rejected"
    if status["age_seconds"] is None:
        return f"no message yet (the strategy is idle); {counts}"
    return (f"last message {status['age_seconds']:.1f} s ago, its data {status['data_age_seconds']:.1f} s "
            f"old; {counts}")


def feed_metrics(rows: np.ndarray, now_ns: int, prefix: str):
    """Prometheus families of the feeds (ingest row; the offline row is never scraped)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    row = rows[C.ROW_INGEST]
    status = feed_status(row, now_ns)
    age = GaugeMetricFamily(prefix + "feed_age_seconds",
                            "Seconds since the newest message of each market-logic feed was received "
                            "(absent before the first).", labels=["feed"])
    data_age = GaugeMetricFamily(prefix + "feed_data_age_seconds",
                                 "Age of the newest feed message's own time (ts) now.", labels=["feed"])
    messages = CounterMetricFamily(prefix + "feed_messages", "Feed messages accepted, by feed.",
                                   labels=["feed"])
    errors = CounterMetricFamily(prefix + "feed_errors", "Feed messages rejected, by feed and reason.",
                                 labels=["feed", "reason"])
    for feed, name in enumerate(FEED_NAMES):
        s = status[name]
        messages.add_metric([name], s["messages"])
        if s["age_seconds"] is not None:
            age.add_metric([name], s["age_seconds"])
            data_age.add_metric([name], s["data_age_seconds"])
        base = C.FEED_ERRORS_BASE + feed * C.N_FEED_REASONS
        for code, reason in REASON_NAMES.items():
            errors.add_metric([name, reason], int(row[base + code]))
    yield age
    yield data_age
    yield messages
    yield errors
    directions = CounterMetricFamily(prefix + "feed_transfers", "On-chain transfers accepted, by direction.",
                                     labels=["direction"])
    for k, direction in enumerate(("to_exchange", "from_exchange", "other")):
        directions.add_metric([direction], int(row[C.TRANSFER_DIRECTION_BASE + k]))
    yield directions
    for name, doc, index in (
            ("feed_filtered", "Feed messages for a symbol not traded here (TRADING_SYMBOLS, shard).",
             C.FEED_FILTERED),
            ("feed_futures_quotes", "USD-M futures books used as quotes by cross_exchange_spread.",
             C.FEED_QUOTES_MIRRORED)):
        yield CounterMetricFamily(prefix + name, doc, value=int(row[index]))
    yield CounterMetricFamily(prefix + "signals_no_price",
                              "Market-logic candidates dropped: their symbol had no Binance price.",
                              value=int(C.sum_rows(rows)[C.NO_PRICE]))
