"""The ecosystem's socket client, as far as the bytes it publishes go (reference/ecosystem.md).

It reads the raw ``/ws`` stream, so it works out each message's stream name from the payload,
and it gets that wrong in the ways rtsig must survive:

* a spot partial book carries no symbol: it is labelled with the *first configured* stream's
  symbol (``btcusdt@depth20@100ms`` for every symbol's book with the default streams);
* a ``depthUpdate`` (a diff, or a futures partial book) is labelled ``@depth20@100ms``;
* klines are named ``@kline`` without an interval; spot bookTickers (no ``e``) and subscription
  replies are dropped.

Its envelope: ``{"stream", "data", "timestamp": datetime.utcnow().isoformat() + "Z",
"message_id": uuid4, "source": "binance-websocket", "version": "1.0", "_otel_trace_context"}``
— ``isoformat`` leaves the fraction out when the microseconds are 0, and ``json.dumps`` writes
its default separators.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

DEFAULT_FIRST_SYMBOL = "btcusdt"
"""The first of the client's default streams (btcusdt and ethusdt, @trade/@ticker/@depth20@100ms)."""

_KIND_BY_EVENT = {
    "trade": "trade",
    "aggTrade": "aggTrade",
    "24hrTicker": "ticker",
    "24hrMiniTicker": "miniTicker",
    "depthUpdate": "depth20@100ms",  # diffs and futures books alike
    "kline": "kline",
    "bookTicker": "bookTicker",
    "markPriceUpdate": "markPrice",
}


def client_stream(payload: dict, first_symbol: str = DEFAULT_FIRST_SYMBOL) -> str | None:
    """The stream name the client gives a raw payload; None when it drops the message."""
    event = payload.get("e")
    if event is None:
        if "lastUpdateId" in payload:  # a spot partial book: no symbol in it
            return f"{first_symbol}@depth20@100ms"
        return None  # spot bookTicker, subscription replies
    kind = _KIND_BY_EVENT.get(event)
    symbol = payload.get("s")
    if kind is None or not isinstance(symbol, str):
        return None
    return f"{symbol.lower()}@{kind}"


def client_timestamp(receipt_ns: int) -> str:
    """``datetime.utcnow().isoformat() + "Z"`` at ``receipt_ns`` (no fraction on a whole second)."""
    seconds, ns = divmod(receipt_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None, microsecond=ns // 1000)
    return moment.isoformat() + "Z"


def client_envelope(stream: str, payload: dict, receipt_ns: int, otel: bool = True) -> bytes:
    """The client's message for one payload, received at ``receipt_ns``."""
    body = {"stream": stream, "data": payload, "timestamp": client_timestamp(receipt_ns),
            "message_id": str(uuid.uuid4()),
            "source": "binance-websocket", "version": "1.0"}
    if otel:
        body["_otel_trace_context"] = {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    return json.dumps(body).encode()


def relabel(messages: list[tuple[int, bytes]], first_symbol: str = DEFAULT_FIRST_SYMBOL,
            ) -> list[tuple[int, bytes]]:
    """Correctly labelled messages (combined-stream or envelope JSON) as the client would have
    published their payloads: ``(receipt_ns, bytes)``, dropped ones left out."""
    out = []
    for k, (receipt_ns, raw) in enumerate(messages):
        payload = json.loads(raw)["data"]
        stream = client_stream(payload, first_symbol)
        if stream is not None:
            out.append((receipt_ns, client_envelope(stream, payload, receipt_ns, otel=k % 2 == 0)))
    return out
