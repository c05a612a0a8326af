"""MongoDB outages: reads degrade (fallback → last known → defaults), writes are refused.

Each test owns a private nx-27017 server (``MongoWireServer``) so it can stop and restart it;
its data file survives the restart like a real server's would. The pymongo timeouts are 2 s,
so every call that has to notice the outage costs about that: the tests make few of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rtsig.config import ConfigKey, ConfigService
from rtsig.config.sqlstore import MysqlStore
from rtsig.config.stores import ANY_SYMBOL
from rtsig.errors import ConfigInvalid, StoreUnavailable
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from tests.servers import MariaDbServer, MongoWireServer, free_port

SKEW = "orderbook_skew"
MOMENTUM = "trade_momentum"
DB = "rtsig_outage"


@pytest.fixture
def mongo_server(tmp_path: Path) -> Iterator[MongoWireServer]:
    """A private nx-27017 server for this test (stopped at the end, whatever happened)."""
    server = MongoWireServer(tmp_path / "mongo").start()
    try:
        yield server
    finally:
        server.stop()


def write_history(service: ConfigService) -> None:
    """A few changes of every kind on two strategies, global and symbol level."""
    service.update(SKEW, None, {"top_levels": 8}, "alice", "deeper book")
    service.update(SKEW, None, {"buy_threshold": 1.5}, "alice", "fewer buys")
    service.update(SKEW, "BTCUSDT", {"sell_threshold": 0.6}, "bob", "btc is special")
    service.update(MOMENTUM, None, {"momentum_window": 25}, "bob")
    service.update(MOMENTUM, "ETHUSDT", {"min_quantity": 0.5}, "carol")
    service.delete(MOMENTUM, "ETHUSDT", "carol", "not needed")
    service.rollback(SKEW, None, "dave", "undo", target_version=1)  # v3: {"top_levels": 8}


def effective_values(service: ConfigService) -> dict:
    """(strategy, symbol) → (parameters, version, is_override) for the keys the history touched."""
    return {(sid, sym): (dict(e.parameters), e.version, e.is_override)
            for sid in (SKEW, MOMENTUM) for sym in (None, "BTCUSDT", "ETHUSDT")
            for e in [service.effective(sid, sym)]}


def trail(service: ConfigService) -> list[tuple]:
    """Every audit record's content (ids differ between stores, so they are left out)."""
    return [(r.key, r.action, r.old_parameters, r.new_parameters, r.old_version, r.new_version,
             r.changed_by, r.changed_at, r.reason)
            for sid in (SKEW, MOMENTUM) for r in service.audit(sid, ANY_SYMBOL)]


def test_mongo_outage_falls_back_to_mysql_and_recovers(mongo_server: MongoWireServer, mysql_uri: str,
                                                       tmp_path: Path) -> None:
    """Mongo down: reads come from the MySQL mirror, writes are refused; Mongo back: nothing lost."""
    settings = Settings(data_dir=tmp_path / "data").with_overrides(
        mongodb_uri=mongo_server.uri, mongodb_database=DB, mysql_uri=mysql_uri)
    service = ConfigService(settings)
    try:
        service.refresh()
        assert service.state() == "primary"
        assert (service.primary.name, service.fallback.name) == ("mongodb", "mysql")
        write_history(service)
        assert service.mirror_errors == 0
        before = effective_values(service)
        before_trail = trail(service)
        before_ids = [r.id for r in service.audit(SKEW)]
        assert before[(SKEW, "BTCUSDT")][0]["top_levels"] == 8
        assert before[(SKEW, "BTCUSDT")][0]["sell_threshold"] == 0.6

        mirror = MysqlStore(mysql_uri)
        try:
            mirrored = mirror.load_all()
            assert set(mirrored) == {ConfigKey(SKEW), ConfigKey(SKEW, "BTCUSDT"), ConfigKey(MOMENTUM)}
            assert mirrored[ConfigKey(SKEW)].parameters == {"top_levels": 8}
            assert mirrored[ConfigKey(SKEW)].version == 3
            mirror_count = len(mirror.audit(SKEW, ANY_SYMBOL, 1000))
            assert mirror_count == 4
        finally:
            mirror.close()

        mongo_server.stop()
        snap = service.refresh()  # must not raise
        assert snap.source == "mysql"
        assert service.state() == "fallback"
        health = service.health()
        assert health["degraded"] and "mongodb" in health["degraded"]
        assert health["serving_from"] == "mysql" and health["state"] == "fallback"
        assert effective_values(service) == before
        btc = service.effective(SKEW, "BTCUSDT")
        assert btc.source == "mysql"
        assert btc.sources["sell_threshold"] == "mysql (BTCUSDT)" and btc.sources["top_levels"] == "mysql"
        assert service.effective("onchain_metrics").source == "default"

        with pytest.raises(StoreUnavailable) as info:
            service.update(SKEW, None, {"top_levels": 3}, "erin")
        assert "refused" in str(info.value)
        assert service.effective(SKEW).parameters["top_levels"] == 8
        assert trail(service) == before_trail  # the audit trail is served from the fallback

        mirror = MysqlStore(mysql_uri)
        try:
            assert len(mirror.audit(SKEW, ANY_SYMBOL, 1000)) == mirror_count  # nothing half-written
        finally:
            mirror.close()

        mongo_server.start()
        snap = service.refresh()
        assert snap.source == "mongodb" and snap.degraded is None
        assert service.state() == "primary"
        assert service.health()["degraded"] is None
        assert effective_values(service) == before
        assert service.effective(SKEW, "BTCUSDT").source == "mongodb"
        assert trail(service) == before_trail
        assert [r.id for r in service.audit(SKEW)] == before_ids

        after = service.update(SKEW, None, {"top_levels": 3}, "erin", "after the outage")
        assert after.config.version == 4 and after.config.parameters["top_levels"] == 3
        assert service.audit(SKEW, None, limit=1)[0].new_version == 4
        assert service.mirror_errors == 0

        fresh = ConfigService(settings)
        try:
            fresh.refresh()
            assert fresh.effective(SKEW, "ETHUSDT").parameters["top_levels"] == 3
            assert fresh.effective(SKEW, "ETHUSDT").version == 4
        finally:
            fresh.close()
    finally:
        service.close()


def test_mongo_and_mysql_both_down_serve_last_known_values(mongo_server: MongoWireServer,
                                                          tmp_path: Path) -> None:
    """Mongo down (fallback serves), then MySQL down too: neither store answers any more, so the
    state is ``last_known`` (not ``fallback``), the values read last stay, changes are refused."""
    reason = MariaDbServer.missing()
    if reason:
        pytest.skip(reason)
    mariadb = MariaDbServer(tmp_path / "mariadb").start()
    try:
        settings = Settings(data_dir=tmp_path / "data").with_overrides(
            mongodb_uri=mongo_server.uri, mongodb_database=DB,
            mysql_uri=mariadb.create_database("rtsig_outage"))
        service = ConfigService(settings)
        try:
            write_history(service)
            service.refresh()
            before = effective_values(service)

            mongo_server.stop()
            service.refresh()
            assert service.state() == "fallback"

            mariadb.stop()
            snap = service.refresh()  # must not raise
            assert snap.degraded and "mongodb" in snap.degraded and "mysql" in snap.degraded
            assert service.state() == "last_known"
            assert service.health()["state"] == "last_known"
            assert effective_values(service) == before
            with pytest.raises(StoreUnavailable):
                service.update(SKEW, None, {"top_levels": 3}, "erin")
        finally:
            service.close()
    finally:
        mariadb.stop()


def test_mongo_only_outage_serves_last_known_values(mongo_server: MongoWireServer, tmp_path: Path) -> None:
    """Mongo alone and down: the last values read stay in force and changes are refused."""
    settings = Settings(data_dir=tmp_path / "data").with_overrides(
        mongodb_uri=mongo_server.uri, mongodb_database=DB)
    service = ConfigService(settings)
    try:
        assert service.fallback is None
        write_history(service)
        service.refresh()
        before = effective_values(service)
        assert service.state() == "primary"

        mongo_server.stop()
        snap = service.refresh()  # must not raise
        assert service.state() == "last_known"
        assert snap.degraded and "mongodb" in snap.degraded
        health = service.health()
        assert health["serving_from"] == "mongodb" and health["degraded"]
        assert effective_values(service) == before
        assert service.effective(SKEW).parameters["top_levels"] == 8
        assert service.effective(SKEW, "BTCUSDT").source == "mongodb"

        with pytest.raises(StoreUnavailable) as info:
            service.delete(SKEW, "BTCUSDT", "erin")
        assert "refused" in str(info.value)
        assert service.effective(SKEW, "BTCUSDT").is_override is True
    finally:
        service.close()


def test_store_that_never_answered_serves_environment_and_defaults(tmp_path: Path) -> None:
    """No store ever answered: state ``defaults``, parameters from environment and defaults."""
    uri = f"mongodb://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(data_dir=tmp_path / "data").with_overrides(
        mongodb_uri=uri, mongodb_database=DB, strategy_env_params={SKEW: {"top_levels": 7}})
    service = ConfigService(settings)
    try:
        snap = service.refresh()  # must not raise
        assert snap.source is None and snap.configs == {}
        assert service.state() == "defaults"
        health = service.health()
        assert health["serving_from"] == "defaults" and health["state"] == "defaults"
        assert health["degraded"] and "mongodb" in health["degraded"]

        skew = service.effective(SKEW, "BTCUSDT")
        assert skew.parameters["top_levels"] == 7 and skew.sources["top_levels"] == "environment"
        assert skew.source == "environment" and skew.version == 0 and skew.is_override is False
        defaults = STRATEGIES[SKEW].defaults()
        assert skew.parameters["buy_threshold"] == defaults["buy_threshold"]
        momentum = service.effective(MOMENTUM)
        assert momentum.source == "default" and dict(momentum.parameters) == STRATEGIES[MOMENTUM].defaults()

        with pytest.raises(StoreUnavailable):
            service.update(SKEW, None, {"top_levels": 3}, "erin")
        assert service.effective(SKEW).parameters["top_levels"] == 7
    finally:
        service.close()


def test_a_change_the_fallback_cannot_copy_still_commits(mongo_server: MongoWireServer, mysql_uri: str,
                                                         tmp_path: Path) -> None:
    """A change committed to MongoDB is reported as done even if the MySQL mirror refuses it
    (here: a reason longer than MySQL's TEXT column): no exception, the cache has it, listeners
    ran and the miss is counted — or the change is refused before anything is written."""
    settings = Settings(data_dir=tmp_path / "data").with_overrides(
        mongodb_uri=mongo_server.uri, mongodb_database=DB, mysql_uri=mysql_uri)
    service = ConfigService(settings)
    seen: list[int] = []
    service.on_change(lambda r: seen.append(r.config.version))
    try:
        service.refresh()
        service.update(SKEW, None, {"top_levels": 6}, "alice")
        reason = "r" * 70_000
        try:
            result = service.update(SKEW, None, {"top_levels": 9}, "alice", reason)
        except Exception as exc:  # noqa: BLE001 - only a clean refusal is acceptable
            assert isinstance(exc, ConfigInvalid), f"{type(exc).__name__}: {str(exc)[:200]}"
            stored = service.primary.get(ConfigKey(SKEW))
            assert stored is not None and stored.version == 1  # nothing written
        else:
            assert result.config.version == 2
            assert service.effective(SKEW).parameters["top_levels"] == 9
            assert seen == [1, 2]
            assert service.mirror_errors == 1
            assert service.audit(SKEW, None)[0].reason == reason
    finally:
        service.close()


def test_a_failed_copy_to_the_fallback_is_counted_in_the_process_row(tmp_path, mongo_server) -> None:
    """The primary commits; the fallback (a MySQL URI nothing answers) misses the copy: counted."""
    import numpy as np

    from rtsig import counters as C
    from tests.servers import free_port

    row = np.zeros(C.N_COUNTERS, dtype=np.int64)
    settings = Settings(data_dir=tmp_path / "data").with_overrides(
        mongodb_uri=mongo_server.uri, mongodb_database=DB,
        mysql_uri=f"mysql://root@127.0.0.1:{free_port()}/rtsig")
    service = ConfigService(settings, counters=row)
    try:
        assert service.update(SKEW, None, {"top_levels": 6}, "alice").config.version == 1
        assert service.mirror_errors == 1 and row[C.CONFIG_MIRROR_ERRORS] == 1
    finally:
        service.close()
