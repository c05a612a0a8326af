"""The ingest's NATS framing: jitted scan of MSG frames and control lines, split reads, a real server."""

from __future__ import annotations

import asyncio

import nats
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsig.natsbin import EmbeddedNats
from rtsig.natsproto import (
    CTL_ERR, CTL_INFO, CTL_NONE, CTL_OK, CTL_PING, CTL_PONG, CTL_UNKNOWN, FastSubscriber,
    parse_servers, scan_frames,
)


def scan(data: bytes, max_msgs: int = 16):
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    starts = np.zeros(max_msgs, dtype=np.int64)
    ends = np.zeros(max_msgs, dtype=np.int64)
    pos, n, ctl, cs, ce = scan_frames(buf, 0, len(data), starts, ends, 0, max_msgs)
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


def test_the_span_arrays_bound_one_scan():
    data = b"".join(msg(str(k).encode()) for k in range(10))
    pos, payloads, _, _ = scan(data, max_msgs=4)
    assert payloads == [b"0", b"1", b"2", b"3"] and pos == len(b"".join(msg(str(k).encode()) for k in range(4)))


def test_server_urls_with_credentials():
    assert parse_servers("nats://u:p@h1:4223, nats://tok@h2, nats://h3") == [
        {"scheme": "nats", "host": "h1", "port": 4223, "user": "u", "pass": "p"},
        {"scheme": "nats", "host": "h2", "port": 4222, "auth_token": "tok"},
        {"scheme": "nats", "host": "h3", "port": 4222}]


def drain(sub: FastSubscriber, consume_every: int) -> list[bytes]:
    """Consume framed payloads the way the ingest does, sometimes leaving some framed."""
    out = []
    n = sub.framed if consume_every <= 0 else min(sub.framed, consume_every)
    for k in range(n):
        out.append(bytes(sub.buffer.data[sub.starts[k]:sub.ends[k]]))
    sub.consumed(n)
    sub.frame(0)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40), st.data(),
       st.integers(0, 7), st.sampled_from([64, 256, 100_000]))
def test_any_split_of_the_stream_yields_every_payload_once_in_order(payloads, data, consume_every, capacity):
    stream = b"".join(msg(p) + (b"PING\r\n" if i % 7 == 3 else b"") for i, p in enumerate(payloads))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    sub = FastSubscriber("nats://127.0.0.1:1", "s", "q", "t", on_data=lambda: None,
                         on_state=lambda _: None, batch=8)
    sub.buffer.data = np.zeros(capacity, dtype=np.uint8)  # small buffers force compaction/growth
    got = []
    last = 0
    for cut in cuts + [len(stream)]:
        sub._received(stream[last:cut])
        last = cut
        got += drain(sub, consume_every)
    while sub.framed:
        got += drain(sub, 0)
    assert got == payloads


def test_subscribes_in_a_queue_group_and_survives_a_server_restart():
    async def scenario(server: EmbeddedNats) -> None:
        received: list[bytes] = []
        arrived = asyncio.Event()
        expected = {"n": 500}

        def on_data() -> None:
            while sub.framed:  # as the ingest does: frame and consume until nothing is left
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
