"""The web processes live and die with their supervisor, and keep to their own instance.

A ``kill -9`` of the supervisor must not leave Gunicorn on the port (the next ``rtsig run`` on
the same port starts); two instances on one host stop independently (no shared Gunicorn
control socket); under ``LOG_FORMAT=json`` Gunicorn's own lines are JSON like rtsig's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.live_helpers import RTSIG, group_members, wait_until


def port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def listeners(port: int) -> set[int]:
    """Pids holding a listening TCP socket on ``port`` (from /proc: the processes "on the port")."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    pids.add(int(entry))
                    break
        except OSError:
            continue
    return pids


def test_kill_9_of_the_supervisor_frees_the_port_and_a_restart_on_it_starts(nats_server, services, tmp_path):
    first = services(nats_server.url, web=True)
    port = first.http_port
    web = listeners(port)
    assert len(web) >= 2, f"the Gunicorn master and its workers listen on {port}: {web}"
    assert web <= {pid for pid, _, _ in group_members(first.pid)}
    first.close_store()
    os.kill(first.pid, signal.SIGKILL)
    first.proc.wait(5)
    took = wait_until(lambda: not any(_alive(pid) for pid in web), 10, "the web processes to exit")
    wait_until(lambda: not port_answers(port), 5, f"port {port} to be free")
    print(f"\n[figures] web processes gone {took:.2f} s after kill -9 of the supervisor")
    # the next `rtsig run` of the same instance on the same port (it reclaims the stale segment)
    log = tmp_path / "restart.log"
    with open(log, "ab") as out:
        restart = subprocess.Popen([RTSIG, "run"], env={**os.environ, **first.env}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        wait_until(lambda: restart.poll() is not None or first.http("GET", "/healthz")[0] == 200, 120,
                   "the restarted service to answer on the same port")
        assert restart.poll() is None, log.read_text()[-3000:]
        assert "address already in use" not in log.read_text().lower()
    finally:
        restart.send_signal(signal.SIGTERM)
        try:
            restart.wait(15)
        finally:
            try:
                os.killpg(restart.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            Path(f"/dev/shm/rtsig-{first.instance}").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] != b"Z"


def test_two_instances_stop_independently_and_share_no_control_socket(nats_server, services):
    started = time.time()
    one = services(nats_server.url, web=True)
    two = services(nats_server.url, web=True)
    code, _ = one.terminate()
    assert code == 0
    for _ in range(5):
        assert two.http("GET", "/healthz")[0] == 200
    assert two.http("GET", "/ready")[0] in (200, 503)
    for ctl in (Path.home() / ".gunicorn" / "gunicorn.ctl",
                Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent")) / "gunicorn.ctl"):
        assert not ctl.exists() or ctl.stat().st_mtime < started, f"{ctl} was created"


def test_gunicorn_logs_in_the_services_json_format(nats_server, services):
    service = services(nats_server.url, web=True, env={"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"})
    assert service.http("GET", "/healthz")[0] == 200
    service.terminate()
    lines = [line for line in service.log_path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        entries.append(json.loads(line))  # every line, Gunicorn's included, is one JSON object
    gunicorn = [e for e in entries if e["logger"].startswith("gunicorn")]
    assert gunicorn, "no Gunicorn line in the log"
    assert {e["process"] for e in gunicorn} == {"web"}
    assert any("Booting worker" in e["msg"] or "Listening at" in e["msg"] for e in gunicorn)
