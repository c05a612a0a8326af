"""The records every configuration store keeps: stored parameter sets and their audit trail.

A stored config holds only the parameters an operator set at that level (a partial set); the
complete, effective parameters are layered at read time (symbol → global → environment →
default). A deleted config stays as a tombstone so its version keeps counting up: a later
re-create continues the numbering and ``expected_version`` stays meaningful.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rtsig.registry import ParamValue

ACTIONS = ("CREATE", "UPDATE", "DELETE", "ROLLBACK")
GLOBAL = None
"""The ``symbol`` of a global (all-symbol) config."""


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, the form every store keeps and the API shows."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ConfigKey:
    """Which config: a strategy's global set (``symbol`` None) or one symbol's override."""

    strategy_id: str
    symbol: str | None = GLOBAL

    def __str__(self) -> str:
        return f"{self.strategy_id}/{self.symbol or 'global'}"


@dataclass(frozen=True)
class StoredConfig:
    """One stored parameter set (partial) with its version; ``deleted`` marks a tombstone."""

    key: ConfigKey
    parameters: Mapping[str, ParamValue]
    version: int
    created_at: str
    updated_at: str
    deleted: bool = False


@dataclass(frozen=True)
class AuditRecord:
    """One change, with the fields of docs/CONTRACT.md §4 (``id`` is assigned by the store)."""

    key: ConfigKey
    action: str
    old_parameters: Mapping[str, ParamValue] | None
    new_parameters: Mapping[str, ParamValue] | None
    old_version: int
    new_version: int
    changed_by: str
    changed_at: str
    reason: str
    id: str | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "strategy_id": self.key.strategy_id, "symbol": self.key.symbol,
                "action": self.action,
                "old_parameters": None if self.old_parameters is None else dict(self.old_parameters),
                "new_parameters": None if self.new_parameters is None else dict(self.new_parameters),
                "old_version": self.old_version, "new_version": self.new_version,
                "changed_by": self.changed_by, "changed_at": self.changed_at, "reason": self.reason}


@dataclass(frozen=True)
class Snapshot:
    """Every live stored config at one moment, and where it was read from."""

    configs: Mapping[ConfigKey, StoredConfig] = field(default_factory=dict)
    source: str | None = None
    """The store that answered (``mongodb``/``mysql``/``sqlite``), None when none ever did."""
    loaded_at: float = 0.0
    """``time.time()`` of the read that produced these configs."""
    degraded: str | None = None
    """Why the primary store did not answer the last refresh (None when it did)."""

    @property
    def fingerprint(self) -> tuple:
        """Changes whenever any stored config does (workers reload only then)."""
        return tuple(sorted((str(k), c.version) for k, c in self.configs.items()))
