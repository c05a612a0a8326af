"""SQLite (embedded default) and MySQL/MariaDB (mysqlclient) configuration stores.

Both speak the same SQL through DB-API; only the DDL, the placeholder and the driver's error
classes differ. A change is one transaction: the version-guarded write of the config row and
its audit record commit together or not at all, and the guard (``WHERE version = ?`` or the
primary key on insert) is what makes concurrent changes with the same expected version
conflict instead of overwriting each other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

import orjson

from rtsig.config.model import AuditRecord, ConfigKey, StoredConfig
from rtsig.config.stores import ANY_SYMBOL
from rtsig.errors import StoreUnavailable, VersionConflict
from rtsig.settings import parse_mysql_uri

GLOBAL_TABLE = "strategy_configs_global"
SYMBOL_TABLE = "strategy_configs_symbol"
AUDIT_TABLE = "strategy_config_audit"
_CONFIG_COLUMNS = "parameters, version, deleted, created_at, updated_at"
_AUDIT_COLUMNS = ("id, strategy_id, symbol, action, old_parameters, new_parameters, old_version, "
                  "new_version, changed_by, changed_at, reason")


def _json(value) -> str | None:
    return None if value is None else orjson.dumps(dict(value)).decode()


@overload
def _unjson(text: None) -> None: ...
@overload
def _unjson(text: str | bytes) -> dict: ...
def _unjson(text) -> dict | None:
    return None if text is None else orjson.loads(text)


def _where(key: ConfigKey) -> tuple[str, str, tuple]:
    """``(table, condition, arguments)`` selecting the row of ``key``."""
    if key.symbol is None:
        return GLOBAL_TABLE, "strategy_id = ?", (key.strategy_id,)
    return SYMBOL_TABLE, "strategy_id = ? AND symbol = ?", (key.strategy_id, key.symbol)


STORE_TIMEOUT_S = 2
"""Every call to a config store is bounded: connecting, each read and each write of the MySQL
protocol, SQLite's wait for another process's write lock. A hung store (a stopped server, a
lost network path) then looks like an outage within about this long, never like a freeze."""
LOCK_WAIT_S = 2.0
"""How long a call waits for another thread's call on the same connection before it reports the
store as unavailable (the other call is bounded too, so this only trims the wait)."""


class SqlStore:
    """The shared implementation; subclasses supply the connection, DDL and error classes."""

    name = "sql"
    placeholder = "?"
    DDL: tuple[str, ...] = ()
    integrity_errors: tuple[type[BaseException], ...] = ()
    connection_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._conn = None
        self._lock = threading.Lock()

    # ----- connection
    def _connect(self):
        raise NotImplementedError

    def _connection(self):
        if self._conn is None:
            conn = self._connect()
            cur = conn.cursor()
            for statement in self.DDL:
                cur.execute(statement)
            conn.commit()
            self._conn = conn
        return self._conn

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(cursor)`` in one transaction; connection trouble → StoreUnavailable."""
        if not self._lock.acquire(timeout=LOCK_WAIT_S):
            raise StoreUnavailable(f"{self.name} config store busy: another call has waited on it "
                                   f"for over {LOCK_WAIT_S:g} s")
        try:
            try:
                conn = self._connection()
                cur = conn.cursor()
                try:
                    result = work(cur)
                    conn.commit()
                    return result
                except self.connection_errors:
                    raise  # no rollback on a connection that timed out: it is closed instead
                except BaseException:
                    conn.rollback()
                    raise
            except self.connection_errors as exc:
                self._reset()
                raise StoreUnavailable(f"{self.name} config store unavailable: {exc}") from exc
        finally:
            self._lock.release()

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def close(self) -> None:
        with self._lock:
            self._reset()

    # ----- reads
    def ping(self) -> None:
        self._run(lambda cur: cur.execute("SELECT 1"))

    def load_all(self) -> dict[ConfigKey, StoredConfig]:
        def work(cur) -> dict[ConfigKey, StoredConfig]:
            out: dict[ConfigKey, StoredConfig] = {}
            cur.execute(f"SELECT strategy_id, {_CONFIG_COLUMNS} FROM {GLOBAL_TABLE} WHERE deleted = 0")
            for sid, *rest in cur.fetchall():
                key = ConfigKey(sid, None)
                out[key] = self._config(key, rest)
            cur.execute(f"SELECT strategy_id, symbol, {_CONFIG_COLUMNS} FROM {SYMBOL_TABLE} "
                        "WHERE deleted = 0")
            for sid, symbol, *rest in cur.fetchall():
                key = ConfigKey(sid, symbol)
                out[key] = self._config(key, rest)
            return out
        return self._run(work)

    def get(self, key: ConfigKey) -> StoredConfig | None:
        table, cond, args = _where(key)

        def work(cur) -> StoredConfig | None:
            cur.execute(self._sql(f"SELECT {_CONFIG_COLUMNS} FROM {table} WHERE {cond}"), args)
            row = cur.fetchone()
            return None if row is None else self._config(key, row)
        return self._run(work)

    @staticmethod
    def _config(key: ConfigKey, row) -> StoredConfig:
        parameters, version, deleted, created_at, updated_at = row
        return StoredConfig(key, _unjson(parameters), int(version), str(created_at),
                            str(updated_at), bool(deleted))

    def audit(self, strategy_id: str, symbol: str | None, limit: int) -> list[AuditRecord]:
        cond, args = "strategy_id = ?", [strategy_id]
        if symbol is None:
            cond += " AND symbol IS NULL"
        elif symbol != ANY_SYMBOL:
            cond += " AND symbol = ?"
            args.append(symbol)
        query = self._sql(f"SELECT {_AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE {cond} "
                          "ORDER BY id DESC LIMIT ?")

        def work(cur) -> list[AuditRecord]:
            cur.execute(query, (*args, int(limit)))
            return [self._audit(row) for row in cur.fetchall()]
        return self._run(work)

    def audit_version(self, key: ConfigKey, version: int) -> AuditRecord | None:
        cond = "symbol IS NULL" if key.symbol is None else "symbol = ?"
        args = (key.strategy_id, int(version)) + (() if key.symbol is None else (key.symbol,))
        query = self._sql(f"SELECT {_AUDIT_COLUMNS} FROM {AUDIT_TABLE} WHERE strategy_id = ? "
                          f"AND new_version = ? AND {cond} ORDER BY id DESC LIMIT 1")

        def work(cur) -> AuditRecord | None:
            cur.execute(query, args)
            row = cur.fetchone()
            return None if row is None else self._audit(row)
        return self._run(work)

    @staticmethod
    def _audit(row) -> AuditRecord:
        (id_, sid, symbol, action, old_p, new_p, old_v, new_v, by, at, reason) = row
        return AuditRecord(ConfigKey(sid, symbol), action, _unjson(old_p), _unjson(new_p),
                           int(old_v), int(new_v), by, str(at), reason, id=str(id_))

    # ----- writes
    def commit(self, expected_version: int, config: StoredConfig, audit: AuditRecord) -> str:
        def work(cur) -> str:
            if expected_version == 0:
                try:
                    self._insert_config(cur, config)
                except self.integrity_errors as exc:
                    raise VersionConflict(f"{config.key} was created by another change",
                                          self._version(cur, config.key)) from exc
            elif not self._update_config(cur, config, expected_version):
                raise VersionConflict(f"{config.key} changed since version {expected_version}",
                                      self._version(cur, config.key))
            return self._insert_audit(cur, audit)
        return self._run(work)

    def mirror(self, config: StoredConfig, audit: AuditRecord) -> None:
        def work(cur) -> None:
            if not self._update_config(cur, config, None):
                self._insert_config(cur, config)
            self._insert_audit(cur, audit)
        self._run(work)

    def _version(self, cur, key: ConfigKey) -> int:
        table, cond, args = _where(key)
        cur.execute(self._sql(f"SELECT version FROM {table} WHERE {cond}"), args)
        row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def _insert_config(self, cur, c: StoredConfig) -> None:
        values = (_json(c.parameters), c.version, int(c.deleted), c.created_at, c.updated_at)
        if c.key.symbol is None:
            cur.execute(self._sql(f"INSERT INTO {GLOBAL_TABLE} (strategy_id, {_CONFIG_COLUMNS}) "
                                  "VALUES (?, ?, ?, ?, ?, ?)"), (c.key.strategy_id, *values))
        else:
            cur.execute(self._sql(f"INSERT INTO {SYMBOL_TABLE} (strategy_id, symbol, {_CONFIG_COLUMNS}) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (c.key.strategy_id, c.key.symbol, *values))

    def _update_config(self, cur, c: StoredConfig, expected_version: int | None) -> bool:
        table, cond, args = _where(c.key)
        guard = "" if expected_version is None else " AND version = ?"
        cur.execute(self._sql(f"UPDATE {table} SET parameters = ?, version = ?, deleted = ?, "
                              f"updated_at = ? WHERE {cond}{guard}"),
                    (_json(c.parameters), c.version, int(c.deleted), c.updated_at, *args,
                     *(() if expected_version is None else (expected_version,))))
        return cur.rowcount > 0

    def _insert_audit(self, cur, a: AuditRecord) -> str:
        cur.execute(self._sql(
            f"INSERT INTO {AUDIT_TABLE} (strategy_id, symbol, action, old_parameters, new_parameters, "
            "old_version, new_version, changed_by, changed_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (a.key.strategy_id, a.key.symbol, a.action, _json(a.old_parameters),
             _json(a.new_parameters), a.old_version, a.new_version, a.changed_by, a.changed_at,
             a.reason))
        return str(cur.lastrowid)


class SqliteStore(SqlStore):
    """The embedded default: one file in ``RTSIG_DATA_DIR``, shared by every process of a host."""

    name = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    connection_errors = (sqlite3.OperationalError, sqlite3.DatabaseError)
    DDL = (
        f"CREATE TABLE IF NOT EXISTS {GLOBAL_TABLE} (strategy_id TEXT PRIMARY KEY, "
        "parameters TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, "
        "created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {SYMBOL_TABLE} (strategy_id TEXT NOT NULL, symbol TEXT NOT NULL, "
        "parameters TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, "
        "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (strategy_id, symbol))",
        f"CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "strategy_id TEXT NOT NULL, symbol TEXT, action TEXT NOT NULL, old_parameters TEXT, "
        "new_parameters TEXT, old_version INTEGER NOT NULL, new_version INTEGER NOT NULL, "
        "changed_by TEXT NOT NULL, changed_at TEXT NOT NULL, reason TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS ix_audit_key ON {AUDIT_TABLE} (strategy_id, symbol, new_version)",
    )

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the busy timeout: how long a write waits for another process's write lock
        conn = sqlite3.connect(self.path, timeout=STORE_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn


class MysqlStore(SqlStore):
    """MySQL or MariaDB through mysqlclient; the tables are created on first use."""

    name = "mysql"
    placeholder = "%s"
    DDL = (
        f"CREATE TABLE IF NOT EXISTS {GLOBAL_TABLE} (strategy_id VARCHAR(64) NOT NULL PRIMARY KEY, "
        "parameters TEXT NOT NULL, version INT NOT NULL, deleted TINYINT NOT NULL DEFAULT 0, "
        "created_at VARCHAR(32) NOT NULL, updated_at VARCHAR(32) NOT NULL) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        f"CREATE TABLE IF NOT EXISTS {SYMBOL_TABLE} (strategy_id VARCHAR(64) NOT NULL, "
        "symbol VARCHAR(32) NOT NULL, parameters TEXT NOT NULL, version INT NOT NULL, "
        "deleted TINYINT NOT NULL DEFAULT 0, created_at VARCHAR(32) NOT NULL, "
        "updated_at VARCHAR(32) NOT NULL, PRIMARY KEY (strategy_id, symbol)) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        f"CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "strategy_id VARCHAR(64) NOT NULL, symbol VARCHAR(32) NULL, action VARCHAR(16) NOT NULL, "
        "old_parameters TEXT NULL, new_parameters TEXT NULL, old_version INT NOT NULL, "
        "new_version INT NOT NULL, changed_by VARCHAR(255) NOT NULL, changed_at VARCHAR(32) NOT NULL, "
        "reason TEXT NOT NULL, INDEX ix_audit_key (strategy_id, symbol, new_version)) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )

    def __init__(self, uri: str, timeout_s: int = STORE_TIMEOUT_S) -> None:
        import MySQLdb

        super().__init__()
        self.params = parse_mysql_uri(uri)
        # NOTE: whole seconds (the client library's unit); each bounds one network wait
        self.params.update(connect_timeout=timeout_s, read_timeout=timeout_s, write_timeout=timeout_s)
        self.integrity_errors = (MySQLdb.IntegrityError,)
        self.connection_errors = (MySQLdb.OperationalError, MySQLdb.InterfaceError)

    def _connect(self):
        import MySQLdb

        return MySQLdb.connect(**self.params, charset="utf8mb4", autocommit=False)

