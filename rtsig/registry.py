"""The strategy parameter registry: the single source of every strategy's parameters.

Environment-variable names, validation, the numeric arrays the kernels read, the API schema and
the docs are all derived from :data:`STRATEGIES`; nothing else lists parameters. The formulas
that use them are in ``docs/STRATEGIES.md``.

Kernels receive a strategy's parameters as one ``float64`` array in the order declared here
(bools as 0/1, an unset optional value as NaN); :func:`param_index` gives kernels their
compile-time constant positions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rtsig.errors import SettingsError

CONFIDENCE_CAP = 0.95
"""The highest confidence any strategy reports (``cap`` in docs/STRATEGIES.md)."""

ParamValue = int | float | bool | None


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its type, default, accepted range and unit."""

    name: str
    type: type
    default: ParamValue
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    optional: bool = False  # None is accepted and means "use the global default"

    def accepted(self) -> str:
        """Human text of what this parameter accepts, for error messages."""
        kind = {bool: "a boolean (true/false)", int: "an integer", float: "a number"}[self.type]
        bounds = []
        if self.min is not None:
            bounds.append(f"{'>' if self.min_exclusive else '>='} {self.min:g}")
        if self.max is not None:
            bounds.append(f"{'<' if self.max_exclusive else '<='} {self.max:g}")
        text = kind + (" " + " and ".join(bounds) if bounds else "")
        return text + (" or null" if self.optional else "")

    def validate(self, value: object, where: str) -> ParamValue:
        """Return ``value`` as this parameter's type, or raise :class:`SettingsError`.

        ``where`` names the value's origin (an environment variable, ``strategy.param``) so the
        error says exactly what to fix. Strings are parsed (environment and CLI values).
        """
        if value is None:
            if self.optional:
                return None
            raise SettingsError(where, value, self.accepted())
        parsed = self._coerce(value, where)
        if self.type is bool:
            return parsed
        number = float(parsed)
        if not math.isfinite(number):
            raise SettingsError(where, value, self.accepted())
        if self.min is not None and (number < self.min or (self.min_exclusive and number == self.min)):
            raise SettingsError(where, value, self.accepted())
        if self.max is not None and (number > self.max or (self.max_exclusive and number == self.max)):
            raise SettingsError(where, value, self.accepted())
        return parsed

    def _coerce(self, value: object, where: str) -> int | float | bool:
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                text = value.strip().lower()
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
            raise SettingsError(where, value, self.accepted())
        if isinstance(value, bool):  # bool is an int subclass; True is not a number here
            raise SettingsError(where, value, self.accepted())
        if self.type is int:
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    pass
            raise SettingsError(where, value, self.accepted())
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise SettingsError(where, value, self.accepted())


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Strategy:
    """A strategy's identity and its parameter list (order matters: it is the kernel's array)."""

    strategy_id: str
    name: str
    description: str
    params: tuple[Param, ...]
    realtime: bool  # runs per Binance message; the market-logic ones run on the feeds of §2c
    enabled_by_default: bool
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def param(self, name: str) -> Param:
        return self._by_name[name]

    def has_param(self, name: str) -> bool:
        return name in self._by_name

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def env_name(self, param_name: str) -> str:
        """``<STRATEGY>_<PARAM>``, e.g. ``ORDERBOOK_SKEW_BUY_THRESHOLD``."""
        return f"{self.strategy_id}_{param_name}".upper()

    @property
    def enabled_env_name(self) -> str:
        return f"STRATEGY_ENABLED_{self.strategy_id.upper()}"

    def validate(self, values: Mapping[str, object], prefix: str | None = None) -> dict[str, ParamValue]:
        """Validate a partial parameter mapping; unknown names are errors.

        Raises :class:`SettingsError` for the first bad entry; :func:`validation_errors` lists all.
        """
        out: dict[str, ParamValue] = {}
        for name, value in values.items():
            where = f"{prefix or self.strategy_id}.{name}"
            if name not in self._by_name:
                raise SettingsError(where, value, f"one of {', '.join(self._by_name)}")
            out[name] = self._by_name[name].validate(value, where)
        return out

    def validation_errors(self, values: Mapping[str, object]) -> dict[str, str]:
        """Every bad entry of ``values`` with its reason (one error per field, for the API)."""
        errors: dict[str, str] = {}
        for name, value in values.items():
            try:
                self.validate({name: value})
            except SettingsError as exc:
                errors[name] = str(exc)
        return errors

    def as_array(self, values: Mapping[str, ParamValue]) -> np.ndarray:
        """The complete parameter set as the kernel's float64 array (missing → default)."""
        merged = {**self.defaults(), **values}
        out = np.empty(len(self.params), dtype=np.float64)
        for i, p in enumerate(self.params):
            v = merged[p.name]
            out[i] = math.nan if v is None else float(v)
        return out


def _common(interval_s: int) -> tuple[Param, ...]:
    """Parameters every strategy has: cool-down and optional risk overrides."""
    return (
        Param("min_signal_interval", int, interval_s,
              "no repeat of the same symbol and action within this many seconds of event time; 0 disables",
              unit="s", min=0),
        Param("stop_loss_pct", float, None,
              "stop-loss distance as a fraction of price; null uses RISK_STOP_LOSS_PCT",
              unit="fraction", min=0, max=1, min_exclusive=True, max_exclusive=True, optional=True),
        Param("take_profit_pct", float, None,
              "take-profit distance as a fraction of price; null uses RISK_TAKE_PROFIT_PCT "
              "(below 1: a sell's level stays above 0, and the trade engine rejects 1 or more)",
              unit="fraction", min=0, max=1, min_exclusive=True, max_exclusive=True, optional=True),
    )


ORDERBOOK_SKEW = Strategy(
    "orderbook_skew", "Order Book Skew",
    "Bid/ask volume imbalance over the top levels of each depth snapshot, gated by spread.",
    (
        Param("top_levels", int, 5, "levels per side summed into the bid and ask volumes",
              unit="levels", min=1, max=20),
        Param("buy_threshold", float, 1.2, "buy when bid volume / ask volume exceeds this",
              unit="ratio", min=1, min_exclusive=True),
        Param("sell_threshold", float, 0.8, "sell when bid volume / ask volume is below this",
              unit="ratio", min=0, max=1),
        Param("min_spread_percent", float, 0.1,
              "the widest spread (in %) at which a signal is still allowed (name kept from the seed)",
              unit="%", min=0, min_exclusive=True),
        Param("base_confidence", float, 0.70, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        Param("imbalance_weight", float, 0.6, "weight of the imbalance component of confidence",
              unit="weight", min=0),
        Param("spread_weight", float, 0.4, "weight of the tight-spread component of confidence",
              unit="weight", min=0),
        Param("min_total_volume", float, 0.001, "no signal when bid + ask volume is below this",
              unit="base asset", min=0),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

TRADE_MOMENTUM = Strategy(
    "trade_momentum", "Trade Momentum",
    "Weighted price move, trade size and order flow over the last trades of a symbol.",
    (
        Param("price_weight", float, 0.4, "weight of the window price move", unit="weight", min=0),
        Param("quantity_weight", float, 0.3, "weight of the current trade's relative size",
              unit="weight", min=0),
        Param("maker_weight", float, 0.3, "weight of the window's buy/sell flow", unit="weight", min=0),
        Param("buy_threshold", float, 0.7, "buy when momentum exceeds this", unit="momentum",
              min=0, max=1),
        Param("sell_threshold", float, -0.7, "sell when momentum is below this", unit="momentum",
              min=-1, max=0),
        Param("min_quantity", float, 0.001,
              "a trade smaller than this is stored but does not trigger an evaluation",
              unit="base asset", min=0),
        Param("base_confidence", float, 0.68, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        Param("time_decay_seconds", float, 300,
              "a trade leaves the window when it is older than this (event time)",
              unit="s", min=0, min_exclusive=True),
        Param("momentum_window", int, 10, "the last N trades of the symbol, the current one included",
              unit="trades", min=2, max=1000),
        Param("price_scale_bps", float, 10, "window price move that saturates the price component",
              unit="bps", min=0, min_exclusive=True),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

TICKER_VELOCITY = Strategy(
    "ticker_velocity", "Ticker Velocity",
    "Price velocity and acceleration over a window of 24 h ticker samples, with volume confirmation.",
    (
        Param("time_window", int, 60, "samples within this many seconds of the current one",
              unit="s", min=5, max=3600),
        Param("buy_threshold", float, 0.5, "buy when velocity exceeds this", unit="%/min",
              min=0, min_exclusive=True),
        Param("sell_threshold", float, -0.5, "sell when velocity is below this", unit="%/min",
              max=0, max_exclusive=True),
        Param("min_price_change", float, 0.1, "no signal when the window price change is smaller",
              unit="%", min=0),
        Param("base_confidence", float, 0.65, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        Param("acceleration_weight", float, 0.5, "weight of the acceleration bonus",
              unit="weight", min=0, max=1),
        Param("volume_confirmation", bool, True,
              "require the 24 h base volume to grow by min_volume_change over the window"),
        Param("min_volume_change", float, 0.2, "required growth of the 24 h base volume",
              unit="%", min=0),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

BTC_DOMINANCE = Strategy(
    "btc_dominance", "BTC Dominance",
    "Rotation between Bitcoin and alt-coins from Bitcoin's share of the total crypto market cap "
    "(dominance samples on MARKET_DOMINANCE_SUBJECT); signals on BTCUSDT.",
    (
        Param("high_threshold", float, 70.0,
              "dominance above which a rising dominance is a rotation to BTC (buy BTCUSDT); "
              "must exceed low_threshold", unit="%", min=0, max=100),
        Param("low_threshold", float, 40.0,
              "dominance below which a falling dominance is a rotation to alt-coins (sell BTCUSDT)",
              unit="%", min=0, max=100),
        Param("change_threshold", float, 5.0,
              "dominance change over the window (percentage points) that signals on its own",
              unit="pp", min=0, min_exclusive=True),
        Param("window_hours", int, 24, "window of the dominance change", unit="h", min=1, max=168),
        *_common(14400),
    ),
    realtime=False, enabled_by_default=True,
)

CROSS_EXCHANGE_SPREAD = Strategy(
    "cross_exchange_spread", "Cross-Exchange Spread",
    "Price gaps between Binance spot and other venues (quotes on MARKET_QUOTES_SUBJECT, and "
    "Binance USD-M futures books when rtsig receives futures data); trades on Binance.",
    (
        Param("spread_threshold_percent", float, 0.5, "price gap between venues that signals",
              unit="%", min=0, min_exclusive=True),
        *_common(300)[:1],
        Param("max_position_size", float, 500,
              "USDT notional of a signal: quantity = floor(max_position_size / price, 8 decimals)",
              unit="USDT", min=0, min_exclusive=True),
        Param("max_quote_age_seconds", float, 10,
              "quotes older than this (event time of the triggering quote) are ignored",
              unit="s", min=1, max=3600),
        *_common(300)[1:],
    ),
    realtime=False, enabled_by_default=True,
)

ONCHAIN_METRICS = Strategy(
    "onchain_metrics", "On-Chain Metrics",
    "Whale transfers and net exchange flows of BTC and ETH (transfers on "
    "ONCHAIN_TRANSFERS_SUBJECT); signals on BTCUSDT / ETHUSDT.",
    (
        Param("whale_threshold_btc", float, 100, "BTC transfer size that counts as a whale",
              unit="BTC", min=0, min_exclusive=True),
        Param("whale_threshold_eth", float, 1000, "ETH transfer size that counts as a whale",
              unit="ETH", min=0, min_exclusive=True),
        Param("exchange_flow_threshold_percent", float, 10.0,
              "net exchange flow (in − out) / (in + out) over the window that signals",
              unit="%", min=0, max=100),
        Param("flow_window_minutes", int, 60, "window of the exchange flow", unit="min",
              min=1, max=1440),
        *_common(3600),
    ),
    realtime=False, enabled_by_default=True,
)

MICROPRICE = Strategy(
    "microprice", "Microprice",
    "Size-weighted mid over the top levels of each depth snapshot and its deviation from the mid "
    "(bps), gated by spread.",
    (
        Param("top_levels", int, 5, "levels per side summed into the bid and ask sizes",
              unit="levels", min=1, max=20),
        Param("buy_threshold_bps", float, 0.1, "buy when microprice − mid exceeds this",
              unit="bps", min=0, min_exclusive=True),
        Param("sell_threshold_bps", float, -0.1, "sell when microprice − mid is below this",
              unit="bps", max=0, max_exclusive=True),
        Param("max_spread_bps", float, 10.0, "the widest spread at which a signal is still allowed",
              unit="bps", min=0, min_exclusive=True),
        Param("min_total_volume", float, 0.001, "no signal when bid + ask size is below this",
              unit="base asset", min=0),
        Param("base_confidence", float, 0.65, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

ORDER_FLOW_IMBALANCE = Strategy(
    "order_flow_imbalance", "Order Flow Imbalance",
    "Cont–Kukanov–Stoikov order-flow imbalance of consecutive best-level snapshots, summed over a "
    "time window and normalised by the mean best-level depth.",
    (
        Param("window_seconds", float, 10.0,
              "contributions of snapshots within this many seconds of the current one (event "
              "time); at most the last 256 contributions of the symbol",
              unit="s", min=0, max=3600, min_exclusive=True),
        Param("buy_threshold", float, 3.0, "buy when the normalised OFI exceeds this",
              unit="depths", min=0, min_exclusive=True),
        Param("sell_threshold", float, -3.0, "sell when the normalised OFI is below this",
              unit="depths", max=0, max_exclusive=True),
        Param("min_updates", int, 10, "no signal with fewer contributions in the window",
              unit="contributions", min=1, max=256),
        Param("base_confidence", float, 0.65, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

TRADE_FLOW_IMBALANCE = Strategy(
    "trade_flow_imbalance", "Trade Flow Imbalance",
    "Signed volume imbalance of aggressor trades (buyer- minus seller-initiated) over a time window.",
    (
        Param("window_seconds", float, 30.0,
              "trades within this many seconds of the current one (event time)",
              unit="s", min=0, max=3600, min_exclusive=True),
        Param("max_window_trades", int, 500, "at most the last N trades, the current one included",
              unit="trades", min=2, max=1000),
        Param("buy_threshold", float, 0.6, "buy when the imbalance exceeds this", unit="imbalance",
              min=0, max=1),
        Param("sell_threshold", float, -0.6, "sell when the imbalance is below this",
              unit="imbalance", min=-1, max=0),
        Param("min_trades", int, 10, "no signal with fewer trades in the window", unit="trades",
              min=2, max=1000),
        Param("min_volume", float, 0.0, "no signal when the window's volume is below this",
              unit="base asset", min=0),
        Param("base_confidence", float, 0.65, "confidence at the threshold",
              unit="confidence", min=0, max=CONFIDENCE_CAP),
        *_common(60),
    ),
    realtime=True, enabled_by_default=True,
)

STRATEGIES: dict[str, Strategy] = {
    s.strategy_id: s
    for s in (ORDERBOOK_SKEW, TRADE_MOMENTUM, TICKER_VELOCITY,
              BTC_DOMINANCE, CROSS_EXCHANGE_SPREAD, ONCHAIN_METRICS,
              MICROPRICE, ORDER_FLOW_IMBALANCE, TRADE_FLOW_IMBALANCE)
}
REALTIME_IDS: tuple[str, ...] = tuple(STRATEGIES)
"""Every strategy the workers judge, in kernel order: the index of a strategy in this tuple is its
id number (signal counters, cool-down table, parameter rows). Since the market-logic strategies
got their data paths (docs/CONTRACT.md §2c) this is all six: the three realtime ones first, then
btc_dominance, cross_exchange_spread, onchain_metrics (``Strategy.realtime`` still tells which
run per Binance message), then the microstructure ones (issue 19): microprice,
order_flow_imbalance, trade_flow_imbalance — appended, so the six older numbers are unchanged."""
MARKET_LOGIC_IDS: tuple[str, ...] = tuple(s for s, st in STRATEGIES.items() if not st.realtime)

MAX_PARAMS = max(len(s.params) for s in STRATEGIES.values())


def strategy(strategy_id: str) -> Strategy:
    """The strategy with this id; :class:`KeyError` names the known ones."""
    try:
        return STRATEGIES[strategy_id]
    except KeyError:
        raise KeyError(f"unknown strategy {strategy_id!r}; known: {', '.join(STRATEGIES)}") from None


def param_index(strategy_id: str, param_name: str) -> int:
    """Position of a parameter in its strategy's kernel array (a compile-time constant)."""
    return [p.name for p in STRATEGIES[strategy_id].params].index(param_name)


def strategy_number(strategy_id: str) -> int:
    """The small integer a kernel and the signal table use for a realtime strategy."""
    return REALTIME_IDS.index(strategy_id)
