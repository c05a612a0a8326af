"""The perf harness: rtsig against the raw NATS floor and the seed-style reference, in one run.

``make perf-quick`` (under 3 minutes) and ``make perf`` (the full set, with scaling, more rates
and a 10-minute soak). All three systems run on one nats-server started here, with the same
load generator (:mod:`perf.loadgen`) and the same traffic (:mod:`perf.traffic`):

* throughput: N messages flat out; the time until the last per-symbol marker's output arrives;
  ``lost`` is what the system did not process (its own count against what was sent);
* latency: a fixed rate; input published → output received, over the triggering messages;
* CPU seconds per 1,000 messages and peak RSS (VmHWM, summed over the system's processes);
* scale-out (docs/CONTRACT.md §2b), in the same run on the same server: rtsig in JetStream mode
  (``NATS_CONSUMER_STREAM``: the input captured by a stream, read through a durable pull
  consumer) beside core mode, throughput and latency; and 1, 2, 3 symbol shards
  (``RTSIG_SHARD=k/N``, one host, each shard reading the whole input) flat out.

Writes ``perf/results/<date>-<scenario>.json``; the full run also writes a markdown report with
PNG plots and refreshes ``docs/PERFORMANCE.md``. The last line printed is the JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nats

from perf.microbench import machine
from rtsig import counters as C
from rtsig.demo import wait_until_subscribed
from rtsig.natsbin import EmbeddedNats
from rtsig.store import Store, segment_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "perf" / "results"
PYTHON = sys.executable
RTSIG = str(Path(sys.executable).with_name("rtsig"))
NATS_CONFIG = "max_pending: 2147483648\nwrite_deadline: \"60s\"\nmax_payload: 1048576"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- process accounting

def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def peak_rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def pss_mib(pids: list[int]) -> float:
    """Proportional set size summed: shared pages (the store, forked code) counted once overall."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def idle_cpu_percent(pids: list[int], seconds: float) -> dict[int, float]:
    """CPU use of each process over ``seconds`` of no traffic, in percent of one core."""
    before = {pid: cpu_seconds([pid]) for pid in pids}
    time.sleep(seconds)
    return {pid: round((cpu_seconds([pid]) - before[pid]) / seconds * 100, 3) for pid in pids}


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


# ----------------------------------------------------------------------------- the systems

@dataclass
class System:
    """A system under test: started as a process group, it consumes ``<uid>.in``, emits ``<uid>.out``."""

    name: str
    url: str
    workers: int = max(1, (os.cpu_count() or 2) - 1)  # rtsig's own default
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    process: subprocess.Popen | None = None
    extra_env: dict = field(default_factory=dict)
    """rtsig only: settings on top of the harness's (JetStream mode, a shard)."""
    suffix: str = ""
    """rtsig only: appended to the instance name (shards of one uid share the subjects)."""

    @property
    def subject_in(self) -> str:
        return f"perf{self.uid}.in"

    @property
    def subject_out(self) -> str:
        return f"perf{self.uid}.out"

    @property
    def control(self) -> str:
        return f"perf{self.uid}.ctl"

    def start(self) -> None:
        module = {"raw": "perf.raw_floor", "reference": "perf.reference_consumer"}[self.name]
        self.process = subprocess.Popen(
            [PYTHON, "-m", module, "--url", self.url, "--subject-in", self.subject_in,
             "--subject-out", self.subject_out, "--group", f"perf{self.uid}", "--control", self.control],
            stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        line = self.process.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"{self.name} did not start")

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def processed(self) -> int:
        async def ask() -> int:
            nc = await nats.connect(self.url)
            try:
                reply = await nc.request(self.control, b"", timeout=60)
                return int(json.loads(reply.data)["processed"])
            finally:
                await nc.close()
        return asyncio.run(ask())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Rtsig(System):
    @property
    def instance(self) -> str:
        return f"perf{self.uid}{self.suffix}"

    def env(self) -> dict:
        env = {**os.environ, "NATS_URL": self.url, "NATS_CONSUMER_TOPIC": self.subject_in,
               "NATS_PUBLISHER_TOPIC": self.subject_out, "NATS_CONSUMER_GROUP": f"perf{self.uid}",
               "RTSIG_INSTANCE": self.instance, "RTSIG_WORKERS": str(self.workers),
               "TRADING_SYMBOLS": "*", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text",
               "HEARTBEAT_INTERVAL_SECONDS": "3600",
               # a third of the traffic's symbols are USD-M futures (perf/traffic.py), and every
               # symbol's marker must signal: futures signals are off by default since 2026-11
               "SIGNAL_MARKETS": "spot,usdm"}
        for strategy in ("ORDERBOOK_SKEW", "TRADE_MOMENTUM", "TICKER_VELOCITY"):
            env[f"{strategy}_MIN_SIGNAL_INTERVAL"] = "0"  # every triggering message signals
        return {**env, **self.extra_env}

    def start(self) -> None:
        self.process = subprocess.Popen([RTSIG, "run", "--no-web"], env=self.env(), cwd=ROOT,
                                        start_new_session=True)
        wait_until_subscribed(self.instance, self.process, 300)

    def processed(self) -> int:
        store = Store.attach(segment_name(self.instance), readonly=True)
        try:
            return int(store.counters[C.ROW_INGEST][C.MESSAGES_RECEIVED])
        finally:
            store.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


JETSTREAM_MAX_AGE = "300"
"""Seconds the perf stream keeps messages: every run's backlog fits, the disk does not fill."""


def jetstream_env(uid: str) -> dict:
    return {"NATS_CONSUMER_STREAM": f"PERF{uid}", "NATS_CONSUMER_STREAM_CREATE": "true",
            "NATS_CONSUMER_STREAM_MAX_AGE": JETSTREAM_MAX_AGE}


class RtsigShards(System):
    """``count`` rtsig instances on the same subjects, ``RTSIG_SHARD=k/count``: one system."""

    def __init__(self, name: str, url: str, workers: int, count: int) -> None:
        super().__init__(name, url, workers)
        self.members = [Rtsig("rtsig", url, workers, uid=self.uid, suffix=f"s{k}",
                              extra_env={"RTSIG_SHARD": f"{k}/{count}"}) for k in range(count)]

    def start(self) -> None:
        for member in self.members:
            member.start()

    def pids(self) -> list[int]:
        return [pid for member in self.members for pid in member.pids()]

    def processed(self) -> int:
        """Messages every shard read (each must read the whole input)."""
        return min(member.processed() for member in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def make_system(name: str, url: str, workers: int = System.workers) -> System:
    """``raw``, ``reference``, ``rtsig`` (core NATS), ``rtsig-jetstream`` or ``rtsig-shards-N``."""
    if name == "rtsig-jetstream":
        system = Rtsig(name, url, workers)
        system.extra_env = jetstream_env(system.uid)
        return system
    if name.startswith("rtsig-shards-"):
        return RtsigShards(name, url, workers, int(name.rsplit("-", 1)[1]))
    return (Rtsig if name == "rtsig" else System)(name, url, workers)


# ----------------------------------------------------------------------------- scenarios

def loadgen(system: System, symbols: int, count: int, rate: float, share: float, timeout: float) -> dict:
    proc = subprocess.run(
        [PYTHON, "-m", "perf.loadgen", "--url", system.url, "--subject-in", system.subject_in,
         "--subject-out", system.subject_out, "--symbols", str(symbols), "--count", str(count),
         "--rate", str(rate), "--share", str(share), "--timeout", str(timeout)],
        capture_output=True, cwd=ROOT, timeout=timeout + 600, check=True)
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def measure(system: System, symbols: int, count: int, rate: float, share: float,
            timeout: float = 120.0) -> dict:
    """One load on a running system: loadgen figures plus CPU, RSS and loss."""
    pids = system.pids()
    cpu_before = cpu_seconds(pids)
    result = loadgen(system, symbols, count, rate, share, timeout)
    cpu = cpu_seconds(system.pids()) - cpu_before
    processed_total = system.processed()
    result["cpu_seconds"] = round(cpu, 3)
    result["cpu_seconds_per_1000"] = round(cpu / result["sent"] * 1000, 5)
    result["msgs_per_s"] = round(result["sent"] / result["elapsed_seconds"], 1) if result["drained"] else None
    result["processed_total"] = processed_total
    result["peak_rss_mib"] = peak_rss_mib(system.pids())
    result["pss_mib"] = pss_mib(system.pids())
    return result


def run_system(name: str, url: str, plan: dict, workers: int = System.workers) -> dict:
    """Start a system, run the plan's throughput and latency loads, stop it."""
    system = make_system(name, url, workers)
    started = time.monotonic()
    system.start()
    out: dict = {"system": name, "workers": workers if name.startswith("rtsig") else 1,
                 "start_seconds": round(time.monotonic() - started, 3)}
    sent = 0
    rates = plan.get("jetstream_rates", plan["rates"]) if name == "rtsig-jetstream" else plan["rates"]
    count = plan.get("jetstream_count", plan["throughput_count"]) if name == "rtsig-jetstream" \
        else plan["throughput_count"]
    try:
        if plan.get("idle_seconds"):
            out["idle_cpu_percent"] = list(idle_cpu_percent(system.pids(), plan["idle_seconds"]).values())
        t = measure(system, plan["symbols"], count, 0, plan["share"])
        sent += t["sent"]
        out["throughput"] = t
        out["latency"] = {}
        for rate in rates:
            r = measure(system, plan["symbols"], int(rate * plan["latency_seconds"]), rate, plan["share"])
            sent += r["sent"]
            out["latency"][str(int(rate))] = r
        out["lost"] = sent - system.processed()
        out["peak_rss_mib"] = peak_rss_mib(system.pids())
        out["pss_mib"] = pss_mib(system.pids())
    finally:
        system.stop()
    return out


def scaling(url: str, plan: dict) -> list[dict]:
    rows = []
    for workers in (1, 2):
        for symbols in plan["scaling_symbols"]:
            system = make_system("rtsig", url, workers)
            system.start()
            try:
                r = measure(system, symbols, plan["throughput_count"], 0, plan["share"])
            finally:
                system.stop()
            rows.append({"workers": workers, "symbols": symbols, "msgs_per_s": r["msgs_per_s"],
                         "cpu_seconds_per_1000": r["cpu_seconds_per_1000"],
                         "peak_rss_mib": r["peak_rss_mib"], "pss_mib": r["pss_mib"],
                         "drained": r["drained"]})
            print(f"  scaling workers={workers} symbols={symbols}: {r['msgs_per_s']} msg/s", file=sys.stderr)
    return rows


def shards(url: str, plan: dict) -> list[dict]:
    """1, 2, 3 … symbol shards on this host, flat out: each shard reads every message, judges its
    symbols and drops the others' as ``not_owned``. Input msg/s, CPU of all shards together."""
    rows = []
    for count in plan["shard_counts"]:
        system = make_system(f"rtsig-shards-{count}", url, plan["shard_workers"])
        system.start()
        try:
            r = measure(system, plan["symbols"], plan["throughput_count"], 0, plan["share"])
            lost = r["sent"] - system.processed()
        finally:
            system.stop()
        rows.append({"shards": count, "workers_per_shard": plan["shard_workers"], "symbols": plan["symbols"],
                     "msgs_per_s": r["msgs_per_s"], "cpu_seconds_per_1000": r["cpu_seconds_per_1000"],
                     "peak_rss_mib": r["peak_rss_mib"], "pss_mib": r["pss_mib"], "drained": r["drained"],
                     "lost": lost, "outputs": r["outputs"]})
        print(f"  shards={count}: {r['msgs_per_s']} msg/s", file=sys.stderr)
    return rows


def soak(url: str, seconds: int, rate: float, symbols: int, share: float) -> dict:
    """rtsig at a fixed rate for ``seconds``: RSS over time, loss."""
    system = make_system("rtsig", url)
    system.start()
    samples = []
    try:
        gen = subprocess.Popen(
            [PYTHON, "-m", "perf.loadgen", "--url", url, "--subject-in", system.subject_in,
             "--subject-out", system.subject_out, "--symbols", str(symbols), "--count",
             str(int(rate * seconds)), "--rate", str(rate), "--share", str(share), "--timeout", "120"],
            stdout=subprocess.PIPE, cwd=ROOT)
        started = time.monotonic()
        while gen.poll() is None:
            samples.append({"t": round(time.monotonic() - started, 1), "rss_mib": rss_mib(system.pids()),
                            "pss_mib": pss_mib(system.pids())})
            time.sleep(10)
        result = json.loads(gen.stdout.read().decode().strip().splitlines()[-1])
        result["rss_samples"] = samples
        if samples:  # growth after the first 30 s (rings and caches fill first)
            base = samples[min(3, len(samples) - 1)]
            result["rss_growth_mib"] = round(samples[-1]["rss_mib"] - base["rss_mib"], 1)
            result["pss_growth_mib"] = round(samples[-1]["pss_mib"] - base["pss_mib"], 1)
        result["lost"] = result["sent"] - system.processed()
    finally:
        system.stop()
    return result


# ----------------------------------------------------------------------------- the run

QUICK = {"symbols": 100, "share": 0.02, "throughput_count": 200_000, "rates": [20_000],
         "latency_seconds": 8, "scaling_symbols": [], "soak_seconds": 0, "idle_seconds": 0,
         "jetstream_count": 100_000, "jetstream_rates": [20_000], "shard_counts": []}
FULL = {"symbols": 100, "share": 0.02, "throughput_count": 500_000, "rates": [1_000, 20_000, 50_000],
        "latency_seconds": 20, "scaling_symbols": [10, 100, 1000], "soak_seconds": 600,
        "idle_seconds": 10, "shard_counts": [1, 2, 3], "shard_workers": 1}
SYSTEMS = ("raw", "reference", "rtsig", "rtsig-jetstream")


def summary(systems: dict) -> dict:
    raw, ref, rt = systems["raw"], systems["reference"], systems["rtsig"]
    js = systems.get("rtsig-jetstream")

    def tput(s: dict) -> float | None:
        return s["throughput"]["msgs_per_s"]

    def lat(s: dict, q: str) -> float | None:
        return s["latency"]["20000"]["latency_ms"][q] if "20000" in s["latency"] else None

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    return {
        "rtsig_msgs_per_s": tput(rt), "raw_msgs_per_s": tput(raw), "reference_msgs_per_s": tput(ref),
        "rtsig_vs_raw": ratio(tput(rt), tput(raw)), "rtsig_vs_reference": ratio(tput(rt), tput(ref)),
        "rtsig_p50_ms": lat(rt, "p50"), "rtsig_p99_ms": lat(rt, "p99"), "rtsig_p999_ms": lat(rt, "p99.9"),
        "raw_p50_ms": lat(raw, "p50"), "raw_p99_ms": lat(raw, "p99"),
        "reference_p50_ms": lat(ref, "p50"), "reference_p99_ms": lat(ref, "p99"),
        "rtsig_cpu_s_per_1000": rt["throughput"]["cpu_seconds_per_1000"],
        "reference_cpu_s_per_1000": ref["throughput"]["cpu_seconds_per_1000"],
        "raw_cpu_s_per_1000": raw["throughput"]["cpu_seconds_per_1000"],
        "rtsig_cpu_vs_reference": ratio(rt["throughput"]["cpu_seconds_per_1000"],
                                        ref["throughput"]["cpu_seconds_per_1000"]),
        "rtsig_peak_rss_mib": rt["peak_rss_mib"], "rtsig_pss_mib": rt["pss_mib"],
        **({"jetstream_msgs_per_s": tput(js), "jetstream_vs_core": ratio(tput(js), tput(rt)),
            "jetstream_p50_ms": lat(js, "p50"), "jetstream_p99_ms": lat(js, "p99"),
            "jetstream_cpu_s_per_1000": js["throughput"]["cpu_seconds_per_1000"]} if js else {}),
        "lost": sum(s["lost"] for s in systems.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the under-3-minute set")
    p.add_argument("--soak-seconds", type=int, default=None)
    p.add_argument("--no-report", action="store_true")
    a = p.parse_args()
    plan = dict(QUICK if a.quick else FULL)
    if a.soak_seconds is not None:
        plan["soak_seconds"] = a.soak_seconds
    scenario = "quick" if a.quick else "full"
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    print("filling the Numba cache (rtsig warm-up)…", file=sys.stderr)
    warm_started = time.monotonic()
    subprocess.run([RTSIG, "warm-up"], cwd=ROOT, check=True, capture_output=True)
    warm_up_seconds = round(time.monotonic() - warm_started, 2)  # the "ready" target is for a warm cache
    with EmbeddedNats(config=NATS_CONFIG, jetstream=True) as server:  # idle unless rtsig-jetstream
        systems = {}
        for name in SYSTEMS:
            print(f"measuring {name}…", file=sys.stderr)
            systems[name] = run_system(name, server.url, plan)
        result = {"scenario": scenario, "date": dt.datetime.now(dt.UTC).isoformat(),
                  "machine": machine(), "plan": plan, "warm_up_seconds": warm_up_seconds,
                  "systems": systems}
        if plan["scaling_symbols"]:
            print("scaling…", file=sys.stderr)
            result["scaling"] = scaling(server.url, plan)
        if plan["shard_counts"]:
            print("symbol shards…", file=sys.stderr)
            result["shards"] = shards(server.url, plan)
        stamp = dt.datetime.now().strftime("%Y-%m-%d")
        (RESULTS / f"{stamp}-{scenario}.partial.json").write_text(json.dumps(result, indent=2) + "\n")
        if plan["soak_seconds"]:
            print(f"soak {plan['soak_seconds']} s…", file=sys.stderr)
            result["soak"] = soak(server.url, plan["soak_seconds"], 20_000, plan["symbols"], plan["share"])
    result["summary"] = summary(systems)
    if not a.quick:
        bench = subprocess.run([PYTHON, "-m", "perf.microbench", "--runs", "2000"], capture_output=True,
                               cwd=ROOT)
        if bench.returncode == 0:
            result["microbench"] = json.loads(bench.stdout.decode().strip().splitlines()[-1])
        else:
            print(f"micro-benchmarks failed:\n{bench.stderr.decode()[-2000:]}", file=sys.stderr)
    result["seconds"] = round(time.monotonic() - started, 1)
    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    path = RESULTS / f"{stamp}-{scenario}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stamp}-{scenario}.partial.json").unlink(missing_ok=True)
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    if not a.quick and not a.no_report:
        from perf.report import write_report

        write_report(result, RESULTS, ROOT / "docs" / "PERFORMANCE.md", stamp)
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
