"""`rtsig demo` (what `make run` starts) as a new user runs it: no NATS anywhere, a fresh data
directory; signals appear, Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from rtsig.natsbin import answers, free_port
from tests.live_helpers import RTSIG, cmdline, session_members, shm_path, wait_until

SIGNAL_LINE = re.compile(r"\b(BUY|SELL)\s+[A-Z0-9]+USDT\s+[a-z_]+\s+conf \d")
NATS_STARTED = re.compile(r"started the bundled nats-server at nats://127\.0\.0\.1:(\d+)")
FIRST_SIGNAL_S = 60.0


def _reader(stream, lines: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace").rstrip("\n"))
    lines.put(None)


@pytest.mark.slow
@pytest.mark.parametrize("interrupt", ["ctrl-c", "sigint-to-demo"])
def test_demo_shows_signals_and_stops_cleanly(tmp_path, interrupt):
    if shm_path("demo").exists():
        pytest.skip("a demo is already running on this machine (/dev/shm/rtsig-demo exists)")
    port = free_port()
    assert not answers(f"nats://127.0.0.1:{port}")
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{port}",
           "RTSIG_DATA_DIR": str(tmp_path / "data")}
    for name in ("RTSIG_INSTANCE", "NATS_CONSUMER_TOPIC", "NATS_PUBLISHER_TOPIC",
                 "TRADING_SYMBOLS"):
        env.pop(name, None)
    stderr_path = tmp_path / "demo.stderr"
    with open(stderr_path, "wb") as stderr:
        demo = subprocess.Popen([RTSIG, "demo"], env=env, stdout=subprocess.PIPE, stderr=stderr,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(demo.stdout, lines), daemon=True).start()
    nats_pid = None
    try:
        # the first run after a source change compiles the kernels before the service is ready
        deadline = time.monotonic() + 120 + FIRST_SIGNAL_S
        first = None
        while first is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no signal line on stdout\n{stderr_path.read_text()[-3000:]}"
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, \
                f"demo exited with {demo.wait()}\n{stderr_path.read_text()[-3000:]}"
            if SIGNAL_LINE.search(line):
                first = line
        log = stderr_path.read_text()
        match = NATS_STARTED.search(log)
        assert match, f"the demo did not start its own nats-server\n{log[-2000:]}"
        nats_port = int(match.group(1))
        nats_pid = next((pid for pid in _all_pids() if "nats-server" in cmdline(pid)
                         and f"-p {nats_port}" in cmdline(pid)), None)
        assert nats_pid is not None, "the bundled nats-server process was not found"
        assert shm_path("demo").exists()

        stop_at = time.monotonic()
        if interrupt == "ctrl-c":  # the terminal sends SIGINT to the whole foreground group
            os.killpg(demo.pid, signal.SIGINT)
        else:
            demo.send_signal(signal.SIGINT)
        code = demo.wait(30)
        stop_s = time.monotonic() - stop_at
        print(f"\n[{interrupt}] first signal: {first!r}; exit {code} {stop_s:.2f} s after SIGINT")
        assert code == 0, stderr_path.read_text()[-3000:]
        wait_until(lambda: not session_members(demo.pid, include_zombies=True), 5,
                   f"the session to be empty: {session_members(demo.pid, include_zombies=True)}")
        assert not shm_path("demo").exists()
        assert not answers(f"nats://127.0.0.1:{nats_port}"), "the bundled nats-server still answers"
        wait_until(lambda: "nats-server" not in cmdline(nats_pid), 5,
                   "the bundled nats-server to exit")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
        for pid, _, _ in session_members(demo.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if nats_pid is not None and "nats-server" in cmdline(nats_pid):
            os.kill(nats_pid, signal.SIGKILL)


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]
