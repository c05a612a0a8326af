"""The raw floor: a bare nats-py process that receives every message and republishes the ones that
would become signals — two hops, no work. Its figures are what NATS and Python cost by themselves.

Answers ``{"processed": n}`` on the control subject once every earlier message has been handled.
"""

from __future__ import annotations

from perf.baseline import run, serve
from perf.traffic import TRIGGER_MARK


async def main(url: str, subject_in: str, subject_out: str, group: str, control: str) -> None:
    processed = 0

    def handler(nc):
        publish = nc.publish

        async def on_message(msg) -> None:
            nonlocal processed
            processed += 1
            data = msg.data
            if data.find(TRIGGER_MARK, len(data) - 80) >= 0:
                await publish(subject_out, data)
        return on_message

    await serve(url, subject_in, group, control, handler, lambda: {"processed": processed})


if __name__ == "__main__":
    run(__doc__.splitlines()[0], main)
