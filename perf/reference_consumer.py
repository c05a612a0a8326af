"""The seed-style reference consumer: the service as the original README writes it.

One asyncio process; per message ``json.loads`` and routing on the stream name; the seed's three
strategy classes (pydantic-free dict access, otherwise as printed in the seed document: order-book
skew over the top 5 levels, the weighted trade momentum with its previous-price state, the ticker
velocity with a wall-clock price cache); signals serialised with ``json.dumps`` and published.
The message id is carried into the signal's metadata so that latency can be measured.

Answers ``{"processed": n}`` on the control subject once every earlier message has been handled.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from perf.baseline import run, serve


class OrderBookSkewStrategy:
    def __init__(self, top_levels=5, buy_threshold=1.2, sell_threshold=0.8, min_spread_percent=0.1):
        self.top_levels = top_levels
        self.buy_threshold = buy_threshold
        self.sell_threshold = sell_threshold
        self.min_spread_percent = min_spread_percent

    def analyze(self, symbol: str, depth: dict):
        bids = depth.get("bids") or depth.get("b") or []
        asks = depth.get("asks") or depth.get("a") or []
        if not bids or not asks:
            return None
        bid_volume = sum(float(level[1]) for level in bids[: self.top_levels])
        ask_volume = sum(float(level[1]) for level in asks[: self.top_levels])
        if ask_volume == 0:
            return None
        ratio = bid_volume / ask_volume
        top_bid = float(bids[0][0])
        top_ask = float(asks[0][0])
        spread_percent = ((top_ask - top_bid) / top_bid) * 100
        if spread_percent > self.min_spread_percent:
            return None
        if ratio > self.buy_threshold:
            action = "buy"
            confidence = min(0.95, 0.60 + (ratio - self.buy_threshold) * 0.5)
        elif ratio < self.sell_threshold:
            action = "sell"
            confidence = min(0.95, 0.60 + (self.sell_threshold - ratio) * 0.5)
        else:
            return None
        return {
            "strategy_id": "orderbook_skew", "symbol": symbol, "action": action,
            "confidence": confidence, "price": top_bid if action == "buy" else top_ask,
            "quantity": 0.001, "current_price": (top_bid + top_ask) / 2, "timeframe": "tick",
            "indicators": {"bid_volume": bid_volume, "ask_volume": ask_volume, "ratio": ratio,
                           "spread_percent": spread_percent},
            "metadata": {"strategy": "orderbook_skew", "top_bid": top_bid, "top_ask": top_ask},
        }


class TradeMomentumStrategy:
    def __init__(self):
        self.previous_price: dict[str, float] = {}
        self.avg_quantity: dict[str, float] = {}

    def analyze(self, symbol: str, trade: dict):
        price = float(trade["p"])
        quantity = float(trade["q"])
        previous = self.previous_price.get(symbol, price)
        self.previous_price[symbol] = price
        avg = self.avg_quantity.get(symbol, quantity) * 0.9 + quantity * 0.1
        self.avg_quantity[symbol] = avg
        price_momentum = (price - previous) / previous if previous > 0 else 0
        quantity_score = min(1.0, quantity / avg) if avg else 0.0
        maker_score = -1.0 if trade["m"] else 1.0
        momentum = price_momentum * 0.4 + quantity_score * 0.3 + maker_score * 0.3
        if momentum > 0.7:
            action, confidence = "buy", min(0.95, 0.65 + momentum * 0.2)
        elif momentum < -0.7:
            action, confidence = "sell", min(0.95, 0.65 + abs(momentum) * 0.2)
        else:
            return None
        return {"strategy_id": "trade_momentum", "symbol": symbol, "action": action,
                "confidence": confidence, "price": price, "quantity": 0.001, "current_price": price,
                "timeframe": "tick", "indicators": {"momentum": momentum}, "metadata": {}}


class TickerVelocityStrategy:
    def __init__(self, time_window=60, buy_threshold=0.5, sell_threshold=-0.5):
        self.time_window = time_window
        self.buy_threshold = buy_threshold
        self.sell_threshold = sell_threshold
        self.price_cache: dict[str, list] = {}

    def analyze(self, symbol: str, ticker: dict):
        current_price = float(ticker["c"])
        current_time = time.time()
        cache = self.price_cache.setdefault(symbol, [])
        cache.append((current_time, current_price))
        cutoff = current_time - self.time_window
        cache[:] = [(t, p) for t, p in cache if t >= cutoff]
        if len(cache) < 2:
            return None
        oldest_time, oldest_price = cache[0]
        elapsed = (current_time - oldest_time) / 60
        if elapsed == 0 or oldest_price == 0:
            return None
        change = ((current_price - oldest_price) / oldest_price) * 100
        velocity = change / elapsed
        if velocity > self.buy_threshold:
            action, confidence = "buy", min(0.95, 0.60 + velocity / 10)
        elif velocity < self.sell_threshold:
            action, confidence = "sell", min(0.95, 0.60 + abs(velocity) / 10)
        else:
            return None
        return {"strategy_id": "ticker_velocity", "symbol": symbol, "action": action,
                "confidence": confidence, "price": current_price, "quantity": 0.001,
                "current_price": current_price, "timeframe": "tick",
                "indicators": {"velocity": velocity}, "metadata": {}}


async def main(url: str, subject_in: str, subject_out: str, group: str, control: str) -> None:
    strategies = {"orderbook_skew": OrderBookSkewStrategy(), "trade_momentum": TradeMomentumStrategy(),
                  "ticker_velocity": TickerVelocityStrategy()}
    state = {"processed": 0, "errors": 0, "signals": 0}

    def handler(nc):
        async def publish_signal(signal_: dict, message_id: str | None) -> None:
            signal_["signal_id"] = str(uuid.uuid4())
            signal_["source"] = "reference"
            signal_["strategy"] = signal_["strategy_id"]
            signal_["timestamp"] = datetime.now(UTC).isoformat()
            signal_["metadata"]["message_id"] = message_id
            await nc.publish(subject_out, json.dumps(signal_).encode())
            state["signals"] += 1

        async def on_message(msg) -> None:
            try:
                data = json.loads(msg.data.decode())
                stream = data.get("stream", "")
                payload = data["data"]
                symbol = stream.split("@")[0].upper()
                signal_ = None
                if "@trade" in stream or "@aggTrade" in stream:
                    signal_ = strategies["trade_momentum"].analyze(symbol, payload)
                elif "@ticker" in stream:
                    signal_ = strategies["ticker_velocity"].analyze(symbol, payload)
                elif "@depth" in stream:
                    signal_ = strategies["orderbook_skew"].analyze(symbol, payload)
                if signal_:
                    await publish_signal(signal_, data.get("message_id"))
                state["processed"] += 1
            except Exception:  # noqa: BLE001 - the seed counts and carries on
                state["errors"] += 1
        return on_message

    await serve(url, subject_in, group, control, handler, lambda: dict(state))


if __name__ == "__main__":
    run(__doc__.splitlines()[0], main)
