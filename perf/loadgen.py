"""The load generator: publishes stamped traffic and receives the outputs of the system under test.

Runs as its own process so that the measured system and the generator compete for the cores as
they would in production. Paced (``--rate N`` msg/s, sent in 1 ms slices) or flat out
(``--rate 0``). After the traffic it sends one triggering *marker* per symbol; when every marker's
output has arrived, every earlier message has been handled (each system keeps per-symbol order),
which gives the end of a throughput run. Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import nats
import numpy as np
import orjson
import uvloop

from perf.traffic import TRIGGER_MARK, Traffic, parse_seq

SLICE_NS = 1_000_000


async def run(url: str, subject_in: str, subject_out: str, n_symbols: int, share: float, count: int,
              rate: float, timeout_s: float) -> dict:
    traffic = Traffic(n_symbols, share)
    pub = await nats.connect(url, pending_size=256 * 1024 * 1024)
    sub = await nats.connect(url)
    received: dict[int, int] = {}
    outputs = 0
    markers_from = count
    markers_left = n_symbols
    all_markers = asyncio.Event()

    async def on_output(msg) -> None:
        nonlocal outputs, markers_left
        now = time.monotonic_ns()
        outputs += 1
        data = msg.data
        at = data.find(TRIGGER_MARK)
        if at < 0:
            return
        seq = parse_seq(data[at:at + 15])
        if seq not in received:
            received[seq] = now
            if seq >= markers_from:
                markers_left -= 1
                if markers_left == 0:
                    all_markers.set()

    await sub.subscribe(subject_out, cb=on_output, pending_msgs_limit=5_000_000,
                        pending_bytes_limit=2 * 1024 ** 3)
    await sub.flush()

    sent_at: dict[int, int] = {}
    publish = pub.publish
    message = traffic.message
    triggers = traffic.triggers
    started = time.monotonic_ns()
    if rate > 0:
        per_slice = rate * SLICE_NS / 1e9
        due = 0.0
        seq = 0
        next_slice = started
        while seq < count:
            due += per_slice
            while seq < min(count, int(due)):
                if triggers(seq):
                    sent_at[seq] = time.monotonic_ns()
                await publish(subject_in, message(seq))
                seq += 1
            next_slice += SLICE_NS
            delay = (next_slice - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
    else:
        for seq in range(count):
            if triggers(seq):
                sent_at[seq] = time.monotonic_ns()
            await publish(subject_in, message(seq))
            if seq % 5000 == 4999:
                await asyncio.sleep(0)  # let the client write and read
    await pub.flush()
    published_ns = time.monotonic_ns()
    for k in range(n_symbols):
        seq = markers_from + k
        sent_at[seq] = time.monotonic_ns()
        await publish(subject_in, traffic.marker(k, seq))
    await pub.flush()
    try:
        await asyncio.wait_for(all_markers.wait(), timeout_s)
        drained = True
    except TimeoutError:
        drained = False
    done_ns = max(received.values()) if received else time.monotonic_ns()
    latencies = np.array([received[s] - t for s, t in sent_at.items() if s < markers_from and s in received],
                         dtype=np.int64)
    expected = sum(1 for s in sent_at if s < markers_from)
    await pub.close()
    await sub.close()
    return {
        "sent": count + n_symbols,
        "rate_asked": rate,
        "publish_seconds": (published_ns - started) / 1e9,
        "elapsed_seconds": (done_ns - started) / 1e9,
        "drained": drained,
        "outputs": outputs,
        "triggering_sent": expected,
        "triggering_received": int(latencies.size),
        "latency_ms": {
            "p50": _pct(latencies, 50), "p99": _pct(latencies, 99), "p99.9": _pct(latencies, 99.9),
            "max": _pct(latencies, 100), "mean": float(latencies.mean() / 1e6) if latencies.size else None,
        },
        "latency_sample_ms": (np.sort(latencies)[:: max(1, latencies.size // 2000)] / 1e6).round(4).tolist(),
    }


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)) / 1e6, 4) if values.size else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--subject-in", required=True)
    p.add_argument("--subject-out", required=True)
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--share", type=float, default=0.02)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args()
    result = uvloop.run(run(a.url, a.subject_in, a.subject_out, a.symbols, a.share, a.count, a.rate,
                            a.timeout))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
