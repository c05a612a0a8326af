"""What the feed adapters share: settings, polling with back-off, counting, publishing to NATS.

An adapter is a small process (``rtsig feed dominance|quotes|onchain``) that reads one public
source and publishes the bodies of docs/CONTRACT.md §2c on the feed's subject. A source that is
down, slow, rate-limiting or answering garbage never stops it: each failure is counted by reason
(:class:`AdapterStats`, logged once a minute per reason) and the adapter backs off — exponentially
from ``BACKOFF_FIRST_S`` up to ``BACKOFF_MAX_S`` after errors, and for a 429/418 answer for the
``Retry-After`` the source asked for (Binance bans an IP that ignores it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson

from rtsig.errors import SettingsError
from rtsig.logs import RateLimiter

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
RATE_LIMIT_DEFAULT_S = 60.0
"""Wait after a 429/418 answer without a usable ``Retry-After``."""
USER_AGENT = "rtsig-feed/1 (+https://github.com/)"

Publish = Callable[[bytes], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class SourceError(Exception):
    """A poll that gave nothing usable; ``reason`` is the counter label, ``retry_after`` (s) is
    set when the source asked to be left alone for a while (rate limit)."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class AdapterStats:
    """What an adapter did: polls, bodies published, and every failure by reason."""

    polls: int = 0
    published: int = 0
    skipped: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)
    delays: list[float] = field(default_factory=list)
    """The waits the loop chose, newest last (the back-off is tested on these, not on time)."""

    def as_dict(self) -> dict:
        return {"polls": self.polls, "published": self.published, "skipped": self.skipped,
                "errors": dict(self.errors)}


def http_get_json(url: str, timeout_s: float, params: Mapping[str, str] | None = None):
    """GET ``url`` and decode its JSON; :class:`SourceError` for every way that can fail."""
    if params:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - a setting
            body = response.read(4 << 20)
    except urllib.error.HTTPError as exc:
        if exc.code in (418, 429):
            raise SourceError("rate_limited", f"HTTP {exc.code}",
                              _retry_after(exc.headers.get("Retry-After"))) from None
        raise SourceError(f"http_{exc.code}", url) from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = "timeout" if "timed out" in str(exc) or isinstance(exc, TimeoutError) else "unreachable"
        raise SourceError(reason, f"{url}: {exc}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SourceError("not_json", url) from None


def _retry_after(value: str | None) -> float:
    try:
        return max(1.0, float(value)) if value else RATE_LIMIT_DEFAULT_S
    except ValueError:
        return RATE_LIMIT_DEFAULT_S


class Poller:
    """Calls ``fetch`` (returns bodies to publish) every ``interval_s``, backing off on errors."""

    def __init__(self, name: str, fetch: Callable[[], list[bytes]], publish: Publish,
                 interval_s: float, sleep: Sleep = asyncio.sleep,
                 stats: AdapterStats | None = None) -> None:
        self.name = name
        self.fetch = fetch
        self.publish = publish
        self.interval_s = interval_s
        self.sleep = sleep
        self.stats = stats or AdapterStats()
        self.limiter = RateLimiter(60.0)
        self.failures = 0

    async def poll_once(self) -> float:
        """One poll; the delay before the next one."""
        self.stats.polls += 1
        try:
            bodies = await asyncio.to_thread(self.fetch)
        except SourceError as exc:
            self.stats.errors[exc.reason] += 1
            self.failures += 1
            if self.limiter.allow(exc.reason):
                log.warning("%s source: %s", self.name, exc,
                            extra={"feed": self.name, "reason": exc.reason,
                                   "count_total": self.stats.errors[exc.reason]})
            if exc.retry_after is not None:
                return max(exc.retry_after, self.interval_s)
            if exc.reason in ("garbage", "not_json"):  # the source answers: poll at the usual pace
                return self.interval_s
            return min(BACKOFF_MAX_S, max(self.interval_s, BACKOFF_FIRST_S * 2 ** (self.failures - 1)))
        self.failures = 0
        for body in bodies:
            await self.publish(body)
            self.stats.published += 1
        return self.interval_s

    async def run(self, max_polls: int | None = None, stopping: Callable[[], bool] = lambda: False) -> AdapterStats:
        polls = 0
        while not stopping() and (max_polls is None or polls < max_polls):
            delay = await self.poll_once()
            polls += 1
            self.stats.delays.append(delay)
            if max_polls is not None and polls >= max_polls:
                break
            await self.sleep(delay)
        return self.stats


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ----------------------------------------------------------------------------- settings and NATS

def env_number(env: Mapping[str, str], name: str, default: float, lo: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, "a number") from None
    if not value > lo:
        raise SettingsError(name, raw, f"a number > {lo:g}")
    return value


async def nats_publisher(settings, subject: str):
    """``(publish, close)`` over nats-py with the service's login; reconnects for ever."""
    import nats

    from rtsig.natsauth import NatsAuth

    auth = NatsAuth.from_settings(settings)
    nc = await nats.connect(**auth.nats_py_options(), name="rtsig-feed", connect_timeout=10,
                            max_reconnect_attempts=-1, reconnect_time_wait=0.5)

    async def publish(body: bytes) -> None:
        await nc.publish(subject, body)

    async def close() -> None:
        try:
            await nc.flush(timeout=5)
        finally:
            await nc.close()

    return publish, close
