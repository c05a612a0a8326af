"""``rtsig feed dominance|quotes|onchain``: run one adapter until interrupted (or ``--once``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import orjson

from rtsig.settings import Settings

if TYPE_CHECKING:
    from rtsig.feeds.dominance import DominanceConfig, DominanceSource
    from rtsig.feeds.quotes import QuotesConfig, QuotesSource

log = logging.getLogger(__name__)
FEEDS = ("dominance", "quotes", "onchain")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("feed", choices=FEEDS, help="which feed: dominance (CoinGecko /global), quotes "
                   "(Binance index constituents), onchain (BTC unconfirmed transactions)")
    p.add_argument("--url", default=None, help="the source (default FEED_<FEED>_URL or the public one)")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between polls (dominance, quotes; default FEED_<FEED>_INTERVAL_SECONDS)")
    p.add_argument("--once", action="store_true",
                   help="one poll (onchain: one connection) and exit, printing what it did as JSON")
    p.add_argument("--max-messages", type=int, default=None, help="onchain: stop after this many")
    p.add_argument("--stdout", action="store_true", help="print the bodies instead of publishing them")


def command(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig import logs

    logs.setup(settings.log_level, settings.log_format, f"feed-{args.feed}")
    stats = asyncio.run(_run(args, settings))
    if args.once or args.max_messages:
        sys.stderr.write(orjson.dumps(stats.as_dict()).decode() + "\n")
    return 0


async def _run(args: argparse.Namespace, settings: Settings):
    from rtsig.feeds.adapter import AdapterStats, Poller, nats_publisher

    env = dict(os.environ)
    if args.url:
        env[f"FEED_{args.feed.upper()}_URL"] = args.url
    if args.interval is not None:
        env[f"FEED_{args.feed.upper()}_INTERVAL_SECONDS"] = str(args.interval)
    subject = dict(zip(FEEDS, settings.feed_subjects))[args.feed]
    if args.stdout:
        async def publish(body: bytes) -> None:
            sys.stdout.write(body.decode() + "\n")
            sys.stdout.flush()

        async def close() -> None:
            pass
    else:
        publish, close = await nats_publisher(settings, subject)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats = AdapterStats()
    log.info("feed %s: publishing on %s", args.feed, subject if not args.stdout else "stdout")
    try:
        if args.feed == "onchain":
            from rtsig.feeds.onchain import OnchainAdapter, OnchainConfig

            adapter = OnchainAdapter(OnchainConfig.from_env(env), publish, stats=stats)
            await adapter.run(max_messages=args.max_messages, max_connections=1 if args.once else None,
                              stopping=stop.is_set)
        else:
            config: DominanceConfig | QuotesConfig
            source: DominanceSource | QuotesSource
            if args.feed == "dominance":
                from rtsig.feeds.dominance import DominanceConfig, DominanceSource

                config = DominanceConfig.from_env(env)
                source = DominanceSource(config)
            else:
                from rtsig.feeds.quotes import QuotesConfig, QuotesSource

                config = QuotesConfig.from_env(env)
                source = QuotesSource(config, stats)
            poller = Poller(args.feed, source.fetch, publish, config.interval_s,
                            sleep=lambda s: _sleep_or_stop(stop, s), stats=stats)
            await poller.run(max_polls=1 if args.once else None, stopping=stop.is_set)
    finally:
        await close()
    return stats


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
