"""onchain_metrics: whale transfers and net exchange flows of one chain (BTC or ETH).

The formula is docs/STRATEGIES.md "onchain_metrics", exactly; the transfers are the on-chain feed's
(docs/CONTRACT.md §2c). The ingest keeps a chain's transfers whose direction is ``to_exchange`` or
``from_exchange`` in that chain's ring, in arrival order; ``other`` transfers are counted and
trigger nothing, so they are not kept.

Decisions beyond the spec (also in tests/reference.py):
- the flow window is the chain's directional transfers *that arrived before* the current one (and
  it), with ``ts > t − flow_window_minutes · 60 000``, among the last ``LOOKBACK`` of them (half
  the ring, so that the ingest may run that far ahead without overwriting the window);
- the indicators (value, net_flow_percent, inflow, outflow) are reported for whale signals too;
- ``in + out = 0`` (only zero-value transfers) gives no flow signal;
- the price is the chain symbol's newest Binance price when the transfer arrived; none →
  ``RESULT_NO_PRICE``.
"""

from __future__ import annotations

from numba import njit

from kernels.output import (
    OUT_CODE,
    OUT_CONFIDENCE,
    OUT_CURRENT_PRICE,
    OUT_FEED_POSITION,
    OUT_INDICATORS,
    OUT_OLDEST_POSITION,
    OUT_PRICE,
    OUT_QUANTITY,
    RESULT_NO_PRICE,
)
from rtsig.codes import ACTION_BUY, ACTION_NONE, ACTION_SELL
from rtsig.layout import CHAIN_BTC, DIRECTION_FROM_EXCHANGE, DIRECTION_TO_EXCHANGE, TRANSFER_RING
from rtsig.registry import CONFIDENCE_CAP, param_index

_ID = "onchain_metrics"
WHALE_THRESHOLD_BTC = param_index(_ID, "whale_threshold_btc")
WHALE_THRESHOLD_ETH = param_index(_ID, "whale_threshold_eth")
FLOW_THRESHOLD = param_index(_ID, "exchange_flow_threshold_percent")
FLOW_WINDOW_MINUTES = param_index(_ID, "flow_window_minutes")
CAP = CONFIDENCE_CAP
LOOKBACK = TRANSFER_RING // 2
"""Directional transfers (the current one included) the flow window may reach."""
TRIGGER_WHALE, TRIGGER_EXCHANGE_FLOW = 0, 1


@njit(cache=True, error_model="numpy")
def onchain_metrics(transfers, position, chain, params, out):
    """Judge the transfer at ring ``position`` of ``chain``'s ring (``layout.TRANSFER_DTYPE``);
    ACTION_BUY/SELL/NONE or RESULT_NO_PRICE. On a signal ``out`` gets confidence, price =
    current price, the indicators value, net_flow_percent, inflow, outflow, the trigger code
    (0 whale, 1 exchange_flow) and the transfer's position; ``out[OUT_OLDEST_POSITION]`` is the
    oldest position read (the caller's overrun check)."""
    mask = transfers.shape[0] - 1
    current = transfers[position & mask]
    direction = current.direction
    if direction != DIRECTION_TO_EXCHANGE and direction != DIRECTION_FROM_EXCHANGE:
        return ACTION_NONE
    t = current.ts_ms
    value = current.value
    cutoff = t - int(params[FLOW_WINDOW_MINUTES]) * 60_000
    inflow = 0.0
    outflow = 0.0
    lowest = max(0, position - LOOKBACK + 1)
    for q in range(lowest, position + 1):
        e = transfers[q & mask]
        if e.ts_ms > cutoff:
            if e.direction == DIRECTION_TO_EXCHANGE:
                inflow += e.value
            elif e.direction == DIRECTION_FROM_EXCHANGE:
                outflow += e.value
    out[OUT_OLDEST_POSITION] = lowest
    total = inflow + outflow
    net = (inflow - outflow) / total * 100.0 if total > 0.0 else 0.0
    whale = params[WHALE_THRESHOLD_BTC] if chain == CHAIN_BTC else params[WHALE_THRESHOLD_ETH]
    threshold = params[FLOW_THRESHOLD]
    if value >= whale:
        action = ACTION_SELL if direction == DIRECTION_TO_EXCHANGE else ACTION_BUY
        confidence = min(CAP, 0.65 + 0.30 * min(1.0, (value / whale - 1.0) / 9.0))
        trigger = TRIGGER_WHALE
    elif total > 0.0 and (net >= threshold or net <= -threshold):
        action = ACTION_SELL if net >= threshold else ACTION_BUY
        if threshold >= 100.0:
            confidence = 0.60
        else:
            confidence = min(CAP, 0.60 + 0.35 * min(1.0, (abs(net) - threshold) / (100.0 - threshold)))
        trigger = TRIGGER_EXCHANGE_FLOW
    else:
        return ACTION_NONE
    price = current.price
    if not price > 0.0:
        return RESULT_NO_PRICE
    out[OUT_CONFIDENCE] = confidence
    out[OUT_PRICE] = price
    out[OUT_CURRENT_PRICE] = price
    out[OUT_INDICATORS] = value
    out[OUT_INDICATORS + 1] = net if total > 0.0 else 0.0
    out[OUT_INDICATORS + 2] = inflow
    out[OUT_INDICATORS + 3] = outflow
    out[OUT_QUANTITY] = -1.0
    out[OUT_CODE] = trigger
    out[OUT_FEED_POSITION] = position
    return action
