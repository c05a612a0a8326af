"""Runtime strategy configuration: stores, resolution, audit and change propagation."""

from rtsig.config.model import AuditRecord, ConfigKey, Snapshot, StoredConfig
from rtsig.config.service import ChangeResult, ConfigService

__all__ = ["AuditRecord", "ChangeResult", "ConfigKey", "ConfigService", "Snapshot", "StoredConfig"]
