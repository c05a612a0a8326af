"""The ingest's NATS subscriber: one queue subscription framed in Numba, kept alive at any cost.

It speaks what a queue subscriber needs and nothing more: ``INFO`` → (TLS upgrade) →
``CONNECT`` with any login of :class:`~rtsig.natsauth.NatsAuth` → ``SUB`` → ``PING``/``PONG``
both ways, ``-ERR``. Frames land in a :class:`~rtsig.natsframe.Backlog` that outlives
connections: a reconnect keeps every complete frame received, and only a frame the lost
connection cut off is dropped (counted in :attr:`FastSubscriber.truncated`).

Reconnects are quick and cluster-aware: the first retry goes out within 0.25 s and later ones
back off with jitter to at most ~0.3 s, so the ingest receives again at most ~0.3 s after a
server accepts; servers a cluster advertises in ``INFO.connect_urls`` join the pool, so a dead
seed server is no dead end. A server in lame-duck mode (``"ldm": true``) is left before it closes:
the subscription is made on another server first, then the old one is unsubscribed and drained
(every message it sent before the ``UNSUB`` arrives before the ``PONG`` that answers it) and
closed. A login the server rejects, or a TLS handshake that fails, backs off up to 10 s and logs
one clear line a minute.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from rtsig.logs import RateLimiter
from rtsig.natsauth import NatsAuth, Server
from rtsig.natsframe import CTL_ERR, CTL_INFO, CTL_NONE, CTL_PING, CTL_PONG, CTL_STATUS, CTL_UNKNOWN, Backlog

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
"""TCP connect, INFO and TLS handshake, each (a loopback or LAN server answers in ms)."""
PING_INTERVAL_S = 5.0
MAX_OUTSTANDING_PINGS = 2
FIRST_RETRY_S, MAX_RETRY_S = 0.02, 0.25
"""Back-off after a lost connection or an unreachable server (x0.8-1.2 jitter)."""
FIRST_AUTH_RETRY_S, MAX_AUTH_RETRY_S = 0.5, 10.0
"""Back-off after a rejected login or a failed TLS handshake: retrying at once cannot help."""
DRAIN_TIMEOUT_S = 5.0
LAME_DUCK_AVOID_S = 30.0
"""A server that announced lame-duck mode is tried last for this long."""
_AUTH_WORDS = ("authoriz", "authent", "tls", "secure connection", "user ", "expired", "revoked")


@dataclass(frozen=True)
class PullConsumer:
    """A JetStream pull consumer to read instead of a plain subscription.

    Requests of ``batch`` messages go to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, two
    at a time so that the stream flows while the ingest decodes; a request the server ends early
    (``408``: expired, ``404``/``409``) is replaced. No request goes out while the backlog holds
    ``max_backlog`` messages or more: the stream, not the ingest's memory, keeps the rest.
    """

    stream: str
    consumer: str
    batch: int = 1024
    expires_s: float = 1.0
    max_backlog: int = 65536

    @property
    def next_subject(self) -> bytes:
        return f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}".encode()


class LoginRejected(ConnectionError):
    """The server refused the login or the TLS handshake failed: back off longer."""


class _Link(asyncio.Protocol):
    """One TCP (or TLS) connection to one server; until activated it only reads the INFO line."""

    def __init__(self, sub: FastSubscriber, server: Server) -> None:
        self.sub = sub
        self.server = server
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.info_line: asyncio.Future = loop.create_future()
        self.drained: asyncio.Future = loop.create_future()
        self.handshake = bytearray()
        self.active = False
        self.held = False
        self.retired = False
        self.pings_sent = 0
        self.pongs = 0
        self.drain_at = 0
        self.lost = False
        self.rejected: str | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.active:
            self.sub._received(self, data)
            return
        self.handshake += data
        if not self.info_line.done():
            end = self.handshake.find(b"\r\n")
            if end >= 0:
                self.info_line.set_result(bytes(self.handshake[:end]))
                del self.handshake[:end + 2]

    def connection_lost(self, exc) -> None:
        self.lost = True
        if not self.info_line.done():
            self.info_line.set_exception(ConnectionError(f"closed by {self.server.address}"))
        if not self.drained.done():
            self.drained.set_result(None)
        self.sub._link_lost(self, exc)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def ping(self) -> None:
        self.pings_sent += 1
        self.write(b"PING\r\n")


class FastSubscriber:
    """One queue subscription; ``on_data()`` is called after each read that framed something.

    The owner decodes frames through :meth:`spans` (views into :attr:`backlog`'s buffer) and
    calls :meth:`consumed` with how many it has finished with; the rest stay, across reconnects.
    """

    def __init__(self, auth: NatsAuth | str, subject: str, queue: str | None, name: str,
                 on_data: Callable[[], None], on_state: Callable[[bool], None],
                 batch: int = 4096, limit_bytes: int = 1 << 30,
                 pull: PullConsumer | None = None, also: tuple[str, ...] = ()) -> None:
        self.auth = auth if isinstance(auth, NatsAuth) else NatsAuth.build(auth)
        self.pool: list[Server] = list(self.auth.servers)
        self.pull = pull
        self.subject = f"_INBOX.rtsig.{os.urandom(8).hex()}" if pull else subject
        self.queue = None if pull else queue
        self.also = () if pull else tuple(also)
        """More subjects on the same connection (sids 2, 3, …): the futures input, the feeds."""
        self.pull_stopped = False
        """Pull mode: no more requests (shutdown, or the rebuild reached its end)."""
        self._requests: collections.deque[int] = collections.deque()
        """Pull mode: messages still expected from each open request, oldest first."""
        self.name = name
        self.on_data = on_data
        self.on_state = on_state
        self.backlog = Backlog(spans=batch, limit_bytes=limit_bytes)
        self.link: _Link | None = None
        self.connected = asyncio.Event()
        self.closing = False
        self.reconnects = 0
        self.received = 0
        """Messages read off the connection whole (kept or dropped over the limit)."""
        self.truncated = 0
        """Messages a lost connection cut off mid-frame (never received whole)."""
        self.dropped_over_limit = 0
        """Messages received while the backlog held more than its byte limit."""
        self.server_errors = 0
        self.lame_duck_moves = 0
        """Times a lame-duck server was left for another before it closed the connection."""
        self._link_down = asyncio.Event()
        self._lame_duck: dict[str, float] = {}
        self._migrating = False
        self._next = 0
        self._log_limit = RateLimiter(60.0)
        self._tasks: set[asyncio.Task] = set()
        self._ssl: ssl.SSLContext | None = None

    # ----- what the ingest uses
    @property
    def framed(self) -> int:
        return self.backlog.framed

    @property
    def buffer(self) -> np.ndarray:
        return self.backlog.data

    def spans(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.backlog.spans(n)

    def consumed(self, count: int) -> None:
        """The first ``count`` framed messages are finished with: release their bytes."""
        self.backlog.consume(count)
        if self.pull is not None:
            self.request_more()

    def frame_meta(self, n: int) -> np.ndarray:
        """Reply spans and sids of the next ``n`` framed messages (``natsframe.META_*``)."""
        return self.backlog.frame_meta(n)

    def start(self) -> None:
        self._spawn(self._run())

    async def close(self) -> None:
        """Unsubscribe and disconnect (frames already received stay in the backlog)."""
        self.closing = True
        for link in (self.link,):
            if link is not None and link.transport is not None:
                link.write(self._unsubscribe())
                link.transport.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----- connections
    def _unsubscribe(self) -> bytes:
        return b"".join(b"UNSUB " + str(sid).encode() + b"\r\n" for sid in range(1, 2 + len(self.also)))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self) -> None:
        failures = 0
        while not self.closing:
            server = self._pick_server()
            link = None
            try:
                link = await self._open(server)
            except LoginRejected as exc:
                failures += 1
                self._log_once(f"rejected:{server.address}:{exc}", "NATS %s refused the login: %s",
                               server.address, exc)
                await asyncio.sleep(_backoff(failures, FIRST_AUTH_RETRY_S, MAX_AUTH_RETRY_S))
                continue
            except (TimeoutError, OSError, ConnectionError, ValueError) as exc:
                self._log_once(f"unreachable:{server.address}", "NATS %s unreachable (%s); retrying",
                               server.address, exc or type(exc).__name__)
            if link is not None:
                await self._link_down.wait()
                if self.closing:
                    break
                rejected = self.link is None and link.rejected
                failures = 0 if link.pongs else failures
                if rejected:  # the server accepted the connection, then refused the login
                    failures += 1
                    self._log_once(f"rejected:{server.address}:{rejected}",
                                   "NATS %s refused the login: %s", server.address, rejected)
                    await asyncio.sleep(_backoff(failures, FIRST_AUTH_RETRY_S, MAX_AUTH_RETRY_S))
                    continue
            failures += 1
            await asyncio.sleep(_backoff(failures, FIRST_RETRY_S, MAX_RETRY_S))

    def _pick_server(self, avoid: Server | None = None) -> Server:
        """The next server of the pool, round robin; lame ducks and ``avoid`` last."""
        now = time.monotonic()
        n = len(self.pool)
        order = [self.pool[(self._next + k) % n] for k in range(n)]
        good = [s for s in order if s != avoid and self._lame_duck.get(s.address, 0) < now]
        choice = (good or [s for s in order if s != avoid] or order)[0]
        self._next = (self.pool.index(choice) + 1) % n
        return choice

    async def _open(self, server: Server, hold: bool = False) -> _Link:
        """Connect, log in and subscribe; ``hold`` leaves the link paused and inactive."""
        loop = asyncio.get_running_loop()
        link = _Link(self, server)
        await asyncio.wait_for(loop.create_connection(lambda: link, server.host, server.port),
                               CONNECT_TIMEOUT_S)
        try:
            line = await asyncio.wait_for(link.info_line, CONNECT_TIMEOUT_S)
            if not line[:5].upper() == b"INFO ":
                raise ConnectionError(f"{server.address} is not a NATS server (said {line[:40]!r})")
            info = orjson.loads(line[5:])
            self._learn(info, server)
            if server.tls or self.auth.wants_tls or info.get("tls_required"):
                await self._start_tls(link, info)
            options = {"verbose": False, "pedantic": False, "name": self.name, "lang": "python",
                       "version": "rtsig-fast", "protocol": 1, "headers": True,
                       **self.auth.connect_options(info.get("nonce"))}
            if info.get("auth_required") and not self._has_login():
                raise LoginRejected("the server requires a login: put user:password@ or a token in "
                                    "NATS_URL, or set NATS_NKEY_SEED or NATS_CREDS")
            queue = b" " + self.queue.encode() if self.queue else b""
            subs = b"".join(b"SUB " + subject.encode() + queue + b" " + str(sid).encode() + b"\r\n"
                            for sid, subject in enumerate((self.subject, *self.also), start=1))
            link.write(b"CONNECT " + orjson.dumps(options) + b"\r\n" + subs)
            link.ping()
        except BaseException:
            if link.transport is not None:
                link.transport.abort()
            raise
        if hold:
            link.held = True
            assert link.transport is not None  # connection_made ran within create_connection
            link.transport.pause_reading()
        else:
            self._activate(link)
        return link

    async def _start_tls(self, link: _Link, info: dict) -> None:
        if self._ssl is None:
            self._ssl = self.auth.ssl_context()
        loop = asyncio.get_running_loop()
        assert link.transport is not None  # connected before the TLS upgrade
        try:
            link.transport = await asyncio.wait_for(
                loop.start_tls(link.transport, link, self._ssl, server_hostname=link.server.host),
                CONNECT_TIMEOUT_S)
        except ssl.SSLError as exc:
            hint = " (the server requires TLS; NATS_TLS_CA names the CA that signed its certificate)" \
                if info.get("tls_required") and not self.auth.wants_tls else ""
            raise LoginRejected(f"TLS handshake failed: {exc.reason or exc}{hint}") from None

    def _has_login(self) -> bool:
        a = self.auth
        return a.user is not None or a.token is not None or a.nkey_seed is not None

    def _activate(self, link: _Link) -> None:
        """Make ``link`` the one whose frames and control lines the backlog takes."""
        self.link = link
        link.active = True
        self._link_down.clear()
        self._requests.clear()  # requests of an earlier connection died with it
        self._spawn(self._ping_loop(link))
        if link.held and link.transport is not None:
            link.held = False
            link.transport.resume_reading()
        if link.handshake:
            data = bytes(link.handshake)
            link.handshake.clear()
            self._received(link, data)
        self.request_more()

    # ----- JetStream pull mode
    def request_more(self) -> None:
        """Keep two pull requests open unless the backlog is full (no-op for a subscription)."""
        pull, link = self.pull, self.link
        if pull is None or link is None or self.closing or self.pull_stopped:
            return
        while len(self._requests) < 2 and self.backlog.framed + sum(self._requests) < pull.max_backlog:
            body = orjson.dumps({"batch": pull.batch, "expires": int(pull.expires_s * 1e9)})
            link.write(b"PUB " + pull.next_subject + b" " + self.subject.encode() + b" "
                       + str(len(body)).encode() + b"\r\n" + body + b"\r\n")
            self._requests.append(pull.batch)

    def ack(self, reply_subject: bytes) -> bool:
        """Acknowledge a JetStream delivery (``+ACK`` to its reply subject); False if offline."""
        link = self.link
        if link is None or link.lost:
            return False
        link.write(b"PUB " + reply_subject + b" 0\r\n\r\n")
        return True

    async def flush_writes(self, timeout_s: float = 2.0) -> None:
        """Until what was written (acknowledgements) has left for the server, or the timeout."""
        link = self.link
        deadline = time.monotonic() + timeout_s
        while link is not None and not link.lost and link.transport is not None \
                and link.transport.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def _delivered(self, n: int) -> None:
        """``n`` messages arrived: they fill the oldest requests first."""
        while n and self._requests:
            take = min(n, self._requests[0])
            n -= take
            if take == self._requests[0]:
                self._requests.popleft()
            else:
                self._requests[0] -= take

    def _learn(self, info: dict, server: Server) -> None:
        """Servers a cluster advertises join the pool; a lame duck is avoided for a while."""
        known = {s.address for s in self.pool}
        for url in info.get("connect_urls") or ():
            host, _, port = url.rpartition(":")
            candidate = Server(host.strip("[]"), int(port), tls=server.tls, discovered=True)
            if candidate.address not in known:
                self.pool.append(candidate)
                known.add(candidate.address)
        if info.get("ldm"):
            self._lame_duck[server.address] = time.monotonic() + LAME_DUCK_AVOID_S

    async def _ping_loop(self, link: _Link) -> None:
        while self.link is link and not link.lost:
            await asyncio.sleep(PING_INTERVAL_S)
            if self.link is not link or link.lost:
                return
            if link.pings_sent - link.pongs > MAX_OUTSTANDING_PINGS:
                log.warning("NATS %s did not answer %d pings; reconnecting", link.server.address,
                            MAX_OUTSTANDING_PINGS)
                assert link.transport is not None  # an open link has its transport
                link.transport.abort()
                return
            link.ping()

    def _link_lost(self, link: _Link, exc) -> None:
        if link.retired or not link.active:
            return
        if self.backlog.drop_partial():
            self.truncated += 1
        if link is not self.link:
            return
        self.link = None
        self._set_connected(False)
        if not self.closing:
            self.reconnects += 1
            if not self._migrating and not link.rejected:
                log.warning("NATS connection to %s lost (%s); reconnecting", link.server.address,
                            exc or "closed by the server")
        self._link_down.set()

    async def _leave_lame_duck(self, old: _Link) -> None:
        """Subscribe on another server first, then drain and close the one going away."""
        self._migrating = True
        try:
            new = None
            for _ in range(len(self.pool)):
                server = self._pick_server(avoid=old.server)
                if server == old.server:
                    break
                try:
                    new = await self._open(server, hold=True)
                    break
                except (TimeoutError, OSError, ConnectionError, ValueError) as exc:
                    log.warning("NATS %s unreachable while leaving a lame duck (%s)", server.address, exc)
            if new is None:
                log.warning("NATS %s is in lame-duck mode and no other server answers; staying",
                            old.server.address)
                return
            old.drain_at = old.pings_sent + 1
            old.write(self._unsubscribe())
            old.ping()
            try:
                await asyncio.wait_for(asyncio.shield(old.drained), DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("NATS %s did not confirm the unsubscribe; switching anyway", old.server.address)
            if self.link is old:  # drained: everything it sent is in the backlog
                if self.backlog.drop_partial():
                    self.truncated += 1
                old.retired = True
                self.link = None
                if old.transport is not None:
                    old.transport.close()
            if new.lost:
                self._link_down.set()
                return
            self._activate(new)
            self.lame_duck_moves += 1
            log.info("NATS %s is in lame-duck mode: moved to %s", old.server.address, new.server.address)
        finally:
            self._migrating = False

    def _set_connected(self, state: bool) -> None:
        if state != self.connected.is_set():
            (self.connected.set if state else self.connected.clear)()
            self.on_state(state)

    # ----- data
    def _received(self, link: _Link, data: bytes) -> None:
        b = self.backlog
        over, framed_before = b.over_limit, b.framed
        b.append(data)
        pos = b.scan_pos  # after append: it may have compacted the buffer
        receipt_ns = time.time_ns()
        while True:
            ctl, line = b.frame(receipt_ns)
            if ctl == CTL_NONE:
                break
            self._control(link, ctl, line)
        new_frames = b.framed - framed_before
        self.received += new_frames
        if self.pull is not None:
            self._delivered(new_frames)
            self.request_more()
        if over and new_frames:
            self.dropped_over_limit += b.discard_last(new_frames, pos)
            if self._log_limit.allow("over_limit"):
                log.error("ingest backlog over %d MiB: dropping new messages (counted)",
                          b.limit_bytes >> 20)
        if b.framed:
            self.on_data()

    def _control(self, link: _Link, kind: int, line: bytes) -> None:
        if kind == CTL_PING:
            link.write(b"PONG\r\n")
        elif kind == CTL_PONG:
            link.pongs += 1
            if link.drain_at and link.pongs >= link.drain_at and not link.drained.done():
                link.drained.set_result(None)
            elif link is self.link:
                self._set_connected(True)
        elif kind == CTL_INFO:
            try:
                info = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return
            self._learn(info, link.server)
            if info.get("ldm") and link is self.link and not self._migrating and not self.closing:
                self._spawn(self._leave_lame_duck(link))
        elif kind == CTL_ERR:
            self.server_errors += 1
            text = line[4:].strip().strip(b"'").decode(errors="replace")
            if any(word in text.lower() for word in _AUTH_WORDS):
                link.rejected = text
            else:
                self._log_once(f"err:{text}", "NATS %s says: %s", link.server.address, text)
        elif kind == CTL_STATUS:  # a pull request ended (408 expired, 404/409): replace it
            code = line[9:12]
            if code not in (b"100",) and self._requests:
                self._requests.popleft()
            if code not in (b"404", b"408", b"100", b"409"):
                self._log_once(f"status:{code!r}", "NATS %s: JetStream says %s", link.server.address,
                               line.split(b"\r\n", 1)[0].decode(errors="replace"))
            self.request_more()
        elif kind == CTL_UNKNOWN:
            log.error("unexpected NATS protocol line from %s: %r; reconnecting",
                      link.server.address, line[:80])
            if link.transport is not None:
                link.transport.abort()
        # CTL_OK: nothing to do (verbose is off)

    def _log_once(self, key: str, message: str, *args) -> None:
        if self._log_limit.allow(key):
            log.warning(message, *args)


def _backoff(failures: int, first_s: float, max_s: float) -> float:
    """Exponential back-off with ±20 % jitter, so that replicas do not retry in step."""
    return min(max_s, first_s * 2 ** max(0, failures - 1)) * random.uniform(0.8, 1.2)
