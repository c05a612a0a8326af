"""``rtsig record``: the live input subjects, with receipt times, into compact msgpack files.

A recording is a sequence of msgpack objects (docs/EVALUATION.md, "Recording"):

* a header map first: ``{"format": "rtsig-record", "version": 1, "input_subject": <the market-data
  subject>, "created_ns": …}`` — the reader knows a recording by it, whatever the file is called;
* ``{"subject": <name>, "id": <n>}`` the first time a subject appears in the file;
* ``[receipt_ns, subject id, body]`` per message, the body as the bytes that arrived (``bin``).

Files rotate when they pass ``max_bytes`` or when the UTC hour of the receipt time changes
(``hourly``); each new file starts with its own header and subject table, so any file reads on
its own. A file is written as ``<name>.part`` and renamed when it is complete, so ``*.rtrec``
names only finished files; a ``.part`` file left by a crash reads up to its last whole frame.

Reading (:func:`read_recording`, used by :mod:`rtsig.recorded` for ``signals``, ``replay`` and
``evaluate``) gives exactly what the same traffic recorded as JSON lines gives: a message on the
input subject is its body; a message on any other subject (USD-M futures, the market-logic
feeds) is the ``{"subject": …, "data": …}`` line those files hold, with the body as ``data``'s
text, so it arrives byte for byte.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgpack
import orjson

FORMAT = "rtsig-record"
VERSION = 1
SUFFIX = ".rtrec"
_HOUR_NS = 3_600_000_000_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class RecordWriter:
    """Frames into rotating files under ``directory``; :meth:`write` per message."""

    def __init__(self, directory: str | os.PathLike, input_subject: str, prefix: str = "rtsig",
                 max_bytes: int = DEFAULT_MAX_BYTES, hourly: bool = True,
                 on_file: Callable[[Path], None] | None = None, compress: bool = False) -> None:
        """``compress``: gzip each file (level 1; ``.rtrec.gz``); ``max_bytes`` then counts the
        frames' bytes before compression."""
        self.compress = compress
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.input_subject = input_subject
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.hourly = hourly
        self.on_file = on_file
        self._packer = msgpack.Packer(use_bin_type=True)
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._subjects: dict[str, int] = {}
        self._hour = -1
        self._bytes = 0
        self.messages = 0
        self.bytes_written = 0
        self.files: list[Path] = []

    def write(self, receipt_ns: int, subject: str, body: bytes) -> None:
        if self._file is None or self._bytes >= self.max_bytes or (
                self.hourly and receipt_ns // _HOUR_NS != self._hour):
            self._rotate(receipt_ns)
        sid = self._subjects.get(subject)
        if sid is None:
            sid = self._subjects[subject] = len(self._subjects)
            self._put(self._packer.pack({"subject": subject, "id": sid}))
        self._put(self._packer.pack((receipt_ns, sid, body)))
        self.messages += 1

    def _put(self, frame: bytes) -> None:
        assert self._file is not None  # write() and _rotate() open a file first
        self._file.write(frame)
        self._bytes += len(frame)
        self.bytes_written += len(frame)

    def _rotate(self, receipt_ns: int) -> None:
        self.close()
        self._hour = receipt_ns // _HOUR_NS
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(receipt_ns / 1e9))
        n = 0
        while True:
            path = self.directory / f"{self.prefix}-{stamp}-{n:03d}{SUFFIX}{'.gz' if self.compress else ''}"
            if not path.exists() and not path.with_name(path.name + ".part").exists():
                break
            n += 1
        self._path = path
        part = path.with_name(path.name + ".part")
        if self.compress:
            # typeshed wants a RawIOBase; BufferedWriter needs only the write() GzipFile has
            self._file = io.BufferedWriter(gzip.GzipFile(part, "wb", compresslevel=1), 1 << 20)  # type: ignore[arg-type]
        else:
            self._file = open(part, "wb", buffering=1 << 20)
        self._subjects = {}
        self._bytes = 0
        self._put(self._packer.pack({"format": FORMAT, "version": VERSION,
                                     "input_subject": self.input_subject,
                                     "created_ns": int(receipt_ns)}))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Finish the current file: flushed, renamed from ``.part`` to its final name."""
        if self._file is None:
            return
        assert self._path is not None  # set with _file
        self._file.close()
        os.replace(self._path.with_name(self._path.name + ".part"), self._path)
        self.files.append(self._path)
        if self.on_file is not None:
            self.on_file(self._path)
        self._file = None


# ----- reading

def gunzipped(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or its decompressed content when it is gzip (a ``--compress`` recording,
    or gzipped JSON lines)."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), 1 << 20)
    return stream


def is_recording(stream: BinaryIO) -> bool:
    """Whether ``stream`` (not yet read) starts with a recording's header; consumes nothing."""
    peek = getattr(stream, "peek", None)
    head = peek(16)[:16] if peek is not None else b""
    return len(head) >= 8 and 0x80 <= head[0] <= 0x8F and head[1:8] == b"\xa6format"


def read_recording(stream: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """``(message, receipt_ns)`` of every whole frame, as :mod:`rtsig.recorded` yields lines."""
    unpacker = msgpack.Unpacker(stream, raw=False, use_list=False, max_buffer_size=1 << 30)
    input_subject = None
    prefixes: dict[int, bytes | None] = {}
    for frame in unpacker:
        if isinstance(frame, dict):
            if frame.get("format") == FORMAT:
                input_subject = frame.get("input_subject")
                prefixes = {}
            elif "subject" in frame:
                subject = frame["subject"]
                prefixes[frame["id"]] = (None if subject == input_subject else
                                         b'{"subject":' + orjson.dumps(subject) + b',"data":')
            continue
        receipt_ns, sid, body = frame
        prefix = prefixes.get(sid)
        if prefix is None:
            yield body, receipt_ns
        else:
            text = orjson.dumps(body.decode("utf-8", "replace"))
            yield prefix + text + b"}", receipt_ns


def count_frames(path: str) -> int:
    """Messages in a recording (the replay progress line's total)."""
    with open(path, "rb") as raw:
        f = gunzipped(raw)
        return sum(1 for frame in msgpack.Unpacker(f, raw=False, use_list=False,
                                                    max_buffer_size=1 << 30)
                   if not isinstance(frame, dict))


def convert(messages, writer: RecordWriter) -> int:
    """Write recorded messages (``rtsig.recorded.messages``: JSON lines, captures) as a
    recording: a ``{"subject", "data"}`` line goes on its subject, anything else on the input
    subject. Returns the messages written."""
    from rtsig.recorded import with_subject

    n = 0
    for message, receipt_ns in messages:
        routed = with_subject(message)
        subject, body = routed if routed is not None else (writer.input_subject, message)
        writer.write(receipt_ns, subject, body)
        n += 1
    return n


# ----- the live recorder

def record_subjects(settings, extra: list[str] | None = None) -> list[str]:
    """The input subjects: market data, USD-M futures (when set), the three feeds, ``extra``."""
    subjects = [settings.nats_consumer_topic]
    if settings.nats_futures_topic:
        subjects.append(settings.nats_futures_topic)
    subjects += list(settings.feed_subjects)
    for s in extra or ():
        if s not in subjects:
            subjects.append(s)
    return subjects


async def record(settings, directory: str, *, prefix: str = "rtsig", max_bytes: int = DEFAULT_MAX_BYTES,
                 hourly: bool = True, compress: bool = False, extra_subjects: list[str] | None = None,
                 count: int | None = None, connect_timeout: float | None = None,
                 stop: asyncio.Event | None = None) -> dict:
    """Record until ``stop`` (or ``count`` messages); return the final summary.

    Subscribes outside the queue group: a recorder must see every message, not a replica's share.
    Within a subject the order is the server's; across subjects it is the order nats-py hands the
    messages over (each subscription is served by its own task), which may move a feed message a
    few market messages away from its place on the socket.
    """
    from rtsig.replay import ToolConnection

    def note(text: str) -> None:
        sys.stderr.write(f"rtsig record: {text}\n")

    writer = RecordWriter(directory, settings.nats_consumer_topic, prefix, max_bytes, hourly,
                          on_file=lambda p: note(f"wrote {p}"), compress=compress)
    link = ToolConnection(settings, "record", note=note)
    await link.open(connect_timeout)
    nc = link.nc
    assert nc is not None  # open() raises unless connected
    done = stop or asyncio.Event()
    per_subject: dict[str, int] = {}
    subjects = record_subjects(settings, extra_subjects)

    async def on_message(msg) -> None:
        writer.write(time.time_ns(), msg.subject, msg.data)
        per_subject[msg.subject] = per_subject.get(msg.subject, 0) + 1
        if count is not None and writer.messages >= count:
            done.set()

    for subject in subjects:
        await nc.subscribe(subject, cb=on_message, pending_msgs_limit=2_000_000,
                           pending_bytes_limit=1 << 30)
    note("recording " + ", ".join(subjects) + f" into {directory}")
    started = time.monotonic()
    try:
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                writer.flush()  # at most a second of traffic is ever only in memory
    finally:
        await link.close()
        writer.close()
    summary = {"messages": writer.messages, "subjects": per_subject, "bytes": writer.bytes_written,
               "files": [str(p) for p in writer.files], "seconds": round(time.monotonic() - started, 3)}
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")
    return summary
