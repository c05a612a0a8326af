"""``rtsig demo`` (``make run``): the whole service on embedded defaults, with live output.

1. NATS: the one at ``NATS_URL`` if it answers, else the bundled ``nats-server`` on loopback.
2. ``rtsig run`` as a child process (its own instance name, so it never meets a production one).
3. The bundled sample feed (``var/sample.jsonl``, made by :mod:`rtsig.synthetic` if missing),
   replayed as recorded, in a loop, with its times shifted forward each round so the strategies'
   event-time cool-downs see a market that goes on.
4. A human-readable tail of the signals.

Ctrl-C stops everything: the service drains and unlinks its shared memory, the embedded NATS
server stops, and the demo exits 0.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

from rtsig import counters as C
from rtsig.errors import StoreError
from rtsig.natsbin import EmbeddedNats, answers
from rtsig.settings import Settings
from rtsig.store import Store, segment_name
from rtsig.synthetic import write_feed
from rtsig.tail import tail

DEMO_INSTANCE = "demo"
READY_TIMEOUT_S = 120.0
CLIENT_CLOSE_S = 2.0
"""How long the demo waits for its own NATS clients (tail, replay) to close when it stops."""


def _say(text: str) -> None:
    sys.stderr.write(f"[demo] {text}\n")
    sys.stderr.flush()


def wait_until_subscribed(instance: str, child: subprocess.Popen, timeout_s: float) -> None:
    """Block until the service's ingest is subscribed (read from its shared memory)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"rtsig run exited with {child.returncode}")
        try:
            store = Store.attach(segment_name(instance), readonly=True)
        except StoreError:
            time.sleep(0.1)
            continue
        try:
            if store.counters[C.ROW_INGEST][C.SUBSCRIBED] == 1:
                return
        finally:
            store.close()
        time.sleep(0.1)
    raise TimeoutError("the service did not subscribe in time")


async def _feed_forever(settings: Settings, feed: Path) -> None:
    """Replay the sample in rounds, shifting event times so each round continues the last."""
    from rtsig.synthetic import MarketSimulator

    round_no = 0
    from rtsig.replay import replay

    while True:
        if round_no == 0:
            await replay(settings, [str(feed)], rate=None, loop=False, progress=False)
        else:
            shifted = feed.with_name(f"sample-round{round_no % 2}.jsonl")
            start_ms = MarketSimulator().start_ms + round_no * 180_000
            sim = MarketSimulator(seed=7 + round_no, start_ms=start_ms)
            with open(shifted, "wb") as f:
                for _, msg in sim.messages(180):
                    f.write(msg + b"\n")
            await replay(settings, [str(shifted)], rate=None, loop=False, progress=False)
        round_no += 1


async def _close_clients(tasks: list[asyncio.Task]) -> None:
    """Let the tail and the replay close their NATS connections, but not for ever.

    With Ctrl-C the bundled nats-server gets the same SIGINT and may be gone first; a nats-py
    client closing (or flushing) towards a dead server can wait for a long time. The demo must
    still stop promptly, so a client that has not closed in time is cancelled and left behind.
    """
    _, pending = await asyncio.wait(tasks, timeout=CLIENT_CLOSE_S)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CLIENT_CLOSE_S)


async def _run(settings: Settings, feed: Path, child: subprocess.Popen) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tail_task = asyncio.create_task(tail(settings, raw_json=False, stop=stop))
    feed_task = asyncio.create_task(_feed_forever(settings, feed))
    _say("replaying the sample feed as recorded; signals appear below (Ctrl-C to stop)")
    child_gone = asyncio.create_task(asyncio.to_thread(child.wait))
    await asyncio.wait({asyncio.create_task(stop.wait()), child_gone, feed_task},
                       return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    feed_task.cancel()
    await _close_clients([tail_task, feed_task])
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(child_gone, 15)
    except asyncio.TimeoutError:
        child.kill()
        await child_gone


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def run_demo(settings: Settings, data_dir: Path) -> int:
    embedded = None
    if not answers(settings.nats_url):
        embedded = EmbeddedNats().start()
        settings = settings.with_overrides(nats_url=embedded.url)
        _say(f"started the bundled nats-server at {embedded.url}")
    else:
        _say(f"using NATS at {settings.nats_url}")
    feed = data_dir / "sample.jsonl"
    if not feed.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        n = write_feed(str(feed))
        _say(f"wrote the sample feed: {n} messages, 3 minutes of BTCUSDT, ETHUSDT, BNBUSDT")
    port = settings.http_port if _port_free(settings.http_port) else _free_port()
    token = settings.api_token or secrets.token_urlsafe(18)
    env = {**os.environ, "NATS_URL": settings.nats_url, "RTSIG_INSTANCE": DEMO_INSTANCE,
           "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"), "HTTP_PORT": str(port),
           "RTSIG_API_TOKEN": token, "RTSIG_DATA_DIR": str(data_dir)}
    child = subprocess.Popen([sys.executable, "-m", "rtsig.cli", "run"], env=env)
    try:
        wait_until_subscribed(DEMO_INSTANCE, child, READY_TIMEOUT_S)
        _say("service ready")
        _say(f"operator API: http://127.0.0.1:{port}/docs  (changes need "
             f"'Authorization: Bearer {token}')")
        import uvloop

        # not uvloop.run(): at exit it waits for every task it cancels, and a NATS client left
        # behind by _close_clients could hold the demo up for ever
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(_run(settings, feed, child))
        finally:
            loop.close()
    except KeyboardInterrupt:
        pass
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if embedded is not None:
            embedded.stop()
        _say("stopped")
    return 0
