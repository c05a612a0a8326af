"""``/api/v1/metrics…``: order-book metrics of the live books (see :mod:`web.market`).

These answer bare objects, as the seed's examples read them (``jq '.pressure'`` on depth), and
errors as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from web import types as T
from web.deps import WebDeps
from web.envelope import ApiError
from web.market import MarketView
from web.route import Call, Reply, Route

MARKET_ERRORS = (400, 404, 503)


def view(deps: WebDeps) -> MarketView:
    if deps.store is None:
        raise ApiError(503, "UNAVAILABLE", "market data is not available in this process")
    return MarketView(deps.store, deps.clock)


def depth(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).depth(call.path.symbol))


def pressure(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).pressure(call.path.symbol, call.query.timeframe, call.query.max_points))


def summary(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).summary())


def all_symbols(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).all(call.query))  # min_pressure above max_pressure: an empty page


BASE = "/api/v1/metrics"
ROUTES = (
    Route("GET", f"{BASE}/depth/{{symbol}}", "getDepthMetrics",
          "Imbalance, pressure, liquidity, spread, VWAP and strongest levels of the newest book",
          "market", depth, T.DepthMetrics, path_params=T.SymbolPath, errors=MARKET_ERRORS,
          enveloped=False),
    Route("GET", f"{BASE}/pressure/{{symbol}}", "getPressureHistory",
          "Net pressure and imbalance, sampled once per second, over a timeframe", "market",
          pressure, T.PressureMetrics, path_params=T.SymbolPath, query=T.PressureQuery,
          errors=MARKET_ERRORS, enveloped=False),
    Route("GET", f"{BASE}/summary", "getMarketSummary", "Sentiment, liquidity and top symbols",
          "market", summary, T.MarketSummary, errors=(400, 503), enveloped=False),
    Route("GET", f"{BASE}/all", "getAllMetrics", "Per-symbol metrics, filtered, sorted and paged",
          "market", all_symbols, T.MarketAll, query=T.MarketAllQuery, errors=(400, 503),
          enveloped=False),
)
