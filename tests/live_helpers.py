"""Helpers for the live-service tests: start ``rtsig run`` as a user would, read its counters
from shared memory, publish a feed and collect signals over a real NATS server.

Everything waits on a condition with a deadline (counters in shared memory, a number of
signals); nothing sleeps "long enough".
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import nats
import numpy as np

from rtsig import counters as C
from rtsig.errors import StoreError
from rtsig.layout import CURSOR_HEAD, CURSOR_TAIL
from rtsig.natsbin import answers, server_binary
from rtsig.store import Store, segment_name
from rtsig.synthetic import MarketSimulator
from tests.servers import free_port

RTSIG = str(Path(sys.executable).with_name("rtsig"))
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
N_WORKERS = 2
READY_TIMEOUT_S = 300.0  # the first run after a source change compiles the Numba code (1-2.5 min)
STRATEGIES = ("orderbook_skew", "trade_momentum", "ticker_velocity")
SETTLE_S = 60.0  # deadline of every wait on the running service
PACE = 5000
"""msg/s: far above what Binance sends for three symbols, well below the bursts that overrun
the default 16-slot book ring (see test_a_flat_out_burst_…)."""


def cooldown_env(seconds: int) -> dict[str, str]:
    """Environment setting every realtime strategy's ``min_signal_interval``."""
    return {f"{sid.upper()}_MIN_SIGNAL_INTERVAL": str(seconds) for sid in STRATEGIES}


def new_uid() -> str:
    return "t" + uuid.uuid4().hex[:8]


# ----------------------------------------------------------------------------- feeds and oracle
@functools.lru_cache(maxsize=8)
def feed(seconds: float, seed: int) -> tuple[bytes, ...]:
    """The synthetic market (every strategy fires), in event-time order."""
    return tuple(msg for _, msg in MarketSimulator(SYMBOLS, seed).messages(seconds))


def write_lines(path: Path, messages: Iterable[bytes]) -> Path:
    with open(path, "wb") as f:
        for m in messages:
            f.write(m + b"\n")
    return path


def offline_signals(path: Path, env: dict[str, str]) -> tuple[list[dict], dict]:
    """The parity oracle: ``rtsig signals FILE`` with the service's environment."""
    proc = subprocess.run([RTSIG, "signals", str(path)], capture_output=True, timeout=300,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    signals = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    summary = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    return signals, summary


def message_id(raw: bytes) -> str | None:
    try:
        return json.loads(raw).get("message_id")
    except (ValueError, AttributeError):
        return None


def signal_key(sig: dict) -> tuple:
    """What must be identical between the live and the offline signal (not id nor timestamp)."""
    meta = sig["metadata"]
    return (sig["strategy_id"], sig["symbol"], sig["action"], meta["event_time"], sig["confidence"],
            sig["price"], tuple(sorted(sig["indicators"].items())), meta.get("message_id"))


def multiset_diff(live: Sequence[dict], expected: Sequence[dict], show: int = 5) -> str:
    """Empty when equal as multisets; else a readable account of what is missing/extra."""
    got = collections.Counter(signal_key(s) for s in live)
    want = collections.Counter(signal_key(s) for s in expected)
    if got == want:
        return ""
    missing = list((want - got).elements())
    extra = list((got - want).elements())
    return (f"live {len(live)} vs expected {len(expected)}: "
            f"{len(missing)} missing, {len(extra)} extra\n"
            f"  missing e.g. {missing[:show]}\n  extra e.g. {extra[:show]}")


# ----------------------------------------------------------------------------- waiting
def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               poll_s: float = 0.02) -> float:
    """Poll ``predicate`` until true; the seconds it took. AssertionError at the deadline."""
    start = time.monotonic()
    deadline = start + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - start


async def async_wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
                           poll_s: float = 0.02) -> float:
    """:func:`wait_until` that lets the event loop run (NATS callbacks) while it polls."""
    start = time.monotonic()
    deadline = start + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)
    return time.monotonic() - start


async def settle(services: list[Service], n_messages: int) -> None:
    """Until the ingests together handed ``n_messages`` off and every worker judged its events.

    ``MESSAGES_HANDED_OFF`` moves only once a message's events are in the workers' rings (the
    ingest counts ``MESSAGES_RECEIVED`` while decoding, a moment earlier), so empty rings after
    it mean every event was judged.
    """
    def received() -> int:
        return sum(s.ingest(C.MESSAGES_HANDED_OFF) for s in services)

    try:
        await async_wait_until(lambda: received() >= n_messages, SETTLE_S, "every message handed off")
        await async_wait_until(lambda: all(s.drained() for s in services), SETTLE_S,
                               "workers drained")
    except AssertionError as exc:
        detail = "\n".join(f"{s.instance}: {s.summary()}\n{s.log_tail(15)}" for s in services)
        raise AssertionError(f"{exc}: received {received()} of {n_messages}\n{detail}") from None


# ----------------------------------------------------------------------------- processes
def group_members(pgid: int, include_zombies: bool = False) -> list[tuple[int, str, str]]:
    """``(pid, state, comm)`` of every process whose process group is ``pgid`` (from /proc)."""
    return _scan_proc(lambda fields: int(fields[2]) == pgid, include_zombies)


def session_members(sid: int, include_zombies: bool = False) -> list[tuple[int, str, str]]:
    return _scan_proc(lambda fields: int(fields[3]) == sid, include_zombies)


def _scan_proc(match, include_zombies: bool) -> list[tuple[int, str, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        fields = stat[stat.rindex(b")") + 2:].split()  # state ppid pgrp session ...
        state = fields[0].decode()
        if match(fields) and (include_zombies or state != "Z"):
            found.append((int(entry), state, comm))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def shm_path(instance: str) -> Path:
    return Path("/dev/shm") / segment_name(instance)


class Service:
    """One ``rtsig run --no-web`` subprocess in its own process group, plus its counters."""

    def __init__(self, nats_url: str, log_dir: Path, uid: str | None = None,
                 instance: str | None = None, env: dict[str, str] | None = None,
                 web: bool = False) -> None:
        self.web = web
        self.http_port = free_port() if web else None
        self.uid = uid or new_uid()
        self.instance = instance or new_uid()
        self.in_subject = f"{self.uid}.in"
        self.out_subject = f"{self.uid}.out"
        self.env = {
            "RTSIG_INSTANCE": self.instance,
            "NATS_URL": nats_url,
            "NATS_CONSUMER_TOPIC": self.in_subject,
            "NATS_PUBLISHER_TOPIC": self.out_subject,
            "RTSIG_WORKERS": str(N_WORKERS),
            "LOG_FORMAT": "text",
            "HEARTBEAT_INTERVAL_SECONDS": "1",
            "TRADING_SYMBOLS": ",".join(SYMBOLS),
            "RTSIG_DATA_DIR": str(log_dir / f"data-{self.instance}"),
            **({"HTTP_PORT": str(self.http_port), "RTSIG_WEB_WORKERS": "2"} if web else {}),
            **(env or {}),
        }
        self.log_path = log_dir / f"rtsig-{self.instance}.log"
        self.proc: subprocess.Popen | None = None
        self.store: Store | None = None

    # ----- life cycle
    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> Service:
        assert not shm_path(self.instance).exists(), f"{shm_path(self.instance)} already exists"
        with open(self.log_path, "ab") as log:
            command = [RTSIG, "run"] if self.web else [RTSIG, "run", "--no-web"]
            self.proc = subprocess.Popen(command, env={**os.environ, **self.env},
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(ready_timeout_s)
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Until the ingest is subscribed and every worker is connected to NATS and ticking.

        A worker connects, loads its configuration and only then starts the tick that stamps
        ``ALIVE_NS``; ``/ready`` (and an operator's probe) counts it alive from that stamp, so
        ready here means the same.
        """
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"rtsig run exited with {self.proc.returncode}\n{self.log_tail()}")
            if self.store is None:
                try:
                    self.store = Store.attach(segment_name(self.instance), readonly=True)
                except (StoreError, FileNotFoundError, ValueError):
                    return False
            rows = self.store.counters
            return (rows[C.ROW_INGEST][C.SUBSCRIBED] == 1
                    and all(rows[C.ROW_WORKER0 + k][C.NATS_CONNECTED] == 1
                            and rows[C.ROW_WORKER0 + k][C.ALIVE_NS] > 0
                            for k in range(N_WORKERS))
                    and (not self.web or self.http("GET", "/healthz")[0] == 200))

        try:
            return wait_until(ready, timeout_s, f"rtsig instance {self.instance} to be ready",
                              poll_s=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def http(self, method: str, path: str, body: dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """``(status, body)`` of one request to the service's web API (0 if it does not answer)."""
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                         method=method, headers={"Content-Type": "application/json",
                                                                 **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, b""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout_s: float = 15.0) -> tuple[int | None, float]:
        """SIGTERM the supervisor; ``(exit code or None if it did not exit, seconds)``."""
        self.close_store()
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def cleanup(self) -> None:
        """Whatever happened: no process of the group and no segment are left behind."""
        self.close_store()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(12)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            shm_path(self.instance).unlink()
        except FileNotFoundError:
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        head = f"--- last {min(n, len(lines))} log lines of {self.instance} ---\n"
        return head + "\n".join(lines[-n:])

    # ----- counters (copies: never keep a view, or the store cannot be closed)
    def rows(self) -> np.ndarray:
        return self.store.counters.copy()

    def ingest(self, index: int) -> int:
        return int(self.store.counters[C.ROW_INGEST][index])

    def worker(self, k: int, index: int) -> int:
        return int(self.store.counters[C.ROW_WORKER0 + k][index])

    def workers_sum(self, index: int) -> int:
        return sum(self.worker(k, index) for k in range(N_WORKERS))

    def worker_pid(self, k: int) -> int:
        return self.worker(k, C.PROCESS_PID)

    def summary(self) -> dict:
        return C.summarize(self.rows())

    def errors(self) -> dict[str, int]:
        return self.summary()["errors"]

    def drained(self) -> bool:
        """Every worker has judged (and handed to NATS or held) every event routed to it."""
        cursors = self.store.event_cursors
        return all(int(cursors[k, CURSOR_TAIL]) == int(cursors[k, CURSOR_HEAD])
                   for k in range(N_WORKERS))

    def owned_symbols(self, k: int) -> list[str]:
        return [s for s in SYMBOLS if self.store.symbol_id(s) % N_WORKERS == k]


# ----------------------------------------------------------------------------- NATS clients
class SignalSink:
    """A subscription that keeps every signal it receives (parsed)."""

    def __init__(self) -> None:
        self.signals: list[dict] = []
        self._arrived = asyncio.Event()

    async def subscribe(self, nc, subject: str) -> SignalSink:
        await nc.subscribe(subject, cb=self._on_message)
        await nc.flush()
        return self

    async def _on_message(self, msg) -> None:
        self.signals.append(json.loads(msg.data))
        self._arrived.set()

    async def wait_count(self, n: int, timeout_s: float) -> bool:
        """True once at least ``n`` signals arrived; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while len(self.signals) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return len(self.signals) >= n
        return True


async def publish_all(nc, subject: str, messages: Iterable[bytes], rate: float | None = None,
                      flush_every: int | None = None) -> int:
    """Publish in order, flat out (``rate`` None) or paced at ``rate`` msg/s; flushed at the end."""
    flush_every = flush_every or (100 if rate else 1000)
    n = 0
    started = time.monotonic()
    for m in messages:
        await nc.publish(subject, m)
        n += 1
        if n % flush_every == 0:
            await nc.flush()
            if rate:
                ahead = started + n / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing, not synchronisation
    await nc.flush()
    return n


async def connect(url: str):
    return await nats.connect(url, connect_timeout=5, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.1)


class JetStreamServer:
    """A nats-server with JetStream and a fixed store dir, so a stream outlives a restart."""

    def __init__(self, port: int, store_dir: Path) -> None:
        self.port = port
        self.store_dir = store_dir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> JetStreamServer:
        self.process = subprocess.Popen(
            [server_binary(), "-a", "127.0.0.1", "-p", str(self.port),
             "-js", "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: self.process.poll() is not None or answers(self.url, 0.2), timeout_s,
                   f"nats-server on port {self.port}")
        assert self.process.poll() is None, f"nats-server exited with {self.process.returncode}"
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def remove_store(self) -> None:
        shutil.rmtree(self.store_dir, ignore_errors=True)
