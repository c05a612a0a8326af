"""``rtsig tail``: one readable line per signal (``--json`` for the raw object).

The first connect waits at most ``--connect-timeout`` seconds; after that the connection rides
over NATS restarts (reconnects for ever, resubscribes, one line on stderr per loss and recovery):
signals published while no server was up are not seen, those published after are.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import orjson

from rtsig.replay import ToolConnection
from rtsig.settings import Settings

_COLOURS = {"buy": "\033[32m", "sell": "\033[31m"}
_RESET = "\033[0m"


def signal_subjects(topic: str) -> list[str]:
    """What to subscribe to so that every signal is heard: the placeholders ``{strategy_id}`` and
    ``{symbol}`` are one token each (``*``); a plain topic also has per-strategy subjects below it."""
    if "{" in topic:
        return [topic.replace("{strategy_id}", "*").replace("{symbol}", "*")]
    return [topic, f"{topic}.>"]


def describe(signal: dict, colour: bool = False) -> str:
    """``12:00:00.123 BUY  BTCUSDT  orderbook_skew   conf 0.82 strong  @ 66999.96  SL … TP …``."""
    action = str(signal.get("action", "?"))
    label = f"{action.upper():4s}"
    if colour and action in _COLOURS:
        label = f"{_COLOURS[action]}{label}{_RESET}"
    ts = str(signal.get("timestamp", ""))[11:23]
    indicators = signal.get("indicators") or {}
    detail = " ".join(f"{k}={_short(v)}" for k, v in list(indicators.items())[:4])
    return (f"{ts} {label} {signal.get('symbol', '?'):10s} {signal.get('strategy_id', '?'):16s} "
            f"conf {float(signal.get('confidence', 0)):.3f} {signal.get('strength', ''):7s} "
            f"@ {_short(signal.get('price'))}  SL {_short(signal.get('stop_loss'))}  "
            f"TP {_short(signal.get('take_profit'))}  {detail}")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


async def tail(settings: Settings, raw_json: bool, write: Callable[[str], None] | None = None,
               stop: asyncio.Event | None = None, count: int | None = None, *,
               connect_timeout: float | None = None) -> int:
    """Print signals until ``stop`` is set (or ``count`` signals, or forever); return how many.

    ``connect_timeout``: raise :class:`rtsig.replay.NatsUnreachable` when no NATS server answers
    that soon (None: keep trying).
    """
    link = ToolConnection(settings, "tail")
    await link.open(connect_timeout)
    nc = link.nc
    assert nc is not None  # open() raises unless connected
    colour = sys.stdout.isatty()
    out = write or (lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()))
    seen = 0
    done = stop or asyncio.Event()

    async def on_signal(msg) -> None:
        nonlocal seen
        if count is not None and seen >= count:
            return  # already delivered, queued before the stop: --count means exactly that many
        if raw_json:
            out(msg.data.decode())
        else:
            try:
                out(describe(orjson.loads(msg.data), colour))
            except orjson.JSONDecodeError:
                out(f"(not JSON) {msg.data[:200]!r}")
        seen += 1
        if count is not None and seen >= count:
            done.set()

    for subject in signal_subjects(settings.nats_publisher_topic):
        await nc.subscribe(subject, cb=on_signal)
    await nc.flush()  # the server has the subscriptions: what is published from now on is heard
    sys.stderr.write(f"rtsig tail: listening on {', '.join(signal_subjects(settings.nats_publisher_topic))}\n")
    sys.stderr.flush()
    try:
        await done.wait()
    finally:
        await link.close()
    return seen
