"""One settings object, built once from the environment and passed down.

Every variable of docs/CONTRACT.md §5 is read here and nowhere else. A bad value raises
:class:`~rtsig.errors.SettingsError`, whose message is the one line start-up prints.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from rtsig.errors import SettingsError
from rtsig.registry import REALTIME_IDS, STRATEGIES, ParamValue

T = TypeVar("T")
NumberT = TypeVar("NumberT", int, float)

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_\-\.]{0,23}$")
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MARKETS = ("spot", "usdm")
"""Market names of ``SIGNAL_MARKETS`` and ``metadata.market``, in layout.VENUE_* order (1, 2)."""
ENGINE_MIN_CONFIDENCE = 0.6
ENGINE_DUPLICATE_WINDOW_S = 10
"""What the trade engine drops: confidence below, and repeats within this many seconds."""
_PLACEHOLDERS = ("{strategy_id}", "{symbol}")
SYMBOL_BYTES = 24
"""Longest symbol name the store keeps (bytes of UTF-8)."""


@dataclass(frozen=True)
class Settings:
    """Every setting of rtsig. Build with :meth:`from_env`; tests build their own."""

    nats_url: str = "nats://localhost:4222"
    nats_consumer_topic: str = "binance.websocket.data"
    nats_publisher_topic: str = "signals.trading"
    nats_consumer_group: str = "realtime-strategies-group"
    nats_consumer_stream: str | None = None
    """A JetStream stream to read the input from, through a durable pull consumer (§2b)."""
    nats_consumer_stream_create: bool = False
    nats_consumer_stream_max_age_seconds: float = 86400.0
    nats_consumer_rebuild_seconds: float = 600.0
    """On a restart in JetStream mode: input time re-judged (without publishing) before the first
    unacknowledged message, so history windows and cool-downs are whole again."""
    shard_index: int = 0
    shard_count: int = 1
    """``RTSIG_SHARD=k/N``: this replica judges the symbols with ``fnv1a_32(symbol) % N == k``."""
    nats_creds: Path | None = None
    """A ``.creds`` file (user JWT + nkey seed) for NATS deployments with accounts."""
    nats_nkey_seed: Path | None = None
    """A file holding an nkey seed (``SU…``) for servers that list nkey users."""
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    trading_symbols: tuple[str, ...] | None = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    """Symbols to process; ``None`` means all (``TRADING_SYMBOLS=*``)."""
    strategy_enabled: Mapping[str, bool] = field(
        default_factory=lambda: {s: st.enabled_by_default for s, st in STRATEGIES.items()})
    strategy_env_params: Mapping[str, Mapping[str, ParamValue]] = field(default_factory=dict)
    """Parameter values set by ``<STRATEGY>_<PARAM>`` variables (validated)."""
    mongodb_uri: str | None = None
    mongodb_database: str = "petrosa"
    mysql_uri: str | None = None
    config_cache_ttl_seconds: float = 60.0
    http_port: int = 8080
    http_host: str = "127.0.0.1"
    """Address the operator API listens on; a non-loopback one needs ``RTSIG_API_TOKEN``."""
    heartbeat_interval_seconds: float = 60.0
    workers: int = 1
    web_workers: int = 1
    max_symbols: int = 1024
    book_ring: int = 16
    trade_ring: int = 2048
    ticker_ring: int = 4096
    event_ring: int = 65536
    publish_buffer: int = 10000
    """Signals a worker holds while NATS is down (the oldest are dropped beyond it)."""
    instance: str = "default"
    data_dir: Path = Path("var")
    api_token: str | None = None
    change_rate_limit: int = 30
    """Configuration changes per minute per ``changed_by`` (per web process); 0 disables."""
    config_subject: str = "rtsig.config.changed"
    """NATS subject on which a config change is announced to every replica."""
    min_confidence: float = 0.6
    signal_source: str = "rtsig"
    signal_quantity: float = 0.001
    risk_stop_loss_pct: float = 0.01
    risk_take_profit_pct: float = 0.015
    signal_subject_per_strategy: bool = False
    nats_futures_topic: str | None = None
    """Input subject carrying USD-M futures data (docs/CONTRACT.md §2a); unset: the shape decides."""
    market_dominance_subject: str = "market.global.dominance"
    market_quotes_subject: str = "market.quotes"
    onchain_transfers_subject: str = "onchain.transfers"
    """Feeds of the market-logic strategies (docs/CONTRACT.md §2c), read beside the market data."""
    signal_markets: tuple[str, ...] = ("spot",)
    """Markets whose data may produce published signals (``spot``, ``usdm``)."""
    reference_max_age_seconds: float = 60.0
    """A book is cross-checked only against a trade/ticker price at most this old (event time)."""
    book_price_tolerance_percent: float = 5.0
    """A book whose mid is further than this from the reference price is ``book_price_mismatch``."""
    max_clock_skew_seconds: float = 300.0
    """An event time further than this ahead of the receipt time is ``bad_time``."""
    symbol_idle_seconds: float = 3600.0
    """Under ``TRADING_SYMBOLS=*``, a symbol silent this long may be evicted for a new one."""
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``); raise on the first bad one."""
        env = os.environ if env is None else env
        r = _Reader(env)
        workers_default = max(1, (os.cpu_count() or 2) - 1)
        settings = cls(
            nats_url=r.text("NATS_URL", cls.nats_url, _nats_url),
            nats_consumer_topic=r.text("NATS_CONSUMER_TOPIC", cls.nats_consumer_topic, _subject),
            nats_publisher_topic=r.text("NATS_PUBLISHER_TOPIC", cls.nats_publisher_topic,
                                        _publisher_subject),
            nats_consumer_group=r.text("NATS_CONSUMER_GROUP", cls.nats_consumer_group, _subject),
            nats_consumer_stream=r.checked("NATS_CONSUMER_STREAM", _stream_name),
            nats_consumer_stream_create=r.boolean("NATS_CONSUMER_STREAM_CREATE", False),
            nats_consumer_stream_max_age_seconds=r.get("NATS_CONSUMER_STREAM_MAX_AGE", "24h", _duration),
            nats_consumer_rebuild_seconds=r.number("NATS_CONSUMER_REBUILD_SECONDS",
                                                   cls.nats_consumer_rebuild_seconds, lo=0, hi=86400),
            **_shard(r),
            nats_creds=_path(r.checked("NATS_CREDS", _creds_file)),
            nats_nkey_seed=_path(r.checked("NATS_NKEY_SEED", _seed_file)),
            nats_tls_ca=_path(r.checked("NATS_TLS_CA", _readable_file)),
            nats_tls_cert=_path(r.checked("NATS_TLS_CERT", _readable_file)),
            nats_tls_key=_path(r.checked("NATS_TLS_KEY", _readable_file)),
            trading_symbols=_trading_symbols(r),
            strategy_enabled=_strategy_enabled(r),
            strategy_env_params=_strategy_env_params(env),
            mongodb_uri=r.checked("MONGODB_URI", _mongodb_uri),
            mongodb_database=r.text("MONGODB_DATABASE", cls.mongodb_database),
            mysql_uri=r.checked("MYSQL_URI", _mysql_uri),
            config_cache_ttl_seconds=r.number("CONFIG_CACHE_TTL_SECONDS", cls.config_cache_ttl_seconds, lo=0),
            http_port=_http_port(r),
            http_host=r.text("HTTP_HOST", cls.http_host, _http_host),
            heartbeat_interval_seconds=r.number("HEARTBEAT_INTERVAL_SECONDS", cls.heartbeat_interval_seconds,
                                                lo=0, lo_open=True),
            workers=r.integer("RTSIG_WORKERS", workers_default, lo=1, hi=64),
            web_workers=r.integer("RTSIG_WEB_WORKERS", cls.web_workers, lo=1, hi=64),
            max_symbols=r.integer("RTSIG_MAX_SYMBOLS", cls.max_symbols, lo=1, hi=65536),
            book_ring=r.power_of_two("RTSIG_BOOK_RING", cls.book_ring, lo=4, hi=1024),
            trade_ring=r.power_of_two("RTSIG_TRADE_RING", cls.trade_ring, lo=1024, hi=1 << 20),
            ticker_ring=r.power_of_two("RTSIG_TICKER_RING", cls.ticker_ring, lo=64, hi=1 << 20),
            event_ring=r.power_of_two("RTSIG_EVENT_RING", cls.event_ring, lo=1024, hi=1 << 24),
            publish_buffer=r.integer("RTSIG_PUBLISH_BUFFER", cls.publish_buffer, lo=0, hi=10_000_000),
            instance=r.text("RTSIG_INSTANCE", cls.instance, _instance),
            data_dir=Path(r.text("RTSIG_DATA_DIR", str(cls.data_dir))),
            api_token=r.optional("RTSIG_API_TOKEN"),
            change_rate_limit=r.integer("RTSIG_CHANGE_RATE_LIMIT", cls.change_rate_limit, lo=0,
                                        hi=1_000_000),
            config_subject=r.text("RTSIG_CONFIG_SUBJECT", cls.config_subject, _subject),
            min_confidence=r.number("MIN_CONFIDENCE", cls.min_confidence, lo=0, hi=1),
            signal_source=r.text("SIGNAL_SOURCE", cls.signal_source),
            signal_quantity=r.number("SIGNAL_QUANTITY", cls.signal_quantity, lo=0),
            risk_stop_loss_pct=r.number("RISK_STOP_LOSS_PCT", cls.risk_stop_loss_pct, lo=0, hi=1,
                                        lo_open=True, hi_open=True),
            risk_take_profit_pct=r.number("RISK_TAKE_PROFIT_PCT", cls.risk_take_profit_pct, lo=0,
                                          hi=1, lo_open=True, hi_open=True),
            signal_subject_per_strategy=r.boolean("SIGNAL_SUBJECT_PER_STRATEGY", False),
            nats_futures_topic=r.checked("NATS_FUTURES_TOPIC", _subject),
            market_dominance_subject=r.text("MARKET_DOMINANCE_SUBJECT", cls.market_dominance_subject,
                                            _subject),
            market_quotes_subject=r.text("MARKET_QUOTES_SUBJECT", cls.market_quotes_subject, _subject),
            onchain_transfers_subject=r.text("ONCHAIN_TRANSFERS_SUBJECT", cls.onchain_transfers_subject,
                                             _subject),
            signal_markets=r.get("SIGNAL_MARKETS", "spot", _markets),
            reference_max_age_seconds=r.number("RTSIG_REFERENCE_MAX_AGE_SECONDS",
                                               cls.reference_max_age_seconds, lo=0, lo_open=True),
            book_price_tolerance_percent=r.number("RTSIG_BOOK_PRICE_TOLERANCE_PERCENT",
                                                  cls.book_price_tolerance_percent, lo=0, hi=100,
                                                  lo_open=True, hi_open=True),
            max_clock_skew_seconds=r.number("RTSIG_MAX_CLOCK_SKEW_SECONDS", cls.max_clock_skew_seconds,
                                            lo=0, lo_open=True),
            symbol_idle_seconds=r.number("RTSIG_SYMBOL_IDLE_SECONDS", cls.symbol_idle_seconds,
                                         lo=0, lo_open=True),
            log_level=r.choice("LOG_LEVEL", "INFO", _LOG_LEVELS, upper=True),
            log_format=r.choice("LOG_FORMAT", "text" if sys.stderr.isatty() else "json", ("json", "text")),
        )
        return settings

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (tests and CLI flags)."""
        return replace(self, **changes)

    def symbol_allowed(self, symbol: str) -> bool:
        return self.trading_symbols is None or symbol in self.trading_symbols

    def publisher_subject(self, strategy_id: str, symbol: str) -> str:
        """The subject one signal goes to: ``{strategy_id}``/``{symbol}`` filled in.

        ``SIGNAL_SUBJECT_PER_STRATEGY=true`` is the alias for ``<topic>.{strategy_id}``. A symbol
        is made a single NATS token (whitespace, ``.``, ``*``, ``>`` become ``_``): a symbol taken
        from the input must never widen the subject or turn it into a wildcard.
        """
        topic = self.nats_publisher_topic
        if self.signal_subject_per_strategy and "{strategy_id}" not in topic:
            topic += ".{strategy_id}"
        if "{" not in topic:
            return topic
        return topic.replace("{strategy_id}", strategy_id).replace("{symbol}", subject_token(symbol))

    def engine_warnings(self) -> list[str]:
        """Settings the trade engine (petrosa-tradeengine) will defeat: start-up warnings.

        They are allowed (another consumer may want them) but the engine drops signals with
        confidence < 0.6 and repeats of (strategy, symbol, action, second) within 10 s, and it
        subscribes to ``signals.trading.*``, so a bare subject never reaches it.
        """
        out = []
        if self.min_confidence < ENGINE_MIN_CONFIDENCE:
            out.append(f"MIN_CONFIDENCE={self.min_confidence:g} is below {ENGINE_MIN_CONFIDENCE}: "
                       "the trade engine drops those signals")
        for sid in REALTIME_IDS:
            if not self.strategy_enabled.get(sid, False):
                continue
            st = STRATEGIES[sid]
            interval = self.strategy_env_params.get(sid, {}).get(
                "min_signal_interval", st.param("min_signal_interval").default)
            if interval is not None and interval < ENGINE_DUPLICATE_WINDOW_S:
                out.append(f"{st.env_name('min_signal_interval')}={interval} is below "
                           f"{ENGINE_DUPLICATE_WINDOW_S} s: the trade engine drops repeats within "
                           f"{ENGINE_DUPLICATE_WINDOW_S} s as duplicates")
        subject = self.publisher_subject("orderbook_skew", "BTCUSDT")
        if subject == "signals.trading":
            out.append("NATS_PUBLISHER_TOPIC=signals.trading: the trade engine subscribes to "
                       "signals.trading.* and never receives the bare subject; use "
                       "signals.trading.{strategy_id} (docs/OPERATIONS.md)")
        return out

    @property
    def feed_subjects(self) -> tuple[str, str, str]:
        """Subjects of the dominance, quotes and on-chain feeds (docs/CONTRACT.md §2c), in that order."""
        return (self.market_dominance_subject, self.market_quotes_subject,
                self.onchain_transfers_subject)

    @property
    def realtime_enabled(self) -> tuple[bool, ...]:
        """Enabled flag per strategy, in kernel order (``REALTIME_IDS``)."""
        return tuple(bool(self.strategy_enabled.get(s, False)) for s in REALTIME_IDS)


class _Reader:
    """Reads one variable at a time and turns a bad value into a one-line SettingsError."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def get(self, name: str, default: str, parse: Callable[[str, str], T]) -> T:
        value = self.raw(name)
        return parse(name, default if value is None else value)

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def checked(self, name: str, check: Callable[[str, str], object]) -> str | None:
        """An optional value that must pass ``check`` when it is set."""
        value = self.raw(name)
        if value is not None:
            check(name, value)
        return value

    def text(self, name: str, default: str, check: Callable[[str, str], str] | None = None) -> str:
        value = self.raw(name) or default
        return check(name, value) if check else value

    def number(self, name: str, default: float, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
        return self._ranged(name, default, float, "a number", lo, hi, lo_open, hi_open)

    def integer(self, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        return self._ranged(name, default, int, "an integer", lo, hi, False, False)

    def _ranged(self, name: str, default, parse: Callable[[str], NumberT], kind: str, lo, hi,
                lo_open: bool, hi_open: bool) -> NumberT:
        """Parse ``name`` with ``parse`` and check it lies in the range; one error line if not."""
        value = self.raw(name)
        if value is None:
            return default
        accepted = _range_text(kind, lo, hi, lo_open, hi_open)
        try:
            number = parse(value)
        except ValueError:
            raise SettingsError(name, value, accepted) from None
        if not math.isfinite(number) or not _in_range(number, lo, hi, lo_open, hi_open):
            raise SettingsError(name, value, accepted)
        return number

    def power_of_two(self, name: str, default: int, lo: int, hi: int) -> int:
        number = self.integer(name, default, lo, hi)
        if number & (number - 1):
            raise SettingsError(name, self.raw(name), f"a power of two from {lo} to {hi}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        text = value.lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise SettingsError(name, value, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        value = self.raw(name)
        if value is None:
            return default
        norm = value.upper() if upper else value.lower()
        if norm not in choices:
            raise SettingsError(name, value, "one of " + ", ".join(choices))
        return norm


def _range_text(kind: str, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return kind + (" " + " and ".join(parts) if parts else "")


def _in_range(x: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (x < lo or (lo_open and x == lo)):
        return False
    if hi is not None and (x > hi or (hi_open and x == hi)):
        return False
    return True


def _stream_name(name: str, value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_\-]{1,64}$", value):
        raise SettingsError(name, value, "a JetStream stream name (letters, digits, _ and -)")
    return value


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(name: str, value: str) -> float:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", value)
    if not m or float(m.group(1)) <= 0:
        raise SettingsError(name, value, "a positive duration such as 3600, 90m, 24h or 7d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def _shard(r: _Reader) -> dict[str, int]:
    """``RTSIG_SHARD=k/N``, or ``RTSIG_SHARD_INDEX`` + ``RTSIG_SHARD_COUNT`` (the index may be a
    StatefulSet pod name such as ``rtsig-2``: its ordinal is used)."""
    shard = r.raw("RTSIG_SHARD")
    if shard is not None:
        m = re.match(r"^\s*(\d+)\s*/\s*(\d+)\s*$", shard)
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)) <= 1024:
            raise SettingsError("RTSIG_SHARD", shard, "k/N with 0 <= k < N <= 1024, e.g. 0/3")
        return {"shard_index": int(m.group(1)), "shard_count": int(m.group(2))}
    count = r.integer("RTSIG_SHARD_COUNT", 1, lo=1, hi=1024)
    raw_index = r.raw("RTSIG_SHARD_INDEX")
    if raw_index is None:
        return {"shard_index": 0, "shard_count": count}
    m = re.match(r"^(?:.*-)?(\d+)$", raw_index.strip())
    if not m or int(m.group(1)) >= count:
        raise SettingsError("RTSIG_SHARD_INDEX", raw_index,
                            f"an index 0..{count - 1} below RTSIG_SHARD_COUNT (or a pod name ending in -<index>)")
    return {"shard_index": int(m.group(1)), "shard_count": count}


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _readable_file(name: str, value: str) -> None:
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise SettingsError(name, value, f"a readable file ({exc.strerror})") from None


def _seed_file(name: str, value: str) -> None:
    from rtsig.natsauth import CredentialsError, read_seed

    try:
        read_seed(Path(value))
    except CredentialsError as exc:
        raise SettingsError(name, value, f"an nkey seed file: {exc}") from None


def _creds_file(name: str, value: str) -> None:
    from rtsig.natsauth import CredentialsError, read_creds

    try:
        read_creds(Path(value))
    except CredentialsError as exc:
        raise SettingsError(name, value, f"a NATS .creds file: {exc}") from None


def _nats_url(name: str, value: str) -> str:
    for url in value.split(","):
        if not re.match(r"^(nats|tls)://[^\s/]+(:\d+)?/?$", url.strip()):
            raise SettingsError(name, value, "nats://[user:password@|token@]host:port or tls://… "
                                             "(comma-separated for a cluster)")
    return value


def _subject(name: str, value: str) -> str:
    if not re.match(r"^[^\s.*>]+(\.[^\s.*>]+)*$", value):
        raise SettingsError(name, value, "a NATS subject of dot-separated tokens without wildcards")
    return value


def _publisher_subject(name: str, value: str) -> str:
    """A subject whose tokens may be whole ``{strategy_id}`` / ``{symbol}`` placeholders."""
    filled = value
    for k, p in enumerate(_PLACEHOLDERS):
        filled = filled.replace(p, f"p{k}")
    if "{" in filled or "}" in filled or any(
            p in tok and tok != p for tok in value.split(".") for p in _PLACEHOLDERS):
        raise SettingsError(name, value, "a NATS subject whose tokens may be {strategy_id} or {symbol}")
    _subject(name, filled)
    return value


def subject_token(text: str) -> str:
    """``text`` as one NATS subject token: whitespace, ``.``, ``*`` and ``>`` become ``_``."""
    return re.sub(r"[\s.*>]", "_", text) or "_"


def _markets(name: str, value: str) -> tuple[str, ...]:
    markets = tuple(dict.fromkeys(m.strip().lower() for m in value.split(",") if m.strip()))
    if not markets or any(m not in MARKETS for m in markets):
        raise SettingsError(name, value, "comma-separated markets from: " + ", ".join(MARKETS))
    return markets


def _mongodb_uri(name: str, value: str) -> str:
    if not re.match(r"^mongodb(\+srv)?://[^/\s]+", value):
        raise SettingsError(name, masked_uri(value), "mongodb://[user:password@]host[:port][/?options]")
    return value


def masked_uri(uri: str) -> str:
    """A URI with its password replaced by ``***`` (error lines end up in logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", uri)


def _mysql_uri(name: str, value: str) -> dict:
    return parse_mysql_uri(value, name)


def parse_mysql_uri(uri: str, name: str = "MYSQL_URI") -> dict:
    """``mysql://user:password@host:port/database`` → mysqlclient's connect arguments."""
    parts = urlsplit(uri)
    database = parts.path.lstrip("/")
    try:
        port = parts.port or 3306
    except ValueError:
        port = None
    if (parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb") or not parts.hostname
            or not database or port is None):
        raise SettingsError(name, masked_uri(uri), "mysql://user:password@host[:port]/database")
    return {"host": parts.hostname, "port": port, "user": unquote(parts.username or "root"),
            "passwd": unquote(parts.password or ""), "database": database}


def _instance(name: str, value: str) -> str:
    if not _INSTANCE_RE.match(value):
        raise SettingsError(name, value, "1-32 characters of a-z, 0-9, '-' or '_'")
    return value


def _symbols(name: str, value: str) -> tuple[str, ...] | None:
    if value.strip() == "*":
        return None
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in value.split(",") if s.strip()))
    # Binance writes BTCUSDT; 'BTC-USDT' or 'BTC/USDT' would silently filter everything out
    if any(c in s for s in symbols for c in "-./"):
        fixed = ",".join(re.sub(r"[-./]", "", s) for s in symbols)
        raise SettingsError(name, value, f"Binance symbols without '-', '/' or '.' (e.g. {fixed})")
    bad = [s for s in symbols if not _SYMBOL_RE.match(s)]
    if not symbols or bad:
        raise SettingsError(name, value, "'*' or comma-separated symbols like BTCUSDT,ETHUSDT")
    return symbols


def _trading_symbols(r: _Reader) -> tuple[str, ...] | None:
    """TRADING_SYMBOLS; set but empty is refused rather than taken for the default three."""
    value = r.env.get("TRADING_SYMBOLS")
    if value is not None and value.strip() == "":
        raise SettingsError("TRADING_SYMBOLS", value, "'*' or comma-separated symbols like "
                            "BTCUSDT,ETHUSDT (unset it for the default BTCUSDT,ETHUSDT,BNBUSDT)")
    return r.get("TRADING_SYMBOLS", "BTCUSDT,ETHUSDT,BNBUSDT", _symbols)


def _http_host(name: str, value: str) -> str:
    """An IPv4/IPv6 address or a host name to listen on (``[::1]`` as well as ``::1``)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        raise SettingsError(name, value, "an IP address to listen on (127.0.0.1, 0.0.0.0, ::1) or a host name")
    return host


def is_loopback_host(host: str) -> bool:
    """True when ``host`` listens on loopback only (127.0.0.0/8, ::1, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_port(r: _Reader) -> int:
    name = "HTTP_PORT" if r.raw("HTTP_PORT") is not None else "FASTAPI_PORT"
    return r.integer(name, 8080, lo=1, hi=65535)


def _strategy_enabled(r: _Reader) -> dict[str, bool]:
    enabled = {}
    for sid, st in STRATEGIES.items():
        enabled[sid] = r.boolean(st.enabled_env_name, st.enabled_by_default)
    return enabled


def _strategy_env_params(env: Mapping[str, str]) -> dict[str, dict[str, ParamValue]]:
    out: dict[str, dict[str, ParamValue]] = {}
    for sid, st in STRATEGIES.items():
        for p in st.params:
            name = st.env_name(p.name)
            value = env.get(name)
            if value is None or value.strip() == "":
                continue
            parsed = None if value.strip().lower() in ("null", "none") else value
            try:
                out.setdefault(sid, {})[p.name] = p.validate(parsed, name)
            except SettingsError as exc:  # name the value as it was set, not as parsed
                raise SettingsError(name, value, exc.accepted) from None
    return out
