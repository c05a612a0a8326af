"""The live service (`rtsig run`) against a real NATS server: same signals as the offline oracle
(`rtsig signals`), queue-group sharing between instances, bad input counted and dropped.
"""

from __future__ import annotations

import asyncio
import random
import re

import orjson
import pytest

from rtsig import counters as C
from tests.live_helpers import (
    PACE,
    SETTLE_S,
    Service,
    SignalSink,
    connect,
    cooldown_env,
    feed,
    message_id,
    multiset_diff,
    new_uid,
    offline_signals,
    publish_all,
    settle,
    shm_path,
    write_lines,
)

FEED_SECONDS = 120
SEED = 11
SIGNAL_FIELDS = {"signal_id", "strategy_id", "strategy", "source", "symbol", "action", "confidence",
                 "strength", "price", "quantity", "current_price", "timeframe", "order_type",
                 "time_in_force", "stop_loss", "take_profit", "stop_loss_pct", "take_profit_pct",
                 "indicators", "metadata", "timestamp"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def publish_and_collect(service: Service, nats_url: str, messages,
                              rate: float | None = PACE) -> list[dict]:
    nc = await connect(nats_url)
    try:
        sink = await SignalSink().subscribe(nc, service.out_subject)
        await publish_all(nc, service.in_subject, messages, rate)
        await settle([service], len(messages))
        published = service.workers_sum(C.PUBLISHED)
        assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
        return list(sink.signals)
    finally:
        await nc.close()


def check_parity(nats_server, services, tmp_path, env: dict, rate: float | None) -> None:
    messages = feed(FEED_SECONDS, SEED)
    service = services(nats_server.url, env=env)
    expected, offline = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
    assert len(expected) >= 10, "the feed must make the oracle produce signals"

    live = asyncio.run(publish_and_collect(service, nats_server.url, messages, rate))

    assert service.ingest(C.MESSAGES_RECEIVED) == len(messages)
    summary = service.summary()
    assert summary["errors"] == {}
    assert summary["overruns"] == 0, f"{summary['overruns']} events skipped (data overwritten)"
    assert summary["kinds"] == offline["kinds"]
    assert summary["signals"] == offline["signals"]
    assert service.ingest(C.EVENT_RING_FULL) == 0
    assert service.workers_sum(C.PUBLISH_DROPPED) == 0
    assert service.workers_sum(C.PUBLISHED) == len(expected), "published a different count"
    diff = multiset_diff(live, expected)
    assert not diff, diff
    for sig in live:
        assert SIGNAL_FIELDS <= sig.keys(), SIGNAL_FIELDS - sig.keys()
        assert TIMESTAMP.match(sig["timestamp"]), sig["timestamp"]
    assert len({s["signal_id"] for s in live}) == len(live)

    code, _ = service.terminate()
    assert code == 0, service.log_tail()
    assert not shm_path(service.instance).exists()


@pytest.mark.parametrize("env", [{}, cooldown_env(0)], ids=["default-cooldowns", "no-cooldown"])
def test_live_signals_equal_the_offline_signals_of_the_same_feed(nats_server, services, tmp_path,
                                                                 env):
    check_parity(nats_server, services, tmp_path, env, rate=PACE)


def test_a_flat_out_burst_loses_no_event_and_gives_the_offline_signals(nats_server, services,
                                                                       tmp_path):
    """Flat out, the ingest outruns the workers: it must wait for them (backpressure), never
    overwrite a book a worker has not judged — zero overruns and offline parity."""
    check_parity(nats_server, services, tmp_path, cooldown_env(0), rate=None)


def test_two_instances_share_the_input_through_one_queue_group(nats_server, services, tmp_path):
    uid = new_uid()
    env = {"NATS_CONSUMER_GROUP": f"{uid}-group", **cooldown_env(0)}
    a = services(nats_server.url, env=env, uid=uid)
    b = services(nats_server.url, env=env, uid=uid)
    messages = feed(FEED_SECONDS, SEED)
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), a.env)
    # one signal at most per input message and strategy (a book can give orderbook_skew,
    # microprice and order_flow_imbalance signals): a message judged twice would repeat a pair
    assert len({(s["metadata"]["message_id"], s["strategy_id"]) for s in expected}) == len(expected)

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        try:
            sink = await SignalSink().subscribe(nc, a.out_subject)
            await publish_all(nc, a.in_subject, messages, PACE)
            await settle([a, b], len(messages))
            published = a.workers_sum(C.PUBLISHED) + b.workers_sum(C.PUBLISHED)
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            return list(sink.signals)
        finally:
            await nc.close()

    live = asyncio.run(scenario())

    received_a, received_b = a.ingest(C.MESSAGES_RECEIVED), b.ingest(C.MESSAGES_RECEIVED)
    assert received_a + received_b == len(messages), (received_a, received_b, len(messages))
    assert received_a > 0 and received_b > 0, (received_a, received_b)
    for s in (a, b):
        assert s.errors() == {}
        assert s.summary()["overruns"] == 0
    assert len(live) == a.workers_sum(C.PUBLISHED) + b.workers_sum(C.PUBLISHED) > 0
    assert a.workers_sum(C.PUBLISHED) > 0 and b.workers_sum(C.PUBLISHED) > 0
    pairs = [(s["metadata"]["message_id"], s["strategy_id"]) for s in live]
    assert len(set(pairs)) == len(pairs), "a message was judged by both instances"
    ids = [message for message, _ in pairs]
    sent_ids = {message_id(m) for m in messages}
    assert set(ids) <= sent_ids
    # orderbook_skew judges one snapshot alone, so without a cool-down it does not depend on
    # which instance saw which message: those signals must be exactly the offline ones
    skew = [s for s in live if s["strategy_id"] == "orderbook_skew"]
    skew_expected = [s for s in expected if s["strategy_id"] == "orderbook_skew"]
    diff = multiset_diff(skew, skew_expected)
    assert not diff, diff

    for s in (a, b):
        code, _ = s.terminate()
        assert code == 0, s.log_tail()


# --------------------------------------------------------------------------- malformed input
def _trade(stream: str = "btcusdt@trade", s: str = "BTCUSDT", p: str = "67000.5", q: str = "0.25",
           **extra) -> bytes:
    data = {"e": "trade", "E": 1730462400500, "s": s, "t": 99, "p": p, "q": q, "T": 1730462400500,
            "m": False, "M": True}
    return orjson.dumps({"stream": stream, "data": data, "timestamp": "2024-11-01T12:00:00.500000Z",
                         "message_id": "bad", **extra})


def _depth(bids: list, asks: list) -> bytes:
    return orjson.dumps({"stream": "ethusdt@depth20@100ms",
                         "timestamp": "2024-11-01T12:00:00.500000Z",
                         "data": {"lastUpdateId": 5, "bids": bids, "asks": asks}})


BAD_MESSAGES: dict[str, list[bytes]] = {
    "not_json": [b'{"stream": "btcusdt@trade", "data": {"e": "trade"', b"not json at all"],
    "not_object": [b"[1,2]"],
    "missing_stream": [orjson.dumps({"data": {"e": "trade", "E": 1, "s": "BTCUSDT", "p": "1",
                                              "q": "1", "T": 1, "m": True}})],
    "bad_number": [_trade(p="12.3.4"), _trade(q="abc"),
                   _depth([["3400.1x", "1.0"]], [["3400.2", "1.0"]])],
    "crossed_book": [_depth([["3400.5", "1.0"]], [["3400.0", "1.0"]])],
    "negative_quantity": [_trade(q="-0.5"), _depth([["3400.1", "-1.0"]], [["3400.2", "1.0"]])],
    "oversized": [_trade(pad="x" * 70_000)],
    "symbol_mismatch": [_trade(s="ETHUSDT")],
}


def test_malformed_messages_are_counted_by_reason_and_nothing_else_is_lost(nats_server, services,
                                                                          tmp_path):
    rng = random.Random(5)
    valid = list(feed(FEED_SECONDS, SEED))
    bad: list[tuple[str, bytes]] = []
    for reason, variants in BAD_MESSAGES.items():
        for i in range(7):
            bad.append((reason, variants[i % len(variants)]))
    rng.shuffle(bad)
    positions = sorted(rng.sample(range(len(valid)), len(bad)))
    mixed: list[bytes] = []
    cursor = 0
    for pos, (_, message) in zip(positions, bad):
        mixed.extend(valid[cursor:pos])
        mixed.append(message)
        cursor = pos
    mixed.extend(valid[cursor:])
    sent_errors = {reason: 7 for reason in BAD_MESSAGES}

    service = services(nats_server.url, env=cooldown_env(0))
    expected, _ = offline_signals(write_lines(tmp_path / "valid.jsonl", valid), service.env)
    _, offline_mixed = offline_signals(write_lines(tmp_path / "mixed.jsonl", mixed), service.env)
    assert offline_mixed["errors"] == sent_errors, "the crafted messages are not what I meant"

    live = asyncio.run(publish_and_collect(service, nats_server.url, mixed))

    assert service.running()
    assert service.ingest(C.MESSAGES_RECEIVED) == len(mixed)
    assert service.errors() == sent_errors
    assert service.summary()["overruns"] == 0
    assert service.workers_sum(C.PUBLISHED) == len(expected)
    diff = multiset_diff(live, expected)
    assert not diff, diff
    code, _ = service.terminate()
    assert code == 0, service.log_tail()
