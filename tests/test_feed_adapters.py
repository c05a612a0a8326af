"""The feed adapters (`rtsig feed dominance|quotes|onchain`) against local stubs that serve
recorded responses in each source's documented shape: normal, malformed, slow and refusing
sources. Every body an adapter publishes is checked with the service's own validator."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import threading
import time

import orjson
import pytest

from rtsig.feeds import messages as M
from rtsig.feeds.adapter import Poller
from rtsig.feeds.dominance import DominanceConfig, DominanceSource
from rtsig.feeds.onchain import OnchainAdapter, OnchainConfig, load_labels, transfer_from_utx
from rtsig.feeds.quotes import QuotesConfig, QuotesSource
from rtsig.layout import FEED_DOMINANCE, FEED_QUOTES, FEED_TRANSFERS
from tests.live_helpers import RTSIG, connect

NOW_NS = time.time_ns()
# CoinGecko GET /api/v3/global (abridged, the documented shape)
GLOBAL = {"data": {"active_cryptocurrencies": 17000, "markets": 1200,
                   "total_market_cap": {"btc": 40123456.1, "usd": 3.41e12},
                   "market_cap_percentage": {"btc": 57.3123, "eth": 11.92, "usdt": 4.31},
                   "market_cap_change_percentage_24h_usd": -0.52, "updated_at": 1745400000}}
# Binance GET /fapi/v1/constituents?symbol=BTCUSDT (the documented shape)
CONSTITUENTS = {"symbol": "BTCUSDT", "time": 1745401553408, "constituents": [
    {"exchange": "binance", "symbol": "BTCUSDT", "price": "94057.03000000", "weight": "0.51282051"},
    {"exchange": "coinbase", "symbol": "BTC-USDT", "price": "94140.58000000", "weight": "0.15384615"},
    {"exchange": "gateio", "symbol": "BTC_USDT", "price": "94060.10000000", "weight": "0.07692308"},
    {"exchange": "kraken", "symbol": "XBT/USDT", "price": "94111.20000000", "weight": "0.07692308"},
    {"exchange": "okex", "symbol": "BTC-USDT", "price": "not a price", "weight": "0.1"}]}
EXCHANGE_HOT = "1ExchangeHotWalletAddrXXXXXXXXXXXX"
EXCHANGE_COLD = "1ExchangeColdWalletAddrXXXXXXXXXXX"
USER = "1UserAddrXXXXXXXXXXXXXXXXXXXXXXXXX"


def utx(txid, inputs, outputs, t=1745400000):
    """blockchain.com's unconfirmed-transaction message: values in satoshi."""
    return {"op": "utx", "x": {"hash": txid, "time": t, "size": 226, "vin_sz": len(inputs),
                               "vout_sz": len(outputs),
                               "inputs": [{"sequence": 0, "prev_out": {"addr": a, "value": v, "spent": True}}
                                          for a, v in inputs],
                               "out": [{"addr": a, "value": v, "spent": False} for a, v in outputs]}}


# ----------------------------------------------------------------------------- an HTTP stub

class Stub:
    """A local HTTP server; ``routes[path] = (status, headers, body)``, or "slow" (never answers
    before the client gives up: it waits for the test to end)."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.release = threading.Event()
        self.hits: list[str] = []
        self.by_query = False
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                stub.hits.append(self.path)
                key = self.path.split("?")[0]
                if stub.by_query and "symbol=" in self.path:
                    key = "/" + self.path.split("symbol=")[1].split("&")[0]
                route = stub.routes.get(key)
                if route == "slow":
                    stub.release.wait(30)
                    return
                status, headers, body = route or (404, {}, b"{}")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    try:
        yield s
    finally:
        s.close()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fetch, interval=0.5, polls=1):
    published: list[bytes] = []

    async def publish(body: bytes) -> None:
        published.append(body)

    async def no_sleep(_: float) -> None:
        pass

    stats = asyncio.run(Poller("test", fetch, publish, interval, sleep=no_sleep).run(max_polls=polls))
    return published, stats


def valid(feed: int, body: bytes):
    """The service accepts the body (raises FeedError otherwise)."""
    return M.parse(feed, body, NOW_NS, 300_000)


# ----------------------------------------------------------------------------- dominance

def test_dominance_publishes_the_global_answer(stub):
    stub.routes["/api/v3/global"] = (200, {}, orjson.dumps(GLOBAL))
    source = DominanceSource(DominanceConfig(url=stub.url("/api/v3/global"), timeout_s=5))
    published, stats = poll(source.fetch, polls=2)
    assert len(published) == 1 and source.skipped == 1  # the same updated_at is not repeated
    sample = valid(FEED_DOMINANCE, published[0])
    assert (sample.ts_ms, sample.btc_dominance, sample.source) == (1745400000000, 57.3123, "coingecko")
    assert stats.errors == {} and stats.delays == [0.5, 0.5]


@pytest.mark.parametrize("body,reason", [
    (b"<html>502 Bad Gateway</html>", "not_json"),
    (orjson.dumps({"data": {"market_cap_percentage": {"eth": 11.9}}}), "garbage"),
    (orjson.dumps({"data": {"market_cap_percentage": {"btc": "57"}}}), "garbage"),
    (orjson.dumps({"data": {"market_cap_percentage": {"btc": 157.0}}}), "garbage"),
    (orjson.dumps([1, 2, 3]), "garbage"),
])
def test_dominance_garbage_is_counted_and_polling_goes_on(stub, body, reason):
    stub.routes["/global"] = (200, {}, body)
    published, stats = poll(DominanceSource(DominanceConfig(url=stub.url("/global"), timeout_s=5)).fetch,
                            polls=3)
    assert published == [] and stats.errors == {reason: 3}
    assert stats.delays == [0.5, 0.5, 0.5]  # the source answers: no back-off


def test_dominance_slow_source_times_out_and_backs_off(stub):
    stub.routes["/global"] = "slow"
    source = DominanceSource(DominanceConfig(url=stub.url("/global"), timeout_s=0.2))
    published, stats = poll(source.fetch, interval=0.5, polls=3)
    assert published == [] and stats.errors == {"timeout": 3}
    assert stats.delays == [1.0, 2.0, 4.0]


def test_dominance_refused_connection_backs_off_then_recovers(stub):
    port = refused_port()
    source = DominanceSource(DominanceConfig(url=f"http://127.0.0.1:{port}/global", timeout_s=2))
    published, stats = poll(source.fetch, polls=2)
    assert published == [] and stats.errors == {"unreachable": 2} and stats.delays == [1.0, 2.0]
    stub.routes["/global"] = (200, {}, orjson.dumps(GLOBAL))
    source.config = DominanceConfig(url=stub.url("/global"))
    published, stats = poll(source.fetch)
    assert len(published) == 1


def test_rate_limit_answer_is_respected(stub):
    stub.routes["/global"] = (429, {"Retry-After": "42"}, b'{"status": {"error_code": 429}}')
    published, stats = poll(DominanceSource(DominanceConfig(url=stub.url("/global"))).fetch)
    assert published == [] and stats.errors == {"rate_limited": 1} and stats.delays == [42.0]
    stub.routes["/global"] = (418, {}, b"{}")  # Binance's "banned": no Retry-After → 60 s
    published, stats = poll(DominanceSource(DominanceConfig(url=stub.url("/global"))).fetch)
    assert stats.delays == [60.0]


# ----------------------------------------------------------------------------- quotes

def test_quotes_publish_every_other_venue_of_each_symbol(stub):
    eth = {**CONSTITUENTS, "symbol": "ETHUSDT", "constituents": [
        {"exchange": "coinbase", "symbol": "ETH-USDT", "price": "1800.50", "weight": "1"}]}
    # the stub answers by the symbol query parameter, as Binance does
    stub.routes["/BTCUSDT"] = (200, {}, orjson.dumps(CONSTITUENTS))
    stub.routes["/ETHUSDT"] = (200, {}, orjson.dumps(eth))
    source = QuotesSource(QuotesConfig(url=stub.url("/fapi/v1/constituents"), symbols=("BTCUSDT", "ETHUSDT")))
    stub.by_query = True
    published, stats = poll(source.fetch)
    assert [h.split("?")[1] for h in stub.hits] == ["symbol=BTCUSDT", "symbol=ETHUSDT"]
    quotes = [valid(FEED_QUOTES, b) for b in published]
    assert [(q.symbol, q.venue, q.bid) for q in quotes] == [
        ("BTCUSDT", "coinbase", 94140.58), ("BTCUSDT", "gateio", 94060.1), ("BTCUSDT", "kraken", 94111.2),
        ("ETHUSDT", "coinbase", 1800.5)]
    assert all(q.bid == q.ask and q.ts_ms == 1745401553408 for q in quotes)
    assert source.bad_constituents == 1  # okex's price did not parse


def test_quotes_from_the_stub_over_http(stub):
    stub.routes["/fapi/v1/constituents"] = (200, {}, orjson.dumps(CONSTITUENTS))
    source = QuotesSource(QuotesConfig(url=stub.url("/fapi/v1/constituents"), symbols=("BTCUSDT",)))
    published, stats = poll(source.fetch)
    assert [valid(FEED_QUOTES, b).venue for b in published] == ["coinbase", "gateio", "kraken"]
    stub.routes["/fapi/v1/constituents"] = (200, {}, b'{"code": -1121, "msg": "Invalid symbol."}')
    published, stats = poll(source.fetch)
    assert published == [] and stats.errors == {"garbage": 1}
    stub.routes["/fapi/v1/constituents"] = (400, {}, b'{"code": -1121, "msg": "Invalid symbol."}')
    published, stats = poll(source.fetch)
    assert stats.errors == {"http_400": 1} and stats.delays == [1.0]


# ----------------------------------------------------------------------------- onchain

LABELS = {EXCHANGE_HOT: "binance", EXCHANGE_COLD: "binance"}


def test_transfer_direction_from_the_labels(tmp_path):
    to_ex = transfer_from_utx(utx("a1", [(USER, 160 * 10 ** 8)], [(EXCHANGE_HOT, 150 * 10 ** 8), (USER, 10 ** 8)]),
                              LABELS, 1745400001000)
    assert (to_ex["direction"], to_ex["exchange"], to_ex["value"]) == ("to_exchange", "binance", 150.0)
    assert to_ex["ts"] == 1745400000000
    out = transfer_from_utx(utx("a2", [(EXCHANGE_HOT, 200 * 10 ** 8)], [(USER, 120 * 10 ** 8), (EXCHANGE_HOT, 79 * 10 ** 8)]),
                            LABELS, 1745400001000)
    assert (out["direction"], out["exchange"], out["value"]) == ("from_exchange", "binance", 120.0)
    internal = transfer_from_utx(utx("a3", [(EXCHANGE_HOT, 5 * 10 ** 8)], [(EXCHANGE_COLD, 5 * 10 ** 8)]),
                                 LABELS, 1745400001000)
    assert (internal["direction"], internal["exchange"]) == ("other", None)
    unlabelled = transfer_from_utx(utx("a4", [(USER, 5)], [(EXCHANGE_HOT, 5)]), {}, 1745400001000)
    assert unlabelled["direction"] == "other"
    for body in (to_ex, out, internal):
        valid(FEED_TRANSFERS, orjson.dumps(body))
    (tmp_path / "labels.csv").write_text(f"# address,exchange\n{EXCHANGE_HOT},Binance\n\n")
    (tmp_path / "labels.json").write_text(orjson.dumps({EXCHANGE_COLD: "binance"}).decode())
    assert load_labels(tmp_path / "labels.csv") == {EXCHANGE_HOT: "binance"}
    assert load_labels(tmp_path / "labels.json") == {EXCHANGE_COLD: "binance"}


async def _ws_stub(messages, close_after=True):
    from websockets.asyncio.server import serve

    subscribed = asyncio.Event()

    async def handler(ws):
        request = orjson.loads(await ws.recv())
        assert request == {"op": "unconfirmed_sub"}
        subscribed.set()
        for m in messages:
            await ws.send(m)
        if not close_after:
            await asyncio.Future()

    server = await serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/inv", subscribed


def test_onchain_adapter_reads_the_socket_and_counts_garbage(tmp_path):
    (tmp_path / "labels.csv").write_text(f"{EXCHANGE_HOT},binance\n")
    messages = [
        orjson.dumps(utx("t1", [(USER, 151 * 10 ** 8)], [(EXCHANGE_HOT, 150 * 10 ** 8)])).decode(),
        orjson.dumps(utx("t2", [(USER, 10 ** 6)], [(USER, 10 ** 6)])).decode(),  # small, other: skipped
        orjson.dumps(utx("t3", [(USER, 300 * 10 ** 8)], [(USER, 300 * 10 ** 8)])).decode(),  # big, other
        "this is not json",
        orjson.dumps({"op": "utx", "x": {"hash": "t4", "out": [{"addr": USER, "value": -5}]}}).decode(),
        orjson.dumps({"op": "utx", "x": {"out": []}}).decode(),
        orjson.dumps({"op": "pong"}).decode(),
    ]

    async def scenario():
        server, url, _ = await _ws_stub(messages)
        published: list[bytes] = []

        async def publish(body):
            published.append(body)

        async def no_sleep(_):
            pass

        adapter = OnchainAdapter(OnchainConfig(url=url, addresses=tmp_path / "labels.csv", open_timeout_s=5),
                                 publish, sleep=no_sleep)
        try:
            stats = await adapter.run(max_connections=1)
        finally:
            server.close()
            await server.wait_closed()
        return published, stats

    published, stats = asyncio.run(scenario())
    bodies = [valid(FEED_TRANSFERS, b) for b in published]
    assert [b.txid for b in bodies] == ["t1", "t3"] and bodies[0].exchange == "binance"
    assert stats.skipped == 1
    assert stats.errors == {"not_json": 1, "garbage": 2, "closed": 1}


def test_onchain_refused_and_slow_sockets_back_off():
    async def scenario():
        delays = []

        async def record(s):
            delays.append(s)

        async def publish(body):
            raise AssertionError("nothing to publish")

        port = refused_port()
        adapter = OnchainAdapter(OnchainConfig(url=f"ws://127.0.0.1:{port}/inv", open_timeout_s=2),
                                 publish, sleep=record)
        stats = await adapter.run(max_connections=3)
        # a server that accepts the connection and never answers the handshake
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        slow = OnchainAdapter(OnchainConfig(url=f"ws://127.0.0.1:{port}/inv", open_timeout_s=0.2),
                              publish, sleep=record)
        slow_stats = await slow.run(max_connections=1)
        silent.close()
        return stats, slow_stats, delays

    stats, slow_stats, delays = asyncio.run(scenario())
    assert stats.errors == {"unreachable": 3} and stats.delays == [1.0, 2.0, 4.0]
    assert delays == [1.0, 2.0]  # no wait after the last allowed connection
    assert slow_stats.errors == {"timeout": 1}


# ----------------------------------------------------------------------------- the command

def test_rtsig_feed_dominance_once_publishes_on_nats(nats_server, stub):
    stub.routes["/api/v3/global"] = (200, {}, orjson.dumps(GLOBAL))

    async def scenario():
        nc = await connect(nats_server.url)
        got = []
        async def on_message(m):
            got.append(m.data)

        await nc.subscribe("t.dominance", cb=on_message)
        await nc.flush()
        env = {**os.environ, "NATS_URL": nats_server.url, "MARKET_DOMINANCE_SUBJECT": "t.dominance",
               "LOG_FORMAT": "json"}
        proc = await asyncio.create_subprocess_exec(
            RTSIG, "feed", "dominance", "--once", "--url", stub.url("/api/v3/global"), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling for delivery, with a deadline
        await nc.close()
        return proc.returncode, err, got

    code, err, got = asyncio.run(scenario())
    assert code == 0, err
    assert orjson.loads(err.splitlines()[-1]) == {"polls": 1, "published": 1, "skipped": 0, "errors": {}}
    assert len(got) == 1 and valid(FEED_DOMINANCE, got[0]).btc_dominance == 57.3123
