"""The ingest's subscriber against real nats-servers: every login a deployment uses, TLS with a
private CA, a rejected login that backs off, a 2-node cluster that loses its seed node, and a
server in lame-duck mode. Figures (fail-over time) are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import nats
import nkeys
import pytest
import trustme

from rtsig.natsauth import NatsAuth
from rtsig.natsbin import EmbeddedNats, free_port
from rtsig.natsproto import FastSubscriber
from tests.live_helpers import async_wait_until

SUBJECT = "logins.in"


class Collector:
    """A FastSubscriber consumed the way the ingest consumes it; payloads kept in order."""

    def __init__(self, auth: NatsAuth, queue: str | None = "grp") -> None:
        self.payloads: list[bytes] = []
        self.sub = FastSubscriber(auth, SUBJECT, queue, "test", on_data=self._on_data,
                                  on_state=lambda _: None, batch=64)

    def _on_data(self) -> None:
        n = self.sub.framed
        starts, ends, _ = self.sub.spans(n)
        self.payloads += [bytes(self.sub.buffer[a:b]) for a, b in zip(starts, ends)]
        self.sub.consumed(n)

    async def __aenter__(self) -> Collector:
        self.sub.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.sub.close()

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self.sub.connected.wait(), timeout_s)

    async def wait_count(self, n: int, timeout_s: float = 10.0) -> None:
        await async_wait_until(lambda: len(self.payloads) >= n, timeout_s, f"{n} messages", poll_s=0.005)


async def round_trip(collector: Collector, url: str, n: int = 50, **login) -> None:
    """Publish ``n`` numbered messages through nats-py and see them all arrive, in order."""
    pub = await nats.connect(url, **login)
    try:
        sent = [f"m{k}".encode() for k in range(n)]
        for p in sent:
            await pub.publish(SUBJECT, p)
        await pub.flush()
        await collector.wait_count(n)
        assert collector.payloads[-n:] == sent
    finally:
        await pub.close()


def assert_login_works(config: str, login) -> None:
    """A server with ``config``; ``login(server)`` gives the subscriber's login, and the URL and
    nats-py options of a publisher: the subscriber connects and receives what is published."""
    with EmbeddedNats(config=config) as server:
        auth, publisher_url, publisher_login = login(server)

        async def scenario() -> None:
            async with Collector(auth) as c:
                await c.wait_connected()
                await round_trip(c, publisher_url, **publisher_login)

        asyncio.run(scenario())


# ----------------------------------------------------------------------------- logins
def test_token_login():
    def login(server):
        url = f"nats://s3cr3t@127.0.0.1:{server.port}"
        return NatsAuth.build(url), url, {}

    assert_login_works('authorization { token: "s3cr3t" }', login)


def test_user_password_with_percent_encoded_characters():
    def login(server):
        return (NatsAuth.build(f"nats://ops%40desk:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}"), server.url,
                {"user": "ops@desk", "password": "p@ss:w/rd"})

    assert_login_works('authorization { user: "ops@desk", password: "p@ss:w/rd" }', login)


def _nkey_user() -> tuple[bytes, str]:
    """A fresh user seed (``SU…``) and its public key."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    kp = nkeys.from_seed(bytearray(seed))
    return seed, kp.public_key.decode()


def test_nkey_seed_file_signs_the_servers_nonce(tmp_path):
    seed, public = _nkey_user()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    assert_login_works(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}', lambda server: (
        NatsAuth.build(server.url, nkey_seed_file=seed_file), server.url, {"nkeys_seed": str(seed_file)}))


def test_creds_file_sends_the_jwt_and_the_nonce_signature(tmp_path):
    """No operator-mode server here: the creds' seed belongs to an nkey user, so the server checks
    the nonce signature made from the file (the JWT is carried, as an operator server wants)."""
    seed, public = _nkey_user()
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln\n"
                     "------END NATS USER JWT------\n\n************************* IMPORTANT *************\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n")
    auth = NatsAuth.build("nats://127.0.0.1:1", creds=creds)
    assert auth.user_jwt.startswith("eyJ0eXAi") and auth.nkey_seed == seed
    assert_login_works(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}', lambda server: (
        NatsAuth.build(server.url, creds=creds), server.url, {"nkeys_seed_str": seed.decode()}))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": root / "ca.pem", "cert": root / "server.pem", "key": root / "server.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


def _tls_config(files: dict[str, Path]) -> str:
    return f'tls {{ cert_file: "{files["cert"]}", key_file: "{files["key"]}" }}'


@pytest.mark.parametrize("scheme", ["tls", "nats"])
def test_tls_with_a_private_ca_by_url_scheme_or_because_the_server_requires_it(tls_files, scheme):
    with EmbeddedNats(config=_tls_config(tls_files)) as server:
        async def scenario() -> None:
            auth = NatsAuth.build(f"{scheme}://127.0.0.1:{server.port}", tls_ca=tls_files["ca"])
            async with Collector(auth) as c:
                await c.wait_connected()
                await round_trip(c, f"tls://127.0.0.1:{server.port}",
                                 tls=auth.ssl_context())
        asyncio.run(scenario())


def test_a_tls_server_without_its_ca_is_refused_with_a_hint_and_backs_off(tls_files, caplog):
    with EmbeddedNats(config=_tls_config(tls_files)) as server:
        async def scenario() -> None:
            async with Collector(NatsAuth.build(server.url)) as c:
                await asyncio.sleep(3.0)  # the observation window: how often it retries in 3 s
                assert not c.sub.connected.is_set()
        with caplog.at_level(logging.WARNING, logger="rtsig.natsproto"):
            asyncio.run(scenario())
    refused = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(refused) == 1, refused  # one line, not one per attempt
    assert "TLS handshake failed" in refused[0] and "NATS_TLS_CA" in refused[0]


def test_a_rejected_password_backs_off_and_logs_one_line(caplog):
    with EmbeddedNats(config='authorization { user: "a", password: "right" }') as server:
        async def scenario() -> int:
            async with Collector(NatsAuth.build(f"nats://a:wrong@127.0.0.1:{server.port}")) as c:
                await asyncio.sleep(3.0)  # the observation window
                assert not c.sub.connected.is_set()
                return c.sub.reconnects
        with caplog.at_level(logging.WARNING, logger="rtsig.natsproto"):
            attempts = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    refused = [m for m in lines if "refused the login" in m]
    assert len(refused) == 1 and "Authorization Violation" in refused[0], lines
    # back-off 0.5, 1, 2 s (±20 %): 3 or 4 attempts in 3 s; the old client made ~20
    assert 1 <= attempts <= 5, attempts
    assert len(lines) <= 2, lines


# ----------------------------------------------------------------------------- clusters
class Cluster:
    """Two nats-servers routed to each other on loopback."""

    def __init__(self, lame_duck_s: int = 30) -> None:
        self.route_ports = [free_port(), free_port()]
        self.nodes = []
        for k in range(2):
            other = self.route_ports[1 - k]
            self.nodes.append(EmbeddedNats(config=(
                f"server_name: n{k}\nlame_duck_duration: {lame_duck_s}s\nlame_duck_grace_period: 1s\n"
                f"cluster {{ name: c1\n listen: 127.0.0.1:{self.route_ports[k]}\n"
                f" routes: [nats://127.0.0.1:{other}] }}")))

    def __enter__(self) -> Cluster:
        for node in self.nodes:
            node.start()
        return self

    def __exit__(self, *exc) -> None:
        for node in self.nodes:
            node.stop()

    async def routed(self) -> None:
        """Until a subscription on one node is seen by the other."""
        a = await nats.connect(self.nodes[0].url)
        b = await nats.connect(self.nodes[1].url)
        try:
            got = asyncio.Event()

            async def on(_msg) -> None:
                got.set()

            await a.subscribe("route.check", cb=on)
            await a.flush()
            deadline = time.monotonic() + 20
            while not got.is_set():
                assert time.monotonic() < deadline, "the two nodes never routed"
                await b.publish("route.check", b"x")
                await b.flush()
                try:
                    await asyncio.wait_for(got.wait(), 0.1)
                except TimeoutError:
                    pass
        finally:
            await a.close()
            await b.close()


def test_the_seed_node_killed_fails_over_to_the_server_the_cluster_advertised():
    with Cluster() as cluster:
        seed, other = cluster.nodes

        async def scenario() -> float:
            await cluster.routed()
            async with Collector(NatsAuth.build(seed.url)) as c:  # only the seed node is configured
                await c.wait_connected()
                await async_wait_until(lambda: any(s.port == other.port for s in c.sub.pool), 10,
                                       "the second node learnt from INFO.connect_urls")
                await round_trip(c, other.url, 20)
                seed.process.send_signal(signal.SIGKILL)
                seed.process.wait(5)
                killed = time.monotonic()
                await async_wait_until(lambda: c.sub.link is not None and c.sub.connected.is_set()
                                       and c.sub.link.server.port == other.port, 10, "fail-over")
                failover_s = time.monotonic() - killed
                await round_trip(c, other.url, 30)
                assert c.sub.truncated == 0
                return failover_s

        failover_s = asyncio.run(scenario())
        print(f"\nfail-over to the second cluster member: {failover_s * 1000:.0f} ms")


def test_lame_duck_mode_moves_the_subscription_before_the_server_closes_it_and_loses_nothing():
    with Cluster(lame_duck_s=30) as cluster:
        duck, other = cluster.nodes

        async def scenario() -> None:
            await cluster.routed()
            async with Collector(NatsAuth.build(duck.url)) as c:
                await c.wait_connected()
                pub = await nats.connect(other.url)
                sent: list[bytes] = []
                stop = asyncio.Event()

                async def publish() -> None:  # a steady flow across the move
                    k = 0
                    while not stop.is_set():
                        for _ in range(20):
                            sent.append(f"m{k}".encode())
                            await pub.publish(SUBJECT, sent[-1])
                            k += 1
                        await pub.flush()
                        await asyncio.sleep(0.002)

                publisher = asyncio.get_running_loop().create_task(publish())
                await async_wait_until(lambda: len(c.payloads) > 200, 10, "traffic through the duck")
                duck.process.send_signal(signal.SIGUSR2)  # nats-server: enter lame-duck mode
                await async_wait_until(lambda: c.sub.link is not None and c.sub.link.server.port == other.port
                                       and c.sub.connected.is_set(), 15, "the move to the other node")
                assert duck.process.poll() is None  # moved while the duck still runs
                assert c.sub.lame_duck_moves == 1 and c.sub.reconnects == 0  # moved, not dropped
                moved_at = len(sent)
                await async_wait_until(lambda: len(sent) > moved_at + 200, 10, "traffic after the move")
                stop.set()
                await publisher
                await c.wait_count(len(sent))
                assert c.payloads == sent  # each exactly once, in order
                assert c.sub.truncated == 0
                await pub.close()

        asyncio.run(scenario())


# ----------------------------------------------------------------------------- the whole service
def test_the_service_over_tls_with_an_nkey_login_gives_the_offline_signals(tls_files, services, tmp_path):
    """Ingest (own subscriber) and workers (nats-py) log in the same way from the same settings."""
    from rtsig import counters as C
    from tests.live_helpers import (
        SETTLE_S,
        SignalSink,
        feed,
        multiset_diff,
        offline_signals,
        publish_all,
        settle,
        write_lines,
    )

    seed, public = _nkey_user()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    config = f'{_tls_config(tls_files)}\nauthorization {{ users: [ {{ nkey: "{public}" }} ] }}'
    with EmbeddedNats(config=config) as server:
        url = f"tls://127.0.0.1:{server.port}"
        service = services(url, env={"NATS_TLS_CA": str(tls_files["ca"]), "NATS_NKEY_SEED": str(seed_file)})
        messages = feed(60, 5)
        expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
        assert expected, "the feed must trigger signals"

        async def scenario() -> list[dict]:
            auth = NatsAuth.build(url, nkey_seed_file=seed_file, tls_ca=tls_files["ca"])
            nc = await nats.connect(**auth.nats_py_options())
            sink = await SignalSink().subscribe(nc, service.out_subject)
            await publish_all(nc, service.in_subject, messages, rate=5000)
            await settle([service], len(messages))
            await async_wait_until(lambda: len(sink.signals) >= service.workers_sum(C.PUBLISHED),
                                   SETTLE_S, "every signal")
            await nc.close()
            return sink.signals

        live = asyncio.run(scenario())
        assert not multiset_diff(live, expected), multiset_diff(live, expected)
