"""The Numba strategy kernels: small typed loops over the shared-memory store's arrays.

Each kernel is ``@njit(cache=True, error_model="numpy")`` and does no validation (the decoder and
the registry do); the NumPy error model means a division by zero the guards missed yields inf/NaN
(and no signal) instead of an exception that would kill a worker.
Compile them once, before the workers start, with :func:`warm_up` (numba issue 4807: several
processes compiling the same cached function at once can crash).

Frozen constants: parameter positions and output columns are module-level integers frozen into
the compiled code; Numba's cache directory is keyed by a hash of the source
(``rtsig/_jitcache.py``), so changing the registry or the output columns recompiles everything.

The package attributes ``kernels.orderbook_skew`` etc. are the kernel functions (they shadow the
submodules of the same name); reach a submodule with ``from kernels.orderbook_skew import …``.
Signatures: ``orderbook_skew(levels, bid_count, ask_count, params, out) -> action``,
``trade_momentum(trades, position, params, out) -> action``,
``ticker_velocity(tickers, position, lowest_position, params, out) -> action | RESULT_OVERRUN``;
the market-logic strategies (feeds of docs/CONTRACT.md §2c):
``btc_dominance(samples, position, params, out) -> action | RESULT_NO_PRICE``,
``cross_exchange_spread(venue_table, t_ms, params, venue_names, out) -> action``,
``onchain_metrics(transfers, position, chain, params, out) -> action | RESULT_NO_PRICE``;
the microstructure strategies (docs/STRATEGIES.md):
``microprice(levels, bid_count, ask_count, params, out) -> action``,
``order_flow_imbalance(state, history, t_ms, best_bid, best_ask, params, out) -> action`` after
``ofi_record(state, history, best_bid, bid_qty, best_ask, ask_qty, t_ms)``,
``trade_flow_imbalance(trades, position, params, out) -> action``.
The web API's depth metrics are not a kernel: :mod:`rtsig.depth` computes them with NumPy in the
processes that need them, which do not load Numba.
"""

from __future__ import annotations

import numpy as np

from kernels.btc_dominance import btc_dominance
from kernels.cross_exchange_spread import cross_exchange_spread
from kernels.microprice import microprice
from kernels.onchain_metrics import onchain_metrics
from kernels.order_flow_imbalance import ofi_record, order_flow_imbalance
from kernels.orderbook_skew import orderbook_skew
from kernels.output import OUT_WIDTH
from kernels.ticker_velocity import ticker_velocity
from kernels.trade_flow_imbalance import trade_flow_imbalance
from kernels.trade_momentum import trade_momentum

__all__ = ["btc_dominance", "cross_exchange_spread", "microprice", "ofi_record", "onchain_metrics",
           "order_flow_imbalance", "orderbook_skew", "ticker_velocity", "trade_flow_imbalance",
           "trade_momentum", "warm_up"]




def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the argument types the service uses.

    Both writable and read-only views of the market data are covered (a tool that attaches the
    store read-only gets cached machine code too); positions and counts are Python ints / int64.
    """
    from rtsig.layout import (
        ASK,
        BID,
        DEPTH_LEVELS,
        DOMINANCE_DTYPE,
        DOMINANCE_RING,
        MAX_VENUES,
        NAME_BYTES,
        OFI_HISTORY,
        OFI_STATE_WIDTH,
        PRICE,
        QTY,
        TICKER_DTYPE,
        TRADE_DTYPE,
        TRANSFER_DTYPE,
        TRANSFER_RING,
    )
    from rtsig.registry import STRATEGIES

    levels = np.zeros((2, DEPTH_LEVELS, 2), dtype=np.float64)
    levels[BID, 0, PRICE], levels[BID, 0, QTY] = 100.0, 2.0
    levels[ASK, 0, PRICE], levels[ASK, 0, QTY] = 100.01, 1.0
    trades = np.zeros(4, dtype=TRADE_DTYPE)
    trades["event_time_ms"] = [0, 1, 2, 3]
    trades["price"] = 100.0
    trades["quantity"] = 1.0
    tickers = np.zeros(4, dtype=TICKER_DTYPE)
    tickers["event_time_ms"] = [0, 20_000, 40_000, 60_000]
    tickers["last_price"] = 100.0
    tickers["base_volume"] = 1000.0
    params = {sid: st.as_array({}) for sid, st in STRATEGIES.items()}
    samples = np.zeros(DOMINANCE_RING, dtype=DOMINANCE_DTYPE)
    transfers = np.zeros(TRANSFER_RING, dtype=TRANSFER_DTYPE)
    table = np.full((MAX_VENUES, 3), np.nan)
    names = np.zeros((MAX_VENUES, NAME_BYTES), dtype=np.uint8)
    out = np.zeros(OUT_WIDTH, dtype=np.float64)

    for readonly in (False, True):
        book, ring, ticks = levels.copy(), trades.copy(), tickers.copy()
        for array in (book, ring, ticks):
            array.flags.writeable = not readonly
        orderbook_skew(book, 1, 1, params["orderbook_skew"], out)
        trade_momentum(ring, 3, params["trade_momentum"], out)
        ticker_velocity(ticks, 3, 0, params["ticker_velocity"], out)
        microprice(book, 1, 1, params["microprice"], out)
        trade_flow_imbalance(ring, 3, params["trade_flow_imbalance"], out)
    # order-flow state is the worker's own region of the store: always writable
    ofi_state = np.zeros(OFI_STATE_WIDTH, dtype=np.float64)
    ofi_history = np.zeros((OFI_HISTORY, 3), dtype=np.float64)
    ofi_record(ofi_state, ofi_history, 100.0, 2.0, 100.01, 1.0, np.int64(0))
    order_flow_imbalance(ofi_state, ofi_history, np.int64(0), 100.0, 100.01,
                         params["order_flow_imbalance"], out)
    # the market-logic kernels read the store's feed regions, which are always writable
    btc_dominance(samples, 0, params["btc_dominance"], out)
    cross_exchange_spread(table, 0, params["cross_exchange_spread"], names, out)
    onchain_metrics(transfers, 0, 0, params["onchain_metrics"], out)
