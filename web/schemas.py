"""JSON schemas of the API's responses (OpenAPI 3.0 components).

Strategy parameter schemas are generated from the registry (:mod:`rtsig.registry`), the single
source of every parameter's type and range.
"""

from __future__ import annotations

from rtsig.registry import STRATEGIES

NUM = {"type": "number", "nullable": True}
INT = {"type": "integer"}
STR = {"type": "string"}
NSTR = {"type": "string", "nullable": True}
BOOL = {"type": "boolean"}
TIMESTAMP = {"type": "string", "format": "date-time"}
PARAM_VALUE = {"nullable": True, "anyOf": [{"type": "number"}, {"type": "boolean"}]}


def obj(properties: dict, required: list[str] | None = None, nullable: bool = False) -> dict:
    out = {"type": "object", "properties": properties,
           "required": list(properties) if required is None else required}
    if nullable:
        out["nullable"] = True
    return out


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: dict) -> dict:
    return {"type": "array", "items": items}


PARAMETERS = {"type": "object", "additionalProperties": PARAM_VALUE,
              "description": "parameter name → value (numbers, booleans; null for an unset optional)"}

COMPONENTS: dict[str, dict] = {
    "Parameters": PARAMETERS,
    "StrategySummary": obj({
        "strategy_id": {"type": "string", "enum": list(STRATEGIES)}, "name": STR, "description": STR,
        "enabled": BOOL, "realtime": BOOL, "has_global_config": BOOL,
        "symbol_overrides": array(STR), "parameter_count": INT}),
    "StrategyList": array(ref("StrategySummary")),
    "ParameterSchema": obj({
        "name": STR, "type": {"type": "string", "enum": ["int", "float", "bool"]},
        "description": STR, "default": PARAM_VALUE, "min": NUM, "max": NUM,
        "min_exclusive": BOOL, "max_exclusive": BOOL, "nullable": BOOL, "unit": STR,
        "env": STR}),
    "StrategySchema": obj({"strategy_id": STR, "parameters": array(ref("ParameterSchema"))}),
    "Defaults": obj({"strategy_id": STR, "parameters": ref("Parameters")}),
    "EffectiveConfig": obj({
        "strategy_id": STR, "symbol": NSTR, "parameters": ref("Parameters"), "version": INT,
        "source": {"type": "string", "enum": ["mongodb", "mysql", "sqlite", "environment", "default"]},
        "is_override": BOOL, "created_at": {**TIMESTAMP, "nullable": True},
        "updated_at": {**TIMESTAMP, "nullable": True},
        "parameter_sources": {"type": "object", "additionalProperties": STR}}),
    "AuditRecord": obj({
        "id": STR, "strategy_id": STR, "symbol": NSTR,
        "action": {"type": "string", "enum": ["CREATE", "UPDATE", "DELETE", "ROLLBACK"]},
        "old_parameters": {**PARAMETERS, "nullable": True},
        "new_parameters": {**PARAMETERS, "nullable": True},
        "old_version": INT, "new_version": INT, "changed_by": STR, "changed_at": TIMESTAMP,
        "reason": STR}),
    "AuditList": array(ref("AuditRecord")),
    "ChangeResult": obj({"config": ref("EffectiveConfig"),
                         "audit": {"allOf": [ref("AuditRecord")], "nullable": True},
                         "validate_only": BOOL}),
    "CacheRefresh": obj({"refreshed": BOOL, "store": STR, "state": STR, "stored_configs": INT}),
    "DepthMetrics": obj({
        "symbol": STR, "timestamp": TIMESTAMP,
        "imbalance": obj({"ratio": NUM, "percent": NUM, "bid_volume": NUM, "ask_volume": NUM}),
        "pressure": obj({"buy_pressure": NUM, "sell_pressure": NUM, "net_pressure": NUM,
                         "interpretation": {"type": "string", "enum": ["bullish", "bearish", "neutral"]}}),
        "liquidity": obj({"total": NUM, "bid_depth_5": NUM, "ask_depth_5": NUM, "bid_depth_10": NUM,
                          "ask_depth_10": NUM}),
        "spread": obj({"best_bid": NUM, "best_ask": NUM, "spread_abs": NUM, "spread_bps": NUM,
                       "mid_price": NUM}),
        "vwap": obj({"bid": NUM, "ask": NUM, "spread": NUM}),
        "order_book_quality": obj({"bid_levels": INT, "ask_levels": INT, "total_levels": INT,
                                   "age_ms": INT}),
        "strongest_levels": obj({"bid": obj({"price": NUM, "volume": NUM}),
                                 "ask": obj({"price": NUM, "volume": NUM})})}),
    "PressureMetrics": obj({
        "symbol": STR, "timeframe": {"type": "string", "enum": ["1m", "5m", "15m", "1h"]},
        "timeframe_seconds": INT,
        "summary": obj({"avg_pressure": NUM, "max_pressure": NUM, "min_pressure": NUM,
                        "current_pressure": NUM,
                        "trend": {"type": "string", "enum": ["bullish", "bearish", "neutral"]},
                        "trend_strength": {"type": "number", "minimum": 0, "maximum": 1}}),
        "total_data_points": INT, "returned_data_points": INT,
        "pressure_history": array(obj({"timestamp": TIMESTAMP, "pressure": NUM})),
        "imbalance_history": array(obj({"timestamp": TIMESTAMP, "imbalance": NUM}))}),
    "MarketSummary": obj({
        "symbols_tracked": INT,
        "market_sentiment": obj({"bullish_symbols": INT, "bearish_symbols": INT,
                                 "neutral_symbols": INT, "avg_net_pressure": NUM,
                                 "avg_imbalance_ratio": NUM}),
        "liquidity": obj({"avg_spread_bps": NUM, "total_liquidity": NUM}),
        "top_pressure_symbols": obj({
            "highest_buy_pressure": array(obj({"symbol": STR, "buy_pressure": NUM, "net_pressure": NUM})),
            "highest_sell_pressure": array(obj({"symbol": STR, "sell_pressure": NUM,
                                                "net_pressure": NUM}))})}),
    "SymbolMetrics": obj({
        "symbol": STR, "timestamp": TIMESTAMP, "net_pressure": NUM, "buy_pressure": NUM,
        "sell_pressure": NUM, "imbalance_ratio": NUM, "imbalance_percent": NUM, "spread_bps": NUM,
        "total_liquidity": NUM, "mid_price": NUM,
        "trend": {"type": "string", "enum": ["bullish", "bearish", "neutral"]}}),
    "MarketAll": obj({"symbols": array(ref("SymbolMetrics")),
                      "pagination": obj({"total": INT, "limit": INT, "offset": INT, "has_next": BOOL})}),
    "Error": obj({"code": {"type": "string", "enum": ["NOT_FOUND", "VALIDATION_ERROR", "UNAUTHORIZED",
                                                      "CONFLICT", "RATE_LIMITED", "UNAVAILABLE",
                                                      "INTERNAL_ERROR"]},
                  "message": STR, "details": {"type": "object"}}),
    "BareError": obj({"error": ref("Error")}),
    "ErrorEnvelope": obj({"success": {"type": "boolean", "enum": [False]},
                          "data": {"type": "object", "nullable": True},
                          "error": ref("Error"), "metadata": {"type": "object", "nullable": True}}),
    "Health": obj({"status": {"type": "string", "enum": ["healthy"]}, "instance": STR, "pid": INT,
                   "uptime_seconds": {"type": "number"}}),
    "Check": obj({"ok": BOOL, "detail": STR, "degraded": BOOL}, required=["ok", "detail"]),
    "Ready": obj({"status": {"type": "string", "enum": ["ready", "not_ready"]},
                  "failing": array(STR),
                  "checks": {"type": "object", "additionalProperties": ref("Check")}}),
}


def envelope(data_schema: str) -> dict:
    """The success envelope around ``data_schema``."""
    return obj({"success": {"type": "boolean", "enum": [True]}, "data": ref(data_schema),
                "error": {"type": "object", "nullable": True},
                "metadata": {"type": "object", "nullable": True}})
