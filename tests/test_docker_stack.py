"""The image and the compose stack, for real (docs/CONTRACT.md §7).

Builds the base images (pulled, or stand-ins from Debian packages: deploy/local-images.sh), the
service image (`make image`), starts the compose stack with the compose the host has (Debian's
docker-compose 1.29 here) in a scratch copy of the deployment files (own project name, free host
ports, random secrets), and checks what an operator would: every service healthy, /ready 200
with MongoDB as the config store, a replayed feed gives signals on the output subject, a restart
is ready again within seconds, a start without the image's Numba cache compiles and becomes
ready, and `down` leaves no container, network or volume of the project.

It installs and starts Docker when needed (deploy/docker-host.sh) and stops the daemon again if
it started it. Runs only with RTSIG_DOCKER_TEST=1, which `make test` and `make test-docker` set.
Figures (image size, build and start times) are printed and written to var/docker-figures.json.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rtsig.registry import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "rtsig:0.1.0"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
FIGURES: dict[str, object] = {}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(os.environ.get("RTSIG_DOCKER_TEST") != "1",
                       reason="builds images and runs containers; `make test` and "
                              "`make test-docker` run it (RTSIG_DOCKER_TEST=1)"),
]


def run(cmd: list[str], *, cwd: Path = ROOT, timeout: float = 600, check: bool = True,
        env: dict | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; on failure the assertion shows its last output lines."""
    full_env = {**os.environ, "DOCKER": DOCKER, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, timeout=timeout, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if log is not None:
        log.write_text(proc.stdout)
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_ready(url: str, since: float, timeout: float = 240) -> float:
    """Seconds from ``since`` until ``url`` answers 200."""
    while time.monotonic() - since < timeout:
        if http_status(url) == 200:
            return round(time.monotonic() - since, 1)
        time.sleep(0.2)
    raise AssertionError(f"{url} not 200 within {timeout} s")


class Stack:
    """docker-compose.yml in a scratch directory, under its own project name and ports."""

    def __init__(self, where: Path) -> None:
        self.dir = where
        self.project = f"rtsig-test-{secrets.token_hex(3)}"
        self.ports = {name: free_port() for name in
                      ("NATS_HOST_PORT", "NATS_MONITOR_HOST_PORT", "RTSIG_HOST_PORT")}
        (where / "deploy").mkdir(parents=True)
        shutil.copy2(ROOT / "docker-compose.yml", where)
        for item in (ROOT / "deploy").iterdir():
            if item.name in ("rtsig.env", "k8s"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, where / "deploy" / item.name)
        (where / "docs").mkdir()
        shutil.copy2(ROOT / "docs" / "grafana-dashboard.json", where / "docs")
        lines = [f"COMPOSE_PROJECT_NAME={self.project}",
                 *(f"{k}={secrets.token_hex(12)}" for k in
                   ("MONGO_PASSWORD", "MYSQL_ROOT_PASSWORD", "MYSQL_PASSWORD", "GRAFANA_ADMIN_PASSWORD")),
                 *(f"{k}={v}" for k, v in self.ports.items())]
        (where / ".env").write_text("\n".join(lines) + "\n")
        self.compose = ("docker-compose" if shutil.which("docker-compose")
                        else f"{DOCKER} compose")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['RTSIG_HOST_PORT']}"

    def compose_cmd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run([*self.compose.split(), "-p", self.project, *args], cwd=self.dir, **kw)

    def script(self, action: str, **kw) -> subprocess.CompletedProcess:
        return run(["sh", "deploy/compose.sh", action], cwd=self.dir, **kw)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        out = {}
        for kind, cmd in (("containers", ["ps", "-a"]), ("networks", ["network", "ls"]),
                          ("volumes", ["volume", "ls"])):
            listed = run([DOCKER, *cmd, "-q", "--filter", label], check=False).stdout.split()
            out[kind] = listed
        return out

    def down(self) -> None:
        self.script("down", env={"COMPOSE_DOWN_FLAGS": "-v"}, check=False, timeout=180)


@pytest.fixture(scope="module")
def docker_host():
    """A Docker engine (installed and started if need be; stopped afterwards if started here)."""
    pidfile = ROOT / "var" / "dockerd.pid"
    had_pidfile = pidfile.exists()
    run(["sh", "deploy/docker-host.sh", "ensure"], timeout=900)
    started_here = pidfile.exists() and not had_pidfile
    yield
    if started_here:
        run(["sh", "deploy/docker-host.sh", "stop"], check=False, timeout=120)


@pytest.fixture(scope="module")
def image(docker_host, tmp_path_factory):
    """`make image`: base images (pulled or stand-ins), then the service image."""
    logs = tmp_path_factory.mktemp("image")
    t0 = time.monotonic()
    run(["make", "--no-print-directory", "image"], timeout=2400, log=logs / "make-image.log")
    FIGURES["make_image_s"] = round(time.monotonic() - t0, 1)
    size = int(run([DOCKER, "image", "inspect", "-f", "{{.Size}}", IMAGE]).stdout.strip())
    FIGURES["image_mb"] = round(size / 1e6)
    base = run([DOCKER, "image", "inspect", "-f", "{{.Size}}", "python:3.11-slim-bookworm"],
               check=False).stdout.strip()
    if base.isdigit():
        FIGURES["base_image_mb"] = round(int(base) / 1e6)
    return IMAGE


@pytest.fixture(scope="module")
def stack(image, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("compose") / "rtsig")
    FIGURES["compose"] = run([*s.compose.split(), "version", "--short"], check=False).stdout.strip()
    t0 = time.monotonic()
    try:
        s.script("up", timeout=400)
        FIGURES["stack_up_to_ready_s"] = round(time.monotonic() - t0, 1)
        yield s
    finally:
        s.down()
        FIGURES["leftovers_after_down"] = s.leftovers()
        out = ROOT / "var" / "docker-figures.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(FIGURES, indent=1) + "\n")
        print("\ndocker figures:", json.dumps(FIGURES), file=sys.stderr)


def test_runtime_stage_has_no_build_tools_or_tests(image):
    script = ("id -u; for t in gcc cc make pip pip3; do command -v $t; done; "
              "find /opt/venv -type d -name tests | head -n 3; find $NUMBA_CACHE_DIR -name '*.nbi' | head -n 1")
    out = run([DOCKER, "run", "--rm", "--entrypoint", "sh", image, "-c", script]).stdout.split()
    assert out[0] == "10001", out
    assert len(out) == 2 and out[1].endswith((".nbi", ".nbc")), \
        f"build tools or test suites in the runtime image, or no Numba cache: {out}"


def test_stack_is_healthy_and_ready(stack):
    body = json.loads(urllib.request.urlopen(stack.url + "/ready", timeout=5).read())
    assert body["status"] == "ready", body
    assert body["checks"]["config_store"]["detail"].startswith("mongodb"), body
    ps = stack.compose_cmd("ps").stdout
    for service in ("nats", "mongodb", "mysql"):
        line = next(line for line in ps.splitlines() if f"_{service}_" in line or f"-{service}-" in line)
        assert "healthy" in line, ps


def test_replayed_feed_gives_signals(stack):
    stack.compose_cmd("exec", "-T", "rtsig", "python", "-m", "rtsig.synthetic",
                      "/var/lib/rtsig/sample.jsonl")
    env = {**os.environ, "NATS_URL": f"nats://127.0.0.1:{stack.ports['NATS_HOST_PORT']}"}
    tail = subprocess.Popen([str(ROOT / ".venv" / "bin" / "rtsig"), "tail", "--json", "--count", "3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in tail.stderr:  # until tail says it listens (after a flush), or exits
            if "listening on" in line:
                break
        else:
            raise AssertionError(f"rtsig tail exited with {tail.wait()} before it listened")
        replay = stack.compose_cmd("exec", "-T", "rtsig", "rtsig", "replay",
                                   "/var/lib/rtsig/sample.jsonl", "--rate", "3000", timeout=120)
        out, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, (err, replay.stdout[-2000:])
    signals = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(signals) == 3, out
    for sig in signals:
        assert sig["strategy_id"] in STRATEGIES, sig
        assert sig["symbol"] in {"BTCUSDT", "ETHUSDT", "BNBUSDT"}, sig
        assert sig["action"] in {"buy", "sell"}, sig
    published = [line for line in urllib.request.urlopen(stack.url + "/metrics", timeout=5)
                 .read().decode().splitlines()
                 if line.startswith("realtime_strategies_signals_published_total")]
    assert published and float(published[0].split()[-1]) >= 3, published


def test_start_to_ready(stack):
    """A new container of the image (cache from the build), then a restart of the same one."""
    stack.compose_cmd("stop", "rtsig", timeout=120)
    t0 = time.monotonic()
    stack.compose_cmd("up", "-d", "--no-build", "--no-deps", "--force-recreate", "rtsig")
    FIGURES["new_container_to_ready_s"] = wait_ready(stack.url + "/ready", t0)
    stack.compose_cmd("stop", "rtsig", timeout=120)
    t0 = time.monotonic()
    stack.compose_cmd("start", "rtsig")
    FIGURES["restart_to_ready_s"] = wait_ready(stack.url + "/ready", t0)
    assert FIGURES["restart_to_ready_s"] < 60


def test_start_without_the_numba_cache(stack):
    """The cache does not match the CPU (another host): the kernels compile, then ready."""
    name = f"{stack.project}-nocache"
    port = free_port()
    try:
        t0 = time.monotonic()
        run([DOCKER, "run", "-d", "--name", name, "--network", f"{stack.project}_default",
             "--shm-size", "512m", "-p", f"127.0.0.1:{port}:8080",
             "-e", "NATS_URL=nats://nats:4222", "-e", "NATS_CONSUMER_GROUP=rtsig-nocache-test",
             "-e", f"RTSIG_API_TOKEN={secrets.token_hex(8)}", "-e", "RTSIG_WORKERS=1",
             "-e", "NUMBA_CACHE_DIR=/tmp/numba-empty", IMAGE])
        FIGURES["no_cache_to_ready_s"] = wait_ready(f"http://127.0.0.1:{port}/ready", t0, 300)
    finally:
        run([DOCKER, "rm", "-f", "-v", name], check=False)


def test_down_leaves_nothing(stack):
    stack.down()
    left = stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left
