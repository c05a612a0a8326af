"""What the two baseline consumers (raw floor, reference) share: subscription, control, shutdown."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import nats
import orjson
import uvloop

Handler = Callable[[nats.NATS], Callable[[object], Awaitable[None]]]


async def serve(url: str, subject_in: str, group: str, control: str, make_handler: Handler,
                stats: Callable[[], dict]) -> None:
    """Subscribe ``make_handler(nc)`` in the queue group, answer ``stats()`` on ``control``, run
    until SIGTERM/SIGINT. Prints ``ready`` once subscribed."""
    nc = await nats.connect(url, max_reconnect_attempts=-1)

    async def on_control(msg) -> None:
        await msg.respond(orjson.dumps({**stats(), "pid": os.getpid()}))

    await nc.subscribe(subject_in, queue=group, cb=make_handler(nc), pending_msgs_limit=5_000_000,
                       pending_bytes_limit=4 * 1024 ** 3)
    await nc.subscribe(control, cb=on_control)
    await nc.flush()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await nc.drain()


def run(description: str, main: Callable[..., Awaitable[None]]) -> None:
    """Parse the common flags and run ``main(url, subject_in, subject_out, group, control)``."""
    p = argparse.ArgumentParser(description=description)
    for name in ("url", "subject-in", "subject-out", "group", "control"):
        p.add_argument(f"--{name}", required=True)
    a = p.parse_args()
    uvloop.run(main(a.url, a.subject_in, a.subject_out, a.group, a.control))
