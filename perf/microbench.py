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

from rtsig import codes
from rtsig.decode import Decoder, shard_of
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



SHARDS = 3
"""Shard count of the shard benchmarks (``RTSIG_SHARD=k/3``)."""


def bench_decode(kind: str, batch: int, runs: int, shard: str | None = None) -> tuple[float, float]:
    """Median µs per message decoding+storing batches of ``batch``, and of single messages.

    ``shard``: the decoder is one of SHARDS shards and the messages are of symbols it owns
    (``"owned"``: decoded and stored as without shards, plus the ownership check) or of symbols
    it does not own (``"other"``: discarded as ``not_owned`` after the envelope's stream).
    """
    # several symbols, so that a batch never holds more than a book ring's worth for one of them
    symbols = BENCH_SYMBOLS if batch > 16 else ("BTCUSDT",)
    index, count = 0, 1
    if shard is not None:
        index, count = shard_of("BTCUSDT", SHARDS), SHARDS
        symbols = tuple(s for s in ("BTCUSDT",) + BENCH_SYMBOLS
                        if (shard_of(s, SHARDS) == index) == (shard == "owned"))
        if batch <= 16:
            symbols = symbols[:1]
    settings = Settings(trading_symbols=symbols)
    store = Store.in_memory(settings, n_workers=1)
    msgs = sample_messages(kind, batch, symbols)
    dec = Decoder(store, 0, False, capacity=batch, shard_index=index, shard_count=count)
    expected = 0 if shard != "other" else -codes.IGN_NOT_OWNED

    def one_batch(k: int) -> float:
        for m in msgs[:k]:
            dec.add(m, RECEIPT_NS)
        t0 = time.perf_counter_ns()
        dec.decode()
        elapsed = time.perf_counter_ns() - t0
        assert not dec.blocked and (dec.last_status == expected).all(), dec.last_status
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
                params.values, params.enabled, store.counters[1], info, rows, store.symbols,
                store.feed_cursors, store.dominance, store.quotes, store.transfers, store.venue_quotes,
                store.venue_names, store.ofi_state, store.ofi_history)
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
    for kind in ("depth", "trade", "ticker"):  # RTSIG_SHARD: what another shard's symbol costs
        figures[f"not_owned_{kind}_us"] = round(bench_decode(kind, args.batch, args.runs, "other")[0], 3)
    figures["decode_depth_owned_shard_us"] = round(bench_decode("depth", args.batch, args.runs, "owned")[0], 3)
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
