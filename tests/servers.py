"""Real database servers for the config-store tests, each private to the test run.

* :class:`MariaDbServer` — ``mariadbd`` from Debian's ``mariadb-server`` package, with its own
  data directory and a free loopback port (never the machine's own 3306 server).
* :class:`MongoWireServer` — ``nx-27017`` (PyPI), a MongoDB wire-protocol server over SQLite,
  on a free port; its data file survives :meth:`stop` / :meth:`start`, like a real outage.

``MYSQL_URI`` / ``MONGODB_URI`` in the environment name external servers instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout_s: float = 30.0) -> None:
    """Until something accepts connections on ``port`` (or the server process died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout_s} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class MariaDbServer:
    """A throw-away MariaDB server: ``mariadb-install-db`` into ``root``, then ``mariadbd``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def missing() -> str | None:
        """Why no server can be started here (None when it can)."""
        for tool in ("mariadbd", "mariadb-install-db"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                return f"{tool} not found (Debian package mariadb-server; `make system-deps`)"
        return None

    @property
    def uri_base(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}"

    def start(self) -> MariaDbServer:
        data = self.root / "data"
        log = self.root / "mariadb.log"
        if not data.exists():
            data.mkdir(parents=True)
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            "--user=root" if os.geteuid() == 0 else f"--user={os.getlogin()}"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        args = [mariadbd, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}",
                f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                "--innodb-flush-log-at-trx-commit=2", f"--log-error={log}"]
        if os.geteuid() == 0:
            args.append("--user=root")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port, self.proc, "mariadbd", log)
        return self

    def create_database(self, name: str) -> str:
        """A fresh database; returns its ``MYSQL_URI``."""
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", passwd="")
        try:
            conn.cursor().execute(f"CREATE DATABASE `{name}`")
        finally:
            conn.close()
        return f"{self.uri_base}/{name}"

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class MongoWireServer:
    """``nx-27017`` on a free port, one SQLite file per database under ``root`` (isolated)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> MongoWireServer:
        exe = Path(sys.executable).with_name("nx-27017")
        log = self.root / "nx-27017.log"
        self.proc = subprocess.Popen(
            [str(exe), "--data-dir", str(self.root / "mongo-data"), "--host", "127.0.0.1",
             "--port", str(self.port), "--log-file", str(log),
             "--pid-file", str(self.root / "nx.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, self.proc, "nx-27017", log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
