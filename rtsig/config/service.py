"""The configuration service: resolution, caching, validated changes, audit and fallback.

One object per process. Reads go through a cached :class:`~rtsig.config.model.Snapshot` of
every stored config (one query per store, refreshed after ``CONFIG_CACHE_TTL_SECONDS`` or on
demand), so resolving thousands of (symbol, strategy) rows costs no I/O. Layering, per
parameter: symbol override → global config → environment variable → default.

Outages: when the primary store does not answer, reads come from the fallback (MySQL behind
MongoDB) or, failing that, from the last values read, and say so (:meth:`health`); changes are
refused with :class:`~rtsig.errors.StoreUnavailable` — a change is committed to the primary
with its audit record, or not at all.

Propagation is the caller's business: listeners registered with :meth:`on_change` run after
every committed change (the web process bumps the shared-memory config epoch and announces
the change on NATS; see :mod:`rtsig.config.notify`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rtsig.config import lastknown
from rtsig.config.model import AuditRecord, ConfigKey, Snapshot, StoredConfig, utc_now
from rtsig.config.stores import ANY_SYMBOL, ConfigStore, open_stores
from rtsig.counters import CONFIG_MIRROR_ERRORS, CONFIG_STATES
from rtsig.errors import ConfigInvalid, ConfigNotFound, StoreUnavailable, VersionConflict
from rtsig.params import EffectiveConfig, base_config, changed_parameters
from rtsig.registry import STRATEGIES, ParamValue, Strategy
from rtsig.settings import _SYMBOL_RE, Settings

log = logging.getLogger(__name__)

DEGRADED_RETRY_S = 5.0
"""While the primary store is down, how often reads try it again (at most the TTL)."""
READ_WAIT_S = 2.5
"""How long a read waits for another thread's read of the store before it serves the cached
values. Each store call is bounded by ``rtsig.config.sqlstore.STORE_TIMEOUT_S`` and the MongoDB
timeouts (2 s), so a hung store costs a read about 2 s, like a store that refuses; the wait is a
little longer, so that a reader gets the answer of the read it waited for."""
WRITE_RETRIES = 100
"""Attempts of a change without ``expected_version`` that keeps losing races (each lost race
means another change got through, so this bounds nothing in practice but a broken store)."""
MAX_AUDIT_LIMIT = 1000
CHANGED_BY_MAX = 255
REASON_MAX = 2000


@dataclass(frozen=True)
class ChangeResult:
    """What a change did (or, with ``validate_only``, would do)."""

    config: EffectiveConfig
    audit: AuditRecord | None
    validate_only: bool = False


class ConfigService:
    def __init__(self, settings: Settings,
                 stores: tuple[ConfigStore, ConfigStore | None] | None = None,
                 cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None,
                 clock: Callable[[], float] = time.time, counters=None,
                 last_known: Path | None = None) -> None:
        """``counters``: this process's counter row, where fallback copy failures are counted.
        ``last_known``: a file keeping the last configs read, so that a process started while
        every store is down serves them rather than the defaults (:mod:`rtsig.config.lastknown`)."""
        self.settings = settings
        self.last_known = last_known
        self._saved_fingerprint: tuple | None = None
        self.counters = counters
        self.primary, self.fallback = stores if stores is not None else open_stores(settings)
        self.cli_overrides = cli_overrides or {}
        self.clock = clock
        self._snapshot = Snapshot()
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._reads = 0  # reads of the store completed (successful or not)
        self._reading = False
        self._background: threading.Thread | None = None
        self._background_guard = threading.Lock()
        self._listeners: list[Callable[[ChangeResult], None]] = []
        self.mirror_errors = 0

    def close(self) -> None:
        self.primary.close()
        if self.fallback is not None:
            self.fallback.close()

    def on_change(self, listener: Callable[[ChangeResult], None]) -> None:
        """Call ``listener`` after every committed change (not for ``validate_only``)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ reads
    @property
    def snapshot(self) -> Snapshot:
        """The cached snapshot as it is (no I/O)."""
        return self._snapshot

    def current(self) -> Snapshot:
        """The snapshot, refreshed first if the TTL (or, while degraded, the retry) has passed."""
        if self.expired():
            return self.refresh()
        return self._snapshot

    def expired(self) -> bool:
        """The cache is due for a read (or a read is under way: its result is the fresh one)."""
        if self._checked_at is None or self._reading:
            return True
        ttl = self.settings.config_cache_ttl_seconds
        if self._snapshot.degraded is not None:
            ttl = min(ttl, DEGRADED_RETRY_S)
        return self.clock() - self._checked_at >= ttl

    def refresh(self) -> Snapshot:
        """Read every stored config now: primary, else fallback, else keep the last values.

        One read at a time: a caller that finds another thread reading waits for it (at most
        :data:`READ_WAIT_S`); if that read found the store down, it gets that answer rather
        than asking the store again, and if the read is still stuck it gets the cached values.
        """
        reads = self._reads
        waited = not self._lock.acquire(blocking=False)
        if waited and not self._lock.acquire(timeout=READ_WAIT_S):
            return self._snapshot
        try:
            if waited and self._reads > reads and self._snapshot.degraded is not None:
                return self._snapshot  # the read we waited for found the store down
            return self._refresh_locked()
        finally:
            self._lock.release()

    def refresh_in_background(self) -> None:
        """Start a :meth:`refresh` on a thread of its own unless one is running (never blocks)."""
        with self._background_guard:
            if self._background is not None and self._background.is_alive():
                return
            self._background = threading.Thread(target=self._refresh_quietly, name="config-refresh",
                                                daemon=True)
            self._background.start()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - a background read must not die loudly; the next one retries
            log.exception("background config refresh failed")

    def _refresh_locked(self) -> Snapshot:
        self._reading = True
        try:
            return self._read_stores()
        finally:
            self._reads += 1
            self._reading = False

    def _read_stores(self) -> Snapshot:
        now = self.clock()
        self._checked_at = now
        try:
            configs = self.primary.load_all()
            self._snapshot = Snapshot(self._sanitized(configs), self.primary.name, now, None)
            self._save_last_known()
            return self._snapshot
        except StoreUnavailable as exc:
            problem = f"{self.primary.name} unreachable: {exc}"
        if self.fallback is not None:
            try:
                configs = self.fallback.load_all()
                self._snapshot = Snapshot(self._sanitized(configs), self.fallback.name, now,
                                          problem)
                self._save_last_known()
                return self._snapshot
            except StoreUnavailable as exc:
                problem += f"; fallback {self.fallback.name} unreachable: {exc}"
        last = self._snapshot
        if last.source is None and self.last_known is not None:  # nothing read in this process yet
            kept = lastknown.load(self.last_known)
            if kept is not None:
                last = Snapshot(self._sanitized(kept.configs), kept.source, kept.loaded_at, None)
        if last.degraded is None:
            log.warning("config store degraded: %s", problem)
        self._snapshot = Snapshot(last.configs, last.source, last.loaded_at, problem)
        return self._snapshot

    def _save_last_known(self) -> None:
        """Keep the configs just read for a process that starts during an outage (on change only)."""
        if self.last_known is None or self._snapshot.fingerprint == self._saved_fingerprint:
            return
        try:
            lastknown.save(self.last_known, self._snapshot)
            self._saved_fingerprint = self._snapshot.fingerprint
        except OSError as exc:
            log.warning("could not keep the last configs read in %s: %s", self.last_known, exc)

    def state(self) -> str:
        """One of :data:`rtsig.counters.CONFIG_STATES` for the current snapshot."""
        snap = self._snapshot
        if snap.degraded is None:
            return CONFIG_STATES[0] if snap.source is not None else CONFIG_STATES[3]
        if snap.source is None:
            return CONFIG_STATES[3]
        if snap.source != self.primary.name and snap.loaded_at == self._checked_at:
            return CONFIG_STATES[1]
        return CONFIG_STATES[2]

    def health(self, refresh: bool = True) -> dict:
        """For ``/ready`` and ``rtsig config``: which store, and whether reads are degraded.

        ``refresh=False`` never waits on the store: it answers from the cache and, when the
        cache is due, starts a refresh in the background (``/ready`` must stay fast whatever
        the store does; before a process's first read completes it says "not read yet").
        """
        if refresh:
            snap = self.current()
        else:
            if self.expired():
                self.refresh_in_background()
            snap = self._snapshot
        return {"store": self.primary.name,
                "fallback": None if self.fallback is None else self.fallback.name,
                "state": self.state(), "serving_from": snap.source or "defaults",
                "loaded_at": snap.loaded_at or None,
                "degraded": snap.degraded or ("not read yet" if self._reads == 0 else None)}

    def _sanitized(self, configs: Mapping[ConfigKey, StoredConfig]) -> dict[ConfigKey, StoredConfig]:
        """Drop stored values the registry no longer accepts (renamed or re-ranged parameters)."""
        return {key: _valid_only(config) for key, config in configs.items()
                if key.strategy_id in STRATEGIES}

    def effective(self, strategy_id: str, symbol: str | None = None,
                  snapshot: Snapshot | None = None) -> EffectiveConfig:
        """The complete parameters of a strategy for a symbol (or globally), from the cache."""
        self.strategy(strategy_id)
        base = base_config(self.settings, strategy_id, self.cli_overrides)
        snap = self._snapshot if snapshot is None else snapshot
        params = dict(base.parameters)
        sources = dict(base.sources)
        top: StoredConfig | None = None
        levels = [ConfigKey(strategy_id, None)] + ([] if symbol is None else [ConfigKey(strategy_id, symbol)])
        for key in levels:
            stored = snap.configs.get(key)
            if stored is None:
                continue
            params.update(stored.parameters)
            assert snap.source is not None  # a snapshot holding configs names the store they came from
            label = snap.source if key.symbol is None else f"{snap.source} ({key.symbol})"
            sources.update({name: label for name in stored.parameters})
            top = stored
        if top is None:
            return EffectiveConfig(strategy_id, symbol, base.parameters, 0, base.source, False,
                                   changed=base.changed, sources=base.sources)
        return EffectiveConfig(strategy_id, symbol, params, top.version, snap.source or "default",
                               top.key.symbol is not None, top.created_at, top.updated_at,
                               changed_parameters(strategy_id, params), sources)

    def stored_keys(self, strategy_id: str) -> tuple[bool, list[str]]:
        """``(has a global config, symbols with an override)`` from the cache."""
        keys = [k for k in self.current().configs if k.strategy_id == strategy_id]
        return (any(k.symbol is None for k in keys),
                sorted(k.symbol for k in keys if k.symbol is not None))

    def audit(self, strategy_id: str, symbol: str | None = ANY_SYMBOL, limit: int = 50) -> list[AuditRecord]:
        """Newest first, from the primary store (the fallback while it is down)."""
        self.strategy(strategy_id)
        if symbol not in (None, ANY_SYMBOL):
            assert symbol is not None  # excluded just above
            symbol = self.check_symbol(symbol)
        if not 1 <= int(limit) <= MAX_AUDIT_LIMIT:
            raise ConfigInvalid("bad limit", {"limit": f"expected 1 to {MAX_AUDIT_LIMIT}"})
        try:
            return self.primary.audit(strategy_id, symbol, int(limit))
        except StoreUnavailable:
            if self.fallback is None:
                raise
            return self.fallback.audit(strategy_id, symbol, int(limit))

    # ------------------------------------------------------------------ checks
    @staticmethod
    def strategy(strategy_id: str) -> Strategy:
        st = STRATEGIES.get(strategy_id)
        if st is None:
            raise ConfigNotFound(f"unknown strategy {strategy_id!r}; known: {', '.join(STRATEGIES)}")
        return st

    def check_symbol(self, symbol: str) -> str:
        """The symbol in canonical (upper) case, if this service trades it."""
        name = symbol.strip().upper()
        if not _SYMBOL_RE.match(name) or not self.settings.symbol_allowed(name):
            allowed = ("any symbol like BTCUSDT" if self.settings.trading_symbols is None
                       else ", ".join(self.settings.trading_symbols))
            raise ConfigNotFound(f"unknown symbol {symbol!r}; this service trades {allowed}")
        return name

    def _key(self, strategy_id: str, symbol: str | None) -> ConfigKey:
        self.strategy(strategy_id)
        return ConfigKey(strategy_id, None if symbol is None else self.check_symbol(symbol))

    @staticmethod
    def _check_author(changed_by: object, reason: object) -> tuple[str, str]:
        errors = {}
        if not isinstance(changed_by, str) or not changed_by.strip():
            errors["changed_by"] = "required: a non-empty string naming who makes the change"
        elif len(changed_by) > CHANGED_BY_MAX:
            errors["changed_by"] = f"at most {CHANGED_BY_MAX} characters"
        if reason is not None and not isinstance(reason, str):
            errors["reason"] = "a string"
        elif reason is not None and len(reason) > REASON_MAX:
            errors["reason"] = f"at most {REASON_MAX} characters"
        if errors:
            raise ConfigInvalid("invalid change request", errors)
        assert isinstance(changed_by, str) and (reason is None or isinstance(reason, str))  # checked above
        return changed_by.strip(), reason or ""

    # ------------------------------------------------------------------ changes
    def update(self, strategy_id: str, symbol: str | None, parameters: Mapping[str, object],
               changed_by: str, reason: str = "", validate_only: bool = False,
               expected_version: int | None = None) -> ChangeResult:
        """Merge ``parameters`` into the stored set of (strategy, symbol) and bump its version.

        Values must already be typed (JSON numbers, booleans, null): strings are refused here,
        unlike in environment variables, so a stored config never depends on parsing text.
        """
        key = self._key(strategy_id, symbol)
        st = self.strategy(strategy_id)
        if not isinstance(parameters, Mapping) or not parameters:
            raise ConfigInvalid("no parameters to change",
                                {"parameters": "a non-empty object of parameter names and values"})
        errors = {name: f"{strategy_id}.{name}={value!r} is invalid: expected "
                  f"{st.param(name).accepted() if st.has_param(name) else 'a known parameter'}, not a string"
                  for name, value in parameters.items() if isinstance(value, str)}
        errors.update({k: v for k, v in st.validation_errors(
            {n: v for n, v in parameters.items() if n not in errors}).items()})
        if errors:
            raise ConfigInvalid(f"{len(errors)} invalid parameter(s)", errors)
        values = st.validate(parameters)
        changed_by, reason = self._check_author(changed_by, reason)
        self._check_expected(expected_version)

        def change(current: StoredConfig | None) -> tuple[dict | None, str]:
            live = current is not None and not current.deleted
            merged = {**(_valid_only(current).parameters if current is not None and live else {}), **values}
            return merged, "UPDATE" if live else "CREATE"

        return self._change(key, change, changed_by, reason, expected_version, validate_only)

    def delete(self, strategy_id: str, symbol: str | None, changed_by: str, reason: str = "",
               expected_version: int | None = None) -> ChangeResult:
        """Remove the stored set: the level below applies again (its history is kept)."""
        key = self._key(strategy_id, symbol)
        changed_by, reason = self._check_author(changed_by, reason)
        self._check_expected(expected_version)

        def change(current: StoredConfig | None) -> tuple[dict | None, str]:
            if current is None or current.deleted:
                raise ConfigNotFound(f"no stored config for {key}")
            return None, "DELETE"

        return self._change(key, change, changed_by, reason, expected_version)

    def rollback(self, strategy_id: str, symbol: str | None, changed_by: str, reason: str = "",
                 target_version: int | None = None) -> ChangeResult:
        """Store again the parameters of an earlier version (default: the one before the current)."""
        key = self._key(strategy_id, symbol)
        changed_by, reason = self._check_author(changed_by, reason)
        if target_version is not None and (isinstance(target_version, bool)
                                           or not isinstance(target_version, int)):
            raise ConfigInvalid("bad target_version", {"target_version": "an integer >= 1"})

        def change(current: StoredConfig | None) -> tuple[dict | None, str]:
            if current is None:
                raise ConfigNotFound(f"no stored config for {key}: nothing to roll back")
            target = current.version - 1 if target_version is None else target_version
            if not 1 <= target < current.version:  # a version that does not exist (yet)
                raise ConfigNotFound(
                    f"{key} has no earlier version {target}: " + (
                        f"expected a version from 1 to {current.version - 1} (current is {current.version})"
                        if current.version > 1 else "there is no earlier version"))
            record = self._read(lambda s: s.audit_version(key, target))
            if record is None:
                raise ConfigNotFound(f"version {target} of {key} is not in the audit trail")
            if record.new_parameters is None:
                raise VersionConflict(f"version {target} of {key} was a deletion; delete the config "
                                      "instead", current.version)
            restored = StoredConfig(key, record.new_parameters, target, "", "")
            return dict(_valid_only(restored).parameters), "ROLLBACK"

        return self._change(key, change, changed_by, reason, None)

    @staticmethod
    def _check_expected(expected_version: object) -> None:
        if expected_version is not None and (isinstance(expected_version, bool)
                                             or not isinstance(expected_version, int)
                                             or expected_version < 0):
            raise ConfigInvalid("bad expected_version",
                                {"expected_version": "an integer >= 0 (0: the config must not exist yet)"})

    def _read(self, work):
        try:
            return work(self.primary)
        except StoreUnavailable as exc:
            raise self._refused(exc) from exc

    def _refused(self, exc: StoreUnavailable) -> StoreUnavailable:
        return StoreUnavailable(
            f"configuration store {self.primary.name} is unreachable, so changes are refused "
            f"(reads are served from {self._snapshot.source or 'the defaults'}): {exc}")

    def _change(self, key: ConfigKey, change, changed_by: str, reason: str,
                expected_version: int | None, validate_only: bool = False) -> ChangeResult:
        """Read, check the version, apply ``change`` and commit; retry lost races if unguarded."""
        for attempt in range(WRITE_RETRIES):
            current = self._read(lambda s: s.get(key))
            version = 0 if current is None else current.version
            if expected_version is not None and expected_version != version:
                raise VersionConflict(
                    f"{key} is at version {version}, not the expected {expected_version}", version)
            parameters, action = change(current)
            now = utc_now()
            created = now if current is None or current.deleted else current.created_at
            stored = StoredConfig(key, parameters or {}, version + 1, created, now,
                                  deleted=parameters is None)
            old = None if current is None or current.deleted else dict(current.parameters)
            audit = AuditRecord(key, action, old, parameters, version, version + 1, changed_by,
                                now, reason)
            if validate_only:
                return ChangeResult(self._preview(stored), None, True)
            try:
                audit_id = self.primary.commit(version, stored, audit)
            except VersionConflict:
                if expected_version is not None or attempt == WRITE_RETRIES - 1:
                    raise
                continue
            except StoreUnavailable as exc:
                raise self._refused(exc) from exc
            audit = AuditRecord(**{**audit.__dict__, "id": audit_id})
            self._mirror(stored, audit)
            self._apply(stored)
            result = ChangeResult(self.effective(key.strategy_id, key.symbol), audit)
            log.info("config %s: %s %s → version %d by %s", action, key, parameters,
                     stored.version, changed_by)
            for listener in self._listeners:
                try:
                    listener(result)
                except Exception:  # noqa: BLE001 - the change is committed; say so and go on
                    log.exception("config change listener failed")
            return result
        raise AssertionError("unreachable")

    def _mirror(self, stored: StoredConfig, audit: AuditRecord) -> None:
        """Copy a committed change to the fallback so it serves current values in an outage."""
        if self.fallback is None:
            return
        try:
            self.fallback.mirror(stored, audit)
        except Exception as exc:  # noqa: BLE001 - the primary holds the change; never undo it here
            self.mirror_errors += 1
            if self.counters is not None:
                self.counters[CONFIG_MIRROR_ERRORS] += 1
            log.warning("config change not copied to fallback %s: %s", self.fallback.name, exc)

    def _apply(self, stored: StoredConfig) -> None:
        """This process sees its own change at once, whatever the TTL."""
        with self._lock:
            self._snapshot = self._with(self._snapshot, stored)

    def _with(self, snap: Snapshot, stored: StoredConfig) -> Snapshot:
        configs = dict(snap.configs)
        if stored.deleted:
            configs.pop(stored.key, None)
        else:
            configs[stored.key] = stored
        return Snapshot(configs, snap.source or self.primary.name, snap.loaded_at, snap.degraded)

    def _preview(self, stored: StoredConfig) -> EffectiveConfig:
        """The effective config as it would be after ``stored`` is committed."""
        return self.effective(stored.key.strategy_id, stored.key.symbol,
                              self._with(self._snapshot, stored))


def _valid_only(config: StoredConfig) -> StoredConfig:
    """``config`` without the stored values its strategy's registry entry no longer accepts."""
    bad = STRATEGIES[config.key.strategy_id].validation_errors(config.parameters)
    if not bad:
        return config
    log.warning("ignoring stored parameters of %s that are no longer valid: %s", config.key, bad)
    return StoredConfig(config.key, {k: v for k, v in config.parameters.items() if k not in bad},
                        config.version, config.created_at, config.updated_at, config.deleted)
