"""The live service under faults: a worker killed with SIGKILL, NATS stopped and restarted while
signals are being made, SIGTERM while a publisher floods the input.

Figures measured here (worker restart time, SIGTERM exit time) are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from rtsig import counters as C
from rtsig.natsbin import free_port
from tests.live_helpers import (
    N_WORKERS,
    PACE,
    SETTLE_S,
    JetStreamServer,
    SignalSink,
    async_wait_until,
    cmdline,
    connect,
    cooldown_env,
    feed,
    group_members,
    message_id,
    multiset_diff,
    offline_signals,
    publish_all,
    settle,
    shm_path,
    wait_until,
    write_lines,
)

SEED = 11


def split_expected(expected: list[dict], *parts) -> list[list[dict]]:
    """The oracle's signals of each part of the feed (by the triggering message's id)."""
    out = []
    for part in parts:
        ids = {message_id(m) for m in part}
        out.append([s for s in expected if s["metadata"]["message_id"] in ids])
    return out


# --------------------------------------------------------------------------- kill -9 of a worker
def test_a_killed_worker_is_replaced_within_2_s_and_its_symbols_keep_signalling(nats_server,
                                                                               services, tmp_path):
    messages = feed(90, SEED)
    half = len(messages) // 2
    before, after = messages[:half], messages[half:]
    service = services(nats_server.url, env=cooldown_env(5))  # cool-downs: state that must survive
    expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
    expected_before, expected_after = split_expected(expected, before, after)
    victim = 0
    owned = service.owned_symbols(victim)
    assert owned, "the victim worker must own a symbol"
    for symbol in owned:
        assert int(service.store.symbols[service.store.symbol_id(symbol)]["worker"]) == victim
    assert {s["symbol"] for s in expected_after} >= set(owned), "no oracle signal for the victim"

    async def scenario() -> tuple[list[dict], list[dict], float]:
        nc = await connect(nats_server.url)
        try:
            sink = await SignalSink().subscribe(nc, service.out_subject)
            await publish_all(nc, service.in_subject, before, PACE)
            await settle([service], len(before))
            assert await sink.wait_count(service.workers_sum(C.PUBLISHED), SETTLE_S)
            first = list(sink.signals)

            old_pid = service.worker_pid(victim)
            other_pid = service.worker_pid(1 - victim)
            os.kill(old_pid, signal.SIGKILL)
            replaced_s = await async_wait_until(
                lambda: service.worker_pid(victim) not in (0, old_pid), 30, "a new worker pid",
                poll_s=0.005)
            print(f"\nworker {victim} (pid {old_pid}) replaced by pid {service.worker_pid(victim)} "
                  f"in {replaced_s:.3f} s")
            assert service.worker_pid(1 - victim) == other_pid, "the other worker was restarted too"

            await publish_all(nc, service.in_subject, after, PACE)
            await settle([service], len(messages))
            published = service.workers_sum(C.PUBLISHED)
            assert await sink.wait_count(published, SETTLE_S), (len(sink.signals), published)
            return first, sink.signals[len(first):], replaced_s
        finally:
            await nc.close()

    first, second, replaced_s = asyncio.run(scenario())

    assert replaced_s <= 2.0, f"the worker was replaced after {replaced_s:.2f} s"
    assert not multiset_diff(first, expected_before), multiset_diff(first, expected_before)
    assert {s["symbol"] for s in second} >= set(owned), f"no signal for {owned} after the restart"
    # the restarted worker judges as the old one would have (cool-downs are in shared memory)
    diff = multiset_diff(second, expected_after)
    assert not diff, diff
    summary = service.summary()
    assert summary["errors"] == {} and summary["overruns"] == 0, summary
    code, _ = service.terminate()
    assert code == 0, service.log_tail()


# --------------------------------------------------------------------------- NATS down and back
def pick_window(messages, start: int, max_depth_per_symbol: int) -> int:
    """End of a run of messages from ``start`` with at most that many depth snapshots per symbol.

    Paused workers get their events later; a symbol's book ring (16 snapshots by default) must
    still hold every snapshot of the window when they resume, or they count overruns.
    """
    depth: dict[bytes, int] = {}
    end = start
    while end < len(messages):
        m = messages[end]
        if b"@depth" in m[:40]:
            symbol = m[11:m.index(b"@")]
            if depth.get(symbol, 0) == max_depth_per_symbol:
                break
            depth[symbol] = depth.get(symbol, 0) + 1
        end += 1
    return end


def test_signals_made_while_nats_is_down_are_published_when_it_returns(services, tmp_path):
    server = JetStreamServer(free_port(), tmp_path / "jetstream").start()
    try:
        service = services(server.url, env=cooldown_env(0), start=False)
        stream = f"OUT_{service.uid}"

        async def add_stream() -> None:
            nc = await connect(server.url)
            try:
                await nc.jetstream().add_stream(name=stream, subjects=[service.out_subject])
            finally:
                await nc.close()

        asyncio.run(add_stream())
        service.start()
        messages = feed(90, SEED)
        # warm-up with running workers (history for the windows), then ~3 s of market while the
        # workers are paused and NATS goes away, then the rest after NATS is back
        a = next(i for i, m in enumerate(messages) if b'"E":1730462450' in m)
        b = pick_window(messages, a, 12)
        warm, held, later = messages[:a], messages[a:b], messages[b:]
        expected, _ = offline_signals(write_lines(tmp_path / "feed.jsonl", messages), service.env)
        exp_warm, exp_held, exp_later = split_expected(expected, warm, held, later)
        assert len(exp_held) >= 5, f"the paused window must make signals, got {len(exp_held)}"

        async def publish(batch, rate) -> None:
            nc = await connect(server.url)
            try:
                await publish_all(nc, service.in_subject, batch, rate)
            finally:
                await nc.close()

        asyncio.run(publish(warm, PACE))
        wait_until(lambda: service.ingest(C.MESSAGES_RECEIVED) == len(warm) and service.drained(),
                   SETTLE_S, "the warm-up to be judged")
        assert service.workers_sum(C.PUBLISHED) == len(exp_warm)

        worker_pids = [service.worker_pid(k) for k in range(N_WORKERS)]
        for pid in worker_pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            asyncio.run(publish(held, None))
            wait_until(lambda: service.ingest(C.MESSAGES_RECEIVED) == a + len(held), SETTLE_S,
                       "the ingest to receive the held batch")
            server.stop()
        finally:
            for pid in worker_pids:
                os.kill(pid, signal.SIGCONT)
        wait_until(lambda: service.drained() and all(service.worker(k, C.NATS_CONNECTED) == 0
                                                     for k in range(N_WORKERS)),
                   SETTLE_S, "the workers to judge the held batch with NATS down")
        signals_made = sum(service.summary()["signals"].values())
        held_now = service.workers_sum(C.PUBLISH_BUFFERED)
        print(f"\nheld while NATS was down: {held_now} signals (oracle: {len(exp_held)}); "
              f"published counter {service.workers_sum(C.PUBLISHED)} (before: {len(exp_warm)})")
        assert signals_made == len(exp_warm) + len(exp_held)
        assert held_now > 0, "no signal was held while NATS was down"

        server.start()
        wait_until(lambda: service.workers_sum(C.PUBLISH_BUFFERED) == 0
                   and service.ingest(C.SUBSCRIBED) == 1
                   and all(service.worker(k, C.NATS_CONNECTED) == 1 for k in range(N_WORKERS)),
                   SETTLE_S, "the service to reconnect and release the held signals")

        async def read_stream(n_expected: int) -> list[dict]:
            nc = await connect(server.url)
            try:
                js = nc.jetstream()

                async def count() -> int:
                    return (await js.stream_info(stream)).state.messages

                deadline = time.monotonic() + SETTLE_S
                while await count() < n_expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                sink = SignalSink()
                await js.subscribe(service.out_subject, cb=sink._on_message, ordered_consumer=True)
                stored = await count()
                assert await sink.wait_count(stored, SETTLE_S), (len(sink.signals), stored)
                return list(sink.signals)
            finally:
                await nc.close()

        got = asyncio.run(read_stream(len(exp_warm) + len(exp_held)))
        diff = multiset_diff(got, exp_warm + exp_held)
        assert not diff, diff

        # the service kept running: later messages still make exactly the oracle's signals
        asyncio.run(publish(later, PACE))
        wait_until(lambda: service.ingest(C.MESSAGES_RECEIVED) == len(messages)
                   and service.drained(), SETTLE_S, "the later messages to be judged")
        got = asyncio.run(read_stream(len(expected)))
        diff = multiset_diff(got, expected)
        assert not diff, diff
        summary = service.summary()
        assert summary["errors"] == {} and summary["overruns"] == 0, summary
        assert service.workers_sum(C.PUBLISH_DROPPED) == 0
        code, _ = service.terminate()
        assert code == 0, service.log_tail()
    finally:
        server.stop()
        server.remove_store()


# --------------------------------------------------------------------------- SIGTERM under load
def test_sigterm_under_load_exits_0_within_10_s_and_leaves_nothing(nats_server, services):
    service = services(nats_server.url, env=cooldown_env(0))
    messages = feed(120, SEED)
    pgid = os.getpgid(service.pid)
    assert pgid == service.pid
    members = {pid for pid, _, _ in group_members(pgid)}
    children = {service.ingest(C.PROCESS_PID), *(service.worker_pid(k) for k in range(N_WORKERS))}
    assert {service.pid, *children} <= members
    trackers = {pid for pid in members - children - {service.pid}
                if "resource_tracker" in cmdline(pid)}
    assert members == {service.pid, *children, *trackers}, [cmdline(p) for p in members]

    async def scenario() -> tuple[int | None, float, int, int]:
        nc = await connect(nats_server.url)
        sent = 0
        sigterm_at = None
        exit_code = None
        waiter = None
        try:
            started = time.monotonic()
            while sent < 200_000 and time.monotonic() - started < 10:
                for m in messages[sent % len(messages):][:1000]:
                    await nc.publish(service.in_subject, m)
                    sent += 1
                await nc.flush()
                if sigterm_at is None and service.ingest(C.MESSAGES_RECEIVED) >= 5_000:
                    received = service.ingest(C.MESSAGES_RECEIVED)
                    service.close_store()
                    sigterm_at = time.monotonic()
                    service.proc.send_signal(signal.SIGTERM)
                    waiter = asyncio.create_task(asyncio.to_thread(service.proc.wait, 15))
                if waiter is not None and waiter.done():
                    break
            assert sigterm_at is not None, "the ingest never reached 5k messages"
            exit_code = await waiter
            return exit_code, time.monotonic() - sigterm_at, sent, received
        finally:
            if waiter is not None and not waiter.done():
                await asyncio.wait([waiter], timeout=20)
            await nc.close()

    exit_code, exit_s, sent, received = asyncio.run(scenario())
    print(f"\nSIGTERM after {received} messages received ({sent} published in all): "
          f"exit {exit_code} in {exit_s:.2f} s")
    assert exit_code == 0, service.log_tail()
    assert exit_s <= 10.0, f"stopped after {exit_s:.2f} s"
    # multiprocessing's resource tracker (a child of the supervisor) ends on its own when the
    # supervisor's pipe closes, and is reaped by init: give it a moment
    left = group_members(pgid, include_zombies=True)
    gone_s = wait_until(lambda: not group_members(pgid, include_zombies=True), 5,
                        f"the process group to be empty (left at exit: {left})")
    print(f"process group empty {gone_s:.3f} s after the supervisor exited (at exit: {left})")
    assert {pid for pid, _, _ in left} <= trackers, f"processes outlived the supervisor: {left}"
    assert not shm_path(service.instance).exists()
    log = service.log_path.read_text()
    assert "killing" not in log, service.log_tail()
