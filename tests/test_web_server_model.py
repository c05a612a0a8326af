"""Hostile and careless clients against the real Gunicorn of ``rtsig run`` (127.0.0.1 only).

Slowloris connections, a thousand idle connections, a 100 MB upload and oversized request lines
and heads must never make ``/healthz`` or ``/ready`` slow, and every answer the server gives by
itself is JSON. Probe times are printed (``pytest -s``) for docs/OPERATIONS.md; the assertions
only use generous liveness bounds, never the figures themselves.
"""

from __future__ import annotations

import socket
import statistics
import time

import orjson
import pytest

from tests.live_helpers import Service

PROBE_BOUND_S = 2.0
"""A liveness bound, far above the measured figures (~1 ms): a probe stuck behind a hostile
client would take seconds (the request deadline is 10 s)."""


def raw_request(port: int, data: bytes, timeout_s: float = 15.0) -> tuple[int, dict, bytes]:
    """Send ``data`` on a new connection; ``(status, headers, body)`` of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        return read_response(s)


def read_response(s: socket.socket) -> tuple[int, dict, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full head: {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def probe(port: int, path: str = "/healthz") -> tuple[int, float]:
    """``(status, seconds)`` of one probe on a fresh connection, as a load balancer sends it."""
    started = time.perf_counter()
    status, _, _ = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
    return status, time.perf_counter() - started


def probes(port: int, n: int, what: str) -> list[float]:
    times = []
    for k in range(n):
        status, seconds = probe(port, "/healthz" if k % 2 == 0 else "/ready")
        assert status in (200, 503), status  # /ready may be 503 (e.g. config store), never stuck
        times.append(seconds)
    times.sort()
    print(f"\n[figures] {what}: {n} probes, p50 {statistics.median(times) * 1e3:.2f} ms, "
          f"max {times[-1] * 1e3:.2f} ms")
    assert times[-1] < PROBE_BOUND_S, f"{what}: slowest probe {times[-1]:.2f} s"
    return times


def error_body(body: bytes) -> dict:
    data = orjson.loads(body)
    assert data["success"] is False and set(data["error"]) == {"code", "message", "details"}, data
    return data["error"]


@pytest.fixture
def web(nats_server, services) -> Service:
    return services(nats_server.url, web=True)


def test_probes_are_fast_on_an_idle_server(web: Service) -> None:
    probes(web.http_port, 20, "idle server")


def test_slowloris_connections_do_not_slow_the_probes_and_are_cut_at_the_deadline(web: Service) -> None:
    port = web.http_port
    slow = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    try:
        started = time.monotonic()
        times: list[float] = []
        for turn in range(6):  # a header line per connection every second, as slowloris does
            for k, s in enumerate(slow):
                s.sendall(f"X-Slow-{turn}: {k}\r\n".encode())
            times += probes(port, 4, f"30 slowloris connections, turn {turn}")
            time.sleep(max(0.0, started + turn + 1 - time.monotonic()))
        print(f"[figures] 30 slowloris connections, all turns: p50 {statistics.median(times) * 1e3:.2f} ms, "
              f"max {max(times) * 1e3:.2f} ms")
        # nothing completes the requests: each is answered 408 at its 10 s deadline, then closed
        status, _, body = read_response(slow[0])
        assert status == 408
        assert error_body(body)["code"] == "VALIDATION_ERROR"
        assert time.monotonic() - started < 14
    finally:
        for s in slow:
            s.close()


def test_thousands_of_idle_connections_do_not_slow_the_probes(web: Service) -> None:
    idle = []
    try:
        for _ in range(3000):
            idle.append(socket.create_connection(("127.0.0.1", web.http_port), timeout=15))
        probes(web.http_port, 40, "3000 idle connections")
    finally:
        for s in idle:
            s.close()


def test_a_100_mb_body_is_refused_from_its_length_without_slowing_the_probes(web: Service) -> None:
    port = web.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(b"POST /api/v1/strategies/orderbook_skew/config HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
        sent = 0
        chunk = b"x" * 65536
        s.settimeout(0.2)
        status = None
        while sent < 100_000_000:  # the upload goes on while the probes run
            try:
                sent += s.send(chunk)
            except (TimeoutError, BlockingIOError):
                break  # the server stopped reading: the answer is there
            except OSError:
                break
            if sent % (256 * 65536) == 0:
                probes(port, 2, "during a 100 MB upload")
        s.settimeout(15)
        status, _, body = read_response(s)
        assert status == 413
        assert "larger than 65536 bytes" in error_body(body)["message"]
        print(f"[figures] 100 MB upload refused; the client got {sent / 1e6:.1f} MB out before the close")
    probes(port, 10, "after a 100 MB upload")


def test_a_chunked_body_is_411_json(web: Service) -> None:
    status, headers, body = raw_request(
        web.http_port, b"POST /api/v1/strategies/orderbook_skew/config HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert status == 411 and headers["content-type"] == "application/json"
    error_body(body)


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Big-%d: %s\r\n" % (k, b"v" * 1000) for k in range(40))
     + b"\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % k for k in range(200)) + b"\r\n", 431),
    (b"NOT A REQUEST\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
], ids=["414-long-line", "431-large-head", "431-too-many-fields", "400-bad-line", "400-bad-length"])
def test_the_servers_own_errors_are_json(web: Service, request_bytes: bytes, status: int) -> None:
    got, headers, body = raw_request(web.http_port, request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    error_body(body)


def test_expect_100_continue_and_keep_alive_work(web: Service) -> None:
    """curl sends 'Expect: 100-continue' for bodies over 1 KiB and reuses connections."""
    body = orjson.dumps({"parameters": {"buy_threshold": 1.4}, "changed_by": "alice", "reason": "r" * 1500})
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=15) as s:
        s.sendall(b"POST /api/v1/strategies/orderbook_skew/config HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        interim = s.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        s.sendall(body)
        status, _, answer = read_response(s)
        assert status == 201, answer
        for _ in range(3):  # the same connection serves the next requests
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0] == 200
