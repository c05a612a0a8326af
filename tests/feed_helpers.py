"""Mixed streams for the market-logic strategies: Binance market data with the three feeds of
docs/CONTRACT.md §2c interleaved (dominance samples, venue quotes, on-chain transfers), as the live
service receives them (one subject each) and as ``rtsig signals`` reads them (``{"subject",
"data"}`` lines)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import orjson

from tests.live_helpers import feed

HOUR_MS = 3_600_000
VENUES = ("coinbase", "kraken", "okx")
EXCHANGES = ("binance", "coinbase", "kraken")
MARKET_LOGIC = ("btc_dominance", "cross_exchange_spread", "onchain_metrics")
DEFAULT_FEED_SUBJECTS = ("market.global.dominance", "market.quotes", "onchain.transfers")


def feed_env(uid: str, cooldown: int | None = 0) -> dict[str, str]:
    """Feed subjects of one test instance (so parallel tests never share them), cool-downs off."""
    env = {"MARKET_DOMINANCE_SUBJECT": f"{uid}.dominance", "MARKET_QUOTES_SUBJECT": f"{uid}.quotes",
           "ONCHAIN_TRANSFERS_SUBJECT": f"{uid}.transfers"}
    if cooldown is not None:
        env.update({f"{sid.upper()}_MIN_SIGNAL_INTERVAL": str(cooldown) for sid in MARKET_LOGIC})
    return env


def mixed_stream(seconds: float, seed: int, subjects=DEFAULT_FEED_SUBJECTS,
                 feed_every: int = 12) -> list[tuple[str | None, bytes]]:
    """``(subject, body)`` in publish order; subject None is the market-data input.

    Dominance: 26 hourly samples before the market data (so a 24 h window has a past sample),
    then one every ~``15 · feed_every`` messages, drifting up through the 70 % threshold.
    Quotes: other venues' prices of the symbols, within ±0.8 % of the newest Binance mid.
    Transfers: BTC and ETH, mostly small, some whales, directions from labelled exchanges.
    """
    rng = random.Random(seed)
    dominance_subject, quotes_subject, transfers_subject = subjects
    market = feed(seconds, seed)
    out: list[tuple[str | None, bytes]] = []
    mids: dict[str, float] = {}
    now_ms = None
    dominance = 58.0
    txn = 0
    for k, message in enumerate(market):
        env = orjson.loads(message)
        data = env["data"]
        symbol = env["stream"].split("@", 1)[0].upper()
        now_ms = data.get("E") or now_ms
        if now_ms is None:
            continue
        if not out:
            for h in range(26, 0, -1):
                out.append((dominance_subject, orjson.dumps(
                    {"ts": now_ms - h * HOUR_MS, "btc_dominance": round(58.0 + rng.uniform(-1, 1), 2),
                     "source": "coingecko"})))
        if "bids" in data and data["bids"] and data["asks"]:
            mids[symbol] = (float(data["bids"][0][0]) + float(data["asks"][0][0])) / 2
        elif data.get("e") == "trade" and symbol not in mids:
            mids[symbol] = float(data["p"])
        out.append((None, message))
        if k % feed_every != feed_every - 1:
            continue
        roll = rng.random()
        if roll < 0.07:
            dominance = min(99.0, dominance + rng.uniform(0.5, 3.0))
            out.append((dominance_subject, orjson.dumps(
                {"ts": now_ms, "btc_dominance": round(dominance, 3), "source": "coingecko"})))
        elif roll < 0.6 and mids:
            symbol = rng.choice(sorted(mids))
            mid = mids[symbol] * (1 + rng.uniform(-0.008, 0.008))
            half = mid * rng.uniform(0.00001, 0.0002)
            out.append((quotes_subject, orjson.dumps(
                {"ts": now_ms - rng.randrange(0, 3000), "venue": rng.choice(VENUES),
                 "symbol": symbol, "bid": round(mid - half, 2), "ask": round(mid + half, 2)})))
        else:
            chain = rng.choice(("btc", "eth"))
            whale = 100 if chain == "btc" else 1000
            value = whale * rng.uniform(1.0, 12.0) if rng.random() < 0.1 else rng.expovariate(1 / (whale / 20))
            direction = rng.choices(("to_exchange", "from_exchange", "other"), (4, 3, 3))[0]
            txn += 1
            out.append((transfers_subject, orjson.dumps(
                {"ts": now_ms, "chain": chain, "txid": f"{chain}-{seed}-{txn:06d}",
                 "value": round(value, 8), "direction": direction,
                 "exchange": rng.choice(EXCHANGES) if direction != "other" else None})))
    return out


def write_mixed(path: Path, stream: Iterable[tuple[str | None, bytes]]) -> Path:
    """The offline file: market messages as they are, feed messages as {"subject", "data"} lines."""
    with open(path, "wb") as f:
        for subject, body in stream:
            if subject is None:
                f.write(body + b"\n")
            else:
                try:
                    data = orjson.loads(body)
                except orjson.JSONDecodeError:  # a malformed body is recorded as its text
                    data = body.decode("utf-8", "replace")
                f.write(orjson.dumps({"subject": subject, "data": data}) + b"\n")
    return path


def feed_signal_key(sig: dict) -> tuple:
    """What must be identical between a live and an offline signal (not its timestamp)."""
    meta = {k: v for k, v in sig["metadata"].items() if k != "strategy_config"}
    return (sig["strategy_id"], sig["symbol"], sig["action"], sig["confidence"], sig["price"],
            sig["quantity"], sig["current_price"], sig["timeframe"], sig["signal_id"],
            tuple(sorted(sig["indicators"].items())), tuple(sorted(meta.items())))
