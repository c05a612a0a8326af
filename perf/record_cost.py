"""What ``rtsig record`` costs per message and how big its files are, against JSON lines.

The same messages (the 3-minute synthetic sample feed with receipt times, and the real Binance
captures) written three ways: the ``<recv_ts>: <json>`` capture format (JSON lines with receipt
times: the same information), a recording, and a ``--compress`` recording. Cost: the writer's
time per message, best of 5 passes, to a file in /tmp (the page cache; no fsync).

    .venv/bin/python -m perf.record_cost [FILE…]
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import orjson

from rtsig.record import RecordWriter
from rtsig.recorded import messages, with_subject

INPUT = "binance.websocket.data"


def _frames(paths: list[str]) -> list[tuple[int, str, bytes]]:
    out = []
    for message, ns in messages(paths):
        routed = with_subject(message)
        subject, body = routed if routed is not None else (INPUT, message)
        out.append((ns, subject, body))
    return out


def _json_lines(frames, path: Path) -> None:
    with open(path, "wb", buffering=1 << 20) as f:
        for ns, subject, body in frames:
            if subject == INPUT:
                f.write(b"%d.%09d: " % divmod(ns, 1_000_000_000) + body + b"\n")
            else:
                f.write(b"%d.%09d: " % divmod(ns, 1_000_000_000) +
                        orjson.dumps({"subject": subject, "data": body.decode()}) + b"\n")


def _recording(frames, directory: Path, compress: bool) -> None:
    writer = RecordWriter(directory, INPUT, hourly=False, compress=compress)
    for f in frames:
        writer.write(*f)
    writer.close()


def measure(name: str, frames) -> dict:
    out = {"input": name, "messages": len(frames)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, write in (("json_lines", lambda d: _json_lines(frames, d / "x.txt")),
                             ("record", lambda d: _recording(frames, d, False)),
                             ("record_gzip", lambda d: _recording(frames, d, True))):
            best = float("inf")
            size = 0
            for k in range(5):
                d = Path(tmp) / f"{label}-{k}"
                d.mkdir()
                t = time.perf_counter()
                write(d)
                best = min(best, time.perf_counter() - t)
                size = sum(p.stat().st_size for p in d.iterdir())
            out[label] = {"bytes": size, "bytes_per_message": round(size / len(frames), 1),
                          "us_per_message": round(best / len(frames) * 1e6, 2)}
    return out


def main(argv: list[str]) -> None:
    sample = Path("var/sample.jsonl")
    if not sample.exists():
        from rtsig.synthetic import write_feed
        write_feed(str(sample))
    inputs = argv or [str(sample), *sorted(str(p) for p in Path("../shared/data/real").glob("*.txt"))]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for path in inputs:
        frames = _frames([path])
        if path.endswith("sample.jsonl"):  # JSON lines without receipt times: give them the event's
            frames = [(1_730_462_400_000_000_000 + k * 25_000_000, s, b) for k, (_, s, b) in enumerate(frames)]
        print(orjson.dumps(measure(Path(path).name, frames)).decode())


if __name__ == "__main__":
    main(sys.argv[1:])
