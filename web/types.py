"""Every request and response of the operator API, declared once as msgspec Structs.

The app validates requests against these types (:mod:`web.app`), the handlers build their
answers as these types, and ``/openapi.json`` is generated from them (:mod:`web.openapi`): the
documentation cannot drift from what the code accepts and returns. Strategy parameters get one
Struct per strategy, generated from the registry (:mod:`rtsig.registry`), the single source of
every parameter's type and range.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from rtsig.registry import STRATEGIES, Param, Strategy

# ----------------------------------------------------------------------------- scalars
if TYPE_CHECKING:  # a Literal of the registry's ids, built at run time: a str to the type checker
    StrategyId = str
else:
    StrategyId = Annotated[Literal[tuple(STRATEGIES)], Meta(description="strategy id")]
Symbol = Annotated[str, Meta(max_length=24, description="trading symbol, e.g. BTCUSDT", examples=["BTCUSDT"])]
NON_BLANK = ("[^\\t-\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
             "\\ufeff]")
"""At least one character that is not white space by Python's or ECMAScript's definition.

NOTE: ``\\S`` differs between the two (ECMAScript counts U+FEFF as space, Python counts
U+001C…U+001F and U+0085), so a validator in either language would disagree with the service
about some names; an explicit class means the same everywhere."""
ChangedBy = Annotated[str, Meta(min_length=1, max_length=255, pattern=NON_BLANK,
                                description="who makes the change (audited, rate-limited)")]
Reason = Annotated[str, Meta(max_length=2000, description="why (audited)")]
MAX_VERSION = 2**31 - 1
"""Versions are counted from 1 and stored as 32-bit integers in every store."""
MAX_INTEGER_PARAMETER = 2**53 - 1
"""Integer parameters without a maximum of their own stop here (exact in every JSON reader)."""
ExpectedVersion = Annotated[int, Meta(ge=0, le=MAX_VERSION, description=(
    "fail with 409 unless the stored version is this (0: the config must not exist yet)"))]
TargetVersion = Annotated[int, Meta(ge=1, le=MAX_VERSION, description=(
    "version to restore (default: the previous one)"))]
ParamValue = bool | int | float | None
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Number = float | None
"""A figure of the market metrics; null when it cannot be computed (an empty book side)."""
Trend = Literal["bullish", "bearish", "neutral"]
Timeframe = Literal["1m", "5m", "15m", "1h"]
ErrorCode = Literal["NOT_FOUND", "VALIDATION_ERROR", "UNAUTHORIZED", "CONFLICT", "RATE_LIMITED",
                    "UNAVAILABLE", "INTERNAL_ERROR"]
Source = Literal["mongodb", "mysql", "sqlite", "environment", "default"]
AuditAction = Literal["CREATE", "UPDATE", "DELETE", "ROLLBACK"]


class Request(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request's path, query or body: unknown fields are errors."""


# ----------------------------------------------------------------------------- path parameters
class StrategyPath(Request):
    strategy_id: StrategyId


class StrategySymbolPath(Request):
    strategy_id: StrategyId
    symbol: Symbol


class SymbolPath(Request):
    symbol: Symbol


# ----------------------------------------------------------------------------- query parameters
class NoQuery(Request):
    pass


class DeleteQuery(Request):
    changed_by: ChangedBy
    reason: Reason = ""
    expected_version: ExpectedVersion | None = None


class AuditQuery(Request):
    symbol: Annotated[Symbol, Meta(description="only this symbol's changes (default: every level)")] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="at most this many records")] = 50


class RollbackQuery(Request):
    symbol: Annotated[Symbol, Meta(description=(
        "the symbol whose override to roll back, as the body's symbol (the replaced service took it "
        "here); if both are given they must agree (409 otherwise)"))] | None = None


class PressureQuery(Request):
    timeframe: Annotated[Timeframe, Meta(description="window")] = "5m"
    max_points: Annotated[int, Meta(ge=1, le=3600, description=(
        "evenly thin the history to at most this many points (the newest is kept)"))] = 300


Pressure = Annotated[float, Meta(ge=-100, le=100)]


class MarketAllQuery(Request):
    symbols: Annotated[str, Meta(max_length=10_000, description="comma-separated symbols (default: all)")] | None = None
    min_pressure: Annotated[Pressure, Meta(description="net pressure at least")] | None = None
    max_pressure: Annotated[
        Pressure, Meta(description="net pressure at most (below min_pressure: no rows)")] | None = None
    trend: Annotated[Trend, Meta(description="5-minute pressure trend")] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="page size")] = 50
    offset: Annotated[int, Meta(ge=0, le=1_000_000, description="page start")] = 0
    sort_by: Annotated[Literal["symbol", "pressure", "imbalance", "liquidity"], Meta(description="sort key")] = "symbol"
    sort_order: Annotated[Literal["asc", "desc"], Meta(description="sort order")] = "asc"


# ----------------------------------------------------------------------------- request bodies
class ChangeRequest(Request):
    """A change of stored parameters; ``parameters`` is checked per strategy (:data:`PARAMETERS`)."""

    parameters: Annotated[dict[str, ParamValue], Meta(min_length=1, description=(
        "the parameters to change (merged into the stored ones)"))]
    changed_by: ChangedBy
    reason: Reason = ""
    validate_only: Annotated[bool, Meta(description="check and preview without storing")] = False
    expected_version: ExpectedVersion | None = None


class RollbackRequest(Request, kw_only=True):
    target_version: TargetVersion | None = None
    symbol: Annotated[Symbol, Meta(description=(
        "roll back this symbol's override instead of the global config"))] | None = None
    changed_by: ChangedBy
    reason: Reason = ""


def _parameter_type(p: Param) -> Any:
    """The JSON type of one registry parameter, with its range."""
    if p.type is bool:
        kind: Any = bool
    else:
        bounds: dict[str, Any] = {}
        if p.min is not None:
            bounds["gt" if p.min_exclusive else "ge"] = p.min
        if p.max is not None:
            bounds["lt" if p.max_exclusive else "le"] = p.max
        elif p.type is int:
            bounds["le"] = MAX_INTEGER_PARAMETER
        if p.type is int:
            bounds = {k: int(v) for k, v in bounds.items()}
        unit = f" ({p.unit})" if p.unit else ""
        kind = Annotated[p.type, Meta(description=p.description + unit, **bounds)]
    return (kind | None) if p.optional else kind


def _parameters_struct(st: Strategy) -> type[Struct]:
    name = "".join(part.title() for part in st.strategy_id.split("_")) + "Parameters"
    return msgspec.defstruct(name, [(p.name, _parameter_type(p) | UnsetType, UNSET) for p in st.params],
                             bases=(Request,), module=__name__)


PARAMETERS: dict[str, type[Struct]] = {sid: _parameters_struct(st) for sid, st in STRATEGIES.items()}
"""Per strategy: its parameters, every one optional (a change is partial), unknown names refused."""


@functools.cache
def change_request_for(strategy_id: str) -> type[Struct]:
    """:class:`ChangeRequest` with ``parameters`` of one strategy (what /openapi.json documents)."""
    params: Any = Annotated[PARAMETERS[strategy_id], Meta(extra_json_schema={"minProperties": 1})]
    fields = [(f.name, params if f.name == "parameters" else f.type,
               msgspec.NODEFAULT if f.required else f.default)
              for f in msgspec.structs.fields(ChangeRequest)]
    name = PARAMETERS[strategy_id].__name__.replace("Parameters", "ChangeRequest")
    return msgspec.defstruct(name, fields, bases=(Request,), module=__name__)


# ----------------------------------------------------------------------------- configuration answers
class StrategySummary(Struct):
    strategy_id: StrategyId
    name: str
    description: str
    enabled: bool
    realtime: bool
    has_global_config: bool
    symbol_overrides: list[str]
    parameter_count: int


class ParameterSpec(Struct):
    name: str
    type: Literal["int", "float", "bool"]
    description: str
    default: ParamValue
    min: float | None
    max: float | None
    min_exclusive: bool
    max_exclusive: bool
    nullable: bool
    unit: str
    env: str


class StrategySchema(Struct):
    strategy_id: StrategyId
    parameters: list[ParameterSpec]


class Defaults(Struct):
    strategy_id: StrategyId
    parameters: dict[str, ParamValue]


class EffectiveConfig(Struct):
    strategy_id: StrategyId
    symbol: str | None
    parameters: dict[str, ParamValue]
    version: int
    source: Source
    is_override: bool
    created_at: Timestamp | None
    updated_at: Timestamp | None
    parameter_sources: dict[str, str]


class AuditEntry(Struct):
    id: str | None
    strategy_id: StrategyId
    symbol: str | None
    action: AuditAction
    old_parameters: dict[str, ParamValue] | None
    new_parameters: dict[str, ParamValue] | None
    old_version: int
    new_version: int
    changed_by: str
    changed_at: Timestamp
    reason: str


class ChangeResult(Struct):
    config: EffectiveConfig
    audit: AuditEntry | None
    validate_only: bool


class CacheRefresh(Struct):
    refreshed: bool
    store: str
    state: str
    stored_configs: int


# ----------------------------------------------------------------------------- market answers (bare)
class Imbalance(Struct):
    ratio: Number
    percent: Number
    bid_volume: Number
    ask_volume: Number


class PressureFigures(Struct):
    buy_pressure: Number
    sell_pressure: Number
    net_pressure: Number
    interpretation: Trend


class Liquidity(Struct):
    total: Number
    bid_depth_5: Number
    ask_depth_5: Number
    bid_depth_10: Number
    ask_depth_10: Number


class Spread(Struct):
    best_bid: Number
    best_ask: Number
    spread_abs: Number
    spread_bps: Number
    mid_price: Number


class Vwap(Struct):
    bid: Number
    ask: Number
    spread: Number


class BookQuality(Struct):
    bid_levels: int
    ask_levels: int
    total_levels: int
    age_ms: int


class Level(Struct):
    price: Number
    volume: Number


class StrongestLevels(Struct):
    bid: Level
    ask: Level


class DepthMetrics(Struct):
    symbol: str
    timestamp: Timestamp
    imbalance: Imbalance
    pressure: PressureFigures
    liquidity: Liquidity
    spread: Spread
    vwap: Vwap
    order_book_quality: BookQuality
    strongest_levels: StrongestLevels


class PressureSummary(Struct):
    avg_pressure: Number
    max_pressure: Number
    min_pressure: Number
    current_pressure: Number
    trend: Trend
    trend_strength: Annotated[float, Meta(ge=0, le=1)]


class PressurePoint(Struct):
    timestamp: Timestamp
    pressure: Number


class ImbalancePoint(Struct):
    timestamp: Timestamp
    imbalance: Number


class PressureMetrics(Struct):
    symbol: str
    timeframe: Timeframe
    timeframe_seconds: int
    summary: PressureSummary
    total_data_points: int
    returned_data_points: int
    pressure_history: list[PressurePoint]
    imbalance_history: list[ImbalancePoint]


class Sentiment(Struct):
    bullish_symbols: int
    bearish_symbols: int
    neutral_symbols: int
    avg_net_pressure: Number
    avg_imbalance_ratio: Number


class MarketLiquidity(Struct):
    avg_spread_bps: Number
    total_liquidity: Number


class BuyPressureRank(Struct):
    symbol: str
    buy_pressure: Number
    net_pressure: Number


class SellPressureRank(Struct):
    symbol: str
    sell_pressure: Number
    net_pressure: Number


class TopPressure(Struct):
    highest_buy_pressure: list[BuyPressureRank]
    highest_sell_pressure: list[SellPressureRank]


class MarketSummary(Struct):
    symbols_tracked: int
    market_sentiment: Sentiment
    liquidity: MarketLiquidity
    top_pressure_symbols: TopPressure


class SymbolMetrics(Struct):
    symbol: str
    timestamp: Timestamp
    net_pressure: Number
    buy_pressure: Number
    sell_pressure: Number
    imbalance_ratio: Number
    imbalance_percent: Number
    spread_bps: Number
    total_liquidity: Number
    mid_price: Number
    trend: Trend


class Pagination(Struct):
    total: int
    limit: int
    offset: int
    has_next: bool


class MarketAll(Struct):
    symbols: list[SymbolMetrics]
    pagination: Pagination


# ----------------------------------------------------------------------------- health
class Health(Struct):
    status: Literal["healthy"]
    instance: str
    pid: int
    uptime_seconds: float


class Check(Struct, omit_defaults=True):
    ok: bool
    detail: str
    degraded: bool | UnsetType = UNSET


class Ready(Struct):
    status: Literal["ready", "not_ready"]
    failing: list[str]
    checks: dict[str, Check]


# ----------------------------------------------------------------------------- envelope and errors
class Error(Struct):
    code: ErrorCode
    message: str
    details: dict[str, Any]


class ErrorEnvelope(Struct):
    success: Literal[False]
    data: None
    error: Error
    metadata: None


class BareError(Struct):
    """The error of the market routes (the seed's shape)."""

    error: Error


class Envelope(Struct):
    """``{"success", "data", "error", "metadata"}`` of every ``/api/v1/strategies`` answer."""

    success: bool
    data: Any
    error: Error | None = None
    metadata: dict[str, Any] | None = None
