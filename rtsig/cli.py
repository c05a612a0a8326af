"""The ``rtsig`` command: one sub-command per job (docs/CONTRACT.md §1)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from rtsig.errors import ConfigError, InputError, SettingsError
from rtsig.registry import STRATEGIES, ParamValue
from rtsig.settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]


def parse_set(values: Sequence[str]) -> dict[str, dict[str, ParamValue]]:
    """``--set strategy_id.param=value`` flags, validated by the registry."""
    out: dict[str, dict[str, ParamValue]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        strategy_id, dot, param = key.strip().partition(".")
        if not sep or not dot:
            raise SettingsError("--set", item, "strategy_id.param=value")
        if strategy_id not in STRATEGIES:
            raise SettingsError("--set", item, "a strategy id: " + ", ".join(STRATEGIES))
        st = STRATEGIES[strategy_id]
        if not st.has_param(param):
            raise SettingsError("--set", item, f"a parameter of {strategy_id}: " +
                                ", ".join(p.name for p in st.params))
        raw = None if value.strip().lower() in ("null", "none") else value
        out.setdefault(strategy_id, {})[param] = st.param(param).validate(raw, key)
    return out


def cmd_signals(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.offline import run_signals
    from rtsig.recorded import messages

    overrides = parse_set(args.set or [])
    out = sys.stdout.buffer

    def emit(signal: dict) -> None:
        out.write(orjson.dumps(signal) + b"\n")

    source = service = None
    if args.config_store:
        service, source = _stored_parameters(settings, overrides)
    try:
        summary = run_signals(messages(args.files), settings, emit, overrides, source)
    finally:
        if service is not None:
            service.close()
    if service is not None:
        summary["config_store"] = service.snapshot.source
    out.flush()
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")
    return 0


def _horizons(text: str) -> tuple[float, ...]:
    """``--horizons 1,10,60,300``: seconds of event time, each > 0."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds like 1,10,60,300") from None
    if not values or any(not v > 0 or v != v or v == float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds > 0 like 1,10,60,300")
    return tuple(sorted(set(values)))


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a fraction between 0 and 1 (e.g. 0.7)")
    return value


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """``rtsig evaluate``: the signals of the offline pipeline scored against the same data."""
    import time
    from pathlib import Path

    from rtsig.recorded import messages

    overrides = parse_set(args.set or [])
    out_dir = Path(args.out) if args.out else Path(settings.data_dir) / "evaluation"
    started = time.perf_counter()
    if args.grid:
        from rtsig.evaluation.grid import grid_table, parse_grid, run_grid

        report = run_grid(args.files, settings, overrides, parse_grid(args.grid), args.horizons,
                          args.price, args.rank_horizon, args.train_fraction, args.jobs)
        report["seconds"] = round(time.perf_counter() - started, 3)
        text, name = grid_table(report), "grid.json"
    else:
        from rtsig.evaluation.report import plots, table
        from rtsig.evaluation.run import evaluate

        report, outcomes = evaluate(messages(args.files), settings, overrides, args.horizons,
                                    args.price)
        report["files"] = list(args.files)
        text, name = table(report["results"], per_symbol=not args.strategies_only), "evaluation.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / name]
    written[0].write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if not args.grid and not args.no_plots:
        names = [Path(f).name for f in args.files]
        title = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        try:
            written += plots(outcomes, report["confidence_buckets"], out_dir, title)
        except ImportError:  # matplotlib is an extra: the report and the table do not need it
            sys.stderr.write("rtsig evaluate: no plots: they need matplotlib (pip install 'rtsig[perf]')\n")
    out = sys.stdout.buffer
    out.write((orjson.dumps(report).decode() if args.json else text).encode() + b"\n")
    out.flush()
    sys.stderr.write(orjson.dumps({("signals" if "signals" in report else "combinations"):
                                   report.get("signals", len(report.get("combinations", ()))),
                                   "seconds": round(time.perf_counter() - started, 3),
                                   "written": [str(p) for p in written]}).decode() + "\n")
    return 0


def _stored_parameters(settings: Settings, overrides: dict):
    """``signals --config-store``: the config store the service would use (MONGODB_URI, MYSQL_URI
    or the SQLite file in RTSIG_DATA_DIR), read once; ``--set`` flags still win over it."""
    import dataclasses

    from rtsig.config.service import ConfigService
    from rtsig.params import changed_parameters

    service = ConfigService(settings)
    service.refresh()
    health = service.health(refresh=False)
    if health["degraded"]:
        service.close()
        raise ConfigError(f"--config-store: cannot read the config store {health['store']}: "
                          f"{health['degraded']}")

    class StoreThenSet:
        def effective(self, strategy_id: str, symbol: str | None = None):
            config = service.effective(strategy_id, symbol)
            extra = overrides.get(strategy_id)
            if not extra:
                return config
            params = {**config.parameters, **extra}
            return dataclasses.replace(config, parameters=params,
                                       changed=changed_parameters(strategy_id, params),
                                       sources={**config.sources, **{k: "--set" for k in extra}})

    return service, StoreThenSet()


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.config.service import ConfigService

    config = ConfigService(settings)
    try:
        health = config.health()
        symbol = config.check_symbol(args.symbol) if args.symbol else None
        effective: dict[str, Any] = {"settings": _printable_settings(settings), "config_store": health,
                     "symbol": symbol, "strategies": {}}
        for sid, st in STRATEGIES.items():
            resolved = config.effective(sid, symbol)
            effective["strategies"][sid] = {
                "enabled": settings.strategy_enabled.get(sid, False),
                "version": resolved.version,
                "parameters": {p.name: {"value": resolved.parameters[p.name],
                                        **_source(resolved.sources[p.name]),
                                        "env": st.env_name(p.name)}
                               for p in st.params},
            }
    finally:
        config.close()
    sys.stdout.buffer.write(orjson.dumps(effective, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _source(where: str) -> dict:
    """docs/CONTRACT.md §1 names the sources default/env/store; a store also says which and where."""
    if where in ("default", "environment"):
        return {"source": "env" if where == "environment" else "default"}
    return {"source": "store", "store": where}


def _printable_settings(settings: Settings) -> dict:
    """Every setting as JSON, with the API token and database passwords masked."""
    from rtsig.settings import masked_uri

    out: dict[str, Any] = {k: (v if isinstance(v, (int, float, bool, str, type(None), tuple, dict)) else str(v))
           for k, v in vars(settings).items() if k != "strategy_env_params"}
    out["api_token"] = "***" if settings.api_token else None
    for name in ("mongodb_uri", "mysql_uri"):
        if out.get(name):
            out[name] = masked_uri(out[name])
    return out


def cmd_warm_up(args: argparse.Namespace, settings: Settings) -> int:
    """Compile every jitted function into the Numba cache (image build, first start)."""
    import time

    from rtsig.compile_progress import compile_progress
    from rtsig.warmup import warm_up

    started = time.monotonic()
    with compile_progress(lambda line: print(f"rtsig: {line}", file=sys.stderr, flush=True)):
        warm_up(settings)
    print(f"rtsig: compiled kernels are cached ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from rtsig import logs
    from rtsig.errors import StoreInUse
    from rtsig.supervisor import Supervisor

    logs.setup(settings.log_level, settings.log_format, "supervisor")
    for warning in settings.engine_warnings():
        logging.getLogger("rtsig").warning(warning)
    try:
        return Supervisor(settings, web=not args.no_web).run()
    except StoreInUse as exc:
        print(f"rtsig: {exc}", file=sys.stderr)
        return 2


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.replay import replay, run_tool

    return run_tool("replay", lambda stop: replay(
        settings, args.files, args.rate, args.loop, subject=args.subject, limit=args.count,
        connect_timeout=args.connect_timeout, stop=stop, shift_time=args.shift_time))


def _size(text: str) -> int:
    """``--max-bytes 256M``: bytes, with an optional K/M/G (binary) suffix; at least 1 KiB."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if scale > 1 else t) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size like 256M") from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"{text}: expected at least 1K")
    return value


def cmd_record(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.record import RecordWriter, convert, record

    if args.source:  # convert recorded files: no NATS
        from rtsig.recorded import messages

        writer = RecordWriter(args.dir, settings.nats_consumer_topic, args.prefix, args.max_bytes,
                              not args.no_hourly, compress=args.compress)
        try:
            n = convert(messages(args.source), writer)
        finally:
            writer.close()
        sys.stderr.write(orjson.dumps({"messages": n, "bytes": writer.bytes_written,
                                       "files": [str(p) for p in writer.files]}).decode() + "\n")
        return 0
    from rtsig.replay import run_tool

    return run_tool("record", lambda stop: record(
        settings, args.dir, prefix=args.prefix, max_bytes=args.max_bytes, hourly=not args.no_hourly,
        compress=args.compress, extra_subjects=args.subject, count=args.count, connect_timeout=args.connect_timeout,
        stop=stop))


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.replay import run_tool
    from rtsig.tail import tail

    return run_tool("tail", lambda stop: tail(settings, args.json, stop=stop, count=args.count,
                                              connect_timeout=args.connect_timeout))


def _at_least(lo: float, kind: type) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number no smaller than ``lo`` (``--rate -1`` is refused)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= lo or value != value or value in (float("inf"),):
            raise argparse.ArgumentTypeError(f"{text} is invalid: expected a number >= {lo:g}"
                                             + (" (0 = as fast as possible)" if lo == 0 else ""))
        return value
    return parse


def _connect_timeout(p: argparse.ArgumentParser) -> None:
    def seconds(text: str) -> float:
        value = float(text)
        if not value > 0:
            raise argparse.ArgumentTypeError("must be more than 0")
        return value

    p.add_argument("--connect-timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="give up (exit 1) when no NATS server answers within this long at start "
                        "(default 10); once connected, NATS restarts are ridden over")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from rtsig.demo import run_demo

    return run_demo(settings, Path(settings.data_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtsig",
        description="Real-time trading signals from Binance market data. "
                    "Settings come from environment variables (see README).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the service: ingest, worker pool, signal publishing",
                       description="The production entry point: a supervisor that creates the "
                                   "shared-memory store and starts and watches the ingest process "
                                   "and RTSIG_WORKERS workers. SIGTERM/SIGINT stop it cleanly.")
    p.add_argument("--no-web", action="store_true", help="run without the HTTP server")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("signals", help="run the strategies over recorded data, offline",
                       description="Decode recorded market data (JSON lines, `<recv_ts>: <json>` "
                                   "captures, or - for stdin) through the live service's decoder, "
                                   "store, kernels and signal builder; one JSON signal per line "
                                   "on stdout, a JSON summary line on stderr.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--set", action="append", metavar="STRATEGY.PARAM=VALUE",
                   help="override a strategy parameter (repeatable)")
    p.add_argument("--config-store", action="store_true",
                   help="use the parameters operators stored through the API (the config store "
                        "`rtsig run` would use: MONGODB_URI, MYSQL_URI or RTSIG_DATA_DIR's SQLite), "
                        "global and per symbol; --set still wins")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser("evaluate", help="score the signals of recorded data against what the "
                                        "market did next",
                       description="Run recorded data through the offline pipeline (as `signals`) "
                                   "and score every signal against the same data's prices that "
                                   "followed it: per strategy and symbol and horizon, count, hit "
                                   "rate, mean and median signed return (bps), rank IC of "
                                   "confidence, stop-loss/take-profit touched first. Writes a "
                                   "table on stdout, a JSON report and PNG plots (docs/EVALUATION.md).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--set", action="append", metavar="STRATEGY.PARAM=VALUE",
                   help="override a strategy parameter (repeatable)")
    p.add_argument("--horizons", type=_horizons, default=(1.0, 10.0, 60.0, 300.0), metavar="S,S,…",
                   help="forward horizons in seconds of event time (default 1,10,60,300)")
    p.add_argument("--price", choices=("auto", "mid", "trade", "ticker"), default="auto",
                   help="the price path: book mids, trade prices or ticker last prices; auto (the "
                        "default): the mid where the symbol has books, else trades, else tickers")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where the JSON report and the plots go (default RTSIG_DATA_DIR/evaluation)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    p.add_argument("--no-plots", action="store_true", help="write no PNG")
    p.add_argument("--strategies-only", action="store_true",
                   help="table rows for all symbols of each strategy only")
    p.add_argument("--grid", action="append", metavar="STRATEGY.PARAM=V1,V2,…",
                   help="sweep a parameter (repeatable: every combination is evaluated, in "
                        "parallel processes, and ranked)")
    p.add_argument("--jobs", type=_at_least(1, int), default=None,
                   help="processes of a --grid (default: the cores)")
    p.add_argument("--rank-horizon", type=float, default=60.0, metavar="S",
                   help="the horizon a --grid is ranked at (default 60)")
    p.add_argument("--train-fraction", type=_fraction, default=None, metavar="F",
                   help="--grid: rank on the first F of the event time, report the rest as test")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("replay", help="publish recorded market data to the input subject",
                       description="Publish recorded market data (JSON lines or `<recv_ts>: <json>` "
                                   "captures) to NATS_CONSUMER_TOPIC, as recorded or at a fixed rate.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--rate", type=_at_least(0, float), default=None,
                   help="messages per second (0 = as fast as possible; default: as recorded)")
    p.add_argument("--loop", action="store_true", help="repeat the files until interrupted")
    p.add_argument("--count", type=_at_least(1, int), default=None,
                   help="stop after this many messages")
    p.add_argument("--shift-time", action="store_true",
                   help="move the event times so that each round starts now: the service's "
                        "cool-downs run on event time, so data it has already seen (a second "
                        "replay of a file) gives no signals with its recorded times")
    p.add_argument("--subject", default=None, help="publish here instead of NATS_CONSUMER_TOPIC")
    _connect_timeout(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("record", help="record the live input subjects into compact msgpack files",
                       description="Subscribe (outside the queue group) to NATS_CONSUMER_TOPIC, "
                                   "NATS_FUTURES_TOPIC and the three feed subjects and write every "
                                   "message with its receipt time as msgpack frames, rotated by "
                                   "size and by UTC hour. `signals`, `replay` and `evaluate` read "
                                   "the files like JSON lines (docs/EVALUATION.md).")
    p.add_argument("--dir", default="recordings", help="where the files go (default ./recordings)")
    p.add_argument("--prefix", default="rtsig", help="file name prefix (default rtsig)")
    p.add_argument("--max-bytes", type=_size, default=256 << 20, metavar="SIZE",
                   help="start a new file past this size (default 256M)")
    p.add_argument("--no-hourly", action="store_true",
                   help="do not start a new file when the UTC hour changes")
    p.add_argument("--compress", action="store_true",
                   help="gzip the files (level 1: ~3-10x smaller, ~9 µs more per message)")
    p.add_argument("--subject", action="append", metavar="SUBJECT",
                   help="record this subject too (repeatable)")
    p.add_argument("--count", type=_at_least(1, int), default=None,
                   help="stop after this many messages")
    p.add_argument("--from", dest="source", nargs="+", metavar="FILE",
                   help="convert recorded files (JSON lines, captures) instead of listening")
    _connect_timeout(p)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("tail", help="print the signals as they are published",
                       description="Subscribe to NATS_PUBLISHER_TOPIC (and its per-strategy "
                                   "subjects) and print one readable line per signal.")
    p.add_argument("--json", action="store_true", help="print the raw JSON signal")
    p.add_argument("--count", type=_at_least(1, int), default=None,
                   help="exit after this many signals")
    _connect_timeout(p)
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("demo", help="the demo behind `make run`",
                       description="Start NATS if none answers at NATS_URL, the service, a replay "
                                   "of the bundled sample feed and a tail of the signals.")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="print effective settings and strategy parameters",
                       description="Print every setting, the config store's state, and every "
                                   "strategy parameter with its source (default, environment, or "
                                   "the store that holds it).")
    p.add_argument("--symbol", default=None, help="resolve with this symbol's overrides")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("feed", help="publish a market-logic feed from a public source",
                       description="An adapter of docs/CONTRACT.md §2c: read a public source and "
                                   "publish its bodies on the feed's subject (MARKET_DOMINANCE_SUBJECT, "
                                   "MARKET_QUOTES_SUBJECT, ONCHAIN_TRANSFERS_SUBJECT).")
    from rtsig.feeds.run import add_arguments as feed_arguments

    feed_arguments(p)
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("warm-up", help="compile the Numba kernels into the cache and exit",
                       description="Compile (or load) every jitted function, so that `rtsig run` "
                                   "starts in well under a second; the Docker build runs it.")
    p.set_defaults(func=cmd_warm_up)
    return parser


def cmd_feed(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.feeds.run import command

    return command(args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (SettingsError, InputError, ConfigError) as exc:
        print(f"rtsig: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `rtsig signals … | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
