"""``rtsig feed quotes``: each venue's price of some symbols, from Binance's index constituents
(``GET /fapi/v1/constituents?symbol=BTCUSDT``: the venues Binance's price index is made of, each
with its last ``price``), published as ``{"ts", "venue", "symbol", "bid", "ask"}`` bodies on
``MARKET_QUOTES_SUBJECT`` — one per venue, with bid = ask = that venue's price (the endpoint gives
one price per venue, not a book).

Binance itself is left out: the spread strategy takes Binance spot from its own books (and
USD-M futures from the futures books). The endpoint's weight is 2 per symbol; the default
interval of 5 s (``FEED_QUOTES_INTERVAL_SECONDS``) for a handful of symbols stays far below the
2,400-per-minute limit, and a 429/418 answer stops polling for its ``Retry-After``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from rtsig.feeds.adapter import SourceError, env_number, http_get_json, now_ms
from rtsig.feeds.messages import RESERVED_VENUES

DEFAULT_URL = "https://fapi.binance.com/fapi/v1/constituents"
_VENUE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,23}$")


@dataclass(frozen=True)
class QuotesConfig:
    url: str = DEFAULT_URL
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    interval_s: float = 5.0
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QuotesConfig:
        raw = env.get("FEED_QUOTES_SYMBOLS")
        symbols = tuple(s.strip().upper() for s in raw.split(",") if s.strip()) if raw else cls.symbols
        return cls(env.get("FEED_QUOTES_URL") or cls.url, symbols,
                   env_number(env, "FEED_QUOTES_INTERVAL_SECONDS", cls.interval_s),
                   env_number(env, "FEED_HTTP_TIMEOUT_SECONDS", cls.timeout_s))


def quotes_from_constituents(answer, symbol: str, received_ms: int) -> tuple[list[dict], int]:
    """The quote bodies of one constituents answer and how many constituents were unusable;
    :class:`SourceError` ``garbage`` when the answer is not the documented shape at all."""
    if not isinstance(answer, dict) or not isinstance(answer.get("constituents"), list):
        raise SourceError("garbage", f"{symbol}: no constituents list")
    t = answer.get("time")
    ts = int(t) if isinstance(t, int) and not isinstance(t, bool) and 0 < t <= received_ms + 300_000 \
        else received_ms
    bodies, bad = [], 0
    for item in answer["constituents"]:
        try:
            venue = str(item["exchange"]).strip().lower()
            price = float(item["price"])
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        if venue in RESERVED_VENUES:
            continue
        if not _VENUE.match(venue) or not math.isfinite(price) or not 0 < price < 1e12:
            bad += 1
            continue
        bodies.append({"ts": ts, "venue": venue, "symbol": symbol, "bid": price, "ask": price})
    return bodies, bad


class QuotesSource:
    def __init__(self, config: QuotesConfig, stats=None) -> None:
        self.config = config
        self.stats = stats
        """An :class:`AdapterStats` to count what one symbol's failure costs when others answer."""
        self.bad_constituents = 0

    def fetch(self) -> list[bytes]:
        out: list[bytes] = []
        errors: list[SourceError] = []
        for symbol in self.config.symbols:
            try:
                answer = http_get_json(self.config.url, self.config.timeout_s, {"symbol": symbol})
                bodies, bad = quotes_from_constituents(answer, symbol, now_ms())
            except SourceError as exc:
                if exc.retry_after is not None:
                    raise  # rate limited: stop this round at once
                errors.append(exc)
                continue
            self.bad_constituents += bad
            out.extend(orjson.dumps(b) for b in bodies)
        if errors and not out:
            raise errors[0]
        if self.stats is not None:
            for error in errors:  # some symbols answered: count the others', go on
                self.stats.errors[error.reason] += 1
        return out
