"""``rtsig demo`` (``make run``): the whole service on embedded defaults, with live output.

1. NATS: the one at ``NATS_URL`` if it answers, else the bundled ``nats-server`` on loopback.
2. ``rtsig run`` as a child process: instance ``RTSIG_INSTANCE`` if set, else the first of
   ``demo``, ``demo-2`` … ``demo-9`` that no running process owns (so a second ``make run`` on a
   host works); operator API on ``HTTP_PORT`` if set, else 8080 or, if taken, a free port.
3. The bundled sample feed (``var/sample.jsonl``, made by :mod:`rtsig.synthetic` if missing),
   replayed as recorded, in a loop, with its times shifted forward each round so the strategies'
   event-time cool-downs see a market that goes on.
4. A human-readable tail of the signals.

Ctrl-C stops everything: the service drains and unlinks its shared memory, the embedded NATS
server stops, and the demo exits 0. When it cannot start (an explicit RTSIG_INSTANCE or HTTP_PORT
in use, the service exiting before it is ready) or the service dies under it, it says why in one
line and exits 1.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rtsig import counters as C
from rtsig.errors import StoreError
from rtsig.natsbin import EmbeddedNats, answers
from rtsig.settings import Settings
from rtsig.store import Store, owner_alive, segment_name
from rtsig.synthetic import write_feed
from rtsig.tail import tail

DEMO_INSTANCE = "demo"
DEMO_INSTANCES = (DEMO_INSTANCE, *(f"{DEMO_INSTANCE}-{n}" for n in range(2, 10)))
"""Instance names the demo tries, in order, when RTSIG_INSTANCE is not set."""
EXIT_FAILED = 1
READY_TIMEOUT_S = 600.0
"""The first start compiles every Numba module: 1-2 minutes on 2 idle cores, 2.5 measured with a test
suite running beside it. The zygote says so module by module meanwhile."""
CLIENT_CLOSE_S = 2.0
"""How long the demo waits for its own NATS clients (tail, replay) to close when it stops."""


def _say(text: str) -> None:
    sys.stderr.write(f"[demo] {text}\n")
    sys.stderr.flush()


class DemoError(Exception):
    """The demo cannot go on; the message is its one line."""


def _fail(text: str) -> int:
    sys.stderr.write(f"rtsig demo: {text}\n")
    sys.stderr.flush()
    return EXIT_FAILED


def instance_owner(instance: str) -> int | None:
    """The pid of the running process that owns ``/dev/shm/rtsig-<instance>``, or None."""
    try:
        store = Store.attach(segment_name(instance), readonly=True)
    except StoreError:
        return None
    try:
        header = store.header[0]
        pid, ticks = int(header["owner_pid"]), int(header["owner_start_ticks"])
    finally:
        store.close()
    return pid if owner_alive(pid, ticks) else None


def choose_instance(explicit: str | None) -> str:
    """RTSIG_INSTANCE if it is free; else the first free ``demo`` name (DemoError if none)."""
    if explicit:
        owner = instance_owner(explicit)
        if owner is not None:
            raise DemoError(f"RTSIG_INSTANCE={explicit!r} is in use by running pid {owner} "
                            "(another `rtsig run` or demo): stop it, or choose another name")
        return explicit
    for name in DEMO_INSTANCES:
        if instance_owner(name) is None:
            return name
    raise DemoError(f"instances {DEMO_INSTANCES[0]!r} to {DEMO_INSTANCES[-1]!r} are all in use "
                    "by running demos: stop one, or set RTSIG_INSTANCE")


def choose_port(settings: Settings, explicit: bool) -> int:
    """HTTP_PORT if set and free (DemoError if taken); unset: 8080, or a free port if taken."""
    if _port_free(settings.http_port):
        return settings.http_port
    if explicit:
        raise DemoError(f"HTTP_PORT={settings.http_port} is in use by another program: choose "
                        "another port, or unset HTTP_PORT and the demo picks a free one")
    return _free_port()


def wait_until_subscribed(instance: str, child: subprocess.Popen, timeout_s: float) -> None:
    """Block until the service's ingest is subscribed (read from its shared memory, and only
    from the segment *this* child created: another instance's is not a sign of life)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise DemoError(f"the service (rtsig run, instance {instance!r}) exited with "
                            f"{child.returncode} before it was ready; its error is above")
        try:
            store = Store.attach(segment_name(instance), readonly=True)
        except StoreError:
            time.sleep(0.1)
            continue
        try:
            if int(store.header[0]["owner_pid"]) == child.pid \
                    and store.counters[C.ROW_INGEST][C.SUBSCRIBED] == 1:
                return
        finally:
            store.close()
        time.sleep(0.1)
    raise DemoError(f"the service did not subscribe to NATS within {timeout_s:.0f} s")


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


async def _run(settings: Settings, feed: Path, child: subprocess.Popen) -> bool:
    """Until Ctrl-C/SIGTERM (True) or the service exits by itself (False)."""
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
    asked = stop.is_set()
    stop.set()
    feed_task.cancel()
    await _close_clients([tail_task, feed_task])
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(child_gone, 15)
    except TimeoutError:
        child.kill()
        await child_gone
    return asked


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
    try:
        instance = choose_instance(settings.instance if os.environ.get("RTSIG_INSTANCE", "").strip()
                                   else None)
        explicit_port = any(os.environ.get(v, "").strip() for v in ("HTTP_PORT", "FASTAPI_PORT"))
        port = choose_port(settings, explicit_port)
    except DemoError as exc:
        return _fail(str(exc))
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
    token = settings.api_token or secrets.token_urlsafe(18)
    env = {**os.environ, "NATS_URL": settings.nats_url, "RTSIG_INSTANCE": instance,
           "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"), "HTTP_PORT": str(port),
           "RTSIG_API_TOKEN": token, "RTSIG_DATA_DIR": str(data_dir)}
    _say(f"starting the service (instance {instance!r}); a first start compiles the Numba "
         "kernels, a minute or two, and says so module by module")
    child = subprocess.Popen([sys.executable, "-m", "rtsig.cli", "run"], env=env)
    status = 0
    try:
        wait_until_subscribed(instance, child, READY_TIMEOUT_S)
        _say("service ready")
        _say(f"operator API: http://127.0.0.1:{port}/docs  (changes need "
             f"'Authorization: Bearer {token}')")
        import uvloop

        # not uvloop.run(): at exit it waits for every task it cancels, and a NATS client left
        # behind by _close_clients could hold the demo up for ever
        loop = uvloop.new_event_loop()
        try:
            if not loop.run_until_complete(_run(settings, feed, child)):
                status = _fail(f"the service (rtsig run, instance {instance!r}) exited with "
                               f"{child.returncode} while the demo ran; its log is above")
        finally:
            loop.close()
    except DemoError as exc:
        status = _fail(str(exc))
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
    return status
