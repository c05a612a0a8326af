"""``rtsig feed dominance``: BTC's share of the total crypto market cap, from a CoinGecko-compatible
``GET /global`` (``data.market_cap_percentage.btc``, ``data.updated_at`` in seconds), published as
``{"ts": ms, "btc_dominance": 57.31, "source": "coingecko"}`` on ``MARKET_DOMINANCE_SUBJECT``.

The aggregator recomputes the figure every few minutes, so polling faster only repeats it: the
default interval is 5 minutes (``FEED_DOMINANCE_INTERVAL_SECONDS``), well inside CoinGecko's
public rate limit. A sample whose ``updated_at`` did not move since the last one is not published
again (counted as skipped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from rtsig.feeds.adapter import SourceError, env_number, http_get_json, now_ms

DEFAULT_URL = "https://api.coingecko.com/api/v3/global"


@dataclass(frozen=True)
class DominanceConfig:
    url: str = DEFAULT_URL
    interval_s: float = 300.0
    timeout_s: float = 10.0
    source: str = "coingecko"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DominanceConfig:
        return cls(env.get("FEED_DOMINANCE_URL") or cls.url,
                   env_number(env, "FEED_DOMINANCE_INTERVAL_SECONDS", cls.interval_s),
                   env_number(env, "FEED_HTTP_TIMEOUT_SECONDS", cls.timeout_s),
                   env.get("FEED_DOMINANCE_SOURCE") or cls.source)


def sample_from_global(answer, source: str, received_ms: int) -> dict:
    """The dominance body of one ``/global`` answer, or :class:`SourceError` ``garbage``."""
    try:
        data = answer["data"]
        btc = data["market_cap_percentage"]["btc"]
    except (KeyError, TypeError):
        raise SourceError("garbage", "no data.market_cap_percentage.btc") from None
    if isinstance(btc, bool) or not isinstance(btc, (int, float)) or not math.isfinite(btc) \
            or not 0 <= btc <= 100:
        raise SourceError("garbage", f"btc dominance {btc!r}")
    updated = data.get("updated_at")
    ts = int(updated * 1000) if isinstance(updated, (int, float)) and not isinstance(updated, bool) \
        and 0 < updated * 1000 <= received_ms + 300_000 else received_ms
    return {"ts": ts, "btc_dominance": float(btc), "source": source}


class DominanceSource:
    def __init__(self, config: DominanceConfig) -> None:
        self.config = config
        self.last_ts: int | None = None
        self.skipped = 0

    def fetch(self) -> list[bytes]:
        answer = http_get_json(self.config.url, self.config.timeout_s)
        sample = sample_from_global(answer, self.config.source, now_ms())
        if sample["ts"] == self.last_ts:
            self.skipped += 1
            return []
        self.last_ts = sample["ts"]
        return [orjson.dumps(sample)]
