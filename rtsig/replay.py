"""``rtsig replay``: publish recorded market data to the input subject.

Pacing: as recorded (the gaps between capture receipt times, or between envelope timestamps),
``--rate N`` messages per second, or ``--rate 0`` flat out. ``--loop`` repeats the files. A
progress line on stderr while it runs, the final count at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime
from typing import Iterator

import orjson

from rtsig import counters as C
from rtsig.natsconn import connect
from rtsig.recorded import iter_lines, open_inputs
from rtsig.settings import Settings

FLUSH_EVERY = 1000


def _envelope_ms(message: bytes) -> int | None:
    """Event time of an enveloped message from its ``timestamp`` (cheap, for pacing only)."""
    key = message.find(b'"timestamp":"')
    if key < 0:
        return None
    end = message.find(b'"', key + 13)
    try:
        return int(datetime.fromisoformat(message[key + 13:end].decode().replace("Z", "+00:00"))
                   .timestamp() * 1000)
    except ValueError:
        return None


def paced(paths: list[str], rate: float | None, loop: bool) -> Iterator[tuple[bytes, float]]:
    """``(message, seconds to wait before it)`` for every message, honouring the pacing mode."""
    while True:
        streams = open_inputs(paths)
        try:
            previous_ms = None
            for message, receipt_ns in iter_lines(streams):
                if rate is not None:
                    yield message, (1.0 / rate if rate > 0 else 0.0)
                    continue
                t_ms = receipt_ns / 1e6 if receipt_ns is not None else _envelope_ms(message)
                gap = 0.0 if previous_ms is None or t_ms is None else max(0.0, (t_ms - previous_ms) / 1000)
                if t_ms is not None:
                    previous_ms = t_ms
                yield message, gap
        finally:
            for s in streams:
                if s is not sys.stdin.buffer:
                    s.close()
        if not loop:
            return


async def replay(settings: Settings, paths: list[str], rate: float | None, loop: bool,
                 subject: str | None = None, progress: bool = True, limit: int | None = None) -> int:
    """Publish the messages; return how many were published."""
    row = [0] * C.N_COUNTERS
    nc = await connect(settings, "rtsig-replay", row)
    subject = subject or settings.nats_consumer_topic
    sent = 0
    started = time.monotonic()
    due = started
    last_report = 0.0
    show = progress and sys.stderr.isatty()
    try:
        for message, gap in paced(paths, rate, loop):
            due += gap
            delay = due - time.monotonic()
            if delay > 0.001:
                await nc.flush()
                await asyncio.sleep(delay)
            await nc.publish(subject, message)
            sent += 1
            if sent % FLUSH_EVERY == 0:
                await nc.flush()
            now = time.monotonic()
            if show and now - last_report > 0.25:
                last_report = now
                rate_now = sent / max(1e-9, now - started)
                sys.stderr.write(f"\r  replay: {sent:>9,} messages  {rate_now:>9,.0f} msg/s")
                sys.stderr.flush()
            if limit is not None and sent >= limit:
                break
        await nc.flush()
    finally:
        await nc.close()
    if show:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - started
    sys.stderr.write(orjson.dumps({"published": sent, "subject": subject,
                                   "seconds": round(elapsed, 3)}).decode() + "\n")
    return sent
