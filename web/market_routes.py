"""``/api/v1/metrics…``: order-book metrics of the live books (see :mod:`web.market`).

These answer bare objects, as the seed's examples read them (``jq '.pressure'`` on depth), and
errors as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from web.deps import WebDeps
from web.envelope import ApiError
from web.market import TIMEFRAMES_S, TRENDS, MarketView
from web.spec import Call, Field, Reply, Route

SYMBOL = Field("symbol", "string", "trading symbol, e.g. BTCUSDT", required=True, max_length=24,
               example="BTCUSDT")
MARKET_ERRORS = (400, 404, 503)


def view(deps: WebDeps) -> MarketView:
    if deps.store is None:
        raise ApiError(503, "UNAVAILABLE", "market data is not available in this process")
    return MarketView(deps.store, deps.clock)


def depth(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).depth(call.path["symbol"]))


def pressure(deps: WebDeps, call: Call) -> Reply:
    q = call.query
    return Reply(view(deps).pressure(call.path["symbol"], q["timeframe"], q["max_points"]))


def summary(deps: WebDeps, call: Call) -> Reply:
    return Reply(view(deps).summary())


def all_symbols(deps: WebDeps, call: Call) -> Reply:
    q = call.query
    symbols = q["symbols"].split(",") if q.get("symbols") else None
    if q.get("min_pressure") is not None and q.get("max_pressure") is not None \
            and q["min_pressure"] > q["max_pressure"]:
        raise ApiError(400, "VALIDATION_ERROR", "min_pressure is above max_pressure",
                       {"min_pressure": "must not exceed max_pressure"})
    return Reply(view(deps).all(symbols, q.get("min_pressure"), q.get("max_pressure"), q.get("trend"),
                                q["sort_by"], q["sort_order"], q["limit"], q["offset"]))


BASE = "/api/v1/metrics"
ROUTES = (
    Route("GET", f"{BASE}/depth/{{symbol}}", "getDepthMetrics",
          "Imbalance, pressure, liquidity, spread, VWAP and strongest levels of the newest book",
          "market", depth, "DepthMetrics", path_fields=(SYMBOL,), errors=MARKET_ERRORS, enveloped=False),
    Route("GET", f"{BASE}/pressure/{{symbol}}", "getPressureHistory",
          "Net pressure and imbalance, sampled once per second, over a timeframe", "market",
          pressure, "PressureMetrics", path_fields=(SYMBOL,),
          query=(Field("timeframe", "string", "window", default="5m", enum=tuple(TIMEFRAMES_S)),
                 Field("max_points", "integer", "evenly thin the history to at most this many points",
                       default=300, minimum=1, maximum=3600)),
          errors=MARKET_ERRORS, enveloped=False),
    Route("GET", f"{BASE}/summary", "getMarketSummary", "Sentiment, liquidity and top symbols",
          "market", summary, "MarketSummary", errors=(503,), enveloped=False),
    Route("GET", f"{BASE}/all", "getAllMetrics", "Per-symbol metrics, filtered, sorted and paged",
          "market", all_symbols, "MarketAll",
          query=(Field("symbols", "string", "comma-separated symbols (default: all)", max_length=10_000),
                 Field("min_pressure", "number", "net pressure at least", minimum=-100, maximum=100),
                 Field("max_pressure", "number", "net pressure at most", minimum=-100, maximum=100),
                 Field("trend", "string", "5-minute pressure trend", enum=TRENDS),
                 Field("limit", "integer", "page size", default=50, minimum=1, maximum=1000),
                 Field("offset", "integer", "page start", default=0, minimum=0, maximum=1_000_000),
                 Field("sort_by", "string", "sort key", default="symbol",
                       enum=("symbol", "pressure", "imbalance", "liquidity")),
                 Field("sort_order", "string", "sort order", default="asc", enum=("asc", "desc"))),
          errors=(400, 503), enveloped=False),
)
