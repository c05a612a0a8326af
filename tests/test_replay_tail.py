"""``rtsig replay`` and ``rtsig tail`` against a real nats-server, and the replay pacing plan."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
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


# ----------------------------------------------------------------------------- NATS outages
SIGNAL = {"signal_id": "x", "strategy_id": "orderbook_skew", "symbol": "BTCUSDT", "action": "buy",
          "confidence": 0.8123, "strength": "strong", "price": 50000.0, "stop_loss": 49500.0,
          "take_profit": 50750.0, "indicators": {"ratio": 1.5}, "timestamp": "2024-01-01T00:00:00.123Z"}


async def until(condition, seconds: float, what: str) -> None:
    """Poll ``condition()`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    async for line in stream:
        into.append(line.decode().rstrip("\n"))


async def _ignore(_exc) -> None:
    pass


async def resilient_client(url: str, on_reconnect=None) -> nats.NATS:
    """A test-side client that itself rides over the restart."""
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.05,
                              reconnected_cb=on_reconnect, error_cb=_ignore)


async def until_after_publishing(nc: nats.NATS, subject: str, seen, seconds: float) -> None:
    """Publish a signal every 50 ms until ``seen()`` is non-empty."""
    deadline = time.monotonic() + seconds
    while not seen():
        assert time.monotonic() < deadline, f"nothing seen on {subject}"
        if nc.is_connected:
            await nc.publish(subject, json.dumps(SIGNAL).encode())
            await nc.flush()
        await asyncio.sleep(0.05)


def test_replay_loop_keeps_publishing_across_a_nats_restart(tmp_path, nats_server):
    # 50 distinct lines looped: after its restart the subscriber must see an unbroken run of them
    feed = lines(tmp_path, [TRADE % k for k in range(50)])
    count = 2400

    async def scenario() -> tuple[int, dict, list[int], list[str]]:
        seq: list[int] = []
        after: list[int] = []
        state = {"resubscribed": False}

        async def on(msg):
            k = json.loads(msg.data)["data"]["E"]
            seq.append(k)
            if state["resubscribed"]:
                after.append(k)

        async def resubscribed():
            state["resubscribed"] = True

        nc = await resilient_client(nats_server.url, resubscribed)
        await nc.subscribe("replay.test", cb=on)
        await nc.flush()
        env = {**os.environ, "NATS_URL": nats_server.url, "NATS_CONSUMER_TOPIC": "replay.test"}
        proc = await asyncio.create_subprocess_exec(
            RTSIG, "replay", feed, "--rate", "400", "--loop", "--count", str(count), env=env,
            stderr=asyncio.subprocess.PIPE)
        err: list[str] = []
        reader = asyncio.create_task(collect(proc.stderr, err))
        try:
            await until(lambda: len(seq) >= 20, 20, "messages before the restart")
            await asyncio.to_thread(nats_server.stop)
            await until(lambda: any("lost the NATS connection" in line for line in err), 10,
                        "replay to notice the outage")
            assert proc.returncode is None  # still running
            await asyncio.to_thread(nats_server.start)
            await until(lambda: any("reconnected to NATS" in line for line in err), 10,
                        "replay to reconnect")
            await until(lambda: len(after) >= 100, 10, "messages after the restart")
            await asyncio.wait_for(proc.wait(), 30)
            await reader
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await nc.flush()
        await nc.close()
        return proc.returncode, json.loads(err[-1]), after, err

    rc, final, after, err = asyncio.run(scenario())
    assert rc == 0, err
    assert final["published"] + final["unconfirmed"] + final["lost"] == count, final
    assert final["reconnects"] == 1
    assert final["published"] >= 20 + 100
    # what reached the subscriber after the restart is one unbroken, in-order run of the feed
    assert len(after) >= 100
    assert all(b == (a + 1) % 50 for a, b in zip(after, after[1:]))
    assert len([line for line in err if line.startswith("rtsig replay:")]) == 2  # lost, reconnected


def test_replay_counts_what_an_outage_cost_when_it_ends_before_the_server_returns(
        tmp_path, nats_server, capfd):
    """A tiny outage buffer and no server at the end: the losses are counted, never silent."""
    from rtsig.replay import replay
    from rtsig.settings import Settings

    feed = lines(tmp_path, [TRADE % k for k in range(50)])
    settings = Settings(nats_url=nats_server.url, nats_consumer_topic="replay.test")
    count = 400

    async def scenario() -> tuple[int, int]:
        got = []
        nc = await nats.connect(nats_server.url, allow_reconnect=False, error_cb=_ignore)

        async def on(msg):
            got.append(msg.data)

        await nc.subscribe("replay.test", cb=on)
        await nc.flush()
        job = asyncio.create_task(replay(settings, [feed], 200.0, True, progress=False, limit=count,
                                         connect_timeout=1.0, outage_buffer=2000))
        await until(lambda: len(got) >= 20, 10, "messages before the outage")
        await asyncio.to_thread(nats_server.stop)
        published = await asyncio.wait_for(job, 30)
        return published, len(got)

    published, received = asyncio.run(scenario())
    final = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert final["published"] == published >= 20
    assert final["published"] + final["unconfirmed"] + final["lost"] == count
    assert final["lost"] > 0  # the buffer (2000 bytes) could not hold the rest of the feed
    assert final["reconnects"] == 0
    assert received >= published


def test_tail_prints_signals_published_after_a_nats_restart(nats_server):
    env = {**os.environ, "NATS_URL": nats_server.url, "NATS_PUBLISHER_TOPIC": "tail.test"}

    async def scenario() -> tuple[int, list[str], list[str]]:
        proc = await asyncio.create_subprocess_exec(RTSIG, "tail", env=env,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out: list[str] = []
        err: list[str] = []
        readers = [asyncio.create_task(collect(proc.stdout, out)),
                   asyncio.create_task(collect(proc.stderr, err))]
        try:
            nc = await nats.connect(nats_server.url)
            # the tail may not be subscribed yet: publish until it has printed one line
            await until_after_publishing(nc, "tail.test", lambda: out, 20)
            await nc.close()
            await asyncio.to_thread(nats_server.restart)
            # the tail resubscribes before it says it reconnected: from then on nothing is missed
            await until(lambda: any("reconnected to NATS" in line for line in err), 10,
                        "tail to reconnect")
            nc = await nats.connect(nats_server.url)
            for _ in range(5):
                await nc.publish("tail.test", json.dumps({**SIGNAL, "symbol": "ETHUSDT"}).encode())
            await nc.flush()
            await until(lambda: sum("ETHUSDT" in line for line in out) >= 5, 10,
                        "the signals published after the restart")
            # one more round trip through the server: a sixth line would have arrived by now
            marker = {**SIGNAL, "symbol": "BNBUSDT"}
            await nc.publish("tail.test.orderbook_skew", json.dumps(marker).encode())
            await nc.flush()
            await until(lambda: any("BNBUSDT" in line for line in out), 10, "the marker signal")
            await nc.close()
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 10)
            await asyncio.gather(*readers)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return proc.returncode, out, err

    rc, out, err = asyncio.run(scenario())
    assert rc == 0, err
    assert sum("ETHUSDT" in line for line in out) == 5
    assert sum("BNBUSDT" in line for line in out) == 1
    assert sum("BTCUSDT" in line for line in out) >= 1
    assert all(sum(s in line for s in ("BTCUSDT", "ETHUSDT", "BNBUSDT")) == 1 for line in out)
    assert any("lost the NATS connection" in line for line in err)


@pytest.mark.parametrize("tool", ["replay", "tail"])
@pytest.mark.parametrize("peer, why", [
    ("nothing listening", "Connection refused"),
    ("a listener that never answers", "nothing answered as a NATS server"),
    ("a server that refuses the login", "Authorization Violation"),
])
def test_no_nats_server_is_one_clear_line_and_a_non_zero_exit_within_the_timeout(
        tmp_path, tool, peer, why):
    from rtsig.natsbin import EmbeddedNats, free_port

    listener = server = None
    if peer == "nothing listening":
        port = free_port()
    elif peer == "a listener that never answers":  # accepts TCP (the kernel's backlog), no INFO
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
    else:
        server = EmbeddedNats(config="authorization { user: a, password: b }").start()
        port = server.port
    url = f"nats://127.0.0.1:{port}"
    args = [RTSIG, tool, "--connect-timeout", "1"]
    if tool == "replay":
        args[2:2] = [lines(tmp_path, [TRADE % 1])]
    try:
        started = time.monotonic()
        proc = subprocess.run(args, env={**os.environ, "NATS_URL": url}, capture_output=True,
                              text=True, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if listener is not None:
            listener.close()
        if server is not None:
            server.stop()
    assert proc.returncode == 1
    assert 1.0 <= elapsed < 1.0 + 4.0  # the timeout, plus the interpreter's start-up under load
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"rtsig {tool}: could not connect to NATS at {url} within 1 s "
                           "(--connect-timeout): ")
    assert why in line
    assert proc.stdout == ""


def test_the_demos_in_process_replay_round_and_tail_ride_over_a_restart(
        tmp_path, nats_server, capfd):
    """As ``rtsig demo`` uses them: no connect timeout, a round paced as recorded, a tail."""
    from rtsig.replay import replay
    from rtsig.settings import Settings
    from rtsig.tail import tail

    n = 400  # 5 ms apart as recorded: a 2-second round
    envelope = b'{"stream":"btcusdt@trade","data":{"E":%d},"timestamp":"2024-11-01T12:00:%02d.%03d000Z"}'
    envelopes = [envelope % (k, (k * 5) // 1000, (k * 5) % 1000) for k in range(n)]
    feed = lines(tmp_path, envelopes)
    settings = Settings(nats_url=nats_server.url, nats_consumer_topic="demo.in",
                        nats_publisher_topic="demo.out")

    async def scenario() -> tuple[int, list[str]]:
        printed: list[str] = []
        stop = asyncio.Event()
        tail_job = asyncio.create_task(tail(settings, raw_json=True, write=printed.append,
                                            stop=stop))
        pub = await resilient_client(nats_server.url)
        # the tail may not be subscribed yet: publish until it has printed one line
        await until_after_publishing(pub, "demo.out", lambda: printed, 20)
        round_job = asyncio.create_task(replay(settings, [feed], rate=None, loop=False,
                                               progress=False))
        sub_got: list[int] = []

        async def on(msg):
            sub_got.append(1)

        await pub.subscribe("demo.in", cb=on)
        await pub.flush()
        await until(lambda: len(sub_got) >= 20, 10, "the round to be under way")
        await asyncio.to_thread(nats_server.restart)
        published = await asyncio.wait_for(round_job, 30)  # the round ends normally
        before = len(printed)
        await until_after_publishing(pub, "demo.out", lambda: printed[before:], 20)
        stop.set()
        await asyncio.wait_for(tail_job, 10)
        await pub.close()
        return published, printed

    published, printed = asyncio.run(scenario())
    err = capfd.readouterr().err
    final = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
    assert final["published"] == published
    assert final["published"] + final["unconfirmed"] + final["lost"] == n
    assert final["reconnects"] == 1
    assert "rtsig tail: reconnected to NATS" in err



def test_tail_hears_every_subject_the_publisher_topic_can_make():
    from rtsig.tail import signal_subjects

    assert signal_subjects("signals.trading") == ["signals.trading", "signals.trading.>"]
    assert signal_subjects("signals.trading.{strategy_id}") == ["signals.trading.*"]
    assert signal_subjects("cio.intent.trading.{strategy_id}.{symbol}") == ["cio.intent.trading.*.*"]
