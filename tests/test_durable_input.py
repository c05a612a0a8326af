"""Durable input (JetStream, interfaces §2b): a service killed with SIGKILL mid-stream and
restarted, and one stopped for 30 s while the feed goes on, judge the whole stream exactly once
as far as signals go: the signals, de-duplicated by ``signal_id``, equal the offline run's, and a
signal made again carries the id (and content) of the first.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal

from rtsig import counters as C
from rtsig.decode import shard_of
from tests.live_helpers import (
    SETTLE_S,
    SignalSink,
    async_wait_until,
    connect,
    cooldown_env,
    feed,
    multiset_diff,
    new_uid,
    offline_signals,
    publish_all,
    signal_key,
    write_lines,
)

SEED = 31


def durable_env(stream: str) -> dict[str, str]:
    return {"NATS_CONSUMER_STREAM": stream, "NATS_CONSUMER_STREAM_CREATE": "true", **cooldown_env(5)}


async def consumer_caught_up(nc, stream: str, consumer: str, last_seq: int) -> bool:
    """Every message of the stream delivered and acknowledged (acks follow judging)."""
    info = await nc.jetstream().consumer_info(stream, consumer)
    return info.ack_floor is not None and info.ack_floor.stream_seq >= last_seq


async def wait_caught_up(nc, stream: str, consumer: str, last_seq: int) -> None:
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while not await consumer_caught_up(nc, stream, consumer, last_seq):
        assert asyncio.get_running_loop().time() < deadline, f"{consumer} never acknowledged {last_seq}"
        await asyncio.sleep(0.05)


def check_exactly_once(received: list[dict], expected: list[dict]) -> int:
    """De-duplicated by signal_id the signals are the offline ones; copies are true copies.
    Returns how many were made again."""
    by_id: dict[str, list[dict]] = collections.defaultdict(list)
    for sig in received:
        by_id[sig["signal_id"]].append(sig)
    for copies in by_id.values():
        assert len({signal_key(s) for s in copies}) == 1, copies  # same id, same signal
    unique = [copies[0] for copies in by_id.values()]
    assert not multiset_diff(unique, expected), multiset_diff(unique, expected)
    return len(received) - len(unique)


def test_kill_9_of_the_whole_service_mid_stream_then_restart_loses_and_doubles_nothing(
        jetstream, services, tmp_path):
    uid, stream = new_uid(), "IN" + new_uid()
    messages = feed(120, SEED)
    first = services(jetstream.url, env=durable_env(stream), uid=uid)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), first.env)
    assert expected

    async def scenario() -> tuple[list[dict], int]:
        nc = await connect(jetstream.url)
        sink = await SignalSink().subscribe(nc, first.out_subject)
        publisher = asyncio.get_running_loop().create_task(
            publish_all(nc, first.in_subject, messages, rate=3000))
        await async_wait_until(lambda: first.ingest(C.MESSAGES_HANDED_OFF) > len(messages) // 3, SETTLE_S,
                               "a third of the stream judged")
        os.killpg(first.pid, signal.SIGKILL)  # the whole service: supervisor, ingest, workers
        first.proc.wait(10)
        first.close_store()
        await publisher  # the rest goes into the stream while nothing reads it
        second = services(jetstream.url, env=durable_env(stream), uid=uid)
        await wait_caught_up(nc, stream, "realtime-strategies-group-0", len(messages))
        unique = len(expected)
        await async_wait_until(lambda: len({s["signal_id"] for s in sink.signals}) >= unique, SETTLE_S,
                               "every signal at the sink")
        rebuilt = second.workers_sum(C.SIGNALS_REBUILT)
        await nc.close()
        return sink.signals, rebuilt

    received, rebuilt = asyncio.run(scenario())
    again = check_exactly_once(received, expected)
    print(f"\nkill -9 mid-stream: {len(received)} signals received, {again} made again "
          f"(same id), {rebuilt} re-judged silently while rebuilding history")
    assert rebuilt > 0  # the history before the floor was rebuilt, not skipped


def test_a_shard_stopped_for_30_s_catches_up_without_loss(jetstream, services, tmp_path):
    """Shard 1 of 2 (its own durable consumer) is stopped while the feed goes on for 30 s: on
    its restart it judges exactly its symbols' part of the whole stream."""
    uid, stream = new_uid(), "IN" + new_uid()
    messages = feed(150, SEED + 1)
    env = {**durable_env(stream), "RTSIG_SHARD": "1/2"}
    first = services(jetstream.url, env=env, uid=uid)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), first.env)
    owned = {s["symbol"] for s in expected}
    assert owned and all(shard_of(symbol, 2) == 1 for symbol in owned)
    third = len(messages) // 3
    consumer = "realtime-strategies-group-1"

    async def scenario() -> list[dict]:
        nc = await connect(jetstream.url)
        sink = await SignalSink().subscribe(nc, first.out_subject)
        await publish_all(nc, first.in_subject, messages[:third], rate=3000)
        await wait_caught_up(nc, stream, consumer, third)
        code, _ = first.terminate()
        assert code == 0
        pace = (len(messages) - third) / 30.0  # the rest arrives over the 30 s of downtime
        await publish_all(nc, first.in_subject, messages[third:], rate=pace)
        services(jetstream.url, env=env, uid=uid)  # the restart
        await wait_caught_up(nc, stream, consumer, len(messages))
        await async_wait_until(lambda: len({s["signal_id"] for s in sink.signals}) >= len(expected),
                               SETTLE_S, "every signal at the sink")
        await nc.close()
        return sink.signals

    received = asyncio.run(scenario())
    assert check_exactly_once(received, expected) == 0  # a clean stop acknowledged everything
