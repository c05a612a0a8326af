"""Symbol shards live (docs/CONTRACT.md §2b): sharded ``rtsig run`` instances on one real NATS server.

* Three instances with ``RTSIG_SHARD=0/3, 1/3, 2/3`` on the same subjects publish, together,
  exactly the signals of one unsharded offline run of the same feed: none missing, none doubled
  (cool-downs on, so a doubled cool-down would show). Each read every message and counted the
  other shards' symbols as ``not_owned``.
* JetStream mode: two shards, each through its own durable consumer ``<group>-<k>``, together
  equal the offline run, and each consumer acknowledged the whole stream.
"""

from __future__ import annotations

import asyncio
import collections
import json

from rtsig import counters as C
from rtsig.decode import shard_of
from tests.live_helpers import (
    PACE,
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
    write_lines,
)

FEED_SECONDS = 120
SEED = 23


def per_symbol(messages) -> collections.Counter:
    return collections.Counter(json.loads(m)["stream"].split("@")[0].upper() for m in messages)


def not_owned_expected(messages, index: int, count: int) -> int:
    return sum(n for sym, n in per_symbol(messages).items() if shard_of(sym, count) != index)


async def settle_shards(shards, n_messages: int) -> None:
    """Every shard handed off every message (each reads the whole input) and judged its events."""
    try:
        await async_wait_until(lambda: all(s.ingest(C.MESSAGES_HANDED_OFF) >= n_messages for s in shards),
                               SETTLE_S, "every shard handed every message off")
        await async_wait_until(lambda: all(s.drained() for s in shards), SETTLE_S, "workers drained")
    except AssertionError as exc:
        detail = "\n".join(f"{s.instance}: {s.summary()}\n{s.log_tail(15)}" for s in shards)
        raise AssertionError(f"{exc}\n{detail}") from None


def check_shards(shards, messages, offline_summary) -> None:
    count = len(shards)
    kinds: collections.Counter = collections.Counter()
    for k, shard in enumerate(shards):
        summary = shard.summary()
        assert shard.ingest(C.MESSAGES_RECEIVED) == len(messages), k  # no queue group: all of it
        assert summary["ignored"] == {"not_owned": not_owned_expected(messages, k, count)}, (k, summary)
        assert summary["errors"] == {} and summary["overruns"] == 0, (k, summary)
        assert shard.workers_sum(C.PUBLISH_DROPPED) == 0
        kinds.update(summary["kinds"])
    assert dict(kinds) == offline_summary["kinds"]  # every stored message stored by one shard


def test_three_symbol_shards_publish_exactly_the_unsharded_signals(nats_server, services, tmp_path):
    uid = new_uid()
    messages = feed(FEED_SECONDS, SEED)
    env = cooldown_env(5)
    shards = [services(nats_server.url, env={**env, "RTSIG_SHARD": f"{k}/3"}, uid=uid) for k in range(3)]
    assert len({s.instance for s in shards}) == 3 and len({s.in_subject for s in shards}) == 1
    unsharded = {k: v for k, v in shards[0].env.items() if k != "RTSIG_SHARD"}
    expected, offline = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), unsharded)
    assert len({s["symbol"] for s in expected}) == 3, "every shard must have signals to publish"

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        try:
            sink = await SignalSink().subscribe(nc, shards[0].out_subject)
            await publish_all(nc, shards[0].in_subject, messages, PACE)
            await settle_shards(shards, len(messages))
            published = sum(s.workers_sum(C.PUBLISHED) for s in shards)
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            return list(sink.signals)
        finally:
            await nc.close()

    live = asyncio.run(scenario())
    check_shards(shards, messages, offline)
    for k, shard in enumerate(shards):  # each shard published its own symbols' signals only
        mine = sum(1 for s in expected if shard_of(s["symbol"], 3) == k)
        assert shard.workers_sum(C.PUBLISHED) == mine, (k, mine)
    diff = multiset_diff(live, expected)
    assert not diff, diff
    assert len({s["signal_id"] for s in live}) == len(live)
    for shard in shards:
        assert shard.terminate()[0] == 0


def test_two_shards_in_jetstream_mode_each_with_its_durable_consumer_equal_the_offline_run(
        jetstream, services, tmp_path):
    uid, stream = new_uid(), "IN" + new_uid()
    messages = feed(FEED_SECONDS, SEED + 1)
    env = {"NATS_CONSUMER_STREAM": stream, "NATS_CONSUMER_STREAM_CREATE": "true", **cooldown_env(5)}
    shards = [services(jetstream.url, env={**env, "RTSIG_SHARD": f"{k}/2"}, uid=uid) for k in range(2)]
    unsharded = {k: v for k, v in shards[0].env.items() if k not in ("RTSIG_SHARD", "NATS_CONSUMER_STREAM",
                                                                     "NATS_CONSUMER_STREAM_CREATE")}
    expected, offline = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), unsharded)
    assert {shard_of(s["symbol"], 2) for s in expected} == {0, 1}

    async def scenario() -> tuple[list[dict], list]:
        nc = await connect(jetstream.url)
        try:
            sink = await SignalSink().subscribe(nc, shards[0].out_subject)
            await publish_all(nc, shards[0].in_subject, messages, PACE)
            js = nc.jetstream()
            consumers = [f"realtime-strategies-group-{k}" for k in range(2)]

            async def acknowledged() -> bool:
                infos = [await js.consumer_info(stream, c) for c in consumers]
                return all(i.ack_floor is not None and i.ack_floor.stream_seq >= len(messages) for i in infos)

            deadline = asyncio.get_running_loop().time() + SETTLE_S
            while not await acknowledged():  # acknowledgements follow judging and publishing
                assert asyncio.get_running_loop().time() < deadline, "a shard never acknowledged the stream"
                await asyncio.sleep(0.05)
            published = sum(s.workers_sum(C.PUBLISHED) for s in shards)
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            names = sorted([c.name async for c in _consumers(js, stream)])
            return list(sink.signals), names
        finally:
            await nc.close()

    live, names = asyncio.run(scenario())
    assert names == ["realtime-strategies-group-0", "realtime-strategies-group-1"]
    check_shards(shards, messages, offline)
    diff = multiset_diff(live, expected)
    assert not diff, diff
    assert len({s["signal_id"] for s in live}) == len(live)  # a clean run makes nothing twice
    for shard in shards:
        assert shard.terminate()[0] == 0


async def _consumers(js, stream: str):
    for info in await js.consumers_info(stream):
        yield info
