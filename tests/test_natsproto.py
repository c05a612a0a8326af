"""The ingest's NATS framing: jitted scan of MSG frames and control lines, split reads across
reconnects, the byte limit, the URL's logins, and a restart of a real server."""

from __future__ import annotations

import asyncio
import time

import nats
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsig.natsauth import Server, parse_urls
from rtsig.natsbin import EmbeddedNats
from rtsig.natsframe import (
    CTL_ERR,
    CTL_INFO,
    CTL_NONE,
    CTL_OK,
    CTL_PING,
    CTL_PONG,
    CTL_STATUS,
    CTL_UNKNOWN,
    scan_frames,
)
from rtsig.natsproto import FastSubscriber, _backoff, _Link


def scan(data: bytes, max_msgs: int = 16):
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    starts = np.zeros(max_msgs, dtype=np.int64)
    ends = np.zeros(max_msgs, dtype=np.int64)
    meta = np.zeros((max_msgs, 5), dtype=np.int64)
    pos, n, ctl, cs, ce, _ = scan_frames(buf, 0, len(data), starts, ends, meta, 0, max_msgs)
    payloads = [data[starts[k]:ends[k]] for k in range(n)]
    return int(pos), payloads, int(ctl), data[cs:ce] if ctl else b""


def msg(payload: bytes, subject: str = "binance.websocket.data", reply: str | None = None) -> bytes:
    head = f"MSG {subject} 1 {reply + ' ' if reply else ''}{len(payload)}\r\n".encode()
    return head + payload + b"\r\n"


def test_frames_with_and_without_reply_subject_and_crlf_inside_payloads():
    data = msg(b'{"a":1}') + msg(b"x\r\ny", reply="_INBOX.abc") + msg(b"")
    pos, payloads, ctl, _ = scan(data)
    assert payloads == [b'{"a":1}', b"x\r\ny", b""] and pos == len(data) and ctl == CTL_NONE


@pytest.mark.parametrize("cut", [1, 5, 20, 30, 31, 33])
def test_an_incomplete_frame_is_left_for_the_next_read(cut):
    whole = msg(b'{"stream":"btcusdt@trade"}')
    data = msg(b"first") + whole[:cut]
    pos, payloads, ctl, _ = scan(data)
    assert payloads == [b"first"] and pos == len(msg(b"first")) and ctl == CTL_NONE


@pytest.mark.parametrize("line,kind", [
    (b"PING", CTL_PING), (b"PONG", CTL_PONG), (b'INFO {"server_id":"x"}', CTL_INFO), (b"+OK", CTL_OK),
    (b"-ERR 'Slow Consumer'", CTL_ERR), (b"garbage here", CTL_UNKNOWN), (b"ping", CTL_PING),
])
def test_control_lines_stop_the_scan_and_are_reported(line, kind):
    data = msg(b"a") + line + b"\r\n" + msg(b"b")
    pos, payloads, ctl, text = scan(data)
    assert payloads == [b"a"] and ctl == kind and text == line and pos == len(msg(b"a"))


def scan_meta(data: bytes, max_msgs: int = 16):
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    starts, ends = np.zeros(max_msgs, dtype=np.int64), np.zeros(max_msgs, dtype=np.int64)
    meta = np.zeros((max_msgs, 5), dtype=np.int64)
    pos, n, ctl, cs, ce, resume = scan_frames(buf, 0, len(data), starts, ends, meta, 0, max_msgs)
    frames = [(data[starts[k]:ends[k]], data[meta[k, 0]:meta[k, 1]], int(meta[k, 2])) for k in range(n)]
    return frames, int(ctl), data[cs:ce] if ctl else b"", int(resume)


def hmsg(payload: bytes, headers: bytes, sid: int = 1, reply: str | None = None) -> bytes:
    head = f"HMSG in {sid} {reply + ' ' if reply else ''}{len(headers)} {len(headers) + len(payload)}\r\n"
    return head.encode() + headers + payload + b"\r\n"


def test_jetstream_frames_carry_their_ack_subject_sid_and_payload_after_headers():
    ack = "$JS.ACK.IN.rtsig-0.1.42.42.1700000000000000000.0"
    data = msg(b'{"a":1}', reply=ack) + hmsg(b"body", b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n", sid=2, reply=ack) \
        + msg(b"plain")
    frames, ctl, _, resume = scan_meta(data)
    assert frames == [(b'{"a":1}', ack.encode(), 1), (b"body", ack.encode(), 2), (b"plain", b"", 1)]
    assert ctl == CTL_NONE and resume == len(data)


def test_a_pull_status_is_a_control_frame_and_scanning_resumes_after_it():
    status = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\n\r\n"
    data = msg(b"a") + hmsg(b"", status) + msg(b"b")
    frames, ctl, text, resume = scan_meta(data)
    assert [f[0] for f in frames] == [b"a"] and ctl == CTL_STATUS and text == status
    assert data[resume:] == msg(b"b")


def test_a_malformed_msg_line_is_unknown_protocol():
    frames, ctl, _, _ = scan_meta(b"MSG only-subject\r\n" + msg(b"x"))
    assert frames == [] and ctl == CTL_UNKNOWN


def test_the_span_arrays_bound_one_scan():
    data = b"".join(msg(str(k).encode()) for k in range(10))
    pos, payloads, _, _ = scan(data, max_msgs=4)
    assert payloads == [b"0", b"1", b"2", b"3"] and pos == len(b"".join(msg(str(k).encode()) for k in range(4)))


def test_server_urls_with_credentials_percent_decoded():
    servers, user, password, token = parse_urls("nats://u%40x:p%40ss%3A1@h1:4223, tls://h2, nats://h3")
    assert servers == (Server("h1", 4223), Server("h2", 4222, tls=True), Server("h3", 4222))
    assert (user, password, token) == ("u@x", "p@ss:1", None)
    assert parse_urls("nats://s3cr%2Ft@h")[1:] == (None, None, "s3cr/t")


def test_back_off_starts_fast_and_is_bounded_with_jitter():
    delays = [_backoff(k, 0.02, 0.25) for k in range(1, 12)]
    assert delays[0] <= 0.025 and all(d <= 0.25 * 1.2 for d in delays)
    assert delays[-1] >= 0.25 * 0.8  # reached the cap
    auth = [_backoff(k, 0.5, 10.0) for k in range(1, 8)]
    assert auth[0] >= 0.4 and auth[-1] >= 8.0


def drain(sub: FastSubscriber, consume_every: int) -> list[bytes]:
    """Consume framed payloads the way the ingest does, sometimes leaving some framed."""
    n = sub.framed if consume_every <= 0 else min(sub.framed, consume_every)
    starts, ends, _ = sub.spans(n)
    out = [bytes(sub.buffer[a:b]) for a, b in zip(starts, ends)]
    sub.consumed(n)
    return out


def _subscriber(capacity: int, limit_bytes: int = 1 << 30) -> FastSubscriber:
    sub = FastSubscriber("nats://127.0.0.1:1", "s", "q", "t", on_data=lambda: None,
                         on_state=lambda _: None, batch=8, limit_bytes=limit_bytes)
    sub.backlog.data = np.zeros(capacity, dtype=np.uint8)  # small buffers force compaction/growth
    return sub


def _new_link(sub: FastSubscriber) -> _Link:
    link = _Link(sub, sub.pool[0])
    link.active = True
    sub.link = link
    return link


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=300), max_size=25), min_size=1, max_size=4), st.data(),
       st.integers(0, 7), st.sampled_from([64, 256, 100_000]))
def test_any_split_of_the_stream_across_reconnects_keeps_every_complete_frame(
        connections, data, consume_every, capacity):
    """Each connection delivers frames (a PING now and then), maybe cut off mid-frame at its end.

    Every frame a connection delivered whole is consumed once, in order, whatever the reads'
    boundaries and however far the consumer lags; a frame cut off is counted, never half-used.
    """
    async def scenario() -> None:
        sub = _subscriber(capacity)
        got, want, cut_messages = [], [], 0
        for payloads in connections:
            link = _new_link(sub)
            stream = b"".join(msg(p) + (b"PING\r\n" if i % 7 == 3 else b"") for i, p in enumerate(payloads[:-1]))
            stream += msg(payloads[-1]) if payloads else b""
            cut_off = data.draw(st.booleans()) and payloads
            if cut_off:  # the connection dies inside its last frame
                last = msg(payloads[-1])
                stream = stream[:len(stream) - len(last) + data.draw(st.integers(1, len(last) - 1))]
                cut_messages += 1
                want += payloads[:-1]
            else:
                want += payloads
            cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
            last_cut = 0
            for cut in cuts + [len(stream)]:
                sub._received(link, stream[last_cut:cut])
                last_cut = cut
                got.extend(drain(sub, consume_every))
            sub._link_lost(link, None)
        while sub.framed:
            got.extend(drain(sub, 0))
        assert got == want
        assert sub.received == len(want) and sub.truncated == cut_messages
        assert sub.dropped_over_limit == 0

    asyncio.run(scenario())


def test_control_lines_are_answered_while_the_consumer_is_a_backlog_behind():
    """The old client stopped reading PONGs when its span array was full and dropped the link."""
    async def scenario() -> None:
        sub = _subscriber(1 << 16)
        link = _new_link(sub)
        sent: list[bytes] = []
        link.write = sent.append
        link.pings_sent = 1
        frames = b"".join(msg(b"x" * 50) for _ in range(10_000))  # far more than the 8 spans
        sub._received(link, frames + b"PONG\r\nPING\r\n" + frames)
        assert sub.framed == 20_000 and link.pongs == 1 and sent == [b"PONG\r\n"]
        assert sub.connected.is_set()

    asyncio.run(scenario())


def test_messages_beyond_the_byte_limit_are_dropped_and_counted_and_the_rest_kept():
    async def scenario() -> None:
        sub = _subscriber(4096, limit_bytes=2000)
        link = _new_link(sub)
        one = msg(b"y" * 90)  # 120 bytes a frame
        sub._received(link, one * 20)  # 2400 bytes: the limit is crossed by this read, all kept
        sub._received(link, one * 5 + one[:30])  # over the limit: 5 dropped, the partial kept
        assert sub.framed == 20 and sub.dropped_over_limit == 5
        got = drain(sub, 0)
        sub._received(link, one[30:] + one)  # under the limit again: both kept
        got += drain(sub, 0)
        assert got == [b"y" * 90] * 22 and sub.backlog.pending_bytes == 0

    asyncio.run(scenario())


def test_subscribes_in_a_queue_group_and_survives_a_server_restart():
    async def scenario(server: EmbeddedNats) -> None:
        received: list[bytes] = []
        arrived = asyncio.Event()
        expected = {"n": 500}

        def on_data() -> None:
            while sub.framed:  # as the ingest does: consume until nothing is left
                received.extend(drain(sub, 0))
            if len(received) >= expected["n"]:
                arrived.set()

        states = []
        sub = FastSubscriber(server.url, "fast.in", "grp", "test", on_data=on_data,
                             on_state=states.append, batch=64)
        sub.start()
        await asyncio.wait_for(sub.connected.wait(), 10)
        pub = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        first = [f"m{k}".encode() * (k % 5 + 1) for k in range(500)]
        expected["n"] = len(first)
        for p in first:
            await pub.publish("fast.in", p)
        await pub.flush()
        await asyncio.wait_for(arrived.wait(), 10)
        assert received == first

        server.stop()
        server.start()

        async def resubscribed() -> None:  # connected again = SUB confirmed by a PONG
            while sub.reconnects < 1 or not sub.connected.is_set():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(resubscribed(), 15)
        await asyncio.wait_for(pub.flush(), 15)
        arrived.clear()
        expected["n"] = len(first) + 3
        for p in (b"after-1", b"after-2", b"after-3"):
            await pub.publish("fast.in", p)
        await pub.flush()
        await asyncio.wait_for(arrived.wait(), 10)
        assert received[len(first):] == [b"after-1", b"after-2", b"after-3"]
        assert sub.reconnects >= 1 and states[:2] == [True, False] and states[-1] is True
        await sub.close()
        await pub.close()

    server = EmbeddedNats().start()
    try:
        asyncio.run(scenario(server))
    finally:
        server.stop()


def test_after_a_long_outage_the_subscriber_is_back_as_soon_as_the_server_accepts():
    """The old back-off grew to 5 s (+20 %): ~3 s of input lost after every outage over 6 s.
    The figure (server accepting → subscription confirmed) is printed for docs/OPERATIONS.md."""
    async def scenario(server: EmbeddedNats) -> list[float]:
        sub = FastSubscriber(server.url, "fast.in", "grp", "test", on_data=lambda: None,
                             on_state=lambda _: None, batch=64)
        sub.start()
        await asyncio.wait_for(sub.connected.wait(), 10)
        figures = []
        for outage_s in (1.0, 8.0):
            server.stop()
            await asyncio.wait_for(_until(lambda: not sub.connected.is_set()), 10)
            await asyncio.sleep(outage_s)  # the outage itself, not a synchronisation
            server.start()  # returns once the port accepts
            accepting = time.monotonic()
            await asyncio.wait_for(sub.connected.wait(), 10)
            figures.append(time.monotonic() - accepting)
        await sub.close()
        return figures

    server = EmbeddedNats().start()
    try:
        short, long = asyncio.run(scenario(server))
    finally:
        server.stop()
    print(f"\nsubscribed again after the server accepts: {short * 1000:.0f} ms (1 s outage), "
          f"{long * 1000:.0f} ms (8 s outage)")


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


def test_stream_sequences_from_both_ack_subject_formats():
    from rtsig.natsframe import stream_sequences

    acks = ["$JS.ACK.IN.rtsig-0.1.42.40.1700000000000000000.7",
            "$JS.ACK.hub.ACCHASH.IN.rtsig-0.2.77.75.1700000000000000000.0.tok",
            ""]
    data = b"".join(msg(b"x", reply=a or None) for a in acks)
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    starts, ends = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    meta = np.zeros((3, 5), dtype=np.int64)
    scan_frames(buf, 0, len(data), starts, ends, meta, 0, 3)
    out = np.zeros(3, dtype=np.int64)
    stream_sequences(buf, meta, out)
    assert out.tolist() == [42, 77, -1]
