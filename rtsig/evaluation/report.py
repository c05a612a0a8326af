"""The evaluation's readable table and its plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rtsig.evaluation.metrics import ALL, Outcomes, cumulative


def _num(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _pct(value) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _horizon(h: float) -> str:
    return f"{h:g}s" if h < 60 else f"{h / 60:g}m"


def table(rows: Sequence[dict], per_symbol: bool = True) -> str:
    """One line per (strategy, symbol, horizon); ``*`` is every symbol of the strategy."""
    head = (f"{'strategy':<22} {'symbol':<16} {'horizon':>7} {'signals':>7} {'scored':>6} "
            f"{'hit':>6} {'mean bps':>9} {'median':>8} {'rank IC':>7} {'SL 1st':>6} {'TP 1st':>6}")
    lines = [head, "-" * len(head)]
    previous = None
    for r in rows:
        if not per_symbol and r["symbol"] != ALL:
            continue
        group = (r["strategy"], r["symbol"], r["market"])
        if previous is not None and group[0] != previous[0]:
            lines.append("")
        previous = group
        symbol = "all symbols" if r["symbol"] == ALL else (
            r["symbol"] if r["market"] == "spot" else f"{r['symbol']} {r['market']}")
        hit = None if r["hit_rate"] is None else 100 * r["hit_rate"]
        sl = None if r["stop_first"] is None else 100 * r["stop_first"]
        tp = None if r["take_first"] is None else 100 * r["take_first"]
        lines.append(
            f"{r['strategy']:<22} {symbol:<16} {_horizon(r['horizon_s']):>7} {r['signals']:>7} "
            f"{r['scored']:>6} {_pct(hit):>6} {_num(r['mean_bps'], '9.2f'):>9} "
            f"{_num(r['median_bps'], '8.2f'):>8} {_num(r['rank_ic'], '7.3f'):>7} "
            f"{_pct(sl):>6} {_pct(tp):>6}")
    return "\n".join(lines)


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no scored signal\n(the data ends within this horizon)", ha="center",
            va="center", transform=ax.transAxes, fontsize=9, color="grey")


def plots(outcomes: Outcomes, buckets: Sequence[dict], out_dir: Path, title: str) -> list[Path]:
    """``cumulative_return.png`` and ``hit_rate_by_confidence.png``, one panel per horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    horizons = outcomes.horizons_ms
    cols = 2 if len(horizons) > 1 else 1
    rows_n = (len(horizons) + cols - 1) // cols
    strategies = sorted(set(outcomes.strategy.tolist()))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    written = []

    fig, axes = plt.subplots(rows_n, cols, figsize=(6.4 * cols, 3.6 * rows_n), squeeze=False)
    for k, h in enumerate(horizons):
        ax = axes[k // cols][k % cols]
        paths = cumulative(outcomes, k)
        for strategy, (t, cum) in paths.items():  # from 0 just before the first signal
            when = [datetime.fromtimestamp(x / 1000, tz=UTC) for x in [t[0], *t.tolist()]]
            ax.step(when, np.r_[0.0, cum], where="post", color=colours[strategy],
                    label=f"{strategy} ({len(cum)})")
        if not paths:
            _no_data(ax)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_title(f"horizon {_horizon(h / 1000)}")
        ax.set_ylabel("cumulative signed return (bps)")
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    for k in range(len(horizons), rows_n * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"{title}: cumulative signed return of the signals, in event time (UTC)")
    fig.tight_layout()
    path = out_dir / "cumulative_return.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(rows_n, cols, figsize=(6.4 * cols, 3.6 * rows_n), squeeze=False)
    width = 0.8 / max(1, len(strategies))
    for k, h in enumerate(horizons):
        ax = axes[k // cols][k % cols]
        mine = [b for b in buckets if b["horizon_s"] == h / 1000]
        labels = sorted({(b["lo"], b["hi"]) for b in mine})
        x = np.arange(len(labels))
        by = {(b["strategy"], b["lo"], b["hi"]): b for b in mine}
        drawn = set()
        for j, lh in enumerate(labels):  # the bucket's strategies side by side, centred on it
            present = [s for s in strategies if (s, *lh) in by]
            for i, strategy in enumerate(present):
                b = by[(strategy, *lh)]
                x0 = j + (i - (len(present) - 1) / 2) * width
                ax.bar(x0, 100 * b["hit_rate"], width, color=colours[strategy],
                       label=None if strategy in drawn else strategy)
                drawn.add(strategy)
                ax.annotate(str(b["scored"]), (x0, 100 * b["hit_rate"]), ha="center",
                            va="bottom", fontsize=6)
        if not labels:
            _no_data(ax)
        ax.axhline(50, color="grey", linewidth=0.6, linestyle="--")
        ax.set_xticks(x, [f"{lo:.2f}–{min(hi, 1):.2f}" for lo, hi in labels], fontsize=7)
        ax.set_ylim(0, 125)
        ax.set_xlabel("confidence")
        ax.set_ylabel("hit rate (%)")
        ax.set_title(f"horizon {_horizon(h / 1000)} (numbers: scored signals)")
        if labels:
            ax.legend(fontsize=7, loc="upper center", ncol=min(3, len(strategies)))
    for k in range(len(horizons), rows_n * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"{title}: hit rate by confidence bucket")
    fig.tight_layout()
    path = out_dir / "hit_rate_by_confidence.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
