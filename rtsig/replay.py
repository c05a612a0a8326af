"""``rtsig replay``: publish recorded market data to the input subject.

Pacing: as recorded (the gaps between capture receipt times, or between envelope timestamps),
``--rate N`` messages per second, or ``--rate 0`` flat out. ``--loop`` repeats the files. A
progress line on stderr while it runs (count, total, percentage, rate, ETA), the final count at
the end.

Event times: the strategies' cool-downs (``min_signal_interval``) run on the data's event time, so
a service that has already seen a file's times makes no new signals from a second replay of it.
``--shift-time`` moves every event time of each round (the envelope's ``timestamp``, the
payload's ``E``/``T``/``O``/``C``) so the round starts now, and after the previous round.

NATS outages are ridden over (:class:`ToolConnection`): the first connect waits at most
``--connect-timeout`` seconds, after that the connection is re-made for ever. While the server is
down nats-py holds what is published, up to :data:`OUTAGE_BUFFER_BYTES`, and sends it on
reconnect; a paced replay that finds the buffer full loses the message (the feed goes on, as a
live one would), a flat-out one (``--rate 0``) waits for the server instead. The final count line
accounts for every message taken from the files::

    {"published": …, "unconfirmed": …, "lost": …, "reconnects": …, "subject": …, "seconds": …,
     "event_times": "as recorded" | "shifted", "note": …}

(``note`` only with times as recorded: why a repeat gives no signals, and ``--shift-time``.)

- ``published``: the server acknowledged it (a flush's PONG came back after it, on the same
  connection);
- ``unconfirmed``: written out before a connection broke and not acknowledged — the server may or
  may not have had it;
- ``lost``: never reached a server — refused because the outage buffer was full, or still held for
  a server that had not come back when replay ended (it waits up to ``--connect-timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson
from nats.errors import OutboundBufferLimitError

from rtsig import counters as C
from rtsig.natsauth import CredentialsError
from rtsig.natsconn import connect
from rtsig.recorded import iter_lines, open_inputs
from rtsig.settings import Settings

if TYPE_CHECKING:
    import nats

FLUSH_EVERY = 1000
OUTAGE_BUFFER_BYTES = 8 * 1024 * 1024
"""What nats-py may hold for a server that is down (about 25,000 typical market-data messages)."""
FLUSH_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 2.0
EXIT_UNREACHABLE = 1


class NatsUnreachable(Exception):
    """No NATS server answered within the connect timeout (the message names the URL)."""


_SILENT = "nothing answered as a NATS server"


class _LastError(logging.Handler):
    """Remembers the last error :mod:`rtsig.natsconn` logged (a refused connection, a login…).

    What a server said (``Authorization Violation``) outranks a socket error: a server that
    refuses a login also closes the connection, and the next attempt may only see the reset.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text = ""
        self._from_server = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != "NATS error: %s" or not record.args:
            return
        assert isinstance(record.args, tuple)  # logged with one exception, never a mapping
        exc = record.args[0]
        from_server = not isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError))
        if self._from_server and not from_server:
            return
        self._from_server = from_server
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            self.text = _SILENT
        else:
            self.text = str(exc) or type(exc).__name__


def shown_url(url: str) -> str:
    """``NATS_URL`` without any ``user:password@`` in it, for messages."""
    return re.sub(r"//[^/,@]*@", "//", url)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ToolConnection:
    """The NATS connection of a command-line tool (``replay``, ``tail``, the demo's clients).

    :meth:`open` waits at most ``timeout`` seconds for a first server (None: for ever) and raises
    :class:`NatsUnreachable` otherwise. Once connected, :func:`rtsig.natsconn.connect`'s options
    apply — reconnect for ever (``max_reconnect_attempts=-1``), 0.25 s between attempts — and each
    loss and recovery of the connection is said in one line on stderr. nats-py resubscribes by
    itself after a reconnect and holds publishes made while it is down up to ``pending_size``.
    """

    def __init__(self, settings: Settings, tool: str, *, pending_size: int = OUTAGE_BUFFER_BYTES,
                 note: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.tool = tool
        self.url = shown_url(settings.nats_url)
        self.pending_size = pending_size
        self.note = note or (lambda text: _stderr(f"rtsig {tool}: {text}"))
        self.nc: nats.NATS | None = None
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.epoch = 0
        """How many times the connection was lost: a flush confirms only within one epoch."""
        self.reconnects = 0
        self.on_down: Callable[[], None] | None = None
        self._closing = False
        self._gave_up = False

    async def open(self, timeout: float | None) -> None:
        row = [0] * C.N_COUNTERS
        last_error = _LastError()
        conn_log = logging.getLogger("rtsig.natsconn")
        conn_log.addHandler(last_error)
        try:
            self.nc = await asyncio.wait_for(
                connect(self.settings, f"rtsig-{self.tool}", row, on_reconnect=self._reconnected,
                        on_disconnect=self._disconnected, pending_size=self.pending_size,
                        stopping=lambda: self._gave_up or self._closing),
                timeout)
        except TimeoutError:
            self._gave_up = True
            # the last refusal (connection, login) if there was one
            raise NatsUnreachable(f"could not connect to NATS at {self.url} within {timeout:g} s "
                                  f"(--connect-timeout): {last_error.text or _SILENT}") from None
        finally:
            conn_log.removeHandler(last_error)
        if self.nc is None:  # only if closed while connecting
            raise NatsUnreachable(f"gave up connecting to NATS at {self.url}")
        self.up.set()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def _disconnected(self) -> None:
        if self._closing or self.nc is None or self.nc.is_closed:
            return
        self.epoch += 1
        self.up.clear()
        self.down.set()
        if self.on_down is not None:
            self.on_down()
        self.note(f"lost the NATS connection to {self.url}; reconnecting")

    async def _reconnected(self) -> None:
        self.reconnects += 1
        self.down.clear()
        self.up.set()
        self.note(f"reconnected to NATS at {self.url}")

    async def wait_up(self, stop: asyncio.Event | None = None,
                      timeout: float | None = None) -> bool:
        """Wait until connected (True), or ``stop`` is set or ``timeout`` passes (False)."""
        if self.up.is_set():
            return True
        waits = [asyncio.ensure_future(self.up.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self.up.is_set()

    async def close(self) -> None:
        """Close, but not for ever: a client closing towards a dead server can wait a long time."""
        self._closing = True
        if self.nc is None:
            return
        try:
            await asyncio.wait_for(self.nc.close(), CLOSE_TIMEOUT_S)
        except (TimeoutError, Exception):  # noqa: BLE001 - closing; nothing left to save
            pass


def _envelope_ms(message: bytes) -> int | None:
    """Event time of an enveloped message from its ``timestamp`` (cheap, for pacing only)."""
    key = message.find(b'"timestamp":"')
    if key < 0:
        return None
    end = message.find(b'"', key + 13)
    try:
        return int(datetime.fromisoformat(message[key + 13:end].decode().replace("Z", "+00:00"))
                   .timestamp() * 1000)
    except ValueError:
        return None


SAME_TIMES_NOTE = ("event times as recorded: a service that has already seen them holds every "
                   "repeat back (cool-downs run on event time), so replaying the same data again "
                   "gives no new signals; --shift-time moves the times to now")
_TIME_KEYS = ("E", "T", "O", "C")
"""Payload fields holding epoch milliseconds (event, trade, ticker open and close times)."""


def _data_of(doc: dict) -> dict:
    """The payload of a message: its ``data`` object when it has one, else the message itself."""
    data = doc.get("data")
    return data if isinstance(data, dict) else doc


class TimeShifter:
    """``--shift-time``: each round's event times moved so that it starts at the wall clock (and
    after the newest time of the previous round). Messages that are not JSON objects, or carry no
    time, pass unchanged."""

    def __init__(self, clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.clock_ms = clock_ms
        self.offset_ms: int | None = None
        self.newest_ms: int | None = None

    def new_round(self) -> None:
        self.offset_ms = None

    @staticmethod
    def _first_time(doc: dict) -> int | None:
        stamp = doc.get("timestamp")
        if isinstance(stamp, str):
            try:
                return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                pass
        data = _data_of(doc)
        value = data.get("E")
        return value if isinstance(value, int) and value > 10**11 else None

    def __call__(self, message: bytes) -> bytes:
        try:
            doc = orjson.loads(message)
        except orjson.JSONDecodeError:
            return message
        if not isinstance(doc, dict):
            return message
        if self.offset_ms is None:
            first = self._first_time(doc)
            if first is None:
                return message
            start = self.clock_ms()
            if self.newest_ms is not None:
                start = max(start, self.newest_ms + 1)
            self.offset_ms = start - first
        offset = self.offset_ms
        newest = self.newest_ms or 0
        stamp = doc.get("timestamp")
        if isinstance(stamp, str):
            try:
                t = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=offset)
                text = t.isoformat(timespec="microseconds" if "." in stamp else "seconds")
                doc["timestamp"] = text.replace("+00:00", "Z") if stamp.endswith("Z") else text
                newest = max(newest, int(t.timestamp() * 1000))
            except ValueError:
                pass
        data = _data_of(doc)
        for key in _TIME_KEYS:
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 10**11:
                data[key] = value + offset
                newest = max(newest, value + offset)
        self.newest_ms = newest
        return orjson.dumps(doc)


def count_messages(paths: list[str]) -> int | None:
    """Non-blank lines of the files: the progress line's total (None when reading stdin)."""
    if "-" in paths:
        return None
    from rtsig.record import count_frames, gunzipped, is_recording

    total = 0
    for path in paths:
        try:
            with open(path, "rb") as raw:
                f = gunzipped(raw)
                if is_recording(f):
                    total += count_frames(path)
                    continue
                total += sum(1 for line in f if line.strip())
        except OSError:
            return None  # open_inputs says what is wrong with it
    return total


def _progress(taken: int, total: int | None, round_no: int, elapsed: float, lost: int) -> str:
    rate = taken / max(1e-9, elapsed)
    line = f"\r  replay: {taken:>9,}"
    if total:
        done = taken - (round_no - 1) * total
        left = max(0, total - done)
        eta = left / rate if rate > 0 else 0
        line += (f" / {total:,} ({100 * done / total:5.1f} %)"
                 + (f" round {round_no}" if round_no > 1 else "")
                 + f"  {rate:>8,.0f} msg/s  ETA {int(eta // 60)}:{int(eta % 60):02d}")
    else:
        line += f" messages  {rate:>9,.0f} msg/s"
    return line + (f"  {lost:,} lost" if lost else "")


def paced(paths: list[str], rate: float | None, loop: bool,
          on_round: Callable[[], None] | None = None) -> Iterator[tuple[bytes, float]]:
    """``(message, seconds to wait before it)`` for every message, honouring the pacing mode;
    ``on_round`` is called before each pass over the files."""
    while True:
        if on_round is not None:
            on_round()
        streams = open_inputs(paths)
        try:
            previous_ms = None
            for message, receipt_ns in iter_lines(streams):
                if rate is not None:
                    yield message, (1.0 / rate if rate > 0 else 0.0)
                    continue
                t_ms = receipt_ns / 1e6 if receipt_ns is not None else _envelope_ms(message)
                gap = 0.0 if previous_ms is None or t_ms is None else max(0.0, (t_ms - previous_ms) / 1000)
                if t_ms is not None:
                    previous_ms = t_ms
                yield message, gap
        finally:
            for s in streams:
                if s is not sys.stdin.buffer:
                    s.close()
        if not loop:
            return


class Tally:
    """Where every message taken from the files went (see the module docstring).

    Messages handed to the client are numbered 1…``sent``; those up to ``settled`` are counted as
    published or unconfirmed, the rest wait for a flush to confirm them or a lost connection.
    """

    def __init__(self) -> None:
        self.sent = self.settled = 0
        self.published = self.unconfirmed = self.lost = 0

    @property
    def taken(self) -> int:
        return self.sent + self.lost

    def connection_lost(self) -> None:
        self.unconfirmed += self.sent - self.settled
        self.settled = self.sent

    def confirmed(self, upto: int) -> None:
        if upto > self.settled:
            self.published += upto - self.settled
            self.settled = upto

    def end(self, connected: bool) -> None:
        """Replay is over: what is still unsettled was written unanswered, or never left."""
        left = self.sent - self.settled
        if connected:
            self.unconfirmed += left
        else:
            self.lost += left
        self.settled = self.sent


async def _confirm(link: ToolConnection, tally: Tally, timeout: float) -> bool:
    """Flush; True when the server acknowledged every message sent so far (never raises)."""
    nc = link.nc
    assert nc is not None  # called only after link.open() succeeded
    if not nc.is_connected or link.down.is_set():
        return False
    epoch, upto = link.epoch, tally.sent
    deadline = time.monotonic() + timeout
    # nats-py writes a flush's PING straight to the socket, ahead of publishes still waiting for
    # its flusher task: let the flusher hand those over first, or the PONG would not cover them
    spins = 0
    while nc.pending_data_size > 0:
        if not nc.is_connected or link.epoch != epoch or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0 if spins < 20 else 0.001)
        spins += 1
    # nats-py annotates flush(timeout: int); it passes the seconds to asyncio.wait_for
    flush = asyncio.ensure_future(nc.flush(max(0.01, deadline - time.monotonic())))  # type: ignore[arg-type]
    down = asyncio.ensure_future(link.down.wait())
    try:
        await asyncio.wait({flush, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        down.cancel()
        if not flush.done():
            flush.cancel()
    if flush.cancelled() or not flush.done() or flush.exception() is not None:
        return False  # a flush timeout or a lost connection: not confirmed, not fatal
    if link.epoch != epoch:
        return False
    tally.confirmed(upto)
    return True


async def _pause(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _settle(link: ToolConnection, tally: Tally, wait_s: float | None,
                  stop: asyncio.Event | None) -> None:
    """Confirm what was sent, waiting up to ``wait_s`` (None: for ever) for a server to return."""
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while tally.settled < tally.sent:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        if not link.up.is_set():
            if not await link.wait_up(stop, remaining):
                break
            continue
        timeout = (FLUSH_TIMEOUT_S if remaining is None
                   else max(0.05, min(FLUSH_TIMEOUT_S, remaining)))
        if await _confirm(link, tally, timeout):
            break
        await asyncio.sleep(0.01)  # the connection is changing state: let it
    tally.end(link.connected)


async def replay(settings: Settings, paths: list[str], rate: float | None, loop: bool,
                 subject: str | None = None, progress: bool = True, limit: int | None = None, *,
                 connect_timeout: float | None = None, stop: asyncio.Event | None = None,
                 outage_buffer: int = OUTAGE_BUFFER_BYTES, shift_time: bool = False) -> int:
    """Publish the messages; return how many were published (acknowledged by the server).

    ``connect_timeout``: raise :class:`NatsUnreachable` when no server answers that soon (None:
    keep trying); it also bounds the wait at the end for a server that went away. ``stop``: end
    early (the final count is still written). ``shift_time``: :class:`TimeShifter`.
    """
    show = progress and sys.stderr.isatty()
    total = count_messages(paths) if show else None
    if total is not None and limit is not None and not loop:
        total = min(total, limit)
    shifter = TimeShifter() if shift_time else None
    rounds = [0]

    def next_round() -> None:
        rounds[0] += 1
        if shifter is not None:
            shifter.new_round()

    # a line about the connection must not land on the end of the progress line
    newline = "\n" if show else ""
    link = ToolConnection(settings, "replay", pending_size=outage_buffer,
                          note=lambda text: _stderr(f"{newline}rtsig replay: {text}"))
    await link.open(connect_timeout)
    tally = Tally()
    link.on_down = tally.connection_lost
    nc = link.nc
    assert nc is not None  # open() raises unless connected
    subject = subject or settings.nats_consumer_topic
    hold = rate is not None and rate <= 0  # flat out: wait for the server rather than lose data
    started = time.monotonic()
    due = started
    last_report = 0.0
    try:
        for message, gap in paced(paths, rate, loop, next_round):
            if stop is not None and stop.is_set():
                break
            if shifter is not None:
                message = shifter(message)
            due += gap
            delay = due - time.monotonic()
            if delay > 0.001:
                await _confirm(link, tally, FLUSH_TIMEOUT_S)
                delay = due - time.monotonic()
                if delay > 0:
                    await _pause(delay, stop)
                if stop is not None and stop.is_set():
                    break
            while True:
                try:
                    await nc.publish(subject, message)
                except OutboundBufferLimitError:  # the server is down and the buffer is full
                    if hold and await link.wait_up(stop):
                        continue
                    tally.lost += 1
                    break
                tally.sent += 1
                if tally.sent % FLUSH_EVERY == 0:
                    await _confirm(link, tally, FLUSH_TIMEOUT_S)
                break
            now = time.monotonic()
            if show and now - last_report > 0.25:
                last_report = now
                sys.stderr.write(_progress(tally.taken, total, rounds[0], now - started, tally.lost))
                sys.stderr.flush()
            if limit is not None and tally.taken >= limit:
                break
        stopped = stop is not None and stop.is_set()
        await _settle(link, tally, FLUSH_TIMEOUT_S if stopped else connect_timeout, stop)
    finally:
        await link.close()
    if show:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - started
    final = {"published": tally.published, "unconfirmed": tally.unconfirmed, "lost": tally.lost,
             "reconnects": link.reconnects, "subject": subject, "seconds": round(elapsed, 3),
             "event_times": "shifted" if shifter is not None else "as recorded"}
    if shifter is None:
        final["note"] = SAME_TIMES_NOTE
    sys.stderr.write(orjson.dumps(final).decode() + "\n")
    return tally.published


def quiet_connection_log() -> None:
    """The tools say what happens to their connection themselves, one line each: keep the
    service's connection log (meant for ``rtsig run``'s log setup) off their stderr."""
    conn_log = logging.getLogger("rtsig.natsconn")
    conn_log.propagate = False
    conn_log.addHandler(logging.NullHandler())


def run_tool(tool: str, work: Callable[[asyncio.Event], Awaitable[object]]) -> int:
    """Run a tool's ``work(stop)`` on uvloop, SIGINT/SIGTERM setting ``stop``; the exit status.

    0 when the work ends (interrupted included), 1 with one line on stderr when no NATS server
    answered within the connect timeout, 2 when the NATS login files cannot be used.
    """
    import uvloop

    quiet_connection_log()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    try:
        uvloop.run(run())
    except NatsUnreachable as exc:
        _stderr(f"rtsig {tool}: {exc}")
        return EXIT_UNREACHABLE
    except CredentialsError as exc:  # NATS_CREDS / NATS_NKEY_SEED unusable: a settings error
        _stderr(f"rtsig {tool}: {exc}")
        return 2
    return 0
