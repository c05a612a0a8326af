"""The last configs a process read, kept in a file for a process that starts during an outage.

A web worker (re)started while every config store is down (or hangs) has read nothing yet; it
would serve the environment and defaults. With this file it serves the values last read on
this host instead, and says so (state ``last_known``). The file is written only when what was
read changed, atomically (a reader never sees half a file), and a file that does not parse is
ignored.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import orjson

from rtsig.config.model import ConfigKey, Snapshot, StoredConfig

log = logging.getLogger(__name__)


def path_for(data_dir: Path, instance: str) -> Path:
    return Path(data_dir) / f"config-last-known-{instance}.json"


def save(path: Path, snapshot: Snapshot) -> None:
    """Write ``snapshot`` to ``path`` atomically (OSError when the directory is not writable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps({
        "source": snapshot.source, "loaded_at": snapshot.loaded_at,
        "configs": [{"strategy_id": c.key.strategy_id, "symbol": c.key.symbol,
                     "parameters": dict(c.parameters), "version": c.version,
                     "created_at": c.created_at, "updated_at": c.updated_at}
                    for c in snapshot.configs.values()]})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Snapshot | None:
    """The snapshot kept in ``path``, or None (no file, or one that does not parse: logged)."""
    try:
        data = orjson.loads(path.read_bytes())
        configs = {}
        for c in data["configs"]:
            key = ConfigKey(c["strategy_id"], c["symbol"])
            configs[key] = StoredConfig(key, dict(c["parameters"]), int(c["version"]),
                                        str(c["created_at"]), str(c["updated_at"]))
        return Snapshot(configs, str(data["source"]), float(data["loaded_at"]), None)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the last-known config file %s: %s", path, exc)
        return None
