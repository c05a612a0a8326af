"""Micro-benchmarks of the hot path: decode+store per message and kernel time per event.

``make bench`` (outside ``make test``). Each figure is the median over many runs of the time of
one batch divided by its size, as the live service calls them (a batch per jitted call).
Prints a table and, as the last line, a JSON object; ``--json PATH`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from rtsig.decode import Decoder
from rtsig.params import ParameterTable
from rtsig.settings import Settings
from rtsig.store import Store
from rtsig.synthetic import MarketSimulator
from workers.evaluate import evaluate_events, new_candidate_buffers


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


BENCH_SYMBOLS = tuple(f"SYM{k}USDT" for k in range(8))
RECEIPT_NS = time.time_ns()
"""Receipt time of the benchmark's messages: after their event times, as on a live feed (a
receipt before them would make every message ``bad_time``)."""


def sample_messages(kind: str, n: int, symbols: tuple[str, ...] = ("BTCUSDT",)) -> list[bytes]:
    """``n`` realistic messages of one kind from the synthetic feed (symbols round-robin)."""
    out = []
    sim = MarketSimulator(symbols, seed=3, depth_interval_ms=10, trades_per_second=100,
                          ticker_interval_ms=10)
    for _, msg in sim.messages(3600):
        if (kind == "depth" and b"@depth20" in msg[:40]) or (kind == "trade" and b"@trade" in msg[:40]) \
                or (kind == "ticker" and b"@ticker" in msg[:40]):
            out.append(msg)
            if len(out) == n:
                return out
    return out



def bench_decode(kind: str, batch: int, runs: int) -> tuple[float, float]:
    """Median µs per message decoding+storing batches of ``batch``, and of single messages."""
    # several symbols, so that a batch never holds more than a book ring's worth for one of them
    settings = Settings(trading_symbols=BENCH_SYMBOLS if batch > 16 else ("BTCUSDT",))
    store = Store.in_memory(settings, n_workers=1)
    msgs = sample_messages(kind, batch, BENCH_SYMBOLS if batch > 16 else ("BTCUSDT",))
    dec = Decoder(store, 0, False, capacity=batch)

    def one_batch(k: int) -> float:
        for m in msgs[:k]:
            dec.add(m, RECEIPT_NS)
        t0 = time.perf_counter_ns()
        dec.decode()
        elapsed = time.perf_counter_ns() - t0
        assert not dec.blocked
        store.release_all()
        return elapsed / k / 1000

    one_batch(batch)  # compile / load cache
    batched = statistics.median(one_batch(batch) for _ in range(runs))
    single = statistics.median(one_batch(1) for _ in range(runs * 4))
    return batched, single


def bench_kernels(batch: int, runs: int) -> dict[str, float]:
    """Median µs per event of evaluate_events over a batch of one event kind."""
    settings = Settings(trading_symbols=("BTCUSDT",), ticker_ring=4096)
    store = Store.in_memory(settings, n_workers=1)
    params = ParameterTable(settings, settings.max_symbols)
    params.sync_symbols(store.symbol_list())
    results = {}
    for kind in ("depth", "trade", "ticker"):
        msgs = sample_messages(kind, 2000)
        dec = Decoder(store, 0, False, capacity=len(msgs))
        for m in msgs[-batch:] if kind == "depth" else msgs:
            dec.add(m, RECEIPT_NS)
        chunks = []
        while True:  # no workers: release the rings between calls (the data stays in them)
            n = dec.decode()
            chunks.append(dec.events[:n].copy())
            store.release_all()
            if not dec.blocked:
                break
        events = np.concatenate(chunks)
        n = len(events)
        if kind == "depth":
            events = events[-min(n, settings.book_ring):]
        info, rows = new_candidate_buffers(len(events))
        args = (store.book_meta, store.book_levels, store.market, store.trades, store.tickers,
                params.values, params.enabled, store.counters[1], info, rows)
        first = max(0, len(events) - batch)
        count = len(events) - first
        evaluate_events(events, first, count, *args)

        def run() -> float:
            t0 = time.perf_counter_ns()
            evaluate_events(events, first, count, *args)
            return (time.perf_counter_ns() - t0) / count / 1000

        results[kind] = statistics.median(run() for _ in range(runs))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16,
                        help="messages per jitted call (the live ingest decodes whole socket reads)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    figures: dict = {"machine": machine(), "batch": args.batch, "runs": args.runs}
    for kind in ("depth", "trade", "ticker"):
        batched, single = bench_decode(kind, args.batch, args.runs)
        figures[f"decode_{kind}_us"] = round(batched, 3)
        figures[f"decode_{kind}_single_call_us"] = round(single, 3)
    kernel = bench_kernels(args.batch, args.runs)
    figures["kernel_orderbook_skew_us"] = round(kernel["depth"], 3)
    figures["kernel_trade_momentum_us"] = round(kernel["trade"], 3)
    figures["kernel_ticker_velocity_us"] = round(kernel["ticker"], 3)
    print(f"machine: {figures['machine']['cpu']} ({figures['machine']['cores']} cores), "
          f"Python {figures['machine']['python']}")
    print(f"{'figure (median, µs per message/event)':45s} value")
    for key, value in figures.items():
        if key.endswith("_us"):
            print(f"{key:45s} {value:8.3f}")
    line = json.dumps(figures)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
