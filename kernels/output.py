"""The fixed row a strategy kernel writes its result into.

Kernels return an action (ACTION_BUY, ACTION_SELL, ACTION_NONE, or RESULT_OVERRUN when the data
they needed was overwritten) and fill one float64 row of width OUT_WIDTH; the signal builder
maps the indicator and metadata columns to names with the tuples below.
"""

from __future__ import annotations

OUT_CONFIDENCE = 0
OUT_PRICE = 1
OUT_CURRENT_PRICE = 2
OUT_INDICATORS = 3  # up to MAX_INDICATORS columns, in the order of INDICATOR_NAMES
MAX_INDICATORS = 6
OUT_METADATA = OUT_INDICATORS + MAX_INDICATORS  # up to 2 columns, in the order of METADATA_NAMES
OUT_OLDEST_POSITION = OUT_METADATA + 2  # oldest ring position the kernel read (overrun check)
OUT_WIDTH = OUT_OLDEST_POSITION + 1

RESULT_OVERRUN = 2
"""Kernel result: the history this event needs is no longer in the ring."""

INDICATOR_NAMES: dict[str, tuple[str, ...]] = {
    "orderbook_skew": ("bid_volume", "ask_volume", "ratio", "spread_percent"),
    "trade_momentum": ("momentum", "price_component", "quantity_component", "flow_component",
                       "window_trades"),
    "ticker_velocity": ("velocity", "acceleration", "price_change_percent", "time_window",
                        "volume_change_percent"),
}
METADATA_NAMES: dict[str, tuple[str, ...]] = {
    "orderbook_skew": ("top_bid", "top_ask"),
    "trade_momentum": (),
    "ticker_velocity": (),
}
