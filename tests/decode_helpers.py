"""Shared inputs and helpers of the decoder tests (test_decode*.py, test_jsonscan.py).

* ``EXAMPLES``: every literal message of ``reference/binance-formats.md`` (the partial books,
  which the document elides with "…", are completed to 20 levels from their literal first level),
  with the stream it arrives on and the outcome the spec gives it.
* ``combined`` / ``envelope``: the two accepted wrappers (docs/CONTRACT.md §2).
* ``read_capture``: the real cryptofeed captures, ``<receipt time>: <combined-stream JSON>`` lines.
* ``Harness``: a small in-memory store plus a :class:`~rtsig.decode.Decoder`, with the stored data
  read back by symbol *name* (``symbol_state``) so two stores can be compared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson

from rtsig import codes
from rtsig.counters import summarize
from rtsig.decode import Decoder
from rtsig.layout import ASK, BID
from rtsig.settings import Settings
from rtsig.store import REGION_NAMES, Store

# ----------------------------------------------------------------------------- constants

RECEIPT_NS = 1_800_000_001_987_654_321
"""Receipt time given to every example message (ns); its ms value is RECEIPT_MS. It is later
than every literal example's event time (2021-2026), so none is `bad_time` (too far ahead)."""
RECEIPT_MS = RECEIPT_NS // 1_000_000
ENVELOPE_TIMESTAMP = "2024-11-01T12:00:00.125000Z"
ENVELOPE_TIMESTAMP_MS = 1_730_462_400_125
MESSAGE_ID = "5b0c3c8e-0d5e-4a53-9c43-1f0f3c7c2a10"

OK_STATUSES = {"ok", "filtered"} | set(codes.IGNORED_NAMES.values())
ALL_STATUS_NAMES = OK_STATUSES | set(codes.ERROR_NAMES.values())


# ----------------------------------------------------------------------------- real captures

def _real_dir() -> Path | None:
    here = Path(__file__).resolve()
    candidates = [os.environ.get("RTSIG_REAL_DATA")] if os.environ.get("RTSIG_REAL_DATA") else []
    candidates += [here.parents[1] / "data" / "real", here.parent / "data" / "real",
                   here.parents[2] / "shared" / "data" / "real"]
    for c in candidates:
        p = Path(c)
        if (p / "cryptofeed-BINANCE.ws.1.0.txt").is_file():
            return p
    return None


REAL_DIR = _real_dir()
CAPTURE_FILES = (
    "cryptofeed-BINANCE.ws.1.0.txt",
    "cryptofeed-BINANCE_FUTURES.ws.1.0.txt",
    "cryptofeed-BINANCE_US.ws.1.0.txt",
)


def read_capture(name: str) -> list[tuple[int, bytes]]:
    """``(receipt_ns, message bytes)`` of every message line of a capture (URL line skipped)."""
    assert REAL_DIR is not None
    lines = (REAL_DIR / name).read_bytes().split(b"\n")
    assert lines[0].startswith(b"wss://") and b" <-> " in lines[0], lines[0][:80]
    out = []
    for line in lines[1:]:
        if not line.strip():
            continue
        stamp, sep, body = line.partition(b": ")
        assert sep, line[:80]
        out.append((int(Decimal(stamp.decode()) * 1_000_000_000), body))
    return out


def all_capture_messages() -> list[bytes]:
    if REAL_DIR is None:
        return []
    return [body for name in CAPTURE_FILES for _, body in read_capture(name)]


# ----------------------------------------------------------------------------- literal examples

def _levels(first_price: str, first_qty: str, step: str, count: int, direction: int) -> list:
    """``count`` [price, qty] string pairs from the literal first level, moving by ``step``."""
    p0, q0, dp = Decimal(first_price), Decimal(first_qty), Decimal(step)
    places = -p0.as_tuple().exponent
    qplaces = -q0.as_tuple().exponent
    out = []
    for k in range(count):
        p = p0 + direction * k * dp
        q = q0 + Decimal(k * 37 % 11) / (10 ** min(qplaces, 2)) if k else q0
        out.append([f"{p:.{places}f}", f"{q:.{qplaces}f}"])
    return out


def _compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


SPOT_DEPTH20 = (
    '{"lastUpdateId":165284515,"bids":'
    + _compact(_levels("0.48560000", "2036.02000000", "0.00010000", 20, -1))
    + ',"asks":'
    + _compact(_levels("0.48630000", "5601.00000000", "0.00010000", 20, +1))
    + "}"
)
FUTURES_DEPTH20 = (
    '{"e":"depthUpdate","E":1713448582480,"T":1713448582479,"s":"BTCUSDT","U":4445146128295,'
    '"u":4445146133983,"pu":4445146127899,"b":'
    + _compact(_levels("62462.50", "1.966", "0.10", 20, -1))
    + ',"a":'
    + _compact(_levels("62462.60", "2.492", "0.10", 20, +1))
    + "}"
)


@dataclass(frozen=True)
class Example:
    name: str
    stream: str
    payload: str
    """The payload's JSON text, byte for byte as in binance-formats.md."""
    status: str
    """Expected status name."""
    venue: str = "spot"
    kind: str | None = None
    """codes.KIND_NAMES value when stored."""

    @property
    def symbol(self) -> str:
        return self.stream.split("@", 1)[0].upper()

    @property
    def data(self) -> dict:
        return json.loads(self.payload)


EXAMPLES: tuple[Example, ...] = (
    Example("spot_trade", "btcusdt@trade",
            '{"e":"trade","E":1790649901913,"s":"BTCUSDT","t":6720857582,"p":"83034.29000000",'
            '"q":"0.00062000","T":1790649901913,"m":true,"M":true}', "ok", "spot", "trade"),
    Example("spot_agg_trade", "nknusdt@aggTrade",
            '{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000",'
            '"q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}',
            "ok", "spot", "aggTrade"),
    Example("spot_ticker", "btcusdt@ticker",
            '{"e":"24hrTicker","E":1745666522004,"s":"BTCUSDT","p":"170.79000000","P":"0.182",'
            '"w":"94522.99629504","x":"94000.11000000","c":"94160.00000000","Q":"0.00012000",'
            '"b":"94160.00000000","B":"0.07847000","a":"94160.02000000","A":"0.07565000",'
            '"o":"93989.21000000","h":"187440.90000000","l":"21917.30000000",'
            '"v":"2109.00156000","q":"199349146.64212320","O":1745580121865,"C":1745666521865,'
            '"F":2008166,"L":2088364,"n":80199}', "ok", "spot", "ticker"),
    Example("spot_mini_ticker", "bnbbtc@miniTicker",
            '{"e":"24hrMiniTicker","E":1672515782136,"s":"BNBBTC","c":"0.0025","o":"0.0010",'
            '"h":"0.0025","l":"0.0010","v":"10000","q":"18"}', "ok", "spot", "miniTicker"),
    Example("spot_book_ticker", "btcusdt@bookTicker",
            '{"u":80630992451,"s":"BTCUSDT","b":"95794.61000000","B":"0.41915000",'
            '"a":"95794.62000000","A":"2.20768000"}', "ok", "spot", "bookTicker"),
    Example("spot_depth20", "xrpusdt@depth20@100ms", SPOT_DEPTH20, "ok", "spot", "depth"),
    Example("spot_depth5", "xrpusdt@depth5",
            '{"lastUpdateId":165284515,"bids":[["0.48560000","2036.02000000"]],'
            '"asks":[["0.48630000","5601.00000000"]]}', "ok", "spot", "depth"),
    Example("spot_diff_depth", "nknusdt@depth@100ms",
            '{"e":"depthUpdate","E":1633998513369,"s":"NKNUSDT","U":499869765,"u":499869767,'
            '"b":[["0.35120000","6567.00000000"]],"a":[["0.35340000","0.00000000"]]}',
            "depth_diff"),
    Example("server_shutdown", "!serverShutdown",
            '{"e":"serverShutdown","E":1790649901913}', "control"),
    Example("futures_depth20", "btcusdt@depth20@100ms", FUTURES_DEPTH20, "ok", "futures", "depth"),
    Example("futures_agg_trade", "btcusdt@aggTrade",
            '{"e":"aggTrade","E":1787492322656,"a":3422444173,"s":"BTCUSDT","p":"77490.00",'
            '"q":"0.003","nq":"0.003","f":8006170903,"l":8006170903,"T":1787492322555,'
            '"m":false,"st":1}', "ok", "futures", "aggTrade"),
    Example("futures_trade_market", "btcusdt@trade",
            '{"e":"trade","E":1660228023980,"T":1660228023973,"s":"BTCUSDT","t":2691833663,'
            '"p":"24670.90","q":"0.022","X":"MARKET","m":true}', "ok", "futures", "trade"),
    Example("futures_trade_liquidation", "btcusdt@trade",
            '{"e":"trade","E":1660228023980,"T":1660228023973,"s":"BTCUSDT","t":2691833664,'
            '"p":"24670.90","q":"0.022","X":"LIQUIDATION","m":true}', "non_market_trade",
            "futures"),
    Example("futures_trade_insurance_fund", "btcusdt@trade",
            '{"e":"trade","E":1660228023980,"T":1660228023973,"s":"BTCUSDT","t":2691833665,'
            '"p":"24670.90","q":"0.022","X":"INSURANCE_FUND","m":false}', "non_market_trade",
            "futures"),
    Example("futures_ticker", "btcusdt@ticker",
            '{"e":"24hrTicker","E":1787492324172,"s":"BTCUSDT","ps":"BTCUSDT","p":"355.50",'
            '"P":"0.461","w":"76764.07","c":"77490.00","Q":"0.001","o":"77134.50",'
            '"h":"77771.60","l":"75588.00","v":"115619.606","q":"8875431314.20",'
            '"O":1787405880000,"C":1787492324171,"F":8003360342,"L":8006170931,"n":2798861,'
            '"st":1}', "ok", "futures", "ticker"),
    Example("futures_mark_price", "btcusdt@markPrice@1s",
            '{"e":"markPriceUpdate","E":1787492323000,"s":"BTCUSDT","p":"77488.24528925",'
            '"ap":"77488.24528925","P":"77435.97981966","i":"77485.96456522","r":"0.00010000",'
            '"T":1787500800000,"st":1}', "ok", "futures", "markPrice"),
    Example("futures_book_ticker", "1000pepeusdt@bookTicker",
            '{"e":"bookTicker","u":11547818761677,"s":"1000PEPEUSDT","ps":"1000PEPEUSDT",'
            '"b":"0.0034082","B":"254020","a":"0.0034083","A":"5451","T":1789327919095,'
            '"E":1789327919095,"st":1}', "ok", "futures", "bookTicker"),
)
EXAMPLES_BY_NAME = {e.name: e for e in EXAMPLES}


def combined(stream: str, payload: str) -> bytes:
    """Binance's combined-stream wrapper around a payload's JSON text."""
    name = json.dumps(stream, ensure_ascii=False)
    return ('{"stream":' + name + ',"data":' + payload + "}").encode()


def envelope(stream: str, payload: str, message_id: str = MESSAGE_ID,
             timestamp: str = ENVELOPE_TIMESTAMP) -> bytes:
    """The socket client's envelope (with the extra ``_otel_trace_context`` it sometimes adds)."""
    return ('{"stream":' + json.dumps(stream, ensure_ascii=False) + ',"data":' + payload
            + ',"timestamp":' + json.dumps(timestamp)
            + ',"message_id":' + json.dumps(message_id)
            + ',"source":"binance-websocket","version":"1.0",'
            '"_otel_trace_context":{"traceparent":'
            '"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":""}}').encode()


def example_messages() -> list[bytes]:
    """Every example in both wrappers."""
    return [w(e.stream, e.payload) for e in EXAMPLES for w in (combined, envelope)]


# Small builders for hand-made messages.

def trade_msg(symbol: str, price: str = "100.5", qty: str = "0.25", trade_id: int = 1,
              time_ms: int = 1_700_000_000_000, maker: bool = True, extra: str = "") -> bytes:
    payload = (f'{{"e":"trade","E":{time_ms},"s":"{symbol.upper()}","t":{trade_id},'
               f'"p":{_q(price)},"q":{_q(qty)},"T":{time_ms},"m":{str(maker).lower()},"M":true'
               f'{extra}}}')
    return combined(f"{symbol.lower()}@trade", payload)


def depth_msg(symbol: str, bids, asks, update_id: int = 1, kind: str = "depth20@100ms",
              futures: bool = False, time_ms: int = 1_700_000_000_000) -> bytes:
    """A partial-book message; ``bids``/``asks`` are lists of [price, qty] (str, or raw JSON)."""
    b = "[" + ",".join("[" + ",".join(_q(x) for x in lv) + "]" for lv in bids) + "]"
    a = "[" + ",".join("[" + ",".join(_q(x) for x in lv) + "]" for lv in asks) + "]"
    if futures:
        payload = (f'{{"e":"depthUpdate","E":{time_ms},"T":{time_ms},"s":"{symbol.upper()}",'
                   f'"U":{update_id},"u":{update_id},"pu":{update_id - 1},"b":{b},"a":{a}}}')
    else:
        payload = f'{{"lastUpdateId":{update_id},"bids":{b},"asks":{a}}}'
    return combined(f"{symbol.lower()}@{kind}", payload)


def ticker_msg(symbol: str, last: str = "100.0", base_volume: str = "10.0",
               quote_volume: str = "1000.0", time_ms: int = 1_700_000_000_000) -> bytes:
    payload = (f'{{"e":"24hrTicker","E":{time_ms},"s":"{symbol.upper()}","c":{_q(last)},'
               f'"v":{_q(base_volume)},"q":{_q(quote_volume)},"o":"99.0","h":"101.0",'
               f'"l":"98.0"}}')
    return combined(f"{symbol.lower()}@ticker", payload)


def book_ticker_msg(symbol: str, bid: str = "99.5", bid_qty: str = "1.0", ask: str = "100.5",
                    ask_qty: str = "2.0", update_id: int = 7) -> bytes:
    payload = (f'{{"u":{update_id},"s":"{symbol.upper()}","b":{_q(bid)},"B":{_q(bid_qty)},'
               f'"a":{_q(ask)},"A":{_q(ask_qty)}}}')
    return combined(f"{symbol.lower()}@bookTicker", payload)


def mark_price_msg(symbol: str, mark: str = "100.25", index: str = "100.2",
                   funding: str = "-0.0001", time_ms: int = 1_700_000_000_000) -> bytes:
    payload = (f'{{"e":"markPriceUpdate","E":{time_ms},"s":"{symbol.upper()}","p":{_q(mark)},'
               f'"i":{_q(index)},"r":{_q(funding)},"T":{time_ms}}}')
    return combined(f"{symbol.lower()}@markPrice", payload)


def _q(x) -> str:
    """JSON text of a value: a price given as a str is a decimal string, a float a JSON number."""
    return json.dumps(x, ensure_ascii=False)


def seed_messages() -> list[bytes]:
    """Valid data for BTCUSDT and ETHUSDT of every stored kind (to prove nothing is touched)."""
    out = []
    for sym, px in (("BTCUSDT", 50000), ("ETHUSDT", 3000)):
        out += [
            depth_msg(sym, [[f"{px - 1}.00", "1.5"], [f"{px - 2}.00", "2.5"]],
                      [[f"{px + 1}.00", "0.5"], [f"{px + 2}.00", "3.0"]], update_id=11),
            trade_msg(sym, f"{px}.10", "0.3", trade_id=21),
            ticker_msg(sym, f"{px}.20", "123.4", "5678.9"),
            book_ticker_msg(sym, f"{px - 1}.00", "1.5", f"{px + 1}.00", "0.5"),
            mark_price_msg(sym, f"{px}.05", f"{px}.04", "0.0001"),
        ]
    return out


# ----------------------------------------------------------------------------- store harness

def small_settings(**changes) -> Settings:
    """Settings with rings small enough that a store costs ~1 MB (book ring stays 16)."""
    base = dict(trading_symbols=None, max_symbols=64, trade_ring=64, ticker_ring=64,
                event_ring=1024)
    base.update(changes)
    return Settings(**base)



@dataclass
class Decoded:
    statuses: list[str]
    events: list[dict]


@dataclass
class Harness:
    """A private store and a decoder writing into it."""

    settings: Settings = field(default_factory=small_settings)
    capacity: int = 64

    def __post_init__(self) -> None:
        self.store = Store.in_memory(self.settings, n_workers=1)
        self.decoder = Decoder(self.store, 0, self.settings.trading_symbols is None,
                               capacity=self.capacity)

    def decode(self, messages, receipt_ns: int | list[int] = RECEIPT_NS) -> Decoded:
        """Decode ``messages`` in batches of the decoder's capacity; statuses and events."""
        if isinstance(receipt_ns, int):
            receipt_ns = [receipt_ns] * len(messages)
        statuses: list[str] = []
        events: list[dict] = []
        pending = 0
        for msg, rns in zip(messages, receipt_ns):
            if not self.decoder.add(msg, rns):
                self._flush(pending, statuses, events)
                pending = 0
                assert self.decoder.add(msg, rns)
            pending += 1
        self._flush(pending, statuses, events)
        return Decoded(statuses, events)

    def _flush(self, pending: int, statuses: list, events: list) -> None:
        if not pending:
            return
        d = self.decoder
        while True:
            n = d.decode()
            statuses += [codes.status_name(int(s)) for s in d.last_status]
            self._collect(n, events)
            self.store.release_all()  # no workers here: everything stored counts as judged
            if not d.blocked:
                break

    def _collect(self, n: int, events: list) -> None:
        d = self.decoder
        for k in range(n):
            ev = d.events[k]
            row = d.message_ids[k]
            events.append({
                "symbol": self.store.symbol_name(int(ev["symbol"])),
                "kind": codes.KIND_NAMES[int(ev["kind"])],
                "position": int(ev["position"]),
                "event_time_ms": int(ev["event_time_ms"]),
                "receipt_ns": int(ev["receipt_ns"]),
                "message_id": bytes(row[1:1 + int(row[0])]).decode(),
            })

    def summary(self) -> dict:
        return summarize(self.store.counters)

    def sid(self, symbol: str) -> int:
        sid = self.store.symbol_id(symbol)
        assert sid is not None, f"{symbol} not in {self.store.symbol_list()}"
        return sid

    def state(self) -> dict:
        return store_state(self.store)


def _plain(value):
    """Numpy scalars/records → Python values, NaN → the string 'nan' (so == works)."""
    if isinstance(value, np.void):
        return tuple(_plain(value[k]) for k in value.dtype.names)
    if isinstance(value, (np.floating, float)):
        return "nan" if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def record(arr_row) -> dict:
    return {k: _plain(arr_row[k]) for k in arr_row.dtype.names}


def symbol_state(store: Store, sid: int) -> dict:
    """Everything stored for one symbol, independent of its id."""
    lay = store.layout
    market = record(store.market[sid])
    books = []
    end = market["book_end"]
    for pos in range(max(0, end - lay.book_ring), end):
        slot = pos & (lay.book_ring - 1)
        meta = record(store.book_meta[sid, slot])
        lv = store.book_levels[sid, slot]
        books.append((pos, meta,
                      [tuple(map(float, x)) for x in lv[BID, :meta["bid_count"]]],
                      [tuple(map(float, x)) for x in lv[ASK, :meta["ask_count"]]]))
    trades = []
    end = market["trade_end"]
    for pos in range(max(0, end - lay.trade_ring), end):
        trades.append((pos, record(store.trades[sid, pos & (lay.trade_ring - 1)])))
    tickers = []
    end = market["ticker_end"]
    for pos in range(max(0, end - lay.ticker_ring), end):
        tickers.append((pos, record(store.tickers[sid, pos & (lay.ticker_ring - 1)])))
    return {"venue": int(store.symbols[sid]["venue"]), "market": market, "books": books,
            "trades": trades, "tickers": tickers}


def store_state(store: Store) -> dict:
    return {store.symbol_name(sid): symbol_state(store, sid) for sid in range(store.symbol_count)}


def snapshot(store: Store) -> dict[str, bytes]:
    """Bytes of every region the decoder may write, except the counters.

    The header's creation stamp (pid, start time) is blanked so two stores compare equal.
    """
    out = {name: getattr(store, name).tobytes() for name in REGION_NAMES if name != "counters"}
    header = store.header.copy()
    for name in ("owner_pid", "owner_start_ticks", "created_ns"):
        header[0][name] = 0
    out["header"] = header.tobytes()
    return out


def changed_regions(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# ----------------------------------------------------------------------------- JSON oracles

def _reject_constant(name):
    raise ValueError(name)


def python_valid(data: bytes) -> bool:
    """RFC 8259 validity as Python's json sees it, NaN/Infinity literals and unpaired surrogate
    escapes rejected (as orjson and the scanner do: such a string is not valid Unicode)."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return True
    except (UnicodeDecodeError, UnicodeEncodeError, ValueError, RecursionError):
        return False


def orjson_error(data: bytes) -> str | None:
    """orjson's complaint about ``data``, or None when it parses."""
    try:
        orjson.loads(data)
        return None
    except orjson.JSONDecodeError as e:
        return str(e)


def known_orjson_divergence(message: str) -> bool:
    """orjson rejects two things RFC 8259's grammar allows (and json.loads accepts): numbers
    that overflow a double, and unpaired surrogate escapes. The scanner follows the grammar."""
    return "infinity" in message or "surrogate" in message


def strictly_equal(a, b) -> bool:
    """Equal parsed JSON, types included (``True != 1``, ``1 != 1.0``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b))
    return a == b
