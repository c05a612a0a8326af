"""Reading recorded market data: JSON lines, the ``<recv_ts>: <json>`` capture format, or the
msgpack recordings of ``rtsig record`` (rtsig/record.py; known by their header, not their name).

Shared by ``rtsig signals`` and ``rtsig replay``. A capture's first line (``wss://… <-> t``) and
blank lines are skipped; any other line is passed on as a message, so a malformed line becomes a
counted decoder error rather than a crash.

A line may also be a message with its NATS subject, ``{"subject": "...", "data": <body>}``
(docs/CONTRACT.md §2c): that is how feed messages (dominance samples, venue quotes, on-chain
transfers) are recorded beside the market data; :func:`with_subject` takes it apart.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import orjson

from rtsig.errors import InputError

_CAPTURE = re.compile(rb"^(\d{9,11}(?:\.\d+)?): ")


def parse_line(line: bytes) -> tuple[bytes, int | None] | None:
    """``(message, receipt_ns or None)`` of one line, or None for a line that is not a message."""
    line = line.strip()
    if not line or line.startswith((b"wss://", b"ws://", b"#")):
        return None
    m = _CAPTURE.match(line)
    if m:
        return line[m.end():], int(float(m.group(1)) * 1e9)
    return line, None


def iter_lines(streams: Iterable[BinaryIO]) -> Iterator[tuple[bytes, int | None]]:
    from rtsig.record import gunzipped, is_recording, read_recording

    for stream in streams:
        stream = gunzipped(stream)
        if is_recording(stream):  # ``rtsig record``'s msgpack frames: the same messages
            yield from read_recording(stream)
            continue
        for line in stream:
            parsed = parse_line(line)
            if parsed is not None:
                yield parsed


def open_inputs(paths: list[str]) -> list[BinaryIO]:
    """Open every path (``-`` is stdin) before reading any, so a typo fails at once."""
    streams = []
    for path in paths:
        if path == "-":
            streams.append(sys.stdin.buffer)
            continue
        try:
            streams.append(open(path, "rb"))
        except OSError as exc:
            for s in streams:
                if s is not sys.stdin.buffer:
                    s.close()
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return streams


def messages(paths: list[str]) -> Iterator[tuple[bytes, int]]:
    """Every message of the files with its receipt time (recorded, else now)."""
    streams = open_inputs(paths)
    try:
        for message, receipt_ns in iter_lines(streams):
            yield message, receipt_ns if receipt_ns is not None else time.time_ns()
    finally:
        for s in streams:
            if s is not sys.stdin.buffer:
                s.close()


def with_subject(message: bytes) -> tuple[str, bytes] | None:
    """``(subject, body)`` of a ``{"subject": "...", "data": <body>}`` line, else None.

    The body is ``data`` as JSON bytes; a string ``data`` is taken as the body's raw text (so a
    recorded malformed body replays as the same bytes)."""
    if not message.startswith(b'{"subject"') and b'"subject"' not in message[:32]:
        return None
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("subject"), str) or "data" not in obj:
        return None
    data = obj["data"]
    return obj["subject"], data.encode() if isinstance(data, str) else orjson.dumps(data)
