"""Change propagation: the shared-memory config epoch on this host, a NATS notice to the others.

Every worker polls ``header.config_epoch`` on its housekeeping tick (0.2 s); a different value
makes it re-read the store and rebuild its parameter rows, so a change made by any process of
the host reaches every worker well within 1 s. Other replicas (and any other host sharing the
store) learn of it from a notice on ``RTSIG_CONFIG_SUBJECT``, which worker 0 of each instance
turns into an epoch bump there; the cache TTL is the fallback if a notice is lost.
"""

from __future__ import annotations

import logging
import os
import socket

import numpy as np
import orjson

from rtsig.config.service import ChangeResult

log = logging.getLogger(__name__)

ORIGIN = f"{socket.gethostname()}:{os.getpid()}"


def bump_epoch(header: np.ndarray) -> int:
    """Tell every process of this host that the stored configuration changed.

    Writers bump only after their change is committed, so a reader that sees the new epoch
    finds the change in the store; two bumps racing to the same value still wake every reader.
    """
    epoch = int(header[0]["config_epoch"]) + 1
    header[0]["config_epoch"] = epoch
    return epoch


def notice(result: ChangeResult, instance: str, origin: str = ORIGIN) -> bytes:
    """The NATS payload announcing a committed change."""
    audit = result.audit
    return orjson.dumps({
        "strategy_id": result.config.strategy_id, "symbol": audit.key.symbol if audit else None,
        "action": audit.action if audit else None, "version": result.config.version,
        "instance": instance, "origin": origin,
    })


def parse_notice(payload: bytes) -> dict | None:
    """The notice, or None (logged) if it is not one: a bad notice must not stop a worker."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "strategy_id" not in data:
        log.warning("ignoring a malformed config change notice: %r", payload[:200])
        return None
    return data
