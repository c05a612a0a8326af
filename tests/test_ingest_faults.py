"""The ingest keeps everything it received through the faults that used to lose it: a backlog
held across a server restart, a 20 s worker stall, and kill -9 of the server under load.

Each test counts: messages read off the wire (``INPUT_FRAMED``) = handed to the workers, and
the live signals equal the offline run's wherever the input is known exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

from rtsig import counters as C
from tests.live_helpers import (
    N_WORKERS,
    SETTLE_S,
    SignalSink,
    async_wait_until,
    connect,
    feed,
    multiset_diff,
    new_uid,
    offline_signals,
    publish_all,
    settle,
    write_lines,
)

SEED = 23


def stop_workers(service, sig: int) -> None:
    for k in range(N_WORKERS):
        os.kill(service.worker_pid(k), sig)


def framed(service) -> int:
    return service.ingest(C.INPUT_FRAMED)


async def wait_sink(sink: SignalSink, service) -> None:
    """Until the sink has every signal the workers say they published."""
    await async_wait_until(lambda: len(sink.signals) >= service.workers_sum(C.PUBLISHED), SETTLE_S,
                           "every published signal at the sink")


async def resume_and_collect(service, nc, sink: SignalSink, n_messages: int) -> list[dict]:
    """Workers running again: every message judged, every signal at the sink."""
    stop_workers(service, signal.SIGCONT)
    await settle([service], n_messages)
    await wait_sink(sink, service)
    await nc.close()
    return sink.signals


def test_a_backlog_held_across_a_server_restart_is_judged_in_full(nats_server, services, tmp_path):
    """Workers stopped, ~25k messages queued in the ingest, nats-server restarted, workers resumed:
    the old client dropped everything framed but not handed off (34,870 of 60,000 lost)."""
    messages = feed(600, SEED)
    before, after = messages[:-3000], messages[-3000:]
    service = services(nats_server.url)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        sink = await SignalSink().subscribe(nc, service.out_subject)
        stop_workers(service, signal.SIGSTOP)
        try:
            await publish_all(nc, service.in_subject, before)
            await async_wait_until(lambda: framed(service) >= len(before), SETTLE_S,
                                   "the whole burst read by the ingest")
            assert service.ingest(C.MESSAGES_HANDED_OFF) < len(before), "the workers must be a backlog behind"
            nats_server.stop()
            await async_wait_until(lambda: service.ingest(C.NATS_CONNECTED) == 0, SETTLE_S, "the loss seen")
            nats_server.start()
            await async_wait_until(lambda: service.ingest(C.SUBSCRIBED) == 1 and nc.is_connected,
                                   SETTLE_S, "the ingest subscribed again")
            await publish_all(nc, service.in_subject, after)
        finally:
            stop_workers(service, signal.SIGCONT)
        return await resume_and_collect(service, nc, sink, len(messages))

    live = asyncio.run(scenario())
    assert framed(service) == len(messages) == service.ingest(C.MESSAGES_HANDED_OFF)
    assert service.ingest(C.INPUT_TRUNCATED) == 0 and service.ingest(C.INPUT_DROPPED_OVER_LIMIT) == 0
    assert service.ingest(C.RECONNECTS) >= 1
    assert not multiset_diff(live, expected), multiset_diff(live, expected)


def test_a_20_s_worker_stall_loses_nothing_and_keeps_the_connection(nats_server, services, tmp_path):
    """The old client read no PONG while its span array was full and dropped the healthy
    connection after ~12.5 s, losing the backlog (55,009 messages)."""
    messages = feed(400, SEED + 1)
    service = services(nats_server.url)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
    rate = len(messages) / 20.0  # spread over the 20 s of the stall

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        sink = await SignalSink().subscribe(nc, service.out_subject)
        stop_workers(service, signal.SIGSTOP)
        try:
            await publish_all(nc, service.in_subject, messages, rate=rate)  # ~20 s
            await async_wait_until(lambda: framed(service) >= len(messages), SETTLE_S, "every message read")
        finally:
            stop_workers(service, signal.SIGCONT)
        return await resume_and_collect(service, nc, sink, len(messages))

    live = asyncio.run(scenario())
    assert service.ingest(C.RECONNECTS) == 0  # a busy consumer is not a dead connection
    assert framed(service) == len(messages) == service.ingest(C.MESSAGES_HANDED_OFF)
    assert not multiset_diff(live, expected), multiset_diff(live, expected)


def test_kill_9_of_the_server_under_load_every_message_read_is_judged(nats_server, services):
    """What the server had not sent when it died is gone (core NATS keeps nothing); everything the
    ingest read is judged, a frame cut off mid-way is counted, and intake resumes."""
    messages = feed(300, SEED + 2)
    service = services(nats_server.url)

    async def scenario() -> tuple[int, int]:
        nc = await connect(nats_server.url)
        first, second = messages[:len(messages) // 2], messages[len(messages) // 2:]
        publisher = asyncio.get_running_loop().create_task(
            publish_all(nc, service.in_subject, first, rate=4000))
        await async_wait_until(lambda: framed(service) > len(first) // 3, SETTLE_S, "load flowing")
        nats_server.process.kill()  # SIGKILL: no goodbye to anyone
        nats_server.process.wait(5)
        nats_server.process = None
        nats_server.start()
        await publisher  # nats-py reconnects and carries on; what it sent to the dead server is lost
        await async_wait_until(lambda: service.ingest(C.SUBSCRIBED) == 1, SETTLE_S, "resubscribed")
        before_second = framed(service)
        await publish_all(nc, service.in_subject, second)
        await async_wait_until(lambda: framed(service) >= before_second + len(second), SETTLE_S,
                               "every message published after the restart read")
        await settle([service], framed(service))
        await nc.close()
        return before_second, framed(service)

    before_second, total = asyncio.run(scenario())
    rows = service.rows()
    ingest = rows[C.ROW_INGEST]
    assert total == int(ingest[C.MESSAGES_HANDED_OFF]) + int(ingest[C.INPUT_DROPPED_OVER_LIMIT])
    assert int(ingest[C.INPUT_DROPPED_OVER_LIMIT]) == 0
    assert int(ingest[C.RECONNECTS]) >= 1 and service.errors() == {}
    # everything after the restart arrived (plus what nats-py held through the outage); nothing twice
    assert len(messages) - len(messages) // 2 <= total - before_second and total <= len(messages)
    print(f"\nkill -9 under load: {before_second} of {len(messages) // 2} read before the restart "
          f"completed, {int(ingest[C.INPUT_TRUNCATED])} cut off mid-frame")


def _without_spot_marks(message: bytes) -> bytes:
    """A 24 h ticker without the fields only spot tickers carry (``b``, ``B``, ``x``): its shape
    then says nothing of its market, as with a minimal ticker."""
    if b"@ticker" not in message:
        return message
    envelope = json.loads(message)
    for key in ("b", "B", "x", "a", "A"):
        envelope["data"].pop(key, None)
    return json.dumps(envelope, separators=(",", ":")).encode()


def test_tickers_on_the_futures_subject_are_futures_data(nats_server, services, tmp_path):
    """NATS_FUTURES_TOPIC: a payload whose shape does not say its market (a 24 h ticker is the
    same in both) is taken as USD-M futures because of the subject it came on, and its signals
    say so; payloads whose shape is conclusive (a spot partial book, a spot trade) stay spot."""
    messages = [_without_spot_marks(m) for m in feed(150, SEED + 3)]
    uid = new_uid()
    env = {"NATS_FUTURES_TOPIC": f"{uid}.futures", "SIGNAL_MARKETS": "spot,usdm"}
    service = services(nats_server.url, env=env, uid=uid)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
    assert {s["strategy_id"] for s in expected} >= {"ticker_velocity", "orderbook_skew"}

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        sink = await SignalSink().subscribe(nc, service.out_subject)
        await publish_all(nc, env["NATS_FUTURES_TOPIC"], messages, rate=5000)
        await settle([service], len(messages))
        await wait_sink(sink, service)
        await nc.close()
        return sink.signals

    live = asyncio.run(scenario())
    markets = {(s["strategy_id"], s["metadata"]["market"]) for s in live}
    assert ("ticker_velocity", "usdm") in markets and ("ticker_velocity", "spot") not in markets
    assert ("orderbook_skew", "spot") in markets and ("orderbook_skew", "usdm") not in markets
    for s in expected:
        if s["strategy_id"] == "ticker_velocity":
            s["metadata"]["market"] = "usdm"
    assert not multiset_diff(live, expected), multiset_diff(live, expected)
