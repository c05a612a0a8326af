"""Effective strategy parameters per symbol, as the kernels' arrays and as signal metadata.

Resolution order (docs/CONTRACT.md §4): symbol override → global config (store) → environment
variable → default. The configuration stores supply the first two through a
:class:`ConfigSource`; without one, parameters come from the environment and the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rtsig.registry import MAX_PARAMS, REALTIME_IDS, STRATEGIES, ParamValue
from rtsig.settings import Settings


@dataclass(frozen=True)
class EffectiveConfig:
    """The complete parameters of one strategy for one symbol and where they came from."""

    strategy_id: str
    symbol: str | None
    parameters: Mapping[str, ParamValue]
    version: int = 0
    source: str = "default"  # mongodb / mysql / sqlite / environment / default
    is_override: bool = False
    created_at: str | None = None
    updated_at: str | None = None
    changed: Mapping[str, ParamValue] = field(default_factory=dict)
    """The parameters that differ from the defaults (what a signal's metadata shows)."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each parameter's value came from: ``default``, ``environment`` or a store name
    (``sqlite``/``mysql``/``mongodb``, with `` (SYMBOL)`` for a symbol override)."""

    def as_metadata(self) -> dict:
        return {"version": self.version, "parameters": dict(self.changed), "source": self.source,
                "is_override": self.is_override}


class ConfigSource(Protocol):
    """The config service: complete parameters with stored configs layered in (no I/O)."""

    def effective(self, strategy_id: str, symbol: str | None = None) -> EffectiveConfig: ...


def base_config(settings: Settings, strategy_id: str,
                cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None) -> EffectiveConfig:
    """Defaults merged with ``<STRATEGY>_<PARAM>`` variables (and ``--set`` flags)."""
    st = STRATEGIES[strategy_id]
    env = {**settings.strategy_env_params.get(strategy_id, {}),
           **(cli_overrides or {}).get(strategy_id, {})}
    params = {**st.defaults(), **env}
    sources = {name: "environment" if name in env else "default" for name in params}
    return EffectiveConfig(strategy_id, None, params, 0, "environment" if env else "default",
                           False, changed=changed_parameters(strategy_id, params), sources=sources)


def changed_parameters(strategy_id: str, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    defaults = STRATEGIES[strategy_id].defaults()
    return {k: v for k, v in params.items() if defaults.get(k) != v}


class ParameterTable:
    """``values[symbol, strategy, :]`` for the kernels plus the config each row came from."""

    def __init__(self, settings: Settings, max_symbols: int, source: ConfigSource | None = None,
                 cli_overrides: Mapping[str, Mapping[str, ParamValue]] | None = None) -> None:
        self.settings = settings
        self.source = source
        self.cli_overrides = cli_overrides or {}
        self.values = np.full((max_symbols, len(REALTIME_IDS), MAX_PARAMS), np.nan)
        self.enabled = np.array(settings.realtime_enabled, dtype=np.uint8)
        self.configs: dict[tuple[int, int], EffectiveConfig] = {}
        self._symbols: list[str] = []

    def resolve(self, strategy_id: str, symbol: str | None) -> EffectiveConfig:
        if self.source is None:
            return base_config(self.settings, strategy_id, self.cli_overrides)
        return self.source.effective(strategy_id, symbol)

    def sync_symbols(self, names: list[str]) -> None:
        """Fill the rows of symbols that appeared since the last call."""
        for sid in range(len(self._symbols), len(names)):
            self._symbols.append(names[sid])
            self._fill(sid)

    def rename(self, sid: int, name: str) -> None:
        """Symbol id ``sid`` now names ``name`` (an idle symbol was evicted): re-resolve its rows,
        so another symbol's overrides never apply to it."""
        self._symbols[sid] = name
        self._fill(sid)

    def reload(self) -> None:
        """Re-resolve every row (after a configuration change)."""
        for sid in range(len(self._symbols)):
            self._fill(sid)

    def _fill(self, sid: int) -> None:
        symbol = self._symbols[sid]
        for number, strategy_id in enumerate(REALTIME_IDS):
            config = self.resolve(strategy_id, symbol)
            arr = STRATEGIES[strategy_id].as_array(config.parameters)
            self.values[sid, number, :] = np.nan
            self.values[sid, number, :arr.size] = arr
            self.configs[(sid, number)] = config

    def config(self, sid: int, number: int) -> EffectiveConfig:
        return self.configs[(sid, number)]

    def interval_ms(self, sid: int, number: int) -> int:
        interval = self.configs[(sid, number)].parameters["min_signal_interval"]
        assert interval is not None  # a required parameter: never null
        return int(interval) * 1000

    def risk(self, sid: int, number: int) -> tuple[float, float]:
        p = self.configs[(sid, number)].parameters
        sl = p.get("stop_loss_pct")
        tp = p.get("take_profit_pct")
        return (self.settings.risk_stop_loss_pct if sl is None else float(sl),
                self.settings.risk_take_profit_pct if tp is None else float(tp))
