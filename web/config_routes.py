"""``/api/v1/strategies…``: strategy catalogue, effective configs, changes, audit, rollback."""

from __future__ import annotations

import logging
from typing import Literal, cast

from rtsig.config.model import AuditRecord, utc_now
from rtsig.config.notify import bump_epoch
from rtsig.config.service import ChangeResult
from rtsig.config.stores import ANY_SYMBOL
from rtsig.counters import CONFIG_CHANGES_BASE
from rtsig.errors import StoreUnavailable
from rtsig.params import EffectiveConfig
from rtsig.registry import STRATEGIES
from web import types as T
from web.deps import WebDeps
from web.envelope import ApiError
from web.guard import check_token
from web.route import Call, Reply, Route

log = logging.getLogger(__name__)
CONFIG_ERRORS = (400, 401, 403, 404, 409, 422, 429, 503)
PARAM_TYPE_NAMES: dict[type, Literal["int", "float", "bool"]] = {int: "int", float: "float", bool: "bool"}


def effective_config(c: EffectiveConfig) -> T.EffectiveConfig:
    return T.EffectiveConfig(c.strategy_id, c.symbol, dict(c.parameters), c.version, cast(T.Source, c.source),
                             c.is_override, c.created_at or None, c.updated_at or None, dict(c.sources))


def audit_entry(r: AuditRecord) -> T.AuditEntry:
    return T.AuditEntry(r.id, r.key.strategy_id, r.key.symbol, cast(T.AuditAction, r.action),
                        None if r.old_parameters is None else dict(r.old_parameters),
                        None if r.new_parameters is None else dict(r.new_parameters),
                        r.old_version, r.new_version, r.changed_by, r.changed_at, r.reason)


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
        out.append(T.StrategySummary(sid, st.name, st.description,
                                     bool(deps.settings.strategy_enabled.get(sid, False)),
                                     st.realtime, has_global, overrides, len(st.params)))
    return Reply(out, metadata=store_metadata(deps))


def strategy_schema(deps: WebDeps, call: Call) -> Reply:
    st = STRATEGIES[call.path.strategy_id]
    return Reply(T.StrategySchema(st.strategy_id, [
        T.ParameterSpec(p.name, PARAM_TYPE_NAMES[p.type], p.description,
                        p.default, p.min, p.max, p.min_exclusive, p.max_exclusive, p.optional,
                        p.unit, st.env_name(p.name)) for p in st.params]))


def strategy_defaults(deps: WebDeps, call: Call) -> Reply:
    st = STRATEGIES[call.path.strategy_id]
    return Reply(T.Defaults(st.strategy_id, st.defaults()))


def get_config(deps: WebDeps, call: Call) -> Reply:
    fresh(deps)
    symbol = getattr(call.path, "symbol", None)
    if symbol is not None:
        symbol = deps.config.check_symbol(symbol)
    return Reply(effective_config(deps.config.effective(call.path.strategy_id, symbol)),
                 metadata=store_metadata(deps))


def audit(deps: WebDeps, call: Call) -> Reply:
    symbol = call.query.symbol if call.query.symbol is not None else ANY_SYMBOL
    records = deps.config.audit(call.path.strategy_id, symbol, call.query.limit)
    return Reply([audit_entry(r) for r in records], metadata={"count": len(records)})


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
    return Reply(T.ChangeResult(effective_config(result.config),
                                None if result.audit is None else audit_entry(result.audit),
                                result.validate_only),
                 status=201 if created and not result.validate_only else 200,
                 metadata={**store_metadata(deps), "at": utc_now()})


def post_config(deps: WebDeps, call: Call) -> Reply:
    b = call.body
    _authorised(deps, call, b.changed_by)
    writable(deps)
    result = deps.config.update(call.path.strategy_id, getattr(call.path, "symbol", None), b.parameters,
                                b.changed_by, b.reason, validate_only=b.validate_only,
                                expected_version=b.expected_version)
    return _change_reply(deps, call, result, created=result.audit is not None and result.audit.action == "CREATE")


def delete_config(deps: WebDeps, call: Call) -> Reply:
    q = call.query
    _authorised(deps, call, q.changed_by)
    result = deps.config.delete(call.path.strategy_id, getattr(call.path, "symbol", None), q.changed_by,
                                q.reason, expected_version=q.expected_version)
    return _change_reply(deps, call, result)


def rollback(deps: WebDeps, call: Call) -> Reply:
    b = call.body
    symbol = b.symbol
    in_query = call.query.symbol
    if in_query is not None:  # how clients of the replaced service name the symbol
        if symbol is not None and symbol.strip().upper() != in_query.strip().upper():
            raise ApiError(409, "CONFLICT", "the symbol in the query and in the body differ: which "
                           "override to roll back is ambiguous",
                           {"symbol": f"query {in_query!r}, body {symbol!r}"})
        symbol = in_query
    _authorised(deps, call, b.changed_by)
    result = deps.config.rollback(call.path.strategy_id, symbol, b.changed_by, b.reason,
                                  target_version=b.target_version)
    return _change_reply(deps, call, result)


def refresh_cache(deps: WebDeps, call: Call) -> Reply:
    check_token(deps.settings.api_token, call.headers.get("AUTHORIZATION"))
    snapshot = deps.config.refresh()
    if deps.header is not None:
        deps.epoch_seen = bump_epoch(deps.header)  # the workers drop theirs too
    return Reply(T.CacheRefresh(True, deps.config.primary.name, deps.config.state(), len(snapshot.configs)),
                 metadata=store_metadata(deps))


BASE = "/api/v1/strategies"
ROUTES = (
    Route("GET", BASE, "listStrategies", "List every strategy with its config status", "strategies",
          list_strategies, list[T.StrategySummary], errors=(400, 503)),
    Route("POST", f"{BASE}/cache/refresh", "refreshCache", "Drop this host's config cache now",
          "strategies", refresh_cache, T.CacheRefresh, errors=(400, 401, 403, 503), mutating=True),
    Route("GET", f"{BASE}/{{strategy_id}}/schema", "getStrategySchema",
          "Parameter types, ranges, units and defaults", "strategies", strategy_schema,
          T.StrategySchema, path_params=T.StrategyPath, errors=(400, 404)),
    Route("GET", f"{BASE}/{{strategy_id}}/defaults", "getStrategyDefaults", "Default parameters",
          "strategies", strategy_defaults, T.Defaults, path_params=T.StrategyPath, errors=(400, 404)),
    Route("GET", f"{BASE}/{{strategy_id}}/config", "getGlobalConfig",
          "Effective global config (store → environment → default)", "config", get_config,
          T.EffectiveConfig, path_params=T.StrategyPath, errors=(400, 404, 503), per_strategy=True),
    Route("POST", f"{BASE}/{{strategy_id}}/config", "updateGlobalConfig",
          "Change global parameters (partial, validated, versioned, audited)", "config", post_config,
          T.ChangeResult, path_params=T.StrategyPath, body=T.ChangeRequest, success=(200, 201),
          errors=CONFIG_ERRORS, mutating=True, per_strategy=True),
    Route("DELETE", f"{BASE}/{{strategy_id}}/config", "deleteGlobalConfig",
          "Remove the stored global config (back to environment/defaults)", "config", delete_config,
          T.ChangeResult, path_params=T.StrategyPath, query=T.DeleteQuery, query_status=422, errors=CONFIG_ERRORS,
          mutating=True, per_strategy=True),
    Route("GET", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "getSymbolConfig",
          "Effective config of one symbol (override → global → environment → default)", "config",
          get_config, T.EffectiveConfig, path_params=T.StrategySymbolPath, errors=(400, 404, 503),
          per_strategy=True),
    Route("POST", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "updateSymbolConfig",
          "Change one symbol's override (partial, validated, versioned, audited)", "config",
          post_config, T.ChangeResult, path_params=T.StrategySymbolPath, body=T.ChangeRequest,
          success=(200, 201), errors=CONFIG_ERRORS, mutating=True, per_strategy=True),
    Route("DELETE", f"{BASE}/{{strategy_id}}/config/{{symbol}}", "deleteSymbolConfig",
          "Remove one symbol's override (back to the global config)", "config", delete_config,
          T.ChangeResult, path_params=T.StrategySymbolPath, query=T.DeleteQuery,
          query_status=422, errors=CONFIG_ERRORS, mutating=True, per_strategy=True),
    Route("GET", f"{BASE}/{{strategy_id}}/audit", "getAudit", "Change history, newest first", "config",
          audit, list[T.AuditEntry], path_params=T.StrategyPath, query=T.AuditQuery,
          errors=(400, 404, 503)),
    Route("POST", f"{BASE}/{{strategy_id}}/rollback", "rollback",
          "Store an earlier version's parameters again (default: the previous version)", "config",
          rollback, T.ChangeResult, path_params=T.StrategyPath, query=T.RollbackQuery,
          body=T.RollbackRequest, errors=CONFIG_ERRORS, mutating=True),
)
