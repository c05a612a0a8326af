"""The ``rtsig`` command: one sub-command per job (interfaces.md §1)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import orjson

from rtsig.errors import InputError, SettingsError
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

    summary = run_signals(messages(args.files), settings, emit, overrides)
    out.flush()
    sys.stderr.write(orjson.dumps(summary).decode() + "\n")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    from rtsig.params import base_config

    effective = {
        "settings": {k: (str(v) if not isinstance(v, (int, float, bool, str, type(None), tuple, dict))
                         else v)
                     for k, v in vars(settings).items()
                     if k not in ("strategy_env_params", "api_token")},
        "strategies": {},
    }
    effective["settings"]["api_token"] = "***" if settings.api_token else None
    for sid, st in STRATEGIES.items():
        config = base_config(settings, sid)
        env = settings.strategy_env_params.get(sid, {})
        effective["strategies"][sid] = {
            "enabled": settings.strategy_enabled.get(sid, False),
            "parameters": {p.name: {"value": config.parameters[p.name],
                                    "source": "env" if p.name in env else "default",
                                    "env": st.env_name(p.name)}
                           for p in st.params},
        }
    sys.stdout.buffer.write(orjson.dumps(effective, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtsig",
        description="Real-time trading signals from Binance market data. "
                    "Settings come from environment variables (see README).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("signals", help="run the strategies over recorded data, offline",
                       description="Decode recorded market data (JSON lines, `<recv_ts>: <json>` "
                                   "captures, or - for stdin) through the live service's decoder, "
                                   "store, kernels and signal builder; one JSON signal per line "
                                   "on stdout, a JSON summary line on stderr.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--set", action="append", metavar="STRATEGY.PARAM=VALUE",
                   help="override a strategy parameter (repeatable)")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser("config", help="print effective settings and strategy parameters",
                       description="Print every setting and every strategy parameter with its source.")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(args, settings)
    except (SettingsError, InputError) as exc:
        print(f"rtsig: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `rtsig signals … | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
