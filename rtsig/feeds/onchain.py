"""``rtsig feed onchain``: BTC transfers from a public unconfirmed-transaction WebSocket
(blockchain.com's ``wss://ws.blockchain.info/inv``: send ``{"op": "unconfirmed_sub"}``, receive
``{"op": "utx", "x": {"hash", "time", "inputs": [{"prev_out": {"addr", "value"}}], "out": [{"addr",
"value"}]}}``, values in satoshi), published as ``{"ts", "chain": "btc", "txid", "value",
"direction", "exchange"}`` on ``ONCHAIN_TRANSFERS_SUBJECT``.

Direction comes from an optional file of labelled exchange addresses (``FEED_ONCHAIN_ADDRESSES``:
one ``address,exchange`` per line, or a JSON object ``{address: exchange}``):
- outputs paying an exchange's address from inputs that are not that exchange's: ``to_exchange``,
  value = what those outputs pay it;
- inputs from an exchange's addresses paying others: ``from_exchange``, value = what the outputs
  pay to addresses that are not that exchange's;
- anything else (no label, or an exchange moving coins between its own addresses): ``other``,
  value = the total output.
The direction is only as good as the labels: an unlabelled exchange wallet is ``other``.
Transfers below ``FEED_ONCHAIN_MIN_BTC`` (default 1) with direction ``other`` are not published
(the mempool carries several transactions a second; the strategy ignores ``other`` anyway).
The socket is re-opened with back-off when it closes; a message that is not the documented shape
is counted (``garbage``) and skipped.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rtsig.errors import SettingsError
from rtsig.feeds.adapter import BACKOFF_FIRST_S, BACKOFF_MAX_S, AdapterStats, Publish, Sleep, env_number, now_ms
from rtsig.logs import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.blockchain.info/inv"
SATOSHI = 100_000_000


@dataclass(frozen=True)
class OnchainConfig:
    url: str = DEFAULT_URL
    addresses: Path | None = None
    min_btc: float = 1.0
    open_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OnchainConfig:
        path = env.get("FEED_ONCHAIN_ADDRESSES")
        return cls(env.get("FEED_ONCHAIN_URL") or cls.url, Path(path) if path else None,
                   env_number(env, "FEED_ONCHAIN_MIN_BTC", cls.min_btc, lo=-1.0),
                   env_number(env, "FEED_HTTP_TIMEOUT_SECONDS", cls.open_timeout_s))


def load_labels(path: Path | None) -> dict[str, str]:
    """``{address: exchange}`` from a CSV (``address,exchange``; ``#`` comments) or JSON file."""
    if path is None:
        return {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError("FEED_ONCHAIN_ADDRESSES", str(path), f"a readable file ({exc.strerror})") from None
    if text.lstrip().startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise SettingsError("FEED_ONCHAIN_ADDRESSES", str(path), "a JSON object {address: exchange}") from None
        return {str(a).strip(): str(e).strip().lower() for a, e in data.items() if str(a).strip()}
    labels = {}
    for row in csv.reader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")):
        if len(row) >= 2 and row[0].strip() and row[1].strip():
            labels[row[0].strip()] = row[1].strip().lower()
    return labels


def _amount(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("value")
    return value


def transfer_from_utx(message, labels: Mapping[str, str], received_ms: int) -> dict | None:
    """The transfer body of one WebSocket message; None for a message that is not a transaction
    (a pong, a status); ValueError for one that claims to be but is not the documented shape."""
    if not isinstance(message, dict) or message.get("op") != "utx":
        return None
    x = message.get("x")
    if not isinstance(x, dict) or not isinstance(x.get("hash"), str) or not x["hash"]:
        raise ValueError("no x.hash")
    inputs = [(i.get("prev_out") or {}) for i in x.get("inputs") or [] if isinstance(i, dict)]
    outputs = [o for o in x.get("out") or [] if isinstance(o, dict)]
    if not outputs:
        raise ValueError("no outputs")
    out_values = [(o.get("addr"), _amount(o.get("value"))) for o in outputs]
    label_of: Mapping[Any, str] = labels  # looked up with JSON values (None: no address)
    in_exchanges = {label_of.get(i.get("addr")) for i in inputs} - {None}
    total = sum(v for _, v in out_values)
    direction, exchange, value = "other", None, total
    paid: dict[str, int] = {}
    for addr, v in out_values:
        e = label_of.get(addr)
        if e is not None and e not in in_exchanges:
            paid[e] = paid.get(e, 0) + v
    if paid and not in_exchanges:
        exchange = max(sorted(paid), key=lambda e: paid[e])
        direction, value = "to_exchange", paid[exchange]
    elif len(in_exchanges) == 1:
        exchange = next(iter(in_exchanges))
        leaving = sum(v for addr, v in out_values if label_of.get(addr) != exchange)
        if leaving > 0:
            direction, value = "from_exchange", leaving
        else:
            exchange = None
    t = x.get("time")
    ts = int(t * 1000) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) \
        and 0 < t * 1000 <= received_ms + 300_000 else received_ms
    return {"ts": ts, "chain": "btc", "txid": x["hash"][:80], "value": value / SATOSHI,
            "direction": direction, "exchange": exchange}


class OnchainAdapter:
    """Reads the WebSocket, re-opening it with back-off, and publishes transfer bodies."""

    def __init__(self, config: OnchainConfig, publish: Publish, sleep: Sleep = asyncio.sleep,
                 stats: AdapterStats | None = None) -> None:
        self.config = config
        self.labels = load_labels(config.addresses)
        self.publish = publish
        self.sleep = sleep
        self.stats = stats or AdapterStats()
        self.limiter = RateLimiter(60.0)

    def _count(self, reason: str, detail: object) -> None:
        self.stats.errors[reason] += 1
        if self.limiter.allow(reason):
            log.warning("onchain source: %s (%s)", reason, detail,
                        extra={"feed": "onchain", "reason": reason, "count_total": self.stats.errors[reason]})

    async def handle(self, raw) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._count("not_json", raw[:60])
            return
        try:
            body = transfer_from_utx(message, self.labels, now_ms())
        except (ValueError, TypeError, AttributeError) as exc:
            self._count("garbage", exc)
            return
        if body is None:
            return
        if body["direction"] == "other" and body["value"] < self.config.min_btc:
            self.stats.skipped += 1
            return
        await self.publish(orjson.dumps(body))
        self.stats.published += 1

    async def run(self, max_messages: int | None = None, max_connections: int | None = None,
                  stopping=lambda: False) -> AdapterStats:
        """Until ``stopping()`` (or ``max_messages`` received / ``max_connections`` opened)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        received = connections = failures = 0
        while not stopping():
            if max_connections is not None and connections >= max_connections:
                break
            connections += 1
            self.stats.polls += 1
            try:
                async with connect(self.config.url, open_timeout=self.config.open_timeout_s,
                                   ping_interval=20, ping_timeout=20, max_size=1 << 20) as ws:
                    await ws.send(orjson.dumps({"op": "unconfirmed_sub"}).decode())
                    failures = 0
                    async for raw in ws:
                        received += 1
                        await self.handle(raw if isinstance(raw, bytes) else raw.encode())
                        if (max_messages is not None and received >= max_messages) or stopping():
                            return self.stats
                self._count("closed", self.config.url)
            except (TimeoutError, OSError, WebSocketException) as exc:
                self._count("timeout" if isinstance(exc, asyncio.TimeoutError) else "unreachable", exc)
            failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))
            self.stats.delays.append(delay)
            if max_connections is not None and connections >= max_connections:
                break
            await self.sleep(delay)
        return self.stats
