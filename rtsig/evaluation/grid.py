"""``rtsig evaluate --grid strategy.param=v1,v2,…``: every combination evaluated, then ranked.

Each combination is a whole offline run (cool-downs and windows depend on the parameters, so
nothing can be shared), in a pool of forked processes. The parent compiles (or loads) every
jitted function first, so no child compiles: processes compiling the same cached function at once
can crash (numba issue 4807), and a forked child inherits the machine code.

Ranking: by the mean signed return (bps) at ``rank_horizon_s`` of the swept strategies' signals,
then by hit rate; combinations with no scored signal come last. With ``train_fraction`` the
ranking uses only the signals of the first part of the data's event time (their horizons cut at
the split, so no train figure sees a test price), and the rest is reported beside it, untouched
by the choice.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from rtsig.errors import SettingsError
from rtsig.evaluation.metrics import Outcomes, group_metrics
from rtsig.registry import STRATEGIES, ParamValue
from rtsig.settings import Settings

OVERFIT_WARNING = (
    "WARNING: in-sample ranking. The best of {n} combinations, chosen on the very data it is scored "
    "on, overstates what it will do on new data (the more combinations, the more the winner owes "
    "to luck). Rank on one part of the data and judge on the rest (--train-fraction), prefer a "
    "parameter region whose neighbours are good too over a single peak, and confirm on another day.")
SPLIT_NOTE = (
    "Ranked on the first {pct:g} % of event time (train; horizons cut at the split); the test "
    "columns are out-of-sample for this ranking only: picking again by them makes them in-sample.")

Grid = list[tuple[str, str, list[ParamValue]]]


def parse_grid(specs: Sequence[str]) -> Grid:
    """``strategy.param=v1,v2,…`` flags, each value validated by the registry."""
    grid: Grid = []
    seen = set()
    for spec in specs:
        key, sep, values = spec.partition("=")
        strategy_id, dot, param = key.strip().partition(".")
        if not sep or not dot or not values.strip():
            raise SettingsError("--grid", spec, "strategy_id.param=v1,v2,…")
        if strategy_id not in STRATEGIES:
            raise SettingsError("--grid", spec, "a strategy id: " + ", ".join(STRATEGIES))
        st = STRATEGIES[strategy_id]
        if not st.has_param(param):
            raise SettingsError("--grid", spec, f"a parameter of {strategy_id}: " +
                                ", ".join(p.name for p in st.params))
        if (strategy_id, param) in seen:
            raise SettingsError("--grid", spec, "each parameter once")
        seen.add((strategy_id, param))
        parsed = [st.param(param).validate(v.strip(), key) for v in values.split(",") if v.strip()]
        grid.append((strategy_id, param, parsed))
    return grid


def combinations(grid: Grid) -> list[dict[str, dict[str, ParamValue]]]:
    """Every combination as ``{strategy_id: {param: value}}``, in the flags' order."""
    out = []
    for values in itertools.product(*(v for _, _, v in grid)):
        combo: dict[str, dict[str, ParamValue]] = {}
        for (strategy_id, param, _), value in zip(grid, values):
            combo.setdefault(strategy_id, {})[param] = value
        out.append(combo)
    return out


def merged(base: Mapping[str, Mapping[str, ParamValue]], combo: Mapping[str, Mapping[str, ParamValue]]):
    out = {sid: dict(p) for sid, p in base.items()}
    for sid, params in combo.items():
        out.setdefault(sid, {}).update(params)
    return out


def _swept(o: Outcomes, strategies: set[str]) -> Outcomes:
    return o.select(np.isin(o.strategy, list(strategies)))


# ----- the pool: state inherited by fork
_JOB: dict = {}


def _run_one(index: int) -> dict:
    from rtsig.evaluation.run import collect, outcomes_of
    from rtsig.recorded import messages

    job = _JOB
    combo = job["combos"][index]
    collected = collect(messages(job["paths"]), job["settings"], merged(job["base"], combo))
    horizons, price, k = job["horizons_s"], job["price"], job["rank_k"]
    strategies = job["strategies"]
    out = {"index": index, "parameters": combo, "signals": len(collected.signals)}
    fraction = job["train_fraction"]
    if fraction is None or collected.time_range is None:
        whole = _swept(outcomes_of(collected, horizons, price), strategies)
        out["all"] = group_metrics(whole, k)
        return out
    first, last = collected.time_range
    split_ms = int(first + fraction * (last - first))
    train = [s for s in collected.signals if s["metadata"]["event_time"] < split_ms]
    test = [s for s in collected.signals if s["metadata"]["event_time"] >= split_ms]
    out["split_ms"] = split_ms
    out["train"] = group_metrics(_swept(outcomes_of(collected, horizons, price, train, split_ms),
                                        strategies), k)
    out["test"] = group_metrics(_swept(outcomes_of(collected, horizons, price, test), strategies), k)
    return out


def rank_key(result: dict, part: str):
    m = result[part]
    if not m["scored"]:
        return (1, 0.0, 0.0, result["index"])
    return (0, -m["mean_bps"], -m["hit_rate"], result["index"])


def run_grid(paths: list[str], settings: Settings, base: Mapping[str, Mapping[str, ParamValue]],
             grid: Grid, horizons_s: Sequence[float], price: str = "auto",
             rank_horizon_s: float = 60.0, train_fraction: float | None = None,
             jobs: int | None = None) -> dict:
    """The ranked combinations (the grid report)."""
    if "-" in paths:
        raise SettingsError("--grid", "-", "files (stdin cannot be read once per combination)")
    if rank_horizon_s not in horizons_s:
        raise SettingsError("--rank-horizon", rank_horizon_s, "one of the horizons " +
                            ",".join(f"{h:g}" for h in horizons_s))
    from rtsig.warmup import warm_up

    warm_up(settings)  # compiled once here; forked children inherit it
    combos = combinations(grid)
    strategies = {sid for sid, _, _ in grid}
    _JOB.update(paths=list(paths), settings=settings, base=base, combos=combos,
                horizons_s=list(horizons_s), price=price, train_fraction=train_fraction,
                rank_k=list(horizons_s).index(rank_horizon_s), strategies=strategies)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(combos)))
    try:
        if jobs == 1:
            results = [_run_one(i) for i in range(len(combos))]
        else:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_run_one, range(len(combos))))
    finally:
        _JOB.clear()
    part = "all" if train_fraction is None else "train"
    results.sort(key=lambda r: rank_key(r, part))
    for rank, r in enumerate(results, 1):
        r["rank"] = rank
    notes = [OVERFIT_WARNING.format(n=len(combos))]
    if train_fraction is not None:
        notes.append(SPLIT_NOTE.format(pct=100 * train_fraction))
    return {"report": "rtsig evaluate --grid", "warning": notes[0], "notes": notes[1:],
            "grid": [{"strategy": s, "param": p, "values": v} for s, p, v in grid],
            "strategies": sorted(strategies), "rank_horizon_s": rank_horizon_s,
            "train_fraction": train_fraction, "price": price, "jobs": jobs,
            "combinations": results}


def grid_table(report: dict) -> str:
    """The ranking, warning first."""
    split = report["train_fraction"] is not None
    lines = [report["warning"], *report["notes"], ""]
    parts = ("train", "test") if split else ("all",)
    names = [" ".join(f"{sid}.{k}={v}" for sid, p in r["parameters"].items() for k, v in p.items())
             for r in report["combinations"]]
    width = max([10, *map(len, names)])
    head = f"{'rank':>4}  {'parameters':<{width}}"
    for part in parts:
        head += f" | {part + ' n':>7} {'hit':>6} {'mean bps':>9} {'rank IC':>7}"
    lines += [f"ranked by mean signed return at {report['rank_horizon_s']:g} s of "
              f"{', '.join(report['strategies'])}", head, "-" * len(head)]
    for r, params in zip(report["combinations"], names):
        line = f"{r['rank']:>4}  {params:<{width}}"
        for part in parts:
            m = r[part]
            hit = "—" if m["hit_rate"] is None else f"{100 * m['hit_rate']:5.1f}%"
            mean = "—" if m["mean_bps"] is None else f"{m['mean_bps']:9.2f}"
            ic = "—" if m["rank_ic"] is None else f"{m['rank_ic']:7.3f}"
            line += f" | {m['scored']:>7} {hit:>6} {mean:>9} {ic:>7}"
        lines.append(line)
    return "\n".join(lines)
