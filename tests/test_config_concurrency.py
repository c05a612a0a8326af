"""Concurrent configuration changes against each real store: the version guard holds.

Every writer has its own :class:`ConfigService` (own connection), as separate web workers do.
Writers are lined up on a barrier and then race; the assertions are about outcomes only (who
won, which versions exist, which audit records were written), never about timing.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rtsig.config import ConfigKey, ConfigService
from rtsig.config.stores import ANY_SYMBOL
from rtsig.errors import VersionConflict
from rtsig.settings import Settings

SKEW = "orderbook_skew"
ROUNDS = 10
BARRIER_TIMEOUT_S = 60.0
FORK = multiprocessing.get_context("fork")


@pytest.fixture
def ready_service(make_service) -> Callable[..., ConfigService]:
    """``make_service`` whose services have connected (tables/indexes made) before any race."""
    def make(settings: Settings | None = None) -> ConfigService:
        service = make_service(settings)
        service.refresh()
        return service
    return make


def race(workers: list[Callable[[], object]]) -> list[object]:
    """Run each callable in its own thread, released together by a barrier.

    Returns, per worker, what it returned or the exception it raised.
    """
    barrier = threading.Barrier(len(workers))
    outcomes: list[object] = [None] * len(workers)

    def run(i: int) -> None:
        barrier.wait(BARRIER_TIMEOUT_S)
        try:
            outcomes[i] = workers[i]()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"writer-{i}") for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BARRIER_TIMEOUT_S * 2)
        assert not t.is_alive(), "a writer hung"
    return outcomes


def split(outcomes: list[object]) -> tuple[list[int], list[object], list[object]]:
    """(indexes of winners, VersionConflicts, anything else)."""
    wins = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflict)]
    other = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, VersionConflict)]
    return wins, conflicts, other


def test_same_expected_version_exactly_one_wins(ready_service, store_settings: Settings) -> None:
    """Two writers with the same ``expected_version`` (create with 0, then update): one wins, the
    other gets VersionConflict naming the winner's version; repeated ROUNDS times per race kind."""
    settings = store_settings.with_overrides(trading_symbols=None)
    a, b = ready_service(settings), ready_service(settings)
    writers = (a, b)
    winners: dict[tuple[str, int], int] = {}

    for rnd in range(ROUNDS):
        symbol = f"R{rnd}USDT"
        for step, expected in enumerate((0, 1)):
            values = [1 + (4 * rnd + 2 * step + i) % 20 for i in range(2)]  # distinct, in 1..20
            outcomes = race([
                (lambda s=s, v=v, e=expected: s.update(SKEW, symbol, {"top_levels": v}, f"w{v}",
                                                       expected_version=e))
                for s, v in zip(writers, values)])
            wins, conflicts, other = split(outcomes)
            assert other == [], other
            assert len(wins) == 1 and len(conflicts) == 1, outcomes
            assert conflicts[0].current_version == expected + 1
            won = wins[0]
            winners[(symbol, expected)] = values[won]
            assert outcomes[won].config.version == expected + 1

            stored = a.primary.get(ConfigKey(SKEW, symbol))
            assert stored is not None and stored.version == expected + 1
            assert stored.parameters == {"top_levels": values[won]}

    checker = ready_service(settings)
    for rnd in range(ROUNDS):
        symbol = f"R{rnd}USDT"
        trail = checker.audit(SKEW, symbol)
        assert [(r.action, r.old_version, r.new_version) for r in trail] == [
            ("UPDATE", 1, 2), ("CREATE", 0, 1)]
        assert [r.new_parameters["top_levels"] for r in trail] == [
            winners[(symbol, 1)], winners[(symbol, 0)]]
        assert checker.effective(SKEW, symbol).parameters["top_levels"] == winners[(symbol, 1)]
    assert len(checker.audit(SKEW, ANY_SYMBOL, limit=1000)) == 2 * ROUNDS


def test_guarded_update_race_on_one_key(ready_service) -> None:
    """ROUNDS consecutive two-writer races on the same global config: versions 1..ROUNDS+1 each
    written exactly once, every loser told the version the winner wrote."""
    a, b = ready_service(), ready_service()
    a.update(SKEW, None, {"buy_threshold": 1.3}, "setup")
    for rnd in range(ROUNDS):
        version = rnd + 1
        outcomes = race([
            lambda: a.update(SKEW, None, {"sell_threshold": 0.1}, "a", expected_version=version),
            lambda: b.update(SKEW, None, {"sell_threshold": 0.9}, "b", expected_version=version)])
        wins, conflicts, other = split(outcomes)
        assert other == [] and len(wins) == 1 and len(conflicts) == 1, outcomes
        assert conflicts[0].current_version == version + 1
    trail = a.audit(SKEW, None, limit=1000)
    assert [r.new_version for r in trail] == list(range(ROUNDS + 1, 0, -1))
    assert all(r.old_version == r.new_version - 1 for r in trail)
    stored = a.primary.get(ConfigKey(SKEW))
    assert stored is not None and stored.version == ROUNDS + 1
    assert stored.parameters["buy_threshold"] == 1.3


UNGUARDED = {"top_levels": 4, "buy_threshold": 1.9, "sell_threshold": 0.4,
             "min_spread_percent": 0.3, "base_confidence": 0.5}


@pytest.mark.parametrize("existing", [False, True], ids=["creating", "existing"])
def test_unguarded_concurrent_updates_all_land(ready_service, existing: bool) -> None:
    """Writers without ``expected_version``, each setting its own parameter, all succeed: the
    final set has every value, versions are distinct and consecutive, one audit record each."""
    services = [ready_service() for _ in UNGUARDED]
    base = 0
    if existing:
        services[0].update(SKEW, None, {"spread_weight": 0.2}, "setup")
        base = 1
    items = list(UNGUARDED.items())
    outcomes = race([
        (lambda s=s, k=k, v=v: s.update(SKEW, None, {k: v}, f"writer-{k}"))
        for s, (k, v) in zip(services, items)])
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == [], failures

    versions = sorted(o.config.version for o in outcomes)
    assert versions == list(range(base + 1, base + len(items) + 1))
    stored = services[0].primary.get(ConfigKey(SKEW))
    expected = {**({"spread_weight": 0.2} if existing else {}), **UNGUARDED}
    assert stored is not None and dict(stored.parameters) == expected
    assert stored.version == base + len(items)

    trail = services[0].audit(SKEW, None, limit=1000)
    assert [r.new_version for r in trail] == list(range(base + len(items), 0, -1))
    assert sorted(r.changed_by for r in trail[:len(items)]) == sorted(f"writer-{k}" for k in UNGUARDED)
    for record in trail[:len(items)]:
        name = record.changed_by.removeprefix("writer-")
        assert record.new_parameters[name] == UNGUARDED[name]
        # each record builds on the one before it: nothing another writer set is lost
        assert set(record.new_parameters) >= set(record.old_parameters or {})
    creates = [r for r in trail if r.action == "CREATE"]
    assert len(creates) == 1 and creates[0].new_version == 1


# ----------------------------------------------------------------------------- processes
def _process_writer(data_dir: str, index: int, rounds: int, barrier, results) -> None:
    """Child process: race ``rounds`` guarded updates, then one unguarded update of its own."""
    service = ConfigService(Settings(data_dir=Path(data_dir)))
    try:
        service.refresh()
        for rnd in range(rounds):
            barrier.wait(BARRIER_TIMEOUT_S)
            try:
                result = service.update(SKEW, None, {"top_levels": 1 + index + 3 * rnd}, f"p{index}",
                                        expected_version=rnd + 1)
                results.put((index, rnd, "won", result.config.version))
            except VersionConflict as exc:
                results.put((index, rnd, "conflict", exc.current_version))
        barrier.wait(BARRIER_TIMEOUT_S)
        param = ("buy_threshold", "sell_threshold", "min_spread_percent")[index]
        value = (1.7, 0.3, 0.25)[index]
        service.update(SKEW, None, {param: value}, f"p{index}")
        results.put((index, rounds, "unguarded", param))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put((index, -1, "error", repr(exc)))
    finally:
        service.close()


def test_sqlite_guards_across_processes(tmp_path: Path) -> None:
    """Three forked processes on one SQLite file: each guarded round has exactly one winner, and
    unguarded changes from all processes land without losing one another."""
    processes, rounds = 3, 6
    settings = Settings(data_dir=tmp_path / "data")
    setup = ConfigService(settings)
    try:
        setup.update(SKEW, None, {"top_levels": 1}, "setup")
    finally:
        setup.close()

    barrier = FORK.Barrier(processes)
    results = FORK.Queue()
    procs = [FORK.Process(target=_process_writer,
                          args=(str(settings.data_dir), i, rounds, barrier, results))
             for i in range(processes)]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=BARRIER_TIMEOUT_S * 2) for _ in range(processes * (rounds + 1))]
        for p in procs:
            p.join(BARRIER_TIMEOUT_S)
            assert p.exitcode == 0
    finally:
        for p in procs:  # only the processes this test started
            if p.is_alive():
                p.kill()
                p.join()
    assert [r for r in reports if r[2] == "error"] == []

    for rnd in range(rounds):
        this = [r for r in reports if r[1] == rnd]
        assert len(this) == processes
        won = [r for r in this if r[2] == "won"]
        assert len(won) == 1 and won[0][3] == rnd + 2, this
        assert all(r[3] == rnd + 2 for r in this if r[2] == "conflict"), this
    assert len([r for r in reports if r[2] == "unguarded"]) == processes

    check = ConfigService(settings)
    try:
        check.refresh()
        stored = check.primary.get(ConfigKey(SKEW))
        assert stored is not None and stored.version == 1 + rounds + processes
        assert stored.parameters["buy_threshold"] == 1.7
        assert stored.parameters["sell_threshold"] == 0.3
        assert stored.parameters["min_spread_percent"] == 0.25
        trail = check.audit(SKEW, None, limit=1000)
        assert [r.new_version for r in trail] == list(range(1 + rounds + processes, 0, -1))
        last_round_winner = [r for r in reports if r[1] == rounds - 1 and r[2] == "won"][0][0]
        assert stored.parameters["top_levels"] == 1 + last_round_winner + 3 * (rounds - 1)
    finally:
        check.close()
