"""``rtsig evaluate``: every metric against the slow reference (tests/evaluation_reference.py),
and the whole command on generated feeds whose answer is known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rtsig.errors import SettingsError
from rtsig.evaluation.grid import combinations, parse_grid, run_grid
from rtsig.evaluation.metrics import ALL, TOUCH_NONE, confidence_buckets, rank_ic, ranks, score, summarize
from rtsig.evaluation.run import evaluate
from rtsig.evaluation.tape import Series
from rtsig.recorded import messages
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from tests import evaluation_reference as ref

RTSIG = str(Path(sys.executable).with_name("rtsig"))
HORIZONS_MS = (1_000, 10_000, 60_000)


def _signal(strategy: str, symbol: str, action: str, t_ms: int, price: float, confidence: float,
            sl_pct: float = 0.01, tp_pct: float = 0.015, market: str = "spot") -> dict:
    sign = 1 if action == "buy" else -1
    return {"strategy_id": strategy, "symbol": symbol, "action": action, "confidence": confidence,
            "price": price, "stop_loss": price * (1 - sign * sl_pct),
            "take_profit": price * (1 + sign * tp_pct),
            "metadata": {"event_time": t_ms, "market": market}}


def _series(path: list[tuple[int, float]]) -> Series:
    t = np.array([x[0] for x in path], dtype=np.int64)
    p = np.array([x[1] for x in path], dtype=np.float64)
    order = np.argsort(t, kind="stable")
    return Series("mid", t[order], p[order])


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ----- metrics against the reference

paths_st = st.lists(st.tuples(st.integers(0, 120_000), st.floats(90, 110)), min_size=0, max_size=60)
signals_st = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["X", "Y"]),
                                st.sampled_from(["buy", "sell"]), st.integers(0, 120_000),
                                st.floats(95, 105), st.sampled_from([0.6, 0.7, 0.75, 0.8, 0.95]),
                                st.sampled_from([0.001, 0.01, 0.05]), st.sampled_from([0.001, 0.02])),
                      min_size=0, max_size=25)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path_x=paths_st, path_y=paths_st, raw=signals_st,
       end_ms=st.one_of(st.none(), st.integers(0, 120_000)))
def test_every_metric_equals_the_reference(path_x, path_y, raw, end_ms):
    signals = [_signal(*r[:6], sl_pct=r[6], tp_pct=r[7]) for r in raw]
    paths = {("X", "spot"): path_x, ("Y", "spot"): path_y}
    series = {k: _series(v) for k, v in paths.items() if v}
    outcomes = score(signals, series, HORIZONS_MS, end_ms)
    rows = summarize(outcomes)
    groups = {}
    for s in signals:
        groups.setdefault((s["strategy_id"], ALL, ALL), []).append(s)
        groups.setdefault((s["strategy_id"], s["symbol"], "spot"), []).append(s)
    assert {(r["strategy"], r["symbol"], r["market"]) for r in rows} == set(groups)
    for row in rows:
        k = HORIZONS_MS.index(int(row["horizon_s"] * 1000))
        expected = ref.group(groups[(row["strategy"], row["symbol"], row["market"])], paths,
                             HORIZONS_MS[k], end_ms)
        for name, value in expected.items():
            assert _close(row[name], value), (name, row, expected)
    # per signal: the same return and the same first touch as the reference
    for i, s in enumerate(signals):
        for k, h in enumerate(HORIZONS_MS):
            r, touched = ref.outcome(s, paths[(s["symbol"], "spot")], h, end_ms)
            got = outcomes.returns_bps[i, k]
            assert (r is None) == bool(np.isnan(got))
            if r is not None:
                assert math.isclose(got, r, rel_tol=1e-12, abs_tol=1e-12)
                assert {"none": 0, "take": 1, "stop": -1}[touched] == outcomes.touch[i, k]


@given(st.lists(st.tuples(st.sampled_from([0.6, 0.7, 0.8, 0.95]), st.integers(-5, 5)),
                min_size=0, max_size=30))
def test_rank_ic_is_spearman_with_average_ranks(pairs):
    conf = np.array([c for c, _ in pairs], dtype=float)
    ret = np.array([r for _, r in pairs], dtype=float)
    assert ranks(ret).tolist() == ref.average_ranks(ret.tolist())
    assert _close(rank_ic(conf, ret), ref.spearman(conf.tolist(), ret.tolist()))


def test_buckets_hold_each_scored_signal_once():
    signals = [_signal("a", "X", "buy", 1000 * i, 100.0, c) for i, c in
               enumerate([0.6, 0.64, 0.65, 0.9, 0.95, 0.95])]
    path = [(0, 100.0), (100_000, 101.0)]
    outcomes = score(signals, {("X", "spot"): _series(path)}, (1000,))
    rows = confidence_buckets(outcomes)
    assert [(r["lo"], r["scored"]) for r in rows] == [(0.6, 2), (0.65, 1), (0.9, 1), (0.95, 2)]
    assert all(r["hit_rate"] == 0.0 for r in rows)  # the price has not moved 1 s later


def test_a_price_that_always_follows_the_signal_is_a_hit_rate_of_one():
    path = [(t, 100.0 + t / 1000) for t in range(0, 200_001, 500)]  # +1 per second
    signals = [_signal("a", "X", "buy", t, 100.0 + t / 1000, 0.7) for t in range(0, 100_000, 7_000)]
    falling = [(t, 300.0 - t / 1000) for t in range(0, 200_001, 500)]
    signals += [_signal("a", "Y", "sell", t, 300.0 - t / 1000, 0.8) for t in range(0, 100_000, 7_000)]
    outcomes = score(signals, {("X", "spot"): _series(path), ("Y", "spot"): _series(falling)},
                     HORIZONS_MS)
    for row in summarize(outcomes):
        assert row["hit_rate"] == 1.0 and row["stop_first"] == 0.0
    assert (outcomes.touch[:, 0] == TOUCH_NONE).all()  # 1 % in 1 s: not yet 1.5 %


# ----- the whole command on generated feeds

def _trade_line(symbol: str, t_ms: int, trade_id: int, price: float, qty: float, buyer_maker: bool) -> bytes:
    data = {"e": "trade", "E": t_ms, "s": symbol, "t": trade_id, "p": f"{price:.2f}",
            "q": f"{qty:.4f}", "T": t_ms, "m": buyer_maker, "M": True}  # "M": spot-shaped
    body = orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": data})
    return f"{t_ms / 1000:.3f}: ".encode() + body


def trending_feed(path: Path, minutes: int = 10) -> None:
    """BTCUSDT rises 0.1 %/s on buyer-initiated trades, ETHUSDT falls 0.1 %/s on sellers: every
    trade_momentum signal is followed by a move its way, by 1 % after 10 s, 6 % after 60 s."""
    lines, start = [], 1_730_462_400_000
    for k in range(minutes * 60 * 5):  # a trade every 200 ms
        t = start + 200 * k
        lines.append(_trade_line("BTCUSDT", t, k + 1, 60_000 * 1.001 ** (k / 5), 0.5, False))
        lines.append(_trade_line("ETHUSDT", t, k + 1, 3_000 * 0.999 ** (k / 5), 2.0, True))
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def trending(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "trending.txt"
    trending_feed(path)
    return path


def test_evaluate_on_a_feed_that_always_moves_the_signals_way(trending):
    # trade_momentum alone: the answer for it is known (trade_flow_imbalance fires on this feed too)
    settings = Settings.from_env({f"STRATEGY_ENABLED_{sid.upper()}": "false" for sid in STRATEGIES
                                  if sid != "trade_momentum"})
    report, outcomes = evaluate(messages([str(trending)]), settings, horizons_s=(1, 10, 60, 300))
    rows = {(r["strategy"], r["symbol"], r["horizon_s"]): r for r in report["results"]}
    assert report["price_sources"] == {"BTCUSDT/spot": "trade", "ETHUSDT/spot": "trade"}
    for symbol in ("BTCUSDT", "ETHUSDT"):  # the feed rises for BTC (buys) and falls for ETH (sells)
        for h in (1, 10, 60, 300):
            row = rows[("trade_momentum", symbol, h)]
            assert row["scored"] > 0 and row["hit_rate"] == 1.0, row
            assert row["mean_bps"] > 0 and row["stop_first"] == 0.0
        # 0.1 %/s: the 1.5 % take-profit is not reached in 10 s, always within 60 s
        assert rows[("trade_momentum", symbol, 10)]["take_first"] == 0.0
        assert rows[("trade_momentum", symbol, 60)]["take_first"] == 1.0
    assert set(outcomes.strategy.tolist()) == {"trade_momentum"}
    # signed returns against the slow reference over the same trades
    paths = {}
    for line in trending.read_bytes().splitlines():
        d = json.loads(line.split(b": ", 1)[1])["data"]
        paths.setdefault((d["s"], "spot"), []).append((d["E"], float(d["p"])))
    report2, _ = evaluate(messages([str(trending)]), settings, horizons_s=(10,))
    from rtsig.evaluation.run import collect
    signals = collect(messages([str(trending)]), settings).signals
    for row in report2["results"]:
        group = [s for s in signals if s["strategy_id"] == row["strategy"]
                 and row["symbol"] in (ALL, s["symbol"])]
        expected = ref.group(group, paths, 10_000)
        for name, value in expected.items():
            assert _close(row[name], value), (name, row, expected)


def test_grid_parsing_and_combinations():
    grid = parse_grid(["orderbook_skew.buy_threshold=1.2,1.5", "trade_momentum.momentum_window=5,10,20"])
    combos = combinations(grid)
    assert len(combos) == 6
    assert combos[0] == {"orderbook_skew": {"buy_threshold": 1.2}, "trade_momentum": {"momentum_window": 5}}
    for bad in ("orderbook_skew.buy_threshold=0.5", "nope.x=1", "orderbook_skew.nope=1",
                "orderbook_skew.buy_threshold"):
        with pytest.raises(SettingsError):
            parse_grid([bad])


def test_grid_ranks_each_combination_as_its_own_evaluation(trending):
    settings = Settings.from_env({})
    grid = parse_grid(["trade_momentum.momentum_window=5,20", "trade_momentum.min_signal_interval=30,120"])
    report = run_grid([str(trending)], settings, {}, grid, (1.0, 10.0, 60.0), jobs=2,
                      rank_horizon_s=10.0)
    assert "in-sample" in report["warning"]
    assert [r["rank"] for r in report["combinations"]] == [1, 2, 3, 4]
    means = [r["all"]["mean_bps"] for r in report["combinations"]]
    assert means == sorted(means, reverse=True)
    for r in report["combinations"]:  # the same figures as evaluating that combination alone
        alone, _ = evaluate(messages([str(trending)]), settings, r["parameters"], (1.0, 10.0, 60.0))
        row = next(x for x in alone["results"] if x["strategy"] == "trade_momentum"
                   and x["symbol"] == ALL and x["horizon_s"] == 10.0)
        assert {k: row[k] for k in r["all"]} == r["all"]
    split = run_grid([str(trending)], settings, {}, grid, (1.0, 10.0, 60.0), jobs=1,
                     rank_horizon_s=10.0, train_fraction=0.5)
    for r in split["combinations"]:
        assert r["train"]["scored"] > 0 and r["test"]["scored"] > 0
        assert r["train"]["hit_rate"] == r["test"]["hit_rate"] == 1.0


def test_the_command_writes_the_table_the_report_and_two_plots(trending, tmp_path):
    out = tmp_path / "ev"
    proc = subprocess.run([RTSIG, "evaluate", str(trending), "--out", str(out), "--horizons", "1,60"],
                          capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert b"trade_momentum" in proc.stdout and b"hit" in proc.stdout.splitlines()[0]
    report = json.loads((out / "evaluation.json").read_bytes())
    assert report["horizons_s"] == [1.0, 60.0]
    for name in ("cumulative_return.png", "hit_rate_by_confidence.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([RTSIG, "evaluate", str(trending), "--horizons", "0,5"], capture_output=True)
    assert bad.returncode == 2
