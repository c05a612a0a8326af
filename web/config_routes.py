"""``/api/v1/strategies…``: strategy catalogue, effective configs, changes, audit, rollback."""

from __future__ import annotations

import logging

from rtsig.config.model import utc_now
from rtsig.config.notify import bump_epoch
from rtsig.config.service import ChangeResult
from rtsig.config.stores import ANY_SYMBOL
from rtsig.counters import CONFIG_CHANGES_BASE
from rtsig.errors import StoreUnavailable
from rtsig.params import EffectiveConfig
from rtsig.registry import STRATEGIES
from web.deps import WebDeps
from web.envelope import bad_request
from web.guard import check_token
from web.spec import Call, Field, Reply, Route

STRATEGY = Field("strategy_id", "string", "strategy id", required=True, enum=tuple(STRATEGIES))
SYMBOL = Field("symbol", "string", "trading symbol, e.g. BTCUSDT", required=True, max_length=24,
               example="BTCUSDT")
CHANGED_BY = Field("changed_by", "string", "who makes the change (audited, rate-limited)",
                   required=True, max_length=255, pattern=r"\S")
REASON = Field("reason", "string", "why (audited)", max_length=2000)
EXPECTED_VERSION = Field("expected_version", "integer",
                         "fail with 409 unless the stored version is this (0: must not exist yet)",
                         minimum=0, nullable=True)
UPDATE_BODY = (
    Field("parameters", "object", "the parameters to change (merged into the stored ones)",
          required=True, schema_ref="Parameters"),
    CHANGED_BY, REASON,
    Field("validate_only", "boolean", "check and preview without storing", default=False),
    EXPECTED_VERSION,
)
DELETE_QUERY = (CHANGED_BY, REASON, EXPECTED_VERSION)
ROLLBACK_BODY = (
    Field("target_version", "integer", "version to restore (default: the previous one)",
          minimum=1, nullable=True),
    Field("symbol", "string", "roll back this symbol's override instead of the global config",
          max_length=24, nullable=True),
    CHANGED_BY, REASON,
)
log = logging.getLogger(__name__)
CONFIG_ERRORS = (400, 401, 403, 404, 409, 422, 429, 503)


def config_dict(c: EffectiveConfig) -> dict:
    return {"strategy_id": c.strategy_id, "symbol": c.symbol, "parameters": dict(c.parameters),
            "version": c.version, "source": c.source, "is_override": c.is_override,
            "created_at": c.created_at, "updated_at": c.updated_at,
            "parameter_sources": dict(c.sources)}


def store_metadata(deps: WebDeps) -> dict:
    health = deps.config.health(refresh=False)  # the route read the store already (fresh)
    return {"config_store": health["store"], "config_state": health["state"],
            "serving_from": health["serving_from"], "degraded": health["degraded"]}


def fresh(deps: WebDeps) -> bool:
    """Re-read the store when any process of the host changed it (the epoch moved) or the TTL
    passed; True when the store was read (or a read was waited for) just now."""
    if deps.header is not None:
        epoch = int(deps.header[0]["config_epoch"])
        if epoch != deps.epoch_seen:
            deps.epoch_seen = epoch
            deps.config.refresh()
            return True
    if deps.config.expired():
        deps.config.refresh()
        return True
    return False


def writable(deps: WebDeps) -> None:
    """Refuse a change at once (503) when the read made for it just found the primary store
    down: its write would only wait for the same timeout again."""
    if fresh(deps) and deps.config.snapshot.degraded is not None:
        raise StoreUnavailable(f"configuration store {deps.config.primary.name} is unreachable, so "
                               f"changes are refused: {deps.config.snapshot.degraded}")


# ----------------------------------------------------------------------------- reads
def list_strategies(deps: WebDeps, call: Call) -> Reply:
    fresh(deps)
    keys = list(deps.config.snapshot.configs)  # as just read: no second read of the store
    out = []
    for sid, st in STRATEGIES.items():
        has_global = any(k.strategy_id == sid and k.symbol is None for k in keys)
        overrides = sorted(k.symbol for k in keys if k.strategy_id == sid and k.symbol is not None)
        out.append({"strategy_id": sid, "name": st.name, "description": st.description,
                    "enabled": bool(deps.settings.strategy_enabled.get(sid, False)),
                    "realtime": st.realtime, "has_global_config": has_global,
                    "symbol_overrides": overrides, "parameter_count": len(st.params)})
    return Reply(out, metadata=store_metadata(deps))


def strategy_schema(deps: WebDeps, call: Call) -> Reply:
    st = STRATEGIES[call.path["strategy_id"]]
    return Reply({"strategy_id": st.strategy_id, "parameters": [
        {"name": p.name, "type": {int: "int", float: "float", bool: "bool"}[p.type],
         "description": p.description, "default": p.default, "min": p.min, "max": p.max,
         "min_exclusive": p.min_exclusive, "max_exclusive": p.max_exclusive,
         "nullable": p.optional, "unit": p.unit, "env": st.env_name(p.name)} for p in st.params]})


def strategy_defaults(deps: WebDeps, call: Call) -> Reply:
    st = STRATEGIES[call.path["strategy_id"]]
    return Reply({"strategy_id": st.strategy_id, "parameters": st.defaults()})


def get_config(deps: WebDeps, call: Call) -> Reply:
    fresh(deps)
    symbol = call.path.get("symbol")
    if symbol is not None:
        symbol = deps.config.check_symbol(symbol)
    return Reply(config_dict(deps.config.effective(call.path["strategy_id"], symbol)),
                 metadata=store_metadata(deps))


def audit(deps: WebDeps, call: Call) -> Reply:
    symbol = call.query.get("symbol") or ANY_SYMBOL
    records = deps.config.audit(call.path["strategy_id"], symbol, call.query["limit"])
    return Reply([r.as_dict() for r in records], metadata={"count": len(records)})


# ----------------------------------------------------------------------------- changes
def _authorised(deps: WebDeps, call: Call, changed_by: str) -> None:
    check_token(deps.settings.api_token, call.headers.get("AUTHORIZATION"))
    deps.limiter.admit(changed_by)


def _committed(deps: WebDeps, result: ChangeResult, call: Call) -> None:
    """Every worker of this host reloads within its next tick; other replicas hear it on NATS."""
    audit = result.audit
    log.info("config %s of %s/%s to version %d by %r from %s", audit.action if audit else "change",
             result.config.strategy_id, result.config.symbol or "global", result.config.version,
             audit.changed_by if audit else "?", call.remote or "unknown address",
             extra={"remote_addr": call.remote})
    if deps.header is not None:
        deps.epoch_seen = bump_epoch(deps.header)
    if deps.counters is not None:
        deps.counters[CONFIG_CHANGES_BASE + list(STRATEGIES).index(result.config.strategy_id)] += 1
    deps.announce(result)


def _change_reply(deps: WebDeps, call: Call, result: ChangeResult, created: bool = False) -> Reply:
    if not result.validate_only:
        _committed(deps, result, call)
    return Reply({"config": config_dict(result.config),
                  "audit": None if result.audit is None else result.audit.as_dict(),
                  "validate_only": result.validate_only},
                 status=201 if created and not result.validate_only else 200,
                 metadata={**store_metadata(deps), "at": utc_now()})


def post_config(deps: WebDeps, call: Call) -> Reply:
    b = call.body
    _authorised(deps, call, b["changed_by"])
    writable(deps)
    result = deps.config.update(call.path["strategy_id"], call.path.get("symbol"), b["parameters"],
                                b["changed_by"], b.get("reason") or "",
                                validate_only=bool(b.get("validate_only")),
                                expected_version=b.get("expected_version"))
    return _change_reply(deps, call, result, created=result.audit is not None and result.audit.action == "CREATE")


def delete_config(deps: WebDeps, call: Call) -> Reply:
    q = call.query
    _authorised(deps, call, q["changed_by"])
    result = deps.config.delete(call.path["strategy_id"], call.path.get("symbol"), q["changed_by"],
                                q.get("reason") or "", expected_version=q.get("expected_version"))
    return _change_reply(deps, call, result)


def rollback(deps: WebDeps, call: Call) -> Reply:
    b = call.body
    symbol = b.get("symbol")
    in_query = call.query.get("symbol")
    if in_query is not None:  # how clients of the replaced service name the symbol
        if symbol is not None and symbol.strip().upper() != in_query.strip().upper():
            raise bad_request("the symbol in the query and in the body differ",
                              {"symbol": f"query {in_query!r}, body {symbol!r}"})
        symbol = in_query
    _authorised(deps, call, b["changed_by"])
    result = deps.config.rollback(call.path["strategy_id"], symbol, b["changed_by"],
                                  b.get("reason") or "", target_version=b.get("target_version"))
    return _change_reply(deps, call, result)


def refresh_cache(deps: WebDeps, call: Call) -> Reply:
    check_token(deps.settings.api_token, call.headers.get("AUTHORIZATION"))
    snapshot = deps.config.refresh()
    if deps.header is not None:
        deps.epoch_seen = bump_epoch(deps.header)  # the workers drop theirs too
    return Reply({"refreshed": True, "store": deps.config.primary.name, "state": deps.config.state(),
                  "stored_configs": len(snapshot.configs)}, metadata=store_metadata(deps))


BASE = "/api/v1/strategies"
ROUTES = (
    Route("GET", BASE, "listStrategies", "List every strategy with its config status", "strategies",
          list_strategies, "StrategyList", errors=(503,)),
    Route("POST", f"{BASE}/cache/refresh", "refreshCache", "Drop this host's config cache now",
          "strategies", refresh_cache, "CacheRefresh", errors=(401, 403, 503), mutating=True),
    Route("GET", f"{BASE}/{{strategy_id}}/schema", "getStrategySchema",
          "Parameter types, ranges, units and defaults", "strategies", strategy_schema,
          "StrategySchema", path_fields=(STRATEGY,), errors=(404,)),
    Route("GET", f"{BASE}/{{strategy_id}}/defaults", "getStrategyDefaults", "Default parameters",
          "strategies", strategy_defaults, "Defaults", path_fields=(STRATEGY,), errors=(404,)),
    Route("GET", f"{BASE}/{{strategy_id}}/config", "getGlobalConfig",
          "Effective global config (store → environment → default)", "config", get_config,
          "EffectiveConfig", path_fields=(STRATEGY,), errors=(404, 503)),
    Route("POST", f"{BASE}/{{strategy_id}}/config", "updateGlobalConfig",
          "Change global parameters (partial, validated, versioned, audited)", "config", post_config,
          "ChangeResult", path_fields=(STRATEGY,), body=UPDATE_BODY, success=(200, 201),
          errors=CONFIG_ERRORS, mutating=True),
    Route("DELETE", f"{BASE}/{{strategy_id}}/config", "deleteGlobalConfig",
          "Remove the stored global config (back to environment/defaults)", "config", delete_config,
          "ChangeResult", path_fields=(STRATEGY,), query=DELETE_QUERY, errors=CONFIG_ERRORS,
          mutating=True),
    Route("GET", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "getSymbolConfig",
          "Effective config of one symbol (override → global → environment → default)", "config",
          get_config, "EffectiveConfig", path_fields=(STRATEGY, SYMBOL), errors=(404, 503)),
    Route("POST", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "updateSymbolConfig",
          "Change one symbol's override (partial, validated, versioned, audited)", "config",
          post_config, "ChangeResult", path_fields=(STRATEGY, SYMBOL), body=UPDATE_BODY,
          success=(200, 201), errors=CONFIG_ERRORS, mutating=True),
    Route("DELETE", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "deleteSymbolConfig",
          "Remove one symbol's override (back to the global config)", "config", delete_config,
          "ChangeResult", path_fields=(STRATEGY, SYMBOL), query=DELETE_QUERY, errors=CONFIG_ERRORS,
          mutating=True),
    Route("GET", f"{BASE}/{{strategy_id}}/audit", "getAudit", "Change history, newest first", "config",
          audit, "AuditList", path_fields=(STRATEGY,),
          query=(Field("symbol", "string", "only this symbol's changes (default: every level)",
                       max_length=24),
                 Field("limit", "integer", "at most this many records", default=50, minimum=1,
                       maximum=1000)),
          errors=(400, 404, 422, 503)),
    Route("POST", f"{BASE}/{{strategy_id}}/rollback", "rollback",
          "Store an earlier version's parameters again (default: the previous version)", "config",
          rollback, "ChangeResult", path_fields=(STRATEGY,), body=ROLLBACK_BODY,
          query=(Field("symbol", "string", "the symbol whose override to roll back (as the body's "
                       "symbol; the replaced service took it here)", max_length=24),),
          errors=CONFIG_ERRORS, mutating=True),
)
