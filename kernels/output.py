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
# market-logic strategies only (their text metadata is looked up from these by workers.judge)
OUT_QUANTITY = OUT_OLDEST_POSITION + 1  # the signal's quantity (cross_exchange_spread); NaN: default
OUT_CODE = OUT_QUANTITY + 1  # rotation / trigger code, or the chosen venue's number
OUT_FEED_POSITION = OUT_CODE + 1  # position of the feed entry that triggered it (its txid, source)
OUT_WIDTH = OUT_FEED_POSITION + 1

RESULT_OVERRUN = 2
"""Kernel result: the history this event needs is no longer in the ring."""
RESULT_NO_PRICE = 3
"""Kernel result (market-logic strategies): a signal, but its symbol has no Binance price yet
(no trade, book or ticker): dropped and counted as ``no_price``."""

ROTATIONS = ("to_btc", "to_alts", "momentum")
"""btc_dominance's ``metadata.rotation`` by OUT_CODE."""
TRIGGERS = ("whale", "exchange_flow")
"""onchain_metrics's ``metadata.trigger`` by OUT_CODE."""
TIMEFRAMES = {"btc_dominance": "1h", "cross_exchange_spread": "tick", "onchain_metrics": "event"}
"""The signal's ``timeframe`` of the market-logic strategies (the realtime ones: ``tick``)."""

INDICATOR_NAMES: dict[str, tuple[str, ...]] = {
    "orderbook_skew": ("bid_volume", "ask_volume", "ratio", "spread_percent"),
    "trade_momentum": ("momentum", "price_component", "quantity_component", "flow_component",
                       "window_trades"),
    "ticker_velocity": ("velocity", "acceleration", "price_change_percent", "time_window",
                        "volume_change_percent"),
    "btc_dominance": ("dominance", "dominance_change", "window_hours"),
    "cross_exchange_spread": ("spread_percent", "binance_mid", "venue_mid"),
    "onchain_metrics": ("value", "net_flow_percent", "inflow", "outflow"),
    "microprice": ("microprice", "deviation_bps", "imbalance", "spread_bps", "bid_volume",
                   "ask_volume"),
    "order_flow_imbalance": ("ofi", "ofi_normalized", "mean_depth", "updates", "span_seconds"),
    "trade_flow_imbalance": ("imbalance", "buy_volume", "sell_volume", "window_trades",
                             "span_seconds"),
}
METADATA_NAMES: dict[str, tuple[str, ...]] = {
    "orderbook_skew": ("top_bid", "top_ask"),
    "trade_momentum": (),
    "ticker_velocity": (),
    "btc_dominance": (),  # text metadata: rotation, dominance_source (workers.judge)
    "cross_exchange_spread": (),  # venue, buy_venue, sell_venue
    "onchain_metrics": (),  # chain, txid, exchange, trigger
    "microprice": ("top_bid", "top_ask"),
    "order_flow_imbalance": ("top_bid", "top_ask"),
    "trade_flow_imbalance": (),
}
