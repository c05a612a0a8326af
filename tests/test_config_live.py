"""Configuration changes reach a running service: within 1 s, without a restart.

A change is committed through the config service on the service's own store (the SQLite file in
its ``RTSIG_DATA_DIR``) and announced on NATS exactly as the web API announces it; the next depth
messages are then judged with the new parameters. Without the notice, the cache TTL picks the
change up; with two instances sharing the store, one notice reaches both.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from rtsig import counters as C
from rtsig.config.notify import notice
from rtsig.config.service import ConfigService
from rtsig.settings import Settings
from tests.decode_helpers import depth_msg
from tests.live_helpers import (
    N_WORKERS,
    SETTLE_S,
    Service,
    SignalSink,
    async_wait_until,
    connect,
    cooldown_env,
    new_uid,
    settle,
)

SYMBOL = "BTCUSDT"
PROPAGATION_S = 1.0
"""The contract (docs/CONTRACT.md §4): a change takes effect in every worker within 1 s."""


def skewed_book(ratio: float, update_id: int) -> bytes:
    """Five levels a side, bid volume / ask volume = ``ratio``, spread 0.01 %."""
    bids = [[f"{100.0 - 0.01 * i:.2f}", f"{ratio:.4f}"] for i in range(5)]
    asks = [[f"{100.01 + 0.01 * i:.2f}", "1.0000"] for i in range(5)]
    return depth_msg(SYMBOL, bids, asks, update_id=update_id)


def service_env(config_subject: str, **extra: str) -> dict[str, str]:
    return {**cooldown_env(0), "RTSIG_CONFIG_SUBJECT": config_subject, **extra}


def epochs_seen(service: Service) -> list[int]:
    return [service.worker(k, C.CONFIG_EPOCH_SEEN) for k in range(N_WORKERS)]


def config_service(service: Service) -> ConfigService:
    """A config service on the running service's own store (as its web API would have)."""
    return ConfigService(Settings.from_env(service.env))


class Driver:
    """Publishes books to one or more services and collects the signals they produce."""

    def __init__(self, nc, services: list[Service]) -> None:
        self.nc = nc
        self.services = services
        self.sink = SignalSink()
        self.sent = 0
        self.update_id = 0

    async def start(self) -> Driver:
        for s in {s.out_subject for s in self.services}:
            await self.sink.subscribe(self.nc, s)
        return self

    async def book(self, ratio: float) -> list[dict]:
        """Publish one book; the signals it produced once every worker has judged it."""
        before = len(self.sink.signals)
        published_before = sum(s.workers_sum(C.PUBLISHED) for s in self.services)
        self.update_id += 1
        await self.nc.publish(self.services[0].in_subject, skewed_book(ratio, self.update_id))
        await self.nc.flush()
        self.sent += 1
        await settle(self.services, self.sent)
        published = sum(s.workers_sum(C.PUBLISHED) for s in self.services) - published_before
        assert await self.sink.wait_count(before + published, SETTLE_S)
        return [sig for sig in self.sink.signals[before:] if sig["strategy_id"] == "orderbook_skew"]

    async def announce(self, subject: str, result, instance: str) -> None:
        await self.nc.publish(subject, notice(result, instance))
        await self.nc.flush()


def test_a_threshold_change_alters_the_next_depth_signals_within_one_second(nats_server, services):
    config_subject = f"{new_uid()}.config"
    service = services(nats_server.url, env=service_env(config_subject))
    config = config_service(service)

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            drive = await Driver(nc, [service]).start()
            before = await drive.book(1.4)
            assert [s["action"] for s in before] == ["buy"], before
            assert before[0]["metadata"]["strategy_config"]["version"] == 0

            epochs = epochs_seen(service)
            changed_at = time.monotonic()
            result = config.update("orderbook_skew", None, {"buy_threshold": 1.5}, "test", "raise the bar")
            await drive.announce(config_subject, result, "elsewhere")
            took = await async_wait_until(
                lambda: all(e > b for e, b in zip(epochs_seen(service), epochs)), 5.0,
                "every worker to reload its parameters")
            assert time.monotonic() - changed_at <= PROPAGATION_S, f"propagation took {took:.2f} s"

            assert await drive.book(1.4) == [], "1.4 < the new buy_threshold 1.5: no signal"
            after = await drive.book(1.6)
            assert [s["action"] for s in after] == ["buy"]
            meta = after[0]["metadata"]["strategy_config"]
            assert meta["version"] == 1 and meta["parameters"]["buy_threshold"] == 1.5
            assert meta["source"] == "sqlite" and meta["is_override"] is False

            epochs = epochs_seen(service)
            override = config.update("orderbook_skew", SYMBOL, {"buy_threshold": 1.3}, "test", "per symbol")
            await drive.announce(config_subject, override, "elsewhere")
            await async_wait_until(lambda: all(e > b for e, b in zip(epochs_seen(service), epochs)),
                                   5.0, "every worker to reload again")
            again = await drive.book(1.4)
            assert [s["action"] for s in again] == ["buy"]
            assert again[0]["metadata"]["strategy_config"]["is_override"] is True
            assert again[0]["metadata"]["strategy_config"]["parameters"]["buy_threshold"] == 1.3
        finally:
            await nc.close()
            config.close()

    asyncio.run(scenario())
    assert service.running(), service.log_tail()


def test_without_a_notice_the_cache_ttl_picks_the_change_up(nats_server, services):
    service = services(nats_server.url, env=service_env(f"{new_uid()}.config",
                                                          CONFIG_CACHE_TTL_SECONDS="1"))
    config = config_service(service)

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            drive = await Driver(nc, [service]).start()
            assert [s["action"] for s in await drive.book(1.4)] == ["buy"]
            config.update("orderbook_skew", None, {"buy_threshold": 2.0}, "test", "no notice sent")
            # the TTL (1 s) expires on a housekeeping tick: poll with books until the change shows
            deadline = time.monotonic() + 5.0
            while await drive.book(1.4):
                assert time.monotonic() < deadline, "the TTL refresh never applied the change"
        finally:
            await nc.close()
            config.close()

    asyncio.run(scenario())


def test_one_notice_reaches_every_replica_sharing_the_store(nats_server, services, tmp_path):
    config_subject = f"{new_uid()}.config"
    shared = {"RTSIG_DATA_DIR": str(tmp_path / "shared-data")}
    first = services(nats_server.url, env=service_env(config_subject, **shared))
    second = services(nats_server.url, env={**service_env(config_subject, **shared),
                                            "NATS_CONSUMER_TOPIC": first.in_subject,
                                            "NATS_PUBLISHER_TOPIC": first.out_subject})
    config = config_service(first)

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            epochs = [epochs_seen(s) for s in (first, second)]
            result = config.update("orderbook_skew", None, {"buy_threshold": 1.8}, "test", "both")
            await nc.publish(config_subject, notice(result, "elsewhere"))
            await nc.flush()
            for s, before in zip((first, second), epochs):
                await async_wait_until(lambda: all(e > b for e, b in zip(epochs_seen(s), before)),
                                       5.0, f"{s.instance} to reload")
            assert all(s.worker(0, C.CONFIG_NOTICES) == 1 for s in (first, second))
            drive = await Driver(nc, [first, second]).start()
            for _ in range(4):  # the queue group spreads these over both instances
                assert await drive.book(1.6) == [], "1.6 < 1.8 on every replica"
            assert first.ingest(C.MESSAGES_RECEIVED) + second.ingest(C.MESSAGES_RECEIVED) == 4
        finally:
            await nc.close()
            config.close()

    asyncio.run(scenario())


def test_a_malformed_notice_is_ignored_and_the_worker_keeps_running(nats_server, services):
    config_subject = f"{new_uid()}.config"
    service = services(nats_server.url, env=service_env(config_subject))

    async def scenario() -> None:
        nc = await connect(nats_server.url)
        try:
            for payload in (b"not json", b"[]", orjson.dumps({"no": "strategy"}),
                            orjson.dumps({"strategy_id": "orderbook_skew", "version": 0})):
                await nc.publish(config_subject, payload)
            await nc.flush()
            # NATS keeps one publisher's order: once the valid notice counts, the others were seen
            await async_wait_until(lambda: service.worker(0, C.CONFIG_NOTICES) >= 1, 5.0,
                                   "the valid notice")
            assert service.worker(0, C.CONFIG_NOTICES) == 1
            drive = await Driver(nc, [service]).start()
            assert [s["action"] for s in await drive.book(1.4)] == ["buy"]
        finally:
            await nc.close()

    asyncio.run(scenario())
    assert service.running()
