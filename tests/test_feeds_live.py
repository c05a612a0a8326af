"""The market-logic strategies live: `rtsig run` over a real nats-server, fed a mixed stream of
Binance market data and the three feeds of docs/CONTRACT.md §2c, publishes exactly the signals
`rtsig signals` makes offline from the same stream; bad feed messages are counted by reason."""

from __future__ import annotations

import asyncio
import collections

import orjson

from rtsig import counters as C
from rtsig.feeds.messages import REASON_BAD_CHAIN, REASON_BAD_VENUE, REASON_NOT_JSON
from rtsig.layout import FEED_DOMINANCE, FEED_QUOTES, FEED_TRANSFERS
from tests.feed_helpers import MARKET_LOGIC, feed_env, feed_signal_key, mixed_stream, write_mixed
from tests.live_helpers import PACE, SETTLE_S, SignalSink, connect, cooldown_env, new_uid, offline_signals, settle

SECONDS = 90
SEED = 23


async def _publish(nc, in_subject: str, stream, rate: float) -> None:
    """One connection, in order: NATS keeps a publisher's order across subjects for a subscriber
    connection, so the ingest receives the feeds exactly interleaved as in the offline file."""
    import time

    started = time.monotonic()
    for n, (subject, body) in enumerate(stream, 1):
        await nc.publish(subject or in_subject, body)
        if n % 100 == 0:
            await nc.flush()
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing, not synchronisation
    await nc.flush()


def test_live_market_logic_signals_equal_the_offline_ones(nats_server, services, tmp_path):
    uid = new_uid()
    env = {**cooldown_env(0), **feed_env(uid)}
    subjects = (env["MARKET_DOMINANCE_SUBJECT"], env["MARKET_QUOTES_SUBJECT"],
                env["ONCHAIN_TRANSFERS_SUBJECT"])
    stream = mixed_stream(SECONDS, SEED, subjects)
    bad = [(subjects[0], b"not json"), (subjects[1], orjson.dumps(
        {"ts": 1730462400000, "venue": "binance", "symbol": "BTCUSDT", "bid": 1, "ask": 2})),
        (subjects[2], orjson.dumps({"ts": 1730462400000, "chain": "doge", "txid": "x", "value": 1,
                                    "direction": "other"}))]
    stream = stream[:500] + bad + stream[500:]
    service = services(nats_server.url, env=env, uid=uid)
    expected, offline = offline_signals(write_mixed(tmp_path / "mixed.jsonl", stream), service.env)
    by_strategy = collections.Counter(s["strategy_id"] for s in expected)
    assert all(by_strategy[sid] > 0 for sid in MARKET_LOGIC), by_strategy
    assert offline["feeds"]["dominance"]["errors"] == {"not_json": 1}

    async def scenario() -> list[dict]:
        nc = await connect(nats_server.url)
        try:
            sink = await SignalSink().subscribe(nc, service.out_subject)
            await _publish(nc, service.in_subject, stream, PACE)
            await settle([service], len(stream))
            published = service.workers_sum(C.PUBLISHED)
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            return list(sink.signals)
        finally:
            await nc.close()

    live = asyncio.run(scenario())

    summary = service.summary()
    assert summary["errors"] == {} and summary["overruns"] == 0
    assert summary["signals"] == offline["signals"]
    assert collections.Counter(map(feed_signal_key, live)) == \
        collections.Counter(map(feed_signal_key, expected))
    ingest = service.rows()[C.ROW_INGEST]
    per_feed = {name: offline["feeds"][name]["messages"] for name in ("dominance", "quotes", "onchain")}
    assert [int(ingest[C.FEED_MESSAGES_BASE + f]) for f in (FEED_DOMINANCE, FEED_QUOTES, FEED_TRANSFERS)] \
        == list(per_feed.values())
    reasons = C.N_FEED_REASONS
    assert ingest[C.FEED_ERRORS_BASE + FEED_DOMINANCE * reasons + REASON_NOT_JSON] == 1
    assert ingest[C.FEED_ERRORS_BASE + FEED_QUOTES * reasons + REASON_BAD_VENUE] == 1
    assert ingest[C.FEED_ERRORS_BASE + FEED_TRANSFERS * reasons + REASON_BAD_CHAIN] == 1
    assert ingest[C.FEED_LAST_RECEIPT_BASE + FEED_QUOTES] > 0
    code, _ = service.terminate()
    assert code == 0, service.log_tail()
