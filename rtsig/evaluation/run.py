"""``rtsig evaluate``: the offline pipeline, then every signal scored against the same data.

One pass: :class:`rtsig.offline.OfflineRun` (exactly ``rtsig signals``) with a
:class:`~rtsig.evaluation.tape.PriceTape` on its decoded events, so the signals and the price
path come from the same decoder over the same bytes. Scoring needs the whole tape (a horizon
looks ahead), so signals are held until the input ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rtsig.evaluation.metrics import Outcomes, confidence_buckets, score, summarize
from rtsig.evaluation.tape import PriceTape, Series, pick_series
from rtsig.offline import OfflineRun
from rtsig.registry import ParamValue
from rtsig.settings import Settings

DEFAULT_HORIZONS_S = (1.0, 10.0, 60.0, 300.0)


@dataclass
class Collected:
    """What one offline pass produced: the signals, the price tape, the ``signals`` summary."""

    signals: list[dict]
    series: dict[tuple[str, str], dict[str, Series]]
    summary: dict
    time_range: tuple[int, int] | None


def collect(messages: Iterable[tuple[bytes, int]], settings: Settings,
            overrides: Mapping[str, Mapping[str, ParamValue]] | None = None,
            source=None) -> Collected:
    signals: list[dict] = []
    run = OfflineRun(settings, signals.append, overrides, source)
    tape = PriceTape(run.store)
    run.on_events = tape
    for message, receipt_ns in messages:
        run.feed(message, receipt_ns)
    summary = run.finish()
    return Collected(signals, tape.series(), summary, tape.time_range())


def chosen_series(collected: Collected, price: str) -> tuple[dict, dict[str, str]]:
    """``({(symbol, market): Series}, {"SYMBOL/market": source})`` for ``--price``."""
    chosen, sources = {}, {}
    for key, by_source in collected.series.items():
        s = pick_series(by_source, price)
        chosen[key] = s
        if s is not None:
            sources[f"{key[0]}/{key[1]}"] = s.source
    return chosen, sources


def outcomes_of(collected: Collected, horizons_s: Sequence[float], price: str,
                signals: Sequence[dict] | None = None, end_ms: int | None = None) -> Outcomes:
    chosen, _ = chosen_series(collected, price)
    horizons_ms = [int(round(h * 1000)) for h in horizons_s]
    return score(collected.signals if signals is None else signals, chosen, horizons_ms, end_ms)


def report(collected: Collected, outcomes: Outcomes, price: str, **extra) -> dict:
    """The JSON report (docs/EVALUATION.md)."""
    _, sources = chosen_series(collected, price)
    first, last = collected.time_range or (None, None)
    return {
        "report": "rtsig evaluate",
        **extra,
        "price": price,
        "price_sources": sources,
        "horizons_s": [h / 1000 for h in outcomes.horizons_ms],
        "event_time_ms": {"first": first, "last": last},
        "signals": len(collected.signals),
        "input": collected.summary,
        "results": summarize(outcomes),
        "confidence_buckets": confidence_buckets(outcomes),
    }


def evaluate(messages: Iterable[tuple[bytes, int]], settings: Settings,
             overrides: Mapping[str, Mapping[str, ParamValue]] | None = None,
             horizons_s: Sequence[float] = DEFAULT_HORIZONS_S, price: str = "auto",
             source=None) -> tuple[dict, Outcomes]:
    """The report and the per-signal outcomes of one evaluation."""
    started = time.perf_counter()
    collected = collect(messages, settings, overrides, source)
    outcomes = outcomes_of(collected, horizons_s, price)
    out = report(collected, outcomes, price)
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out, outcomes
