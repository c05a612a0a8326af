"""``rtsig replay`` and ``rtsig tail`` against a real nats-server, and the replay pacing plan."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from rtsig.replay import paced
from rtsig.tail import describe

RTSIG = str(Path(sys.executable).with_name("rtsig"))
TRADE = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT","t":1,"p":"1.0","q":"1.0","T":1,"m":true}}'


def lines(tmp_path: Path, content: list[bytes], name: str = "feed.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(b"\n".join(content) + b"\n")
    return str(path)


def test_pacing_plan_fixed_rate_as_recorded_and_flat_out(tmp_path):
    capture = lines(tmp_path, [b"wss://x <-> 1.0", b"1700000000.000: " + TRADE % 1,
                               b"1700000000.250: " + TRADE % 2, b"1700000001.250: " + TRADE % 3], "cap.txt")
    assert [gap for _, gap in paced([capture], None, False)] == pytest.approx([0.0, 0.25, 1.0])
    assert [gap for _, gap in paced([capture], 100.0, False)] == pytest.approx([0.01] * 3)
    assert [gap for _, gap in paced([capture], 0.0, False)] == [0.0] * 3
    env = [b'{"stream":"a@trade","data":{},"timestamp":"2024-11-01T12:00:00.000000Z"}',
           b'{"stream":"a@trade","data":{},"timestamp":"2024-11-01T12:00:00.500000Z"}']
    assert [gap for _, gap in paced([lines(tmp_path, env, "env.jsonl")], None, False)] == pytest.approx([0.0, 0.5])
    looped = paced([capture], 0.0, True)
    assert [next(looped)[0] for _ in range(7)][3] == TRADE % 1  # the loop starts over


def test_replay_publishes_every_line_in_order_and_reports_the_count(tmp_path, nats_server):
    feed = lines(tmp_path, [TRADE % k for k in range(5)])

    async def scenario() -> list[bytes]:
        nc = await nats.connect(nats_server.url)
        got: list[bytes] = []
        done = asyncio.Event()

        async def on(msg):
            got.append(msg.data)
            if len(got) == 7:
                done.set()

        await nc.subscribe("replay.test", cb=on)
        await nc.flush()
        env = {**os.environ, "NATS_URL": nats_server.url, "NATS_CONSUMER_TOPIC": "replay.test"}
        proc = await asyncio.create_subprocess_exec(RTSIG, "replay", feed, "--rate", "0", "--loop",
                                                    "--count", "7", env=env,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0
        assert json.loads(err.decode().strip().splitlines()[-1])["published"] == 7
        await asyncio.wait_for(done.wait(), 10)
        await nc.close()
        return got

    got = asyncio.run(scenario())
    assert got == [TRADE % k for k in range(5)] + [TRADE % 0, TRADE % 1]


def test_tail_prints_signals_from_the_topic_and_per_strategy_subjects(nats_server):
    signal_ = {"signal_id": "x", "strategy_id": "orderbook_skew", "symbol": "BTCUSDT", "action": "buy",
               "confidence": 0.8123, "strength": "strong", "price": 50000.0, "stop_loss": 49500.0,
               "take_profit": 50750.0, "indicators": {"ratio": 1.5}, "timestamp": "2024-01-01T00:00:00.123Z"}
    env = {**os.environ, "NATS_URL": nats_server.url, "NATS_PUBLISHER_TOPIC": "tail.test"}
    proc = subprocess.Popen([RTSIG, "tail", "--count", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    async def publish() -> None:
        nc = await nats.connect(nats_server.url)
        # the subscriber may not be there yet: publish until it has printed both lines
        for _ in range(200):
            await nc.publish("tail.test", json.dumps(signal_).encode())
            await nc.publish("tail.test.orderbook_skew", json.dumps({**signal_, "action": "sell"}).encode())
            await nc.flush()
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        await nc.close()

    asyncio.run(publish())
    out, _ = proc.communicate(timeout=10)
    printed = out.decode().strip().splitlines()
    assert proc.returncode == 0 and len(printed) == 2
    assert all("BTCUSDT" in line and "orderbook_skew" in line and "conf 0.812" in line for line in printed)
    assert describe(signal_).split()[1] == "BUY"
