"""Small integer codes shared by the decoder, the kernels, the counters and the reports.

Jitted code sees only the integers; names are for metrics labels, logs and summaries.
"""

from __future__ import annotations

# Event kinds: a message that was decoded and stored.
KIND_DEPTH = 1
KIND_TRADE = 2
KIND_AGG_TRADE = 3
KIND_TICKER = 4
KIND_BOOK_TICKER = 5
KIND_MARK_PRICE = 6
KIND_MINI_TICKER = 7
KIND_NAMES = {
    KIND_DEPTH: "depth",
    KIND_TRADE: "trade",
    KIND_AGG_TRADE: "aggTrade",
    KIND_TICKER: "ticker",
    KIND_BOOK_TICKER: "bookTicker",
    KIND_MARK_PRICE: "markPrice",
    KIND_MINI_TICKER: "miniTicker",
}
N_KINDS = 8

# Ignored kinds: valid messages no strategy uses (counted, never errors).
IGN_DEPTH_DIFF = 1
IGN_KLINE = 2
IGN_NON_MARKET_TRADE = 3
IGN_CONTROL = 4
IGN_OTHER = 5
IGN_NOT_OWNED = 6
"""A symbol another shard judges (``RTSIG_SHARD``): discarded before its payload is decoded."""
IGNORED_NAMES = {
    IGN_DEPTH_DIFF: "depth_diff",
    IGN_KLINE: "kline",
    IGN_NON_MARKET_TRADE: "non_market_trade",
    IGN_CONTROL: "control",
    IGN_OTHER: "other",
    IGN_NOT_OWNED: "not_owned",
}
N_IGNORED = 7

# Error reasons: bad input, dropped.
ERR_NOT_JSON = 1
ERR_NOT_OBJECT = 2
ERR_MISSING_STREAM = 3
ERR_MISSING_DATA = 4
ERR_BAD_STREAM = 5
ERR_MISSING_FIELD = 6
ERR_BAD_FIELD = 7
ERR_BAD_NUMBER = 8
ERR_NEGATIVE_QUANTITY = 9
ERR_NON_POSITIVE_PRICE = 10
ERR_CROSSED_BOOK = 11
ERR_EMPTY_SIDE = 12
ERR_UNSORTED_BOOK = 13
ERR_OVERSIZED = 14
ERR_SYMBOL_MISMATCH = 15
ERR_SYMBOL_TABLE_FULL = 16
ERR_BOOK_PRICE_MISMATCH = 17
"""A book whose mid is far from its symbol's own trade/ticker price: another symbol's book."""
ERR_DIFF_AS_SNAPSHOT = 18
"""A diff-depth update routed as a snapshot (a zero-quantity level, or a spot ``depthUpdate``)."""
ERR_BAD_TIME = 19
"""An event time further ahead of the receipt time than RTSIG_MAX_CLOCK_SKEW_SECONDS."""
ERROR_NAMES = {
    ERR_NOT_JSON: "not_json",
    ERR_NOT_OBJECT: "not_object",
    ERR_MISSING_STREAM: "missing_stream",
    ERR_MISSING_DATA: "missing_data",
    ERR_BAD_STREAM: "bad_stream",
    ERR_MISSING_FIELD: "missing_field",
    ERR_BAD_FIELD: "bad_field",
    ERR_BAD_NUMBER: "bad_number",
    ERR_NEGATIVE_QUANTITY: "negative_quantity",
    ERR_NON_POSITIVE_PRICE: "non_positive_price",
    ERR_CROSSED_BOOK: "crossed_book",
    ERR_EMPTY_SIDE: "empty_side",
    ERR_UNSORTED_BOOK: "unsorted_book",
    ERR_OVERSIZED: "oversized",
    ERR_SYMBOL_MISMATCH: "symbol_mismatch",
    ERR_SYMBOL_TABLE_FULL: "symbol_table_full",
    ERR_BOOK_PRICE_MISMATCH: "book_price_mismatch",
    ERR_DIFF_AS_SNAPSHOT: "diff_as_snapshot",
    ERR_BAD_TIME: "bad_time",
}
N_ERRORS = 20

# Per-message outcome of the decoder: 0 stored, >0 an ERR_ code, <0 minus an IGN_ code,
# STATUS_FILTERED for a symbol outside TRADING_SYMBOLS.
STATUS_OK = 0
STATUS_FILTERED = 100
STATUS_BLOCKED = 101
"""Not decoded yet: its ring is full of entries a worker has not judged (retry later)."""

MAX_MESSAGE_BYTES = 64 * 1024
"""Larger messages are dropped as ``oversized`` before any parsing."""

# Signal actions (kernel output and the last-signal table's last axis).
ACTION_NONE = 0
ACTION_BUY = 1
ACTION_SELL = -1
ACTION_NAMES = {ACTION_BUY: "buy", ACTION_SELL: "sell"}


def status_name(status: int) -> str:
    """Readable name of a decoder status code."""
    if status == STATUS_OK:
        return "ok"
    if status == STATUS_FILTERED:
        return "filtered"
    if status == STATUS_BLOCKED:
        return "blocked"
    if status < 0:
        return IGNORED_NAMES[-status]
    return ERROR_NAMES[status]

# Shutdown stages in the store header's ``shutdown`` field, set by the supervisor.
SHUTDOWN_STOP_INTAKE = 1
"""The ingest stops taking messages and hands what it holds to the workers."""
SHUTDOWN_DRAIN = 2
"""The workers empty their rings, flush their publishes and exit."""
