"""Safe by default: where the operator API listens and who may change the configuration.

``HTTP_HOST`` defaults to loopback; listening anywhere else without ``RTSIG_API_TOKEN`` stops
``rtsig run`` with one line naming HTTP_HOST; the start-up log says which mode is in force. The
live tests start the real service (Gunicorn + Falcon) and reach it from this host's own
non-loopback address, the way another host would.
"""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request

import orjson
import pytest

from rtsig.errors import SettingsError
from rtsig.settings import Settings, is_loopback_host
from rtsig.supervisor import api_mode, check_api_exposure
from tests.live_helpers import RTSIG
from web.server import bind_address


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("10.1.2.3", False), ("api.example.com", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_the_default_host_is_loopback() -> None:
    settings = Settings.from_env({})
    assert settings.http_host == "127.0.0.1"
    assert bind_address(settings) == "127.0.0.1:8080"
    check_api_exposure(settings)  # no token needed on loopback


def test_ipv6_hosts_are_bracketed_in_the_bind_address() -> None:
    assert bind_address(Settings.from_env({"HTTP_HOST": "[::1]", "HTTP_PORT": "9000"})) == "[::1]:9000"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_a_non_loopback_host_without_a_token_is_refused(host: str) -> None:
    with pytest.raises(SettingsError) as info:
        check_api_exposure(Settings.from_env({"HTTP_HOST": host}))
    text = str(info.value)
    assert "HTTP_HOST" in text and "RTSIG_API_TOKEN" in text and "\n" not in text


def test_a_non_loopback_host_with_a_token_is_allowed() -> None:
    check_api_exposure(Settings.from_env({"HTTP_HOST": "0.0.0.0", "RTSIG_API_TOKEN": "s3cret"}))


def test_the_start_up_line_says_which_mode_is_in_force() -> None:
    loopback = api_mode(Settings.from_env({"HTTP_PORT": "8081"}))
    assert "http://127.0.0.1:8081" in loopback and "loopback only" in loopback
    assert "no token" in loopback
    exposed = api_mode(Settings.from_env({"HTTP_HOST": "0.0.0.0", "RTSIG_API_TOKEN": "t"}))
    assert "every interface" in exposed and "Bearer" in exposed
    assert "t)" not in exposed and "'t'" not in exposed  # the token itself is never logged


def test_rtsig_run_refuses_0000_without_a_token_in_one_line(tmp_path) -> None:
    """Refused before anything starts (no shared memory, no process), with one line."""
    env = {"HTTP_HOST": "0.0.0.0", "RTSIG_INSTANCE": "exposure-test", "RTSIG_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([RTSIG, "run"], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    # (start-up warnings are JSON log lines; the refusal is the one plain line)
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, proc.stderr.decode()
    assert "HTTP_HOST" in lines[0] and "0.0.0.0" in lines[0] and "RTSIG_API_TOKEN" in lines[0]


# ----------------------------------------------------------------------------- live
def outside_address() -> str | None:
    """This host's address on its default route (what another host would connect to), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel picks a route
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if is_loopback_host(address) or address == "0.0.0.0" else address


def request(host: str, port: int, method: str = "GET", path: str = "/healthz", body: dict | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else orjson.dumps(body)
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


CHANGE = {"parameters": {"buy_threshold": 1.4}, "changed_by": "mallory"}


def test_by_default_the_api_answers_on_loopback_only(nats_server, services) -> None:
    outside = outside_address()
    if outside is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    service = services(nats_server.url, web=True)
    assert request("127.0.0.1", service.http_port)[0] == 200
    with pytest.raises(urllib.error.URLError):
        request(outside, service.http_port)
    assert "loopback only" in service.log_path.read_text()


def test_on_every_interface_changes_from_another_address_need_the_token(nats_server, services) -> None:
    outside = outside_address()
    if outside is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    service = services(nats_server.url, web=True, env={"HTTP_HOST": "0.0.0.0", "RTSIG_API_TOKEN": "s3cret"})
    path = "/api/v1/strategies/orderbook_skew/config"
    assert request(outside, service.http_port)[0] == 200
    status, body = request(outside, service.http_port, "POST", path, CHANGE)
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    status, _ = request(outside, service.http_port, "POST", path, CHANGE,
                        headers={"Authorization": "Bearer s3cre7"})
    assert status == 403
    status, _ = request(outside, service.http_port, "POST", path, CHANGE,
                        headers={"Authorization": "Bearer s3cret"})
    assert status == 201
    log = service.log_path.read_text()
    assert "every interface" in log and "s3cret" not in log
    assert f"from {outside}" in log  # the change names the address it came from
