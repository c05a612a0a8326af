"""The Gunicorn worker of the operator API: threads that never wait for a client.

Gunicorn's ``gthread`` worker hands a connection to a thread as soon as it is accepted, and the
thread then reads the request with blocking calls: a client that sends one header line every
few seconds (slowloris) holds a thread for as long as it likes, and a few of them hold them all.
Here the worker's main loop reads every request *whole* first — head and body, non-blocking,
under one deadline — and only a complete request reaches a thread, which therefore never waits
on the network to read; its writes have a timeout. So:

* a slow, idle or silent connection costs a file descriptor and a few bytes, never a thread,
  and is closed (``408``) when its request is not complete ``REQUEST_READ_TIMEOUT_S`` after it
  started;
* a body larger than the API accepts is refused (``413``) from its ``Content-Length``, before a
  byte of it is read; a request head larger than ``MAX_HEAD_BYTES`` is ``431``, a request line
  longer than Gunicorn's ``limit_request_line`` is ``414``, a chunked body is ``411``;
* the probes (``/healthz``, ``/ready``), the configuration routes (which call the config store)
  and everything else run in three separate thread pools, so a hung config store or a burst of
  ``/metrics`` scrapes can never queue a probe behind them;
* every error the server itself answers is JSON, in the API's envelope.

PERF: with 1,000 idle connections, 30 slowloris connections and a 100 MB upload in flight,
``/healthz`` answers in ~1 ms (docs/OPERATIONS.md, "The operator API").
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent import futures
from functools import partial

import orjson
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_READ_TIMEOUT_S = 10.0
"""A request (head and body) must be complete this long after its first byte was awaited."""
MAX_HEAD_BYTES = 32 * 1024
"""Request line and headers together."""
MAX_BODY_BYTES = 64 * 1024
"""The largest request body the API accepts (the largest real one is a few hundred bytes)."""
SEND_TIMEOUT_S = 10.0
"""A thread writing a response to a client that does not read gives up after this long."""
CLOSE_LINGER_S = 2.0
CLOSE_DRAIN_BYTES = 1 << 20
"""After a final answer, unread input is drained (so the answer is not cut off by a reset) for
this long and up to this many bytes; then the connection is closed whatever the client does."""
PROBE_PATHS = frozenset({"/healthz", "/ready"})
STORE_PREFIX = "/api/v1/strategies"
PROBE_THREADS = 2
STORE_THREADS = 4
STORE_BACKLOG = 64
"""Configuration requests queued or running at once; beyond it they are answered 503 at once."""

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 411: "Length Required",
            413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}
_ERROR_CODES = {403: "UNAUTHORIZED", 500: "INTERNAL_ERROR", 501: "INTERNAL_ERROR", 503: "UNAVAILABLE"}


def error_response(status: int, message: str, close: bool = True) -> bytes:
    """A complete HTTP/1.1 response carrying the API's error envelope."""
    body = orjson.dumps({"success": False, "data": None,
                         "error": {"code": _ERROR_CODES.get(status, "VALIDATION_ERROR"),
                                   "message": message, "details": {}},
                         "metadata": None})
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + ("Retry-After: 5\r\n" if status == 503 else "") + "\r\n")
    return head.encode("latin-1") + body


# ----------------------------------------------------------------------------- request framing
class Incomplete(Exception):
    """More bytes are needed."""


class Refused(Exception):
    """The request is answered with ``status`` without reaching the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def frame(buf: bytearray, limit_request_line: int) -> tuple[int, str, bool]:
    """``(length of the complete request, its path, whether it expects 100-continue)``.

    Raises :class:`Incomplete` while more is needed, :class:`Refused` for what is answered
    without the app. Malformed heads are left to Gunicorn's parser (it answers 400).
    """
    line_end = buf.find(b"\n")
    if (line_end < 0 and len(buf) > limit_request_line) or line_end > limit_request_line + 1:
        raise Refused(414, f"request line longer than {limit_request_line} bytes")
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise Refused(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
        raise Incomplete
    head_end = end + 4
    if head_end > MAX_HEAD_BYTES:
        raise Refused(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    target = parts[1].decode("latin-1") if len(parts) == 3 else ""
    path = target.split("?", 1)[0]
    length = 0
    expects = False
    for raw in lines[1:]:
        name, _, value = raw.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            raise Refused(411, "a chunked request body is not accepted; send Content-Length")
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return head_end, path, False  # Gunicorn's parser answers 400
            if length > MAX_BODY_BYTES:
                raise Refused(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        elif name == b"expect" and value.strip().lower() == b"100-continue":
            expects = True
    if len(buf) < head_end + length:
        if expects:
            return -head_end - length, path, True
        raise Incomplete
    return head_end + length, path, expects


def without_expect(buf: bytearray) -> bytearray:
    """The request with its ``Expect: 100-continue`` line removed (already answered)."""
    end = buf.find(b"\r\n\r\n")
    lines = bytes(buf[:end]).split(b"\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() != b"expect"]
    return bytearray(b"\r\n".join(kept)) + buf[end:]


# ----------------------------------------------------------------------------- the worker
class ApiConn(TConn):
    def __init__(self, cfg, sock, client, server) -> None:
        super().__init__(cfg, sock, client, server)
        self.buf = bytearray()
        self.deadline = 0.0
        self.continued = False
        self.pool = "general"


class ApiWorker(ThreadWorker):
    """``gthread`` with whole requests read by the main loop and three thread pools."""

    def init_process(self) -> None:
        self.reading: dict[ApiConn, None] = {}  # insertion order = deadline order
        self.closing: dict[socket.socket, list] = {}  # socket → [deadline, bytes drained]
        self.pools: dict[str, futures.ThreadPoolExecutor] = {}
        self.store_busy = 0
        super().init_process()

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        self.pools = {"general": futures.ThreadPoolExecutor(self.cfg.threads, "api"),
                      "probe": futures.ThreadPoolExecutor(PROBE_THREADS, "probe"),
                      "store": futures.ThreadPoolExecutor(STORE_THREADS, "store")}
        return self.pools["general"]

    def run(self) -> None:
        try:
            super().run()
        finally:
            for pool in self.pools.values():
                pool.shutdown(wait=False)
            for conn in list(self.reading):
                conn.close()
            for sock in list(self.closing):
                sock.close()

    # ----- reading requests in the main loop
    def accept(self, listener) -> None:
        while self.nr_conns < self.worker_connections:
            try:
                client, address = listener.accept()
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            client.setblocking(False)
            self._read_request(ApiConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: ApiConn, client) -> None:
        """A kept-alive connection has its next request coming."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_request(conn)

    def _read_request(self, conn: ApiConn, buffered: bytes = b"") -> None:
        conn.buf = bytearray(buffered)
        conn.continued = False
        conn.deadline = time.monotonic() + REQUEST_READ_TIMEOUT_S
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if buffered:
            self._examine(conn)

    def _on_readable(self, conn: ApiConn, client) -> None:
        try:
            while len(conn.buf) <= MAX_HEAD_BYTES + MAX_BODY_BYTES:
                chunk = conn.sock.recv(65536)
                if not chunk:  # the client went away
                    self._stop_reading(conn)
                    self._drop(conn)
                    return
                conn.buf += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._stop_reading(conn)
            self._drop(conn)
            return
        self._examine(conn)

    def _examine(self, conn: ApiConn) -> None:
        try:
            length, path, expects = frame(conn.buf, self.cfg.limit_request_line)
        except Incomplete:
            return
        except Refused as refusal:
            self._stop_reading(conn)
            self._refuse(conn, refusal.status, refusal.message)
            return
        if length < 0:  # the client waits for "100 Continue" before it sends the body
            if not conn.continued:
                conn.continued = True
                self._send_now(conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self._stop_reading(conn)
        if expects:
            conn.buf = without_expect(conn.buf)
        conn.pool = ("probe" if path in PROBE_PATHS else
                     "store" if path.startswith(STORE_PREFIX) else "general")
        if conn.pool == "store":
            if self.store_busy >= STORE_BACKLOG:
                self._refuse(conn, 503, f"{self.store_busy} configuration requests are in progress; retry")
                return
            self.store_busy += 1
        self.enqueue_req(conn)

    def _stop_reading(self, conn: ApiConn) -> None:
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def murder_pending(self) -> None:
        """Besides Gunicorn's own: requests not complete by their deadline get a 408, and
        connections lingering after a final answer are closed. A stopping worker drops the
        requests still arriving."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading:
            conn = next(iter(self.reading))
            if conn.deadline > now and self.alive:
                break
            self._stop_reading(conn)
            if conn.buf:
                self._refuse(conn, 408, f"request not complete within {REQUEST_READ_TIMEOUT_S:g} s")
            else:
                self._drop(conn)
        for sock, (deadline, _) in list(self.closing.items()):
            if deadline <= now or not self.alive:
                self._close_now(sock)

    # ----- answering without the app, closing without blocking the loop
    @staticmethod
    def _send_now(sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)  # small, into an empty send buffer: never blocks, rarely partial
        except OSError:
            pass

    def _refuse(self, conn: ApiConn, status: int, message: str) -> None:
        self.log.info("refused a request from %s: %d %s", conn.client[0] if conn.client else "?",
                      status, message)
        self._send_now(conn.sock, error_response(status, message))
        self._linger(conn)

    def _linger(self, conn: ApiConn) -> None:
        """Half-close, then drain what the client still sends until it closes or the linger ends."""
        self.nr_conns -= 1
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self.closing[sock] = [time.monotonic() + CLOSE_LINGER_S, 0]
        self.poller.register(sock, selectors.EVENT_READ, self._on_closing_readable)

    def _on_closing_readable(self, sock: socket.socket) -> None:
        try:
            drained = len(sock.recv(65536))
            state = self.closing[sock]
            state[1] += drained
            if drained and state[1] < CLOSE_DRAIN_BYTES:
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close_now(sock)

    def _close_now(self, sock: socket.socket) -> None:
        self.closing.pop(sock, None)
        try:
            self.poller.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        sock.close()

    def _drop(self, conn: ApiConn) -> None:
        self.nr_conns -= 1
        conn.close()

    # ----- the threads
    def enqueue_req(self, conn: ApiConn) -> None:
        fs = self.pools[conn.pool].submit(self.handle, conn)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def handle(self, conn: ApiConn):
        """Serve the complete request buffered in ``conn`` (runs in a pool thread)."""
        req = None
        try:
            conn.init()
            conn.sock.settimeout(SEND_TIMEOUT_S)
            conn.parser.unreader.unread(bytes(conn.buf))
            conn.buf = bytearray()
            req = next(conn.parser)
            if not req:
                return False
            return self._keepalive_after(conn, self.handle_request(req, conn))
        except (http_errors.NoMoreData, StopIteration):
            pass
        except (TimeoutError, ConnectionError):
            self.log.debug("client %s stopped reading", conn.client)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("socket error serving a request")
        except Exception as exc:  # noqa: BLE001 - answered as Gunicorn would, but in JSON
            self.handle_error(req, conn.sock, conn.client, exc)
        return False

    def finish_request(self, conn: ApiConn, fs) -> None:
        """Back on the main loop: keep the connection for its next request, or close it."""
        if conn.pool == "store":
            self.store_busy -= 1
        try:
            keep = (not fs.cancelled()) and fs.result()
        except Exception:  # noqa: BLE001
            keep = False
        if keep and self.alive:
            leftover = conn.parser.unreader.take_buffered()
            conn.sock.setblocking(False)
            if leftover:  # a pipelined request already read
                self._read_request(conn, leftover)
                return
            conn.set_timeout()
            self.keepalived_conns.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_client_socket_readable, conn))
            return
        try:
            conn.sock.setblocking(False)
        except OSError:
            pass
        self._linger(conn)

    def handle_error(self, req, client, addr, exc) -> None:
        """Gunicorn's own answers to a request it cannot parse, in JSON."""
        status = 400
        if isinstance(exc, http_errors.LimitRequestLine):
            status = 414
        elif isinstance(exc, http_errors.LimitRequestHeaders):
            status = 431
        elif isinstance(exc, http_errors.UnsupportedTransferCoding):
            status = 501
        elif isinstance(exc, http_errors.ExpectationFailed):
            status = 417
        elif isinstance(exc, http_errors.ForbiddenProxyRequest):
            status = 403
        elif not isinstance(exc, http_errors.ParseException):
            self.log.exception("error serving %s", getattr(req, "uri", "a request"))
            status = 500
        if status != 500:
            self.log.info("invalid request from %s: %s", (addr or ("?",))[0], exc)
        message = "internal error; see the service log" if status == 500 else str(exc) or _REASONS[status]
        try:
            client.settimeout(1.0)
            client.sendall(error_response(status, message))
        except OSError:
            pass


