"""The configuration service against each real store (SQLite, MySQL/MariaDB, MongoDB wire).

Every test except the Hypothesis one runs unchanged on the three stores through the
``store_settings`` fixture: the store only persists and compares versions, so create/merge,
layering, validation, optimistic concurrency, delete/re-create, rollback, audit, persistence
and caching must behave identically whichever store holds the data (docs/CONTRACT.md §4).
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from rtsig.config import ChangeResult, ConfigKey, ConfigService, StoredConfig
from rtsig.config.model import AuditRecord, utc_now
from rtsig.config.stores import ANY_SYMBOL
from rtsig.errors import ConfigInvalid, ConfigNotFound, VersionConflict
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings

SKEW = "orderbook_skew"
DEFAULTS = STRATEGIES[SKEW].defaults()
MARKET_LOGIC = ("btc_dominance", "cross_exchange_spread", "onchain_metrics")
AUDIT_FIELDS = {"id", "strategy_id", "symbol", "action", "old_parameters", "new_parameters",
                "old_version", "new_version", "changed_by", "changed_at", "reason"}


class FakeClock:
    """A hand-driven clock for the cache TTL (the service takes ``clock=``)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def store_name(settings: Settings) -> str:
    """The ``source`` a read from the primary store of ``settings`` must report."""
    if settings.mongodb_uri:
        return "mongodb"
    if settings.mysql_uri:
        return "mysql"
    return "sqlite"


@pytest.fixture
def service(make_service) -> ConfigService:
    """One service on the fresh store, its snapshot loaded."""
    svc = make_service()
    svc.refresh()
    return svc


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ============================================================================ create / merge
def test_create_global_and_symbol_configs(service: ConfigService, store_settings: Settings) -> None:
    """A first change CREATEs version 1 at its level; a symbol override layers over the global."""
    name = store_name(store_settings)
    assert service.primary.name == name

    g = service.update(SKEW, None, {"top_levels": 8}, "alice", "wider book")
    assert isinstance(g, ChangeResult) and not g.validate_only
    assert g.config.version == 1 and g.config.symbol is None
    assert g.config.source == name and g.config.is_override is False
    assert g.config.parameters["top_levels"] == 8
    assert g.config.parameters["buy_threshold"] == DEFAULTS["buy_threshold"]
    assert g.audit is not None and g.audit.action == "CREATE" and g.audit.id
    assert (g.audit.old_version, g.audit.new_version) == (0, 1)
    assert g.audit.old_parameters is None and g.audit.new_parameters == {"top_levels": 8}

    s = service.update(SKEW, "BTCUSDT", {"buy_threshold": 1.5}, "bob")
    assert s.config.version == 1 and s.config.symbol == "BTCUSDT" and s.config.is_override is True
    assert s.config.parameters["buy_threshold"] == 1.5
    assert s.config.parameters["top_levels"] == 8  # from the global config
    assert s.audit is not None and s.audit.action == "CREATE" and s.audit.key == ConfigKey(SKEW, "BTCUSDT")
    assert s.config.created_at and s.config.updated_at

    assert service.stored_keys(SKEW) == (True, ["BTCUSDT"])
    assert service.stored_keys("trade_momentum") == (False, [])
    stored = service.primary.get(ConfigKey(SKEW, "BTCUSDT"))
    assert stored is not None and stored.parameters == {"buy_threshold": 1.5} and stored.version == 1


def test_partial_updates_merge_and_bump_versions(service: ConfigService) -> None:
    """Each partial update merges into the stored set; versions go 1, 2, 3, 4."""
    changes = [{"top_levels": 6}, {"buy_threshold": 1.3}, {"sell_threshold": 0.7},
               {"top_levels": 9, "stop_loss_pct": 0.02}]
    expected: dict = {}
    for number, change in enumerate(changes, start=1):
        before = dict(expected)
        expected.update(change)
        result = service.update(SKEW, None, change, "alice", f"step {number}")
        assert result.config.version == number
        assert result.audit is not None
        assert result.audit.action == ("CREATE" if number == 1 else "UPDATE")
        assert result.audit.old_parameters == (before or None)
        assert result.audit.new_parameters == expected
        assert (result.audit.old_version, result.audit.new_version) == (number - 1, number)
        for param, value in {**DEFAULTS, **expected}.items():
            assert result.config.parameters[param] == value
    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and not stored.deleted
    assert dict(stored.parameters) == expected and stored.version == 4
    assert parse_ts(stored.updated_at) >= parse_ts(stored.created_at)


def test_float_parameter_given_an_int_and_optional_null(service: ConfigService) -> None:
    """Accepted values are stored as the parameter's type; an optional parameter accepts null."""
    result = service.update(SKEW, None, {"min_total_volume": 2, "top_levels": 7.0,
                                         "take_profit_pct": None}, "alice")
    params = result.config.parameters
    assert params["min_total_volume"] == 2.0 and isinstance(params["min_total_volume"], float)
    assert params["top_levels"] == 7 and isinstance(params["top_levels"], int)
    assert params["take_profit_pct"] is None
    service.refresh()
    again = service.effective(SKEW)
    assert isinstance(again.parameters["min_total_volume"], float)
    assert isinstance(again.parameters["top_levels"], int)


# ============================================================================ layering
def test_effective_layering_symbol_global_environment_default(make_service, store_settings: Settings) -> None:
    """Per parameter: symbol override → global → environment → default, each with its source."""
    settings = store_settings.with_overrides(
        strategy_env_params={SKEW: {"top_levels": 7, "spread_weight": 0.3, "buy_threshold": 1.25}})
    service = make_service(settings)
    service.refresh()
    name = store_name(settings)

    base = service.effective(SKEW, "BTCUSDT")
    assert base.version == 0 and base.source == "environment" and base.is_override is False
    assert base.parameters["top_levels"] == 7 and base.sources["top_levels"] == "environment"
    assert base.parameters["sell_threshold"] == DEFAULTS["sell_threshold"]
    assert base.sources["sell_threshold"] == "default"
    assert base.created_at is None
    untouched = service.effective("trade_momentum")
    assert untouched.source == "default" and set(untouched.sources.values()) == {"default"}

    service.update(SKEW, None, {"top_levels": 9}, "alice")
    service.update(SKEW, None, {"buy_threshold": 1.4}, "alice")
    service.update(SKEW, "BTCUSDT", {"buy_threshold": 1.6}, "bob")

    btc = service.effective(SKEW, "BTCUSDT")
    assert btc.is_override is True and btc.version == 1 and btc.source == name
    assert btc.parameters["buy_threshold"] == 1.6 and btc.sources["buy_threshold"] == f"{name} (BTCUSDT)"
    assert btc.parameters["top_levels"] == 9 and btc.sources["top_levels"] == name
    assert btc.parameters["spread_weight"] == 0.3 and btc.sources["spread_weight"] == "environment"
    assert btc.parameters["sell_threshold"] == DEFAULTS["sell_threshold"]
    assert btc.sources["sell_threshold"] == "default"
    assert set(btc.parameters) == set(DEFAULTS) == set(btc.sources)
    assert btc.changed["buy_threshold"] == 1.6 and "sell_threshold" not in btc.changed

    eth = service.effective(SKEW, "ETHUSDT")
    assert eth.is_override is False and eth.version == 2 and eth.source == name
    assert eth.parameters["buy_threshold"] == 1.4 and eth.sources["buy_threshold"] == name
    assert eth.parameters["spread_weight"] == 0.3

    glob = service.effective(SKEW)
    assert glob.symbol is None and glob.version == 2 and glob.parameters["buy_threshold"] == 1.4


# ============================================================================ validation
def test_validation_reports_one_error_per_bad_field_and_writes_nothing(service: ConfigService) -> None:
    """Wrong type, out of range and unknown name each get an entry; nothing reaches the store."""
    bad = {"top_levels": "many", "buy_threshold": 0.5, "sell_threshold": 1.5,
           "min_spread_percent": float("nan"), "no_such_param": 1, "base_confidence": 0.8}
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, bad, "alice")
    assert set(info.value.errors) == {"top_levels", "buy_threshold", "sell_threshold",
                                      "min_spread_percent", "no_such_param"}
    assert all(isinstance(m, str) and m for m in info.value.errors.values())
    assert service.primary.get(ConfigKey(SKEW)) is None
    assert service.audit(SKEW) == []

    service.update(SKEW, None, {"top_levels": 6}, "alice")
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, {"top_levels": 21, "sell_threshold": 0.5}, "alice")
    assert set(info.value.errors) == {"top_levels"}
    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.version == 1 and stored.parameters == {"top_levels": 6}
    assert len(service.audit(SKEW)) == 1
    assert service.effective(SKEW).parameters["sell_threshold"] == DEFAULTS["sell_threshold"]


@pytest.mark.parametrize("param,value", [("top_levels", True), ("buy_threshold", False),
                                         ("min_signal_interval", True), ("stop_loss_pct", True)])
def test_bool_is_not_a_number(service: ConfigService, param: str, value: bool) -> None:
    """``True``/``False`` are refused for int and float parameters (bool is an int in Python)."""
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, {param: value}, "alice")
    assert set(info.value.errors) == {param}
    assert service.primary.get(ConfigKey(SKEW)) is None


def test_bool_parameter_takes_booleans_only(service: ConfigService) -> None:
    """A bool parameter accepts a bool and refuses a number; the stored value is a real bool."""
    with pytest.raises(ConfigInvalid) as info:
        service.update("ticker_velocity", None, {"volume_confirmation": 2}, "alice")
    assert set(info.value.errors) == {"volume_confirmation"}
    result = service.update("ticker_velocity", None, {"volume_confirmation": False}, "alice")
    assert result.config.parameters["volume_confirmation"] is False
    service.refresh()
    assert service.effective("ticker_velocity").parameters["volume_confirmation"] is False


@pytest.mark.parametrize("parameters", [{}, None])
def test_empty_parameters_refused(service: ConfigService, parameters) -> None:
    """A change must name at least one parameter."""
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, parameters, "alice")
    assert "parameters" in info.value.errors
    assert service.primary.get(ConfigKey(SKEW)) is None


@pytest.mark.parametrize("changed_by", ["", "   ", None, "x" * 256],
                         ids=["empty", "blank", "none", "too-long"])
def test_changed_by_required(service: ConfigService, changed_by) -> None:
    """Every change names its author (update, delete and rollback); nothing is written without."""
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, {"top_levels": 6}, changed_by)
    assert "changed_by" in info.value.errors
    assert service.primary.get(ConfigKey(SKEW)) is None

    service.update(SKEW, None, {"top_levels": 6}, "alice")
    service.update(SKEW, None, {"top_levels": 7}, "alice")
    with pytest.raises(ConfigInvalid) as info:
        service.delete(SKEW, None, changed_by)
    assert "changed_by" in info.value.errors
    with pytest.raises(ConfigInvalid) as info:
        service.rollback(SKEW, None, changed_by)
    assert "changed_by" in info.value.errors
    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.version == 2 and not stored.deleted
    assert len(service.audit(SKEW)) == 2


def test_reason_of_any_length_is_kept_or_refused_cleanly(service: ConfigService) -> None:
    """A very long ``reason`` is either kept whole or refused as ConfigInvalid (→ 422) before
    anything is written; never a database driver error."""
    reason = "r" * 70_000
    try:
        result = service.update(SKEW, None, {"top_levels": 6}, "alice", reason)
    except ConfigInvalid as exc:
        assert "reason" in exc.errors
        assert service.primary.get(ConfigKey(SKEW)) is None
    else:
        assert result.audit is not None and result.audit.reason == reason
        assert service.audit(SKEW, None)[0].reason == reason
    with pytest.raises(ConfigInvalid) as info:
        service.update(SKEW, None, {"top_levels": 6}, "alice", reason=5)  # type: ignore[arg-type]
    assert "reason" in info.value.errors


# ============================================================================ validate_only
def test_validate_only_previews_without_writing(service: ConfigService) -> None:
    """``validate_only`` returns the would-be config; no row, no version bump, no audit, no event."""
    events: list[ChangeResult] = []
    service.on_change(events.append)

    preview = service.update(SKEW, "BTCUSDT", {"top_levels": 4}, "alice", validate_only=True)
    assert preview.validate_only is True and preview.audit is None
    assert preview.config.version == 1 and preview.config.is_override is True
    assert preview.config.parameters["top_levels"] == 4
    assert service.primary.get(ConfigKey(SKEW, "BTCUSDT")) is None
    assert service.effective(SKEW, "BTCUSDT").parameters["top_levels"] == DEFAULTS["top_levels"]

    service.update(SKEW, "BTCUSDT", {"top_levels": 4}, "alice")
    preview = service.update(SKEW, "BTCUSDT", {"buy_threshold": 2.0}, "alice", validate_only=True,
                             expected_version=1)
    assert preview.config.version == 2
    assert preview.config.parameters["top_levels"] == 4 and preview.config.parameters["buy_threshold"] == 2.0

    stored = service.primary.get(ConfigKey(SKEW, "BTCUSDT"))
    assert stored is not None and stored.version == 1 and stored.parameters == {"top_levels": 4}
    assert len(service.audit(SKEW)) == 1
    live = service.effective(SKEW, "BTCUSDT")
    assert live.version == 1 and live.parameters["buy_threshold"] == DEFAULTS["buy_threshold"]
    assert len(events) == 1  # only the real change

    with pytest.raises(ConfigInvalid):
        service.update(SKEW, "BTCUSDT", {"top_levels": 0}, "alice", validate_only=True)
    with pytest.raises(VersionConflict):
        service.update(SKEW, "BTCUSDT", {"top_levels": 3}, "alice", validate_only=True,
                       expected_version=5)


# ============================================================================ expected_version
def test_expected_version_guards_changes(service: ConfigService) -> None:
    """A stale ``expected_version`` is a VersionConflict naming the current one; 0 = must not exist."""
    first = service.update(SKEW, None, {"top_levels": 6}, "alice", expected_version=0)
    assert first.config.version == 1

    with pytest.raises(VersionConflict) as info:
        service.update(SKEW, None, {"top_levels": 7}, "bob", expected_version=0)
    assert info.value.current_version == 1

    second = service.update(SKEW, None, {"top_levels": 8}, "alice", expected_version=1)
    assert second.config.version == 2

    with pytest.raises(VersionConflict) as info:
        service.update(SKEW, None, {"top_levels": 9}, "bob", expected_version=1)
    assert info.value.current_version == 2
    with pytest.raises(VersionConflict) as info:
        service.delete(SKEW, None, "bob", expected_version=5)
    assert info.value.current_version == 2

    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.version == 2 and stored.parameters == {"top_levels": 8}
    assert [r.new_version for r in service.audit(SKEW)] == [2, 1]

    for bad in (-1, True, "2", 1.0):
        with pytest.raises(ConfigInvalid) as err:
            service.update(SKEW, None, {"top_levels": 9}, "bob", expected_version=bad)
        assert "expected_version" in err.value.errors

    deleted = service.delete(SKEW, None, "alice", expected_version=2)
    assert deleted.audit is not None and deleted.audit.new_version == 3


# ============================================================================ delete
def test_delete_falls_back_to_the_level_below(make_service, store_settings: Settings) -> None:
    """Deleting a symbol override exposes the global; deleting the global exposes the environment."""
    settings = store_settings.with_overrides(strategy_env_params={SKEW: {"top_levels": 7}})
    service = make_service(settings)
    service.refresh()
    name = store_name(settings)
    service.update(SKEW, None, {"top_levels": 9}, "alice")
    service.update(SKEW, "BTCUSDT", {"top_levels": 11}, "alice")
    assert service.effective(SKEW, "BTCUSDT").parameters["top_levels"] == 11

    gone = service.delete(SKEW, "btcusdt", "alice", "not needed")
    assert gone.audit is not None and gone.audit.action == "DELETE"
    assert gone.audit.old_parameters == {"top_levels": 11} and gone.audit.new_parameters is None
    assert (gone.audit.old_version, gone.audit.new_version) == (1, 2)
    btc = service.effective(SKEW, "BTCUSDT")
    assert btc.parameters["top_levels"] == 9 and btc.is_override is False
    assert btc.sources["top_levels"] == name and btc.version == 1
    assert gone.config.parameters["top_levels"] == 9

    service.delete(SKEW, None, "alice")
    btc = service.effective(SKEW, "BTCUSDT")
    assert btc.parameters["top_levels"] == 7 and btc.sources["top_levels"] == "environment"
    assert btc.version == 0 and btc.source == "environment" and btc.is_override is False
    assert service.stored_keys(SKEW) == (False, [])

    other = make_service(settings)
    other.refresh()
    assert other.effective(SKEW, "BTCUSDT").parameters["top_levels"] == 7
    assert other.stored_keys(SKEW) == (False, [])
    tomb = service.primary.get(ConfigKey(SKEW, "BTCUSDT"))
    assert tomb is not None and tomb.deleted and tomb.version == 2


def test_delete_of_a_missing_config_is_not_found(service: ConfigService) -> None:
    """Nothing stored (never, or already deleted) → ConfigNotFound, and no audit record."""
    with pytest.raises(ConfigNotFound):
        service.delete(SKEW, None, "alice")
    with pytest.raises(ConfigNotFound):
        service.delete(SKEW, "ETHUSDT", "alice")
    service.update(SKEW, "ETHUSDT", {"top_levels": 3}, "alice")
    service.delete(SKEW, "ETHUSDT", "alice")
    with pytest.raises(ConfigNotFound):
        service.delete(SKEW, "ETHUSDT", "alice")
    assert [r.action for r in service.audit(SKEW, ANY_SYMBOL)] == ["DELETE", "CREATE"]


def test_recreate_after_delete_continues_version_numbering(service: ConfigService) -> None:
    """A re-create after a delete is version 3 → 4 (a CREATE that starts from an empty set)."""
    service.update(SKEW, None, {"top_levels": 6}, "alice")
    service.update(SKEW, None, {"buy_threshold": 1.3}, "alice")
    service.delete(SKEW, None, "alice")
    again = service.update(SKEW, None, {"sell_threshold": 0.6}, "bob")
    assert again.config.version == 4
    assert again.audit is not None and again.audit.action == "CREATE"
    assert again.audit.old_parameters is None and again.audit.old_version == 3
    assert again.audit.new_parameters == {"sell_threshold": 0.6}
    # the deleted values do not come back
    assert again.config.parameters["top_levels"] == DEFAULTS["top_levels"]
    assert again.config.parameters["buy_threshold"] == DEFAULTS["buy_threshold"]
    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.parameters == {"sell_threshold": 0.6} and not stored.deleted
    assert [r.new_version for r in service.audit(SKEW)] == [4, 3, 2, 1]


# ============================================================================ rollback
def test_rollback_to_previous_and_explicit_version(service: ConfigService) -> None:
    """Default target is the previous version; an explicit one restores that version's full set."""
    service.update(SKEW, None, {"top_levels": 6}, "alice")            # v1 {6}
    service.update(SKEW, None, {"buy_threshold": 1.3}, "alice")       # v2 {6, 1.3}
    service.update(SKEW, None, {"top_levels": 8}, "alice")            # v3 {8, 1.3}

    back = service.rollback(SKEW, None, "carol", "bad deploy")
    assert back.config.version == 4
    assert back.audit is not None and back.audit.action == "ROLLBACK"
    assert back.audit.old_parameters == {"top_levels": 8, "buy_threshold": 1.3}
    assert back.audit.new_parameters == {"top_levels": 6, "buy_threshold": 1.3}
    assert (back.audit.old_version, back.audit.new_version) == (3, 4)
    assert back.audit.reason == "bad deploy" and back.audit.changed_by == "carol"
    assert back.config.parameters["top_levels"] == 6

    first = service.rollback(SKEW, None, "carol", target_version=1)
    assert first.config.version == 5
    assert first.config.parameters["top_levels"] == 6
    assert first.config.parameters["buy_threshold"] == DEFAULTS["buy_threshold"]
    stored = service.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.parameters == {"top_levels": 6} and stored.version == 5

    service.refresh()
    assert service.effective(SKEW).parameters["buy_threshold"] == DEFAULTS["buy_threshold"]


def test_rollback_refusals(service: ConfigService) -> None:
    """No config → not found; a deletion, out-of-range or non-integer target → invalid."""
    with pytest.raises(ConfigNotFound):
        service.rollback(SKEW, None, "carol")
    with pytest.raises(ConfigNotFound):
        service.rollback(SKEW, "BNBUSDT", "carol", target_version=1)

    service.update(SKEW, "BNBUSDT", {"top_levels": 6}, "alice")       # v1
    with pytest.raises(ConfigNotFound, match="no earlier version"):
        service.rollback(SKEW, "BNBUSDT", "carol")                     # nothing before v1
    service.delete(SKEW, "BNBUSDT", "alice")                           # v2 (deletion)
    service.update(SKEW, "BNBUSDT", {"top_levels": 4}, "alice")       # v3

    with pytest.raises(VersionConflict, match="deletion"):
        service.rollback(SKEW, "BNBUSDT", "carol")                     # previous = the deletion
    for target in (0, -1, 3, 4, 99):                                   # versions that do not exist
        with pytest.raises(ConfigNotFound, match="no earlier version"):
            service.rollback(SKEW, "BNBUSDT", "carol", target_version=target)
    for target in ("1", True, 1.0):
        with pytest.raises(ConfigInvalid):
            service.rollback(SKEW, "BNBUSDT", "carol", target_version=target)

    stored = service.primary.get(ConfigKey(SKEW, "BNBUSDT"))
    assert stored is not None and stored.version == 3 and stored.parameters == {"top_levels": 4}
    assert len(service.audit(SKEW, "BNBUSDT")) == 3

    ok = service.rollback(SKEW, "BNBUSDT", "carol", target_version=1)
    assert ok.config.version == 4 and ok.config.parameters["top_levels"] == 6


def test_rollback_restores_a_deleted_config(service: ConfigService) -> None:
    """Rolling back a deletion stores the set that was deleted again (as a new version)."""
    service.update(SKEW, None, {"top_levels": 6, "buy_threshold": 1.5}, "alice")
    service.delete(SKEW, None, "alice")
    assert service.effective(SKEW).version == 0
    back = service.rollback(SKEW, None, "carol")
    assert back.config.version == 3 and back.config.parameters["top_levels"] == 6
    assert back.audit is not None and back.audit.old_parameters is None
    assert back.audit.new_parameters == {"top_levels": 6, "buy_threshold": 1.5}
    assert service.stored_keys(SKEW) == (True, [])


# ============================================================================ audit
def test_audit_records_every_change_with_all_fields(service: ConfigService) -> None:
    """CREATE/UPDATE/DELETE/ROLLBACK each leave a full record; newest first; ids unique."""
    service.update(SKEW, None, {"top_levels": 6}, "alice", "first")
    service.update(SKEW, None, {"top_levels": 8}, "bob", "second")
    service.delete(SKEW, None, "carol", "third")
    service.rollback(SKEW, None, "dave", "fourth", target_version=2)

    records = service.audit(SKEW, None)
    assert [r.action for r in records] == ["ROLLBACK", "DELETE", "UPDATE", "CREATE"]
    as_dicts = [r.as_dict() for r in records]
    for d in as_dicts:
        assert set(d) == AUDIT_FIELDS
        assert d["strategy_id"] == SKEW and d["symbol"] is None
        assert isinstance(d["id"], str) and d["id"]
        parse_ts(d["changed_at"])
    assert len({d["id"] for d in as_dicts}) == 4
    expected = [
        ("dave", "fourth", None, {"top_levels": 8}, 3, 4),
        ("carol", "third", {"top_levels": 8}, None, 2, 3),
        ("bob", "second", {"top_levels": 6}, {"top_levels": 8}, 1, 2),
        ("alice", "first", None, {"top_levels": 6}, 0, 1),
    ]
    for d, (by, reason, old, new, old_v, new_v) in zip(as_dicts, expected):
        assert (d["changed_by"], d["reason"], d["old_parameters"], d["new_parameters"],
                d["old_version"], d["new_version"]) == (by, reason, old, new, old_v, new_v)
    stamps = [parse_ts(d["changed_at"]) for d in as_dicts]
    assert stamps == sorted(stamps, reverse=True)

    no_reason = service.update(SKEW, None, {"top_levels": 5}, "erin")
    assert no_reason.audit is not None and no_reason.audit.reason == ""
    assert service.audit(SKEW, None, limit=1)[0].id == no_reason.audit.id


def test_audit_limit_and_symbol_filter(service: ConfigService) -> None:
    """``limit`` keeps the newest; symbol None = global only, ANY_SYMBOL = all, X = only X."""
    service.update(SKEW, None, {"top_levels": 6}, "alice")
    service.update(SKEW, "BTCUSDT", {"top_levels": 7}, "alice")
    service.update(SKEW, "ETHUSDT", {"top_levels": 8}, "alice")
    service.update(SKEW, "BTCUSDT", {"top_levels": 9}, "alice")
    service.update(SKEW, None, {"top_levels": 10}, "alice")
    service.update("trade_momentum", None, {"momentum_window": 20}, "alice")

    everything = service.audit(SKEW, ANY_SYMBOL)
    assert [(r.key.symbol, r.new_parameters["top_levels"]) for r in everything] == [
        (None, 10), ("BTCUSDT", 9), ("ETHUSDT", 8), ("BTCUSDT", 7), (None, 6)]
    assert service.audit(SKEW) == everything  # ANY_SYMBOL is the default
    assert len({r.id for r in everything}) == 5

    assert [r.new_parameters["top_levels"] for r in service.audit(SKEW, None)] == [10, 6]
    assert [r.new_parameters["top_levels"] for r in service.audit(SKEW, "BTCUSDT")] == [9, 7]
    assert [r.new_parameters["top_levels"] for r in service.audit(SKEW, "ethusdt")] == [8]
    assert service.audit(SKEW, "BNBUSDT") == []

    top2 = service.audit(SKEW, ANY_SYMBOL, limit=2)
    assert [r.id for r in top2] == [r.id for r in everything[:2]]
    assert [r.new_version for r in service.audit(SKEW, "BTCUSDT", limit=1)] == [2]

    momentum = service.audit("trade_momentum")
    assert len(momentum) == 1 and momentum[0].key.strategy_id == "trade_momentum"
    assert service.audit("btc_dominance") == []

    for bad in (0, 1001):
        with pytest.raises(ConfigInvalid):
            service.audit(SKEW, limit=bad)
    with pytest.raises(ConfigNotFound):
        service.audit("no_such_strategy")
    with pytest.raises(ConfigNotFound):
        service.audit(SKEW, "DOGEUSDT")


# ============================================================================ persistence / cache
def test_a_second_service_sees_everything(make_service) -> None:
    """A new service (own connection) reads the same configs, versions and audit trail."""
    a = make_service()
    a.update(SKEW, None, {"top_levels": 6}, "alice")
    a.update(SKEW, None, {"buy_threshold": 1.4}, "alice")
    a.update(SKEW, "BTCUSDT", {"sell_threshold": 0.5}, "bob")
    a.update("onchain_metrics", None, {"whale_threshold_btc": 250.0}, "bob")
    a.update("trade_momentum", "ETHUSDT", {"momentum_window": 30}, "bob")
    a.delete("trade_momentum", "ETHUSDT", "bob")

    b = make_service()
    assert b.primary is not a.primary
    b.refresh()
    assert b.state() == "primary"
    for sid in STRATEGIES:
        for symbol in (None, "BTCUSDT", "ETHUSDT"):
            assert b.effective(sid, symbol) == a.effective(sid, symbol)
        assert b.stored_keys(sid) == a.stored_keys(sid)
        assert b.audit(sid) == a.audit(sid)
    btc = b.effective(SKEW, "BTCUSDT")
    assert btc.version == 1 and btc.parameters["top_levels"] == 6 and btc.parameters["sell_threshold"] == 0.5
    assert b.effective("onchain_metrics").parameters["whale_threshold_btc"] == 250.0
    assert b.effective("trade_momentum", "ETHUSDT").version == 0
    assert len(b.audit("trade_momentum")) == 2


def test_cache_ttl_and_refresh(make_service, store_settings: Settings) -> None:
    """Another service's change shows only after the TTL or ``refresh()``; own changes at once."""
    settings = store_settings.with_overrides(config_cache_ttl_seconds=600.0)
    clock = FakeClock()
    a = make_service(settings, clock=clock)
    b = make_service(settings)
    a.refresh()
    assert not a.expired()

    b.update(SKEW, "BTCUSDT", {"top_levels": 3}, "bob")
    a.current()
    assert a.effective(SKEW, "BTCUSDT").parameters["top_levels"] == DEFAULTS["top_levels"]

    own = a.update(SKEW, None, {"buy_threshold": 1.7}, "alice")
    assert own.config.parameters["buy_threshold"] == 1.7
    assert a.current().configs[ConfigKey(SKEW)].version == 1
    assert a.effective(SKEW, "ETHUSDT").parameters["buy_threshold"] == 1.7
    assert a.effective(SKEW, "BTCUSDT").parameters["top_levels"] == DEFAULTS["top_levels"]
    assert a.stored_keys(SKEW) == (True, [])

    a.refresh()
    btc = a.effective(SKEW, "BTCUSDT")
    assert btc.parameters["top_levels"] == 3 and btc.parameters["buy_threshold"] == 1.7
    assert a.stored_keys(SKEW) == (True, ["BTCUSDT"])

    b.update(SKEW, "BTCUSDT", {"top_levels": 4}, "bob")
    clock.advance(599.0)
    assert not a.expired()
    a.current()
    assert a.effective(SKEW, "BTCUSDT").parameters["top_levels"] == 3
    clock.advance(1.0)
    assert a.expired()
    snap = a.current()
    assert snap.loaded_at == clock.now
    assert a.effective(SKEW, "BTCUSDT").parameters["top_levels"] == 4
    assert a.effective(SKEW, "BTCUSDT").version == 2
    assert not a.expired()


def test_change_listeners_run_after_each_committed_change(service: ConfigService) -> None:
    """``on_change`` listeners see every committed change (and a failing listener is contained)."""
    seen: list[tuple[str, int]] = []

    def broken(result: ChangeResult) -> None:
        raise RuntimeError("listener bug")

    service.on_change(broken)
    service.on_change(lambda r: seen.append((r.audit.action, r.audit.new_version)))
    service.update(SKEW, None, {"top_levels": 6}, "alice")
    service.update(SKEW, None, {"top_levels": 7}, "alice")
    with pytest.raises(VersionConflict):
        service.update(SKEW, None, {"top_levels": 8}, "alice", expected_version=1)
    service.rollback(SKEW, None, "alice")
    service.delete(SKEW, None, "alice")
    assert seen == [("CREATE", 1), ("UPDATE", 2), ("ROLLBACK", 3), ("DELETE", 4)]


# ============================================================================ names
def test_unknown_strategy_or_symbol_is_not_found(service: ConfigService) -> None:
    """Changes to an unknown strategy or to a symbol not in TRADING_SYMBOLS are ConfigNotFound."""
    for call in (lambda: service.update("no_such", None, {"top_levels": 6}, "alice"),
                 lambda: service.delete("no_such", None, "alice"),
                 lambda: service.rollback("no_such", None, "alice"),
                 lambda: service.update(SKEW, "DOGEUSDT", {"top_levels": 6}, "alice"),
                 lambda: service.update(SKEW, "btc usdt", {"top_levels": 6}, "alice"),
                 lambda: service.update(SKEW, "", {"top_levels": 6}, "alice"),
                 lambda: service.delete(SKEW, "DOGEUSDT", "alice"),
                 lambda: service.rollback(SKEW, "DOGEUSDT", "alice")):
        with pytest.raises(ConfigNotFound):
            call()
    with pytest.raises(ConfigNotFound):
        service.strategy("no_such")
    assert service.audit(SKEW) == []
    assert service.primary.load_all() == {}


def test_effective_of_unknown_strategy_is_not_found(service: ConfigService) -> None:
    """The read path refuses an unknown strategy with the service's own ConfigNotFound (→ 404)."""
    with pytest.raises(ConfigNotFound):
        service.effective("no_such_strategy")


def test_symbols_are_case_normalised(service: ConfigService) -> None:
    """``btcusdt`` and `` BtcUsdt `` name the stored override ``BTCUSDT``."""
    service.update(SKEW, "btcusdt", {"top_levels": 3}, "alice")
    result = service.update(SKEW, " BtcUsdt ", {"buy_threshold": 1.9}, "alice")
    assert result.config.symbol == "BTCUSDT" and result.config.version == 2
    assert service.check_symbol("ethusdt") == "ETHUSDT"
    assert service.stored_keys(SKEW) == (False, ["BTCUSDT"])
    stored = service.primary.get(ConfigKey(SKEW, "BTCUSDT"))
    assert stored is not None and stored.parameters == {"top_levels": 3, "buy_threshold": 1.9}
    assert set(service.primary.load_all()) == {ConfigKey(SKEW, "BTCUSDT")}
    assert {r.key.symbol for r in service.audit(SKEW)} == {"BTCUSDT"}
    assert service.effective(SKEW, "BTCUSDT").parameters["top_levels"] == 3
    service.delete(SKEW, "bTcUsDt", "alice")
    assert service.stored_keys(SKEW) == (False, [])


def test_any_symbol_when_trading_all(make_service, store_settings: Settings) -> None:
    """With ``TRADING_SYMBOLS=*`` any well-formed symbol can have an override."""
    service = make_service(store_settings.with_overrides(trading_symbols=None))
    service.refresh()
    service.update(SKEW, "dogeusdt", {"top_levels": 2}, "alice")
    assert service.stored_keys(SKEW) == (False, ["DOGEUSDT"])
    with pytest.raises(ConfigNotFound):
        service.update(SKEW, "bad symbol!", {"top_levels": 2}, "alice")


@pytest.mark.parametrize("strategy_id,param,value", [
    ("btc_dominance", "high_threshold", 80.0),
    ("cross_exchange_spread", "max_position_size", 750.0),
    ("onchain_metrics", "whale_threshold_eth", 2500.0),
])
def test_market_logic_strategies_have_stored_parameters(make_service, strategy_id: str, param: str,
                                                        value: float) -> None:
    """The three not-yet-realtime strategies keep global and symbol configs like the others."""
    service = make_service()
    service.refresh()
    service.update(strategy_id, None, {param: value}, "alice")
    service.update(strategy_id, "ETHUSDT", {"min_signal_interval": 120}, "alice")
    default = STRATEGIES[strategy_id].defaults()

    other = make_service()
    other.refresh()
    eth = other.effective(strategy_id, "ETHUSDT")
    assert eth.parameters[param] == value and eth.parameters["min_signal_interval"] == 120
    assert eth.is_override is True and eth.version == 1
    glob = other.effective(strategy_id)
    assert glob.parameters["min_signal_interval"] == default["min_signal_interval"]
    assert other.stored_keys(strategy_id) == (True, ["ETHUSDT"])
    with pytest.raises(ConfigInvalid):
        service.update(strategy_id, None, {"top_levels": 3}, "alice")  # not one of its parameters


# ============================================================================ stale stored values
def _write_raw(service: ConfigService, key: ConfigKey, parameters: dict) -> None:
    """Commit a stored set directly, bypassing validation (as an older release might have)."""
    now = utc_now()
    current = service.primary.get(key)
    version = 0 if current is None else current.version
    service.primary.commit(version, StoredConfig(key, parameters, version + 1, now, now),
                           AuditRecord(key, "UPDATE" if version else "CREATE", None, parameters,
                                       version, version + 1, "old-release", now, "raw write"))


def test_stored_values_the_registry_rejects_are_ignored(service: ConfigService) -> None:
    """Out-of-range, renamed and mistyped stored values are skipped on read; the rest applies."""
    key = ConfigKey(SKEW)
    _write_raw(service, key, {"top_levels": 500, "old_name": 3, "sell_threshold": "low",
                              "buy_threshold": 1.5})
    _write_raw(service, ConfigKey(SKEW, "BTCUSDT"), {"top_levels": 0, "spread_weight": 0.9})
    service.refresh()
    glob = service.effective(SKEW)
    assert glob.version == 1
    assert glob.parameters["buy_threshold"] == 1.5
    assert glob.parameters["top_levels"] == DEFAULTS["top_levels"]
    assert glob.parameters["sell_threshold"] == DEFAULTS["sell_threshold"]
    assert "old_name" not in glob.parameters
    assert glob.sources["top_levels"] == "default"
    btc = service.effective(SKEW, "BTCUSDT")
    assert btc.parameters["top_levels"] == DEFAULTS["top_levels"] and btc.parameters["spread_weight"] == 0.9


def test_stored_values_the_registry_rejects_stay_ignored_after_a_change(service: ConfigService) -> None:
    """A change merged onto a stored set with invalid values never makes them effective."""
    key = ConfigKey(SKEW)
    _write_raw(service, key, {"top_levels": 500, "old_name": 3, "buy_threshold": 1.5})
    service.refresh()
    preview = service.update(SKEW, None, {"sell_threshold": 0.5}, "alice", validate_only=True)
    assert preview.config.parameters["top_levels"] == DEFAULTS["top_levels"]
    result = service.update(SKEW, None, {"sell_threshold": 0.5}, "alice")
    for config in (result.config, service.effective(SKEW), service.effective(SKEW, "ETHUSDT")):
        assert config.parameters["sell_threshold"] == 0.5
        assert config.parameters["buy_threshold"] == 1.5
        assert config.parameters["top_levels"] == DEFAULTS["top_levels"]
        assert "old_name" not in config.parameters
        assert set(config.parameters) == set(DEFAULTS)


# ============================================================================ property (sqlite)
VALID_VALUES = st.one_of(
    st.tuples(st.just("top_levels"), st.integers(1, 20)),
    st.tuples(st.just("buy_threshold"), st.floats(1.01, 5.0, allow_nan=False)),
    st.tuples(st.just("sell_threshold"), st.floats(0.0, 1.0, allow_nan=False)),
    st.tuples(st.just("min_signal_interval"), st.integers(0, 600)),
)
SYMBOLS = st.sampled_from([None, "BTCUSDT"])
UPDATE = st.tuples(st.just("update"), SYMBOLS,
                   st.lists(VALID_VALUES, min_size=1, max_size=3).map(dict),
                   st.one_of(st.none(), st.none(), st.integers(0, 6)))  # mostly unguarded
DELETE = st.tuples(st.just("delete"), SYMBOLS)
ROLLBACK = st.tuples(st.just("rollback"), SYMBOLS, st.none() | st.integers(0, 7))
# updates three times as often as each of the others: deletes and rollbacks need something stored
OPERATIONS = st.lists(st.sampled_from([UPDATE, UPDATE, UPDATE, DELETE, ROLLBACK]).flatmap(lambda s: s),
                      min_size=3, max_size=14)


class StoreModel:
    """The stored parameter sets and versions as plain dicts (the contract, without a store)."""

    def __init__(self) -> None:
        self.version: dict = {}
        self.live: dict = {}
        self.history: dict = {}

    def apply(self, op: tuple) -> tuple[type[Exception] | None, int | None]:
        """Apply ``op``; return the error the service must raise (and its current version)."""
        kind, symbol = op[0], op[1]
        version = self.version.get(symbol, 0)
        live = self.live.get(symbol)
        if kind == "update":
            params, expected = op[2], op[3]
            if expected is not None and expected != version:
                return VersionConflict, version
            new = {**(live or {}), **params}
        elif kind == "delete":
            if live is None:
                return ConfigNotFound, None
            new = None
        else:
            if version == 0:
                return ConfigNotFound, None
            target = version - 1 if op[2] is None else op[2]
            if not 1 <= target < version:  # no such earlier version
                return ConfigNotFound, None
            if self.history[symbol][target] is None:  # it was a deletion
                return VersionConflict, version
            new = dict(self.history[symbol][target])
        self.version[symbol] = version + 1
        self.live[symbol] = new
        self.history.setdefault(symbol, {})[version + 1] = new
        return None, None

    def effective(self, symbol: str | None) -> tuple[dict, int, bool]:
        params = dict(DEFAULTS)
        version, override = 0, False
        for level in [None] + ([symbol] if symbol else []):
            if self.live.get(level) is not None:
                params.update(self.live[level])
                version, override = self.version[level], level is not None
        return params, version, override


def _run(service: ConfigService, op: tuple):
    kind, symbol = op[0], op[1]
    if kind == "update":
        return service.update(SKEW, symbol, op[2], "prop", expected_version=op[3])
    if kind == "delete":
        return service.delete(SKEW, symbol, "prop")
    return service.rollback(SKEW, symbol, "prop", target_version=op[2])


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPERATIONS)
def test_random_changes_agree_with_a_dict_model(ops: list[tuple]) -> None:
    """Any sequence of update/delete/rollback leaves the SQLite store where the dict model says."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        service = ConfigService(settings)
        model = StoreModel()
        try:
            service.refresh()
            committed = 0
            for op in ops:
                error, current = model.apply(op)
                if error is None:
                    result = _run(service, op)
                    committed += 1
                    assert result.audit is not None and result.audit.new_version == model.version[op[1]]
                else:
                    with pytest.raises(error) as info:
                        _run(service, op)
                    if error is VersionConflict:
                        assert info.value.current_version == current
                for symbol in (None, "BTCUSDT"):
                    stored = service.primary.get(ConfigKey(SKEW, symbol))
                    if symbol not in model.version:
                        assert stored is None
                        continue
                    assert stored is not None and stored.version == model.version[symbol]
                    assert stored.deleted == (model.live[symbol] is None)
                    if model.live[symbol] is not None:
                        assert dict(stored.parameters) == model.live[symbol]
                    params, version, override = model.effective(symbol)
                    eff = service.effective(SKEW, symbol)
                    assert (dict(eff.parameters), eff.version, eff.is_override) == (params, version, override)
            fresh = ConfigService(settings)
            try:
                fresh.refresh()
                for symbol in ("BTCUSDT", "ETHUSDT"):
                    params, version, override = model.effective(symbol)
                    eff = fresh.effective(SKEW, symbol)
                    assert (dict(eff.parameters), eff.version, eff.is_override) == (params, version, override)
                trail = fresh.audit(SKEW, ANY_SYMBOL, limit=1000)
                assert len(trail) == committed
                for symbol in (None, "BTCUSDT"):
                    versions = [r.new_version for r in trail if r.key.symbol == symbol]
                    assert versions == list(range(model.version.get(symbol, 0), 0, -1))
            finally:
                fresh.close()
        finally:
            service.close()
