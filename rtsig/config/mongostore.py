"""The MongoDB configuration store (pymongo): the primary store when ``MONGODB_URI`` is set.

Versions are guarded the way the SQL stores guard them: a create is an insert under a unique
index, an update matches on ``version``. MongoDB has no transaction here (a standalone server
has none), so a config write whose audit insert then fails is undone by a second
version-guarded write before the error is raised: a change is never left half-written.
"""

from __future__ import annotations

import threading

from rtsig.config.model import AuditRecord, ConfigKey, StoredConfig
from rtsig.config.stores import ANY_SYMBOL
from rtsig.errors import StoreUnavailable, VersionConflict

GLOBAL_COLLECTION = "strategy_configs_global"
SYMBOL_COLLECTION = "strategy_configs_symbol"
AUDIT_COLLECTION = "strategy_config_audit"
TIMEOUT_MS = 2000
"""Server selection, connect, socket and whole-operation (``timeoutMS``) timeouts: an outage or
a hung server is noticed in about 2 s."""


def _filter(key: ConfigKey) -> dict:
    if key.symbol is None:
        return {"strategy_id": key.strategy_id}
    return {"strategy_id": key.strategy_id, "symbol": key.symbol}


class MongoStore:
    name = "mongodb"

    def __init__(self, uri: str, database: str) -> None:
        self.uri = uri
        self.database = database
        self._client = None
        self._db = None
        self._lock = threading.Lock()

    # ----- connection
    def _collections(self):
        import pymongo

        if not self._lock.acquire(timeout=TIMEOUT_MS / 1000):
            raise StoreUnavailable("mongodb config store busy: another call has waited on it "
                                   f"for over {TIMEOUT_MS / 1000:g} s")
        try:
            if self._db is None:
                client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=TIMEOUT_MS,
                                             connectTimeoutMS=TIMEOUT_MS, socketTimeoutMS=TIMEOUT_MS,
                                             timeoutMS=TIMEOUT_MS, appname="rtsig", retryWrites=False)
                db = client[self.database]
                try:
                    db[GLOBAL_COLLECTION].create_index("strategy_id", unique=True)
                    db[SYMBOL_COLLECTION].create_index([("strategy_id", 1), ("symbol", 1)], unique=True)
                    db[AUDIT_COLLECTION].create_index([("strategy_id", 1), ("symbol", 1),
                                                       ("new_version", 1)])
                except Exception:
                    client.close()
                    raise
                self._client, self._db = client, db
            return self._db
        finally:
            self._lock.release()

    def _call(self, work):
        import pymongo.errors as errors

        try:
            return work(self._collections())
        except errors.DuplicateKeyError:
            raise
        except errors.PyMongoError as exc:
            raise StoreUnavailable(f"mongodb config store unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = self._db = None

    @staticmethod
    def _collection(db, key: ConfigKey):
        return db[GLOBAL_COLLECTION if key.symbol is None else SYMBOL_COLLECTION]

    # ----- reads
    def ping(self) -> None:
        self._call(lambda db: db.command("ping"))

    def load_all(self) -> dict[ConfigKey, StoredConfig]:
        def work(db) -> dict[ConfigKey, StoredConfig]:
            out: dict[ConfigKey, StoredConfig] = {}
            for doc in db[GLOBAL_COLLECTION].find({"deleted": False}):
                config = self._config(doc, None)
                out[config.key] = config
            for doc in db[SYMBOL_COLLECTION].find({"deleted": False}):
                config = self._config(doc, doc["symbol"])
                out[config.key] = config
            return out
        return self._call(work)

    def get(self, key: ConfigKey) -> StoredConfig | None:
        doc = self._call(lambda db: self._collection(db, key).find_one(_filter(key)))
        return None if doc is None else self._config(doc, key.symbol)

    @staticmethod
    def _config(doc: dict, symbol: str | None) -> StoredConfig:
        return StoredConfig(ConfigKey(doc["strategy_id"], symbol), dict(doc["parameters"]),
                            int(doc["version"]), doc["created_at"], doc["updated_at"],
                            bool(doc.get("deleted", False)))

    def audit(self, strategy_id: str, symbol: str | None, limit: int) -> list[AuditRecord]:
        query: dict = {"strategy_id": strategy_id}
        if symbol != ANY_SYMBOL:
            query["symbol"] = symbol
        return self._call(lambda db: [
            self._audit(doc) for doc in db[AUDIT_COLLECTION].find(query)
            .sort([("changed_at", -1), ("_id", -1)]).limit(int(limit))])

    def audit_version(self, key: ConfigKey, version: int) -> AuditRecord | None:
        query = {"strategy_id": key.strategy_id, "symbol": key.symbol, "new_version": int(version)}
        doc = self._call(lambda db: db[AUDIT_COLLECTION].find_one(query, sort=[("_id", -1)]))
        return None if doc is None else self._audit(doc)

    @staticmethod
    def _audit(doc: dict) -> AuditRecord:
        return AuditRecord(ConfigKey(doc["strategy_id"], doc.get("symbol")), doc["action"],
                           doc.get("old_parameters"), doc.get("new_parameters"),
                           int(doc["old_version"]), int(doc["new_version"]), doc["changed_by"],
                           doc["changed_at"], doc["reason"], id=str(doc["_id"]))

    # ----- writes
    def commit(self, expected_version: int, config: StoredConfig, audit: AuditRecord) -> str:
        import pymongo.errors as errors

        key = config.key

        def work(db) -> str:
            coll = self._collection(db, key)
            if expected_version == 0:
                try:
                    coll.insert_one({**_filter(key), **self._fields(config),
                                     "created_at": config.created_at})
                except errors.DuplicateKeyError as exc:
                    raise VersionConflict(f"{key} was created by another change",
                                          self._version(coll, key)) from exc
            else:
                before = coll.find_one_and_update({**_filter(key), "version": expected_version},
                                                  {"$set": self._fields(config)})
                if before is None:
                    raise VersionConflict(f"{key} changed since version {expected_version}",
                                          self._version(coll, key))
            try:
                return str(db[AUDIT_COLLECTION].insert_one(self._audit_doc(audit)).inserted_id)
            except errors.PyMongoError:
                self._undo(coll, config, None if expected_version == 0 else before)
                raise
        return self._call(work)

    @staticmethod
    def _undo(coll, config: StoredConfig, before: dict | None) -> None:
        """Take back a config write whose audit record could not be written (best effort: the
        store may have gone away in between; the caller gets the original error either way)."""
        guard = {**_filter(config.key), "version": config.version}
        try:
            if before is None:
                coll.delete_one(guard)
            else:
                coll.update_one(guard, {"$set": {k: before[k] for k in
                                                 ("parameters", "version", "deleted", "updated_at")
                                                 if k in before}})
        except Exception:  # noqa: BLE001
            pass

    def mirror(self, config: StoredConfig, audit: AuditRecord) -> None:
        def work(db) -> None:
            self._collection(db, config.key).update_one(
                _filter(config.key), {"$set": self._fields(config),
                                      "$setOnInsert": {"created_at": config.created_at}}, upsert=True)
            db[AUDIT_COLLECTION].insert_one(self._audit_doc(audit))
        self._call(work)

    @staticmethod
    def _version(coll, key: ConfigKey) -> int:
        doc = coll.find_one(_filter(key), {"version": 1})
        return 0 if doc is None else int(doc["version"])

    @staticmethod
    def _fields(c: StoredConfig) -> dict:
        return {"parameters": dict(c.parameters), "version": c.version, "deleted": c.deleted,
                "updated_at": c.updated_at}

    @staticmethod
    def _audit_doc(a: AuditRecord) -> dict:
        doc = a.as_dict()
        doc.pop("id")
        return doc
