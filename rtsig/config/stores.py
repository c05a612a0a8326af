"""The one interface every configuration store implements, and choosing stores from settings.

Stores keep three collections/tables: ``strategy_configs_global`` (one row per strategy),
``strategy_configs_symbol`` (one per strategy and symbol) and ``strategy_config_audit``.
A store only persists and compares versions; validation, merging and resolution live in
:mod:`rtsig.config.service`, so all three stores behave identically by construction.

Which stores (docs/CONTRACT.md §4): MongoDB when ``MONGODB_URI`` is set (primary) with MySQL as
its fallback when ``MYSQL_URI`` is set too; MySQL alone is primary; otherwise SQLite in
``RTSIG_DATA_DIR``.
"""

from __future__ import annotations

from typing import Protocol

from rtsig.config.model import AuditRecord, ConfigKey, StoredConfig
from rtsig.settings import Settings

ANY_SYMBOL = "*"
"""``audit(..., symbol=ANY_SYMBOL)``: the records of the global config and every symbol."""

SQLITE_FILE = "config.sqlite3"


class ConfigStore(Protocol):
    """Persistence of stored configs and their audit trail.

    Every method raises :class:`~rtsig.errors.StoreUnavailable` when the store cannot be
    reached; a write either commits the config and its audit record together or neither.
    """

    name: str
    """``mongodb`` / ``mysql`` / ``sqlite``: what reads report as their source."""

    def ping(self) -> None: ...

    def load_all(self) -> dict[ConfigKey, StoredConfig]:
        """Every live (not deleted) stored config."""

    def get(self, key: ConfigKey) -> StoredConfig | None:
        """The stored config, tombstone included; None if it never existed."""

    def commit(self, expected_version: int, config: StoredConfig, audit: AuditRecord) -> str:
        """Write ``config`` if the stored version is still ``expected_version`` (0: no row yet).

        Returns the audit record's id. Raises :class:`~rtsig.errors.VersionConflict` when
        another change got there first.
        """

    def mirror(self, config: StoredConfig, audit: AuditRecord) -> None:
        """Copy a change committed elsewhere (the primary) unconditionally (the fallback)."""

    def audit(self, strategy_id: str, symbol: str | None, limit: int) -> list[AuditRecord]:
        """Newest first; ``symbol`` None is the global config, :data:`ANY_SYMBOL` is all."""

    def audit_version(self, key: ConfigKey, version: int) -> AuditRecord | None:
        """The record of the change that produced ``version`` of ``key``."""

    def close(self) -> None: ...


def open_stores(settings: Settings) -> tuple[ConfigStore, ConfigStore | None]:
    """``(primary, fallback)`` for these settings; nothing connects until first use."""
    from rtsig.config.mongostore import MongoStore
    from rtsig.config.sqlstore import MysqlStore, SqliteStore

    mysql = MysqlStore(settings.mysql_uri) if settings.mysql_uri else None
    if settings.mongodb_uri:
        return MongoStore(settings.mongodb_uri, settings.mongodb_database), mysql
    if mysql is not None:
        return mysql, None
    return SqliteStore(settings.data_dir / SQLITE_FILE), None
