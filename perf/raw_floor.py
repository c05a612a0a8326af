"""The raw floor: a bare nats-py process that receives every message and republishes the ones that
would become signals — two hops, no work. Its figures are what NATS and Python cost by themselves.

Answers ``{"processed": n}`` on the control subject once every earlier message has been handled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import nats
import orjson
import uvloop

from perf.traffic import TRIGGER_MARK


async def main(url: str, subject_in: str, subject_out: str, group: str, control: str) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=-1)
    processed = 0
    publish = nc.publish

    async def on_message(msg) -> None:
        nonlocal processed
        processed += 1
        data = msg.data
        if data.find(TRIGGER_MARK, len(data) - 80) >= 0:
            await publish(subject_out, data)

    async def on_control(msg) -> None:
        await msg.respond(orjson.dumps({"processed": processed, "pid": os.getpid()}))

    await nc.subscribe(subject_in, queue=group, cb=on_message, pending_msgs_limit=5_000_000,
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("url", "subject-in", "subject-out", "group", "control"):
        p.add_argument(f"--{name}", required=True)
    a = p.parse_args()
    uvloop.run(main(a.url, a.subject_in, a.subject_out, a.group, a.control))
