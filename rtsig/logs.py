"""Logging: one JSON object per line (``LOG_FORMAT=json``) or plain text, and rate limits.

Bad input is logged at most once per reason per minute (docs/CONTRACT.md §2): :class:`RateLimiter`
decides, the caller logs.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "process", …extra}`` on one line."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": self.process_name,
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The text format (``LOG_FORMAT=text``, a terminal's default): the message, then the record's
    extra fields as ``key=value`` (compact JSON for nested values), so that lines such as the
    heartbeat carry their numbers here too."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = [f"{key}={_compact(value)}" for key, value in vars(record).items()
                  if key not in _RESERVED and not key.startswith("_")]
        return f"{line} {' '.join(extras)}" if extras else line


def _compact(value: object) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


def setup(level: str, fmt: str, process_name: str) -> None:
    """Configure the root logger of this process (called once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process_name))
    else:
        handler.setFormatter(TextFormatter(
            f"%(asctime)s %(levelname)-7s {process_name}[%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("nats", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    os.environ.setdefault("RTSIG_PROCESS", process_name)


class RateLimiter:
    """True at most once per ``period_s`` per key."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s = period_s
        self._last: dict[object, float] = {}

    def allow(self, key: object) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        self._last[key] = now
        return True
