"""Breaker state shared through a real redis-server: propagation, atomicity, outages, TTLs."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from litellm_circuit_breaker import BreakerState, CircuitBreaker, ConfigurationError
from litellm_circuit_breaker._cache import ProviderHealthCache
from litellm_circuit_breaker._records import BadRecord, SharedKeys, read_record
from litellm_circuit_breaker._shared import (
    _TRANSITION_LUA,
    MAX_RECONNECT_SEC,
    MIN_RECONNECT_SEC,
    SCAN_PAGE,
    STABLE_SESSION_SEC,
    RedisShare,
    ShareCounters,
    SharedRecord,
    close_client,
    cluster_nodes,
    fetch_snapshot,
    open_client,
    operate,
    scan_pages,
)
from litellm_circuit_breaker.testing import FakeClock, FakeProvider
from tests.redis_harness import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PROPAGATION_BAR_SEC = 1.0
WAIT_SEC = 10.0
# A child replica imports LiteLLM before it says "ready": a few seconds on an idle
# machine, over half a minute on a loaded one (two children at once: more). Only that
# wait gets this much; the timeouts and timings of the test proper start after it.
CHILD_STARTUP_SEC = 300.0


async def eventually(predicate: Callable[[], bool], what: str, within: float = WAIT_SEC) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took (fails after ``within``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def child_ready(child: asyncio.subprocess.Process) -> None:
    """Wait until a ``tests.shared_replica`` child has started its breaker."""
    assert child.stdout is not None
    async with asyncio.timeout(CHILD_STARTUP_SEC):
        line = await child.stdout.readline()
    assert line.strip() == b"ready"


def replica(name: str, url: str, namespace: str, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("probe_interval", None)
    return CircuitBreaker(redis_url=url, redis_namespace=namespace, replica_name=name, **kwargs)


@asynccontextmanager
async def replicas(*breakers: CircuitBreaker) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for cb in breakers:
            await stack.enter_async_context(cb)
        yield


def trip(cb: CircuitBreaker, deployment: str, reason: str = "HTTP 503") -> None:
    for _ in range(cb.cache.failure_threshold):
        cb.cache.mark_unhealthy(deployment, reason)


@pytest.mark.asyncio
async def test_an_opening_on_one_replica_opens_the_breaker_on_the_others(
    redis_url: str, namespace: str, clock: FakeClock
) -> None:
    """A trips d1; B and C refuse d1 with about the same window, having seen no failure."""
    a, b, c = (replica(n, redis_url, namespace, clock=clock) for n in "ABC")
    async with replicas(a, b, c):
        trip(a, "d1", "HTTP 503: upstream down")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B sees d1 open")
        await eventually(lambda: not c.cache.is_healthy("d1"), "C sees d1 open")
        for other in (b, c):
            assert 59.0 < other.cache.retry_in("d1") <= 60.0
            assert other.cache.get_state("d1").last_error == "HTTP 503: upstream down"  # type: ignore[union-attr]
        clock.advance(60.0)
        assert b.cache.breaker_state("d1") is BreakerState.HALF_OPEN
        assert b.cache.try_acquire("d1")  # B's own trial decides for B
        b.cache.mark_healthy("d1")
        await eventually(lambda: a.cache.breaker_state("d1") is BreakerState.CLOSED, "A closed")
        await eventually(lambda: c.cache.breaker_state("d1") is BreakerState.CLOSED, "C closed")


@pytest.mark.asyncio
async def test_every_kind_of_transition_is_shared(redis_url: str, namespace: str) -> None:
    """Probe half-open, trial failure re-open, operator hold and force close all reach B."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: b.cache.breaker_state("d1") is BreakerState.OPEN, "open")
        a.cache.mark_probe_passed("d1")
        await eventually(lambda: b.cache.breaker_state("d1") is BreakerState.HALF_OPEN, "half")
        b.cache.mark_unhealthy("d1", "trial failed: HTTP 500")
        await eventually(lambda: a.cache.breaker_state("d1") is BreakerState.OPEN, "re-opened")
        assert a.cache.get_state("d1").last_error == "trial failed: HTTP 500"  # type: ignore[union-attr]

        a.cache.force_open("d2", reason="maintenance")
        await eventually(lambda: b.cache.is_held("d2"), "hold shared")
        assert math.isinf(b.cache.retry_in("d2"))
        b.cache.mark_healthy("d2")  # a success does not end a hold, here or there
        assert b.cache.breaker_state("d2") is BreakerState.OPEN
        b.cache.force_close("d2")
        await eventually(lambda: a.cache.breaker_state("d2") is BreakerState.CLOSED, "release")
        assert not a.cache.is_held("d2")


@pytest.mark.asyncio
async def test_a_transition_reaches_another_process_within_one_second(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured across two processes: trip here, time until the other replica reports it."""
    settings = {
        "redis_url": redis_url,
        "redis_namespace": namespace,
        "replica_name": "child",
        "probe_interval": None,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.shared_replica",
        json.dumps(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        await child_ready(child)
        async with asyncio.timeout(60):
            here = replica("parent", redis_url, namespace)
            async with here:
                timings = []
                for n in range(5):
                    deployment = f"d{n}"
                    child.stdin.write(f"wait {deployment} open\n".encode())
                    assert (await child.stdout.readline()).strip() == b"waiting"
                    started = time.monotonic()
                    trip(here, deployment)
                    assert (await child.stdout.readline()).strip() == b"seen"
                    timings.append(time.monotonic() - started)
                # and back: a close made in the child reaches this process
                child.stdin.write(b"trip back\n")
                assert (await child.stdout.readline()).strip() == b"ok"
                await eventually(lambda: not here.cache.is_healthy("back"), "child's trip here")
            child.stdin.write(b"quit\n")
            await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    with capsys.disabled():
        print(f"\ncross-process propagation (s): {', '.join(f'{t:.4f}' for t in timings)}")
    assert max(timings) <= PROPAGATION_BAR_SEC


@pytest.mark.asyncio
async def test_concurrent_openings_keep_the_latest_window_and_lose_no_update(
    redis_url: str, namespace: str
) -> None:
    """Ten replicas trip one breaker at once with different windows: the longest wins everywhere."""
    fleet = [
        replica(f"R{n}", redis_url, namespace, unhealthy_backoff_sec=30.0 + n) for n in range(10)
    ]
    async with replicas(*fleet):
        for cb in fleet:  # all in one loop turn: the writes race in Redis
            trip(cb, "d1")
        await eventually(
            lambda: all(cb.cache.retry_in("d1") > 38.0 for cb in fleet), "everyone has 39 s"
        )
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            record = await client.hgetall(f"{{{namespace}}}:breaker:d1")
        finally:
            await client.aclose()
        assert record["state"] == "open"
        assert record["replica"] == "R9"
        # A later close based on what everyone saw ends it for all.
        fleet[3].cache.mark_healthy("d1")
        await eventually(lambda: all(cb.cache.is_healthy("d1") for cb in fleet), "everyone closed")


@pytest.mark.asyncio
async def test_a_close_that_never_saw_a_newer_opening_loses_to_it(
    redis_url: str, namespace: str
) -> None:
    """B's trial passes as A's fails: B's close, based on the half-open, loses to A's re-open."""
    a = replica("A", redis_url, namespace)
    b = replica("B", redis_url, namespace, redis_reconcile_sec=3600.0)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B open")
        a.cache.mark_probe_passed("d1")
        await eventually(lambda: b.cache.breaker_state("d1") is BreakerState.HALF_OPEN, "half")
        share = b.shared
        assert share is not None
        held_back, share._run = share._run, None  # B's writer sleeps through A's write
        b.cache.mark_healthy("d1")
        a.cache.mark_unhealthy("d1", "trial failed")
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await eventually_async(
                lambda: client.hget(f"{{{namespace}}}:breaker:d1", "reason"), "trial failed"
            )
            assert b.cache.breaker_state("d1") is BreakerState.CLOSED  # not sent yet
            share._run = held_back
            share._poke()  # now B's close goes out, based on the half-open it saw
            await eventually(lambda: b.cache.breaker_state("d1") is BreakerState.OPEN, "adopt")
            assert await client.hget(f"{{{namespace}}}:breaker:d1", "state") == "open"
        finally:
            await client.aclose()
        assert a.cache.breaker_state("d1") is BreakerState.OPEN


async def _arbiter(
    client: aioredis.Redis,
    namespace: str,
    state: str,
    *,
    window_ms: int = 0,
    base: int = 0,
    refill: int = 0,
) -> Any:
    """Call the transition script as a replica named W would: (written, record)."""
    written, raw, _ = await client.eval(
        _TRANSITION_LUA, 2, f"{{{namespace}}}:breaker:d", f"{{{namespace}}}:breakers",
        "d", state, window_ms, 2, "why", "W", base, 60_000, f"{namespace}:transitions", "g", "tok",
        "", "", refill,
    )  # fmt: skip
    return written, raw


@pytest.mark.asyncio
async def test_a_record_written_back_keeps_its_version_and_never_undoes_a_newer_one(
    redis_url: str, namespace: str
) -> None:
    """A replica writing back an opening Redis lost gives it the version it had, so a close
    based on it still ends it; one that finds that record written back already, or a newer
    one (a close), keeps what it found."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        written, raw = await _arbiter(client, namespace, "open", window_ms=10_000, refill=1234)
        assert (written, SharedRecord.from_json(raw).version) == (1, 1234)
        # another replica writing the same one back, a little longer: the first one stands
        written, raw = await _arbiter(client, namespace, "open", window_ms=20_000, refill=1234)
        assert (written, SharedRecord.from_json(raw).retry_in <= 10.0) == (0, True)
        written, raw = await _arbiter(client, namespace, "closed", base=1234)
        closed = SharedRecord.from_json(raw)
        assert (written, closed.state) == (1, BreakerState.CLOSED)
        written, raw = await _arbiter(client, namespace, "open", window_ms=-1, refill=1234)
        kept = SharedRecord.from_json(raw)
        assert (written, kept.state, kept.version) == (0, BreakerState.CLOSED, closed.version)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_transition_script_keeps_the_rules(redis_url: str, namespace: str) -> None:
    """Later window wins, holds outlast windows, stale closes and half-opens lose."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        written, raw = await _arbiter(client, namespace, "open", window_ms=10_000)
        first = SharedRecord.from_json(raw)
        assert written == 1
        assert (await _arbiter(client, namespace, "open", window_ms=5_000))[0] == 0
        written, raw = await _arbiter(client, namespace, "open", window_ms=20_000)
        assert written == 1
        second = SharedRecord.from_json(raw)
        assert second.version > first.version
        assert 19.0 < second.retry_in <= 20.0
        # a close based on the first opening never saw the second
        written, raw = await _arbiter(client, namespace, "closed", base=first.version)
        assert (written, SharedRecord.from_json(raw).state) == (0, BreakerState.OPEN)
        assert (await _arbiter(client, namespace, "half_open", base=first.version))[0] == 0
        # a hold outlasts any window
        assert (await _arbiter(client, namespace, "open", window_ms=-1))[0] == 1
        assert (await _arbiter(client, namespace, "open", window_ms=10**9))[0] == 0
        written, raw = await _arbiter(client, namespace, "closed", base=second.version)
        assert written == 0  # the hold came after what this close saw
        held = SharedRecord.from_json(raw)
        assert math.isinf(held.retry_in)
        written, raw = await _arbiter(client, namespace, "closed", base=held.version)
        assert written == 1
        closed = SharedRecord.from_json(raw)
        # a half-open never replaces a close, nor does a repeated close count
        assert (await _arbiter(client, namespace, "half_open", base=closed.version))[0] == 0
        assert (await _arbiter(client, namespace, "closed", base=closed.version))[0] == 0
        # versions only grow, even when Redis lost everything
        await client.delete(f"{{{namespace}}}:breaker:d")
        # Versions run ahead of Redis's clock by one per write within a millisecond;
        # a Redis that lost its data comes back later than that.
        while True:
            seconds, micros = await client.time()
            if seconds * 1000 + micros // 1000 > closed.version:
                break
            await asyncio.sleep(0.001)
        written, raw = await _arbiter(client, namespace, "open", window_ms=1_000)
        assert SharedRecord.from_json(raw).version > closed.version
    finally:
        await client.aclose()


async def eventually_async(read: Callable[[], Any], expected: object) -> None:
    started = time.monotonic()
    while await read() != expected:
        if time.monotonic() - started > WAIT_SEC:
            pytest.fail(f"Redis never held {expected!r}")
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_decisions_send_nothing_to_redis(own_redis: RedisServer, namespace: str) -> None:
    """Thousands of decisions and closed-state successes cost zero Redis commands."""
    redis_url = own_redis.url  # no other client may talk to it meanwhile
    a = replica("A", redis_url, namespace, redis_reconcile_sec=3600.0)
    async with a:
        trip(a, "open-one")
        await eventually(lambda: a.shared is not None and a.shared.pushed == 1, "pushed")
        client = aioredis.Redis.from_url(redis_url)
        try:
            before = (await client.info("stats"))["total_commands_processed"]
            for _ in range(2000):
                a.cache.try_acquire("open-one")
                a.cache.is_healthy("healthy-one")
                a.cache.mark_healthy("healthy-one")
            await asyncio.sleep(0.05)
            after = (await client.info("stats"))["total_commands_processed"]
        finally:
            await client.aclose()
    assert after - before == 1  # the first INFO itself


@pytest.mark.asyncio
async def test_redis_killed_mid_run_then_restarted_reconciles_without_raising(
    own_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies: decisions go on locally, one warning; it returns empty: state is re-shared."""
    url = own_redis.url
    a, b = replica("A", url, namespace), replica("B", url, namespace)
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    async with replicas(a, b):
        trip(a, "before")
        await eventually(lambda: not b.cache.is_healthy("before"), "shared before the outage")
        own_redis.stop()
        await eventually(lambda: not a.shared.connected, "A notices")  # type: ignore[union-attr]
        for n in range(50):  # traffic during the outage: nothing raises, nothing blocks
            trip(a, "during")
            a.cache.mark_healthy(f"other{n}")
            assert not a.cache.try_acquire("during")
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        await eventually(  # several failed reconnects each
            lambda: share_a.errors >= 3 and share_b.errors >= 3, "reconnects failing"
        )
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 2  # one per replica, not one per attempt
        assert "127.0.0.1" in warnings[0].getMessage()
        assert b.cache.is_healthy("during")  # B could not know yet
        own_redis.start()  # empty: no persistence
        await eventually(lambda: not b.cache.is_healthy("during"), "reconciled after restart")
        assert not b.cache.is_healthy("before")
        # The line comes once the reconcile is done, which yields between batches:
        # a record it adopted can be seen before the line is written.
        await eventually(
            lambda: any("answers again" in r.getMessage() for r in caplog.records),
            "the line saying Redis answers again",
        )
        # and sharing works as before
        trip(b, "after")
        await eventually(lambda: not a.cache.is_healthy("after"), "shared after the outage")
    assert a.internal_errors == {}
    assert b.internal_errors == {}


@pytest.mark.asyncio
async def test_a_replica_started_while_redis_is_down_works_and_joins_later(
    tmp_path: Path, namespace: str
) -> None:
    """No Redis at start: start() returns promptly, breakers work, sharing begins later."""
    server = RedisServer(tmp_path)
    a = replica("A", server.url, namespace)
    started = time.monotonic()
    async with a:
        assert time.monotonic() - started < 5.0
        trip(a, "d1")
        assert not a.cache.is_healthy("d1")
        server.start()
        try:
            b = replica("B", server.url, namespace)
            async with b:
                await eventually(lambda: not b.cache.is_healthy("d1"), "B learns A's outage")
        finally:
            server.stop()


@pytest.mark.asyncio
async def test_records_carry_ttls_and_expire(redis_url: str, namespace: str) -> None:
    """Every key has a TTL: window plus state TTL on records; an expired record is gone."""
    a = replica("A", redis_url, namespace, redis_state_ttl_sec=1.0, unhealthy_backoff_sec=0.0)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with a:
            a.cache.force_open("d1", seconds=100.0)
            await eventually(lambda: a.shared.pushed == 1, "pushed")  # type: ignore[union-attr]
            ttl = await client.pttl(f"{{{namespace}}}:breaker:d1")
            assert 100_000 < ttl <= 101_000
            assert 0 < await client.pttl(f"{{{namespace}}}:breakers") <= 101_000
            trip(a, "short")  # window 0: lives the state TTL only
            await eventually(lambda: a.shared.pushed == 2, "pushed")  # type: ignore[union-attr]
            assert 0 < await client.pttl(f"{{{namespace}}}:breaker:short") <= 1000
            # Redis's own expiry, not a window of ours: poll for it.
            started = time.monotonic()
            while await client.exists(f"{{{namespace}}}:breaker:short"):
                assert time.monotonic() - started < WAIT_SEC
                await asyncio.sleep(0.05)
        for key in await client.keys(f"{{{namespace}}}:*"):
            assert await client.pttl(key) > 0, key
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_namespaces_keep_fleets_apart(redis_url: str, namespace: str) -> None:
    """Two namespaces on one Redis never see each other's breakers."""
    a = replica("A", redis_url, namespace)
    b = replica("B", redis_url, namespace + "-other")
    c = replica("C", redis_url, namespace)
    async with replicas(a, b, c):
        trip(a, "d1")
        await eventually(lambda: not c.cache.is_healthy("d1"), "same namespace sees it")
        assert b.cache.is_healthy("d1")


def test_bad_redis_settings_name_the_field_and_hide_the_password() -> None:
    """A bad URL is refused at construction; the error names the field, never the password."""
    with pytest.raises(ConfigurationError) as bad:
        CircuitBreaker(redis_url="http://user:hunter2@cache:6379/0")
    assert bad.value.field == "redis_url"
    assert "hunter2" not in str(bad.value)
    assert "cache:6379" in str(bad.value)
    with pytest.raises(ConfigurationError) as ns:
        CircuitBreaker(redis_url="redis://localhost:6379/0", redis_namespace="has space")
    assert ns.value.field == "redis_namespace"
    # A brace would end Redis Cluster's hash tag early: the keys would span several slots.
    for braced in ("}fleet", "{}fleet", "fle{et", "fleet}"):
        with pytest.raises(ConfigurationError) as ns:
            CircuitBreaker(redis_url="redis://localhost:6379/0", redis_namespace=braced)
        assert (ns.value.field, ns.value.value) == ("redis_namespace", braced)
        assert "braces" in str(ns.value)
    with pytest.raises(ConfigurationError) as ttl:
        CircuitBreaker(redis_url="redis://localhost:6379/0", redis_state_ttl_sec=0)
    assert ttl.value.field == "redis_state_ttl_sec"
    with pytest.raises(ConfigurationError) as name:
        CircuitBreaker(redis_url="redis://localhost:6379/0", replica_name=" ")
    assert name.value.field == "replica_name"


@pytest.mark.asyncio
async def test_the_redis_password_never_reaches_logs(
    tmp_path: Path, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable Redis with a password in its URL is logged without it."""
    server = RedisServer(tmp_path)  # never started: nothing listens
    url = f"redis://:s3cret-pass@127.0.0.1:{server.port}/0"
    caplog.set_level(logging.DEBUG, logger="litellm_circuit_breaker")
    a = replica("A", url, namespace)
    async with a:
        trip(a, "x")
        await eventually(lambda: a.shared is not None and a.shared.errors >= 2, "retried")
    assert "unreachable" in caplog.text
    assert "s3cret-pass" not in caplog.text  # messages and any traceback alike


@pytest.mark.asyncio
async def test_each_endpoint_is_probed_by_one_process_and_both_learn_the_verdict(
    redis_url: str, namespace: str
) -> None:
    """Two processes probe one endpoint every 0.2 s: one holds the lease, both see it open."""
    provider = FakeProvider().start_in_thread()
    try:
        model_list = [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": provider.base_url,
                    "api_key": "sk-probe-dedup-key",
                },
                "model_info": {"id": "fake-1"},
            }
        ]
        settings = {
            "redis_url": redis_url,
            "redis_namespace": namespace,
            "probe_interval": 0.2,
            "model_list": model_list,
        }
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.shared_replica",
                json.dumps({**settings, "replica_name": name}),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            for name in ("P1", "P2")
        ]
        try:
            for child in children:
                await child_ready(child)
            async with asyncio.timeout(60):

                async def ask(n: int, line: str) -> str:
                    child = children[n]
                    assert child.stdin is not None
                    assert child.stdout is not None
                    child.stdin.write(line.encode() + b"\n")
                    return (await child.stdout.readline()).decode().strip()

                # Both loops run; wait for a dozen probes in all.
                while provider.calls("models") < 12:
                    await asyncio.sleep(0.05)
                probed = [int(await ask(n, "probed")) for n in (0, 1)]
                assert sorted(probed)[0] == 0, probed  # one process never probed
                assert provider.calls("models") <= max(probed) + 1
                provider.error(503)
                waits = [await ask(n, "wait fake-1 open") for n in (0, 1)]
                assert waits == ["waiting", "waiting"]
                for child in children:
                    assert child.stdout is not None
                    assert (await child.stdout.readline()).strip() == b"seen"
                probed_after = [int(await ask(n, "probed")) for n in (0, 1)]
                assert sorted(probed_after)[0] == 0, probed_after
                for n in (0, 1):
                    await ask(n, "quit")
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                await child.wait()
    finally:
        provider.stop()


async def write_behind_the_channel(url: str, namespace: str, **fields: str | int | bytes) -> None:
    """Write a record the way the script does, without publishing it: a lost message."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        seconds, micros = await client.time()
        now = seconds * 1000 + micros // 1000
        record = {"failures": 2, "reason": "HTTP 502", "replica": "lost", "changed": now,
                  "version": now, "group": "chat", **fields}  # fmt: skip
        if "open_in" in record:  # milliseconds from Redis's now; negative: already ended
            record["open_until"] = now + int(record.pop("open_in"))
        await client.hset(f"{{{namespace}}}:breaker:{record['id']}", mapping=record)
        await client.expire(f"{{{namespace}}}:breaker:{record['id']}", 600)
        await client.zadd(f"{{{namespace}}}:breakers", {str(record["id"]): now + 600_000})
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_reconcile_catches_what_the_channel_lost(redis_url: str, namespace: str) -> None:
    """Records written without a message reach a replica at its next reconcile."""
    a = replica("A", redis_url, namespace, redis_reconcile_sec=0.05)
    async with a:
        await write_behind_the_channel(
            redis_url, namespace, id="lost-open", state="open", open_in=30_000
        )
        # an opening whose window already ended is half-open for everyone
        await write_behind_the_channel(
            redis_url, namespace, id="lost-expired", state="open", open_in=-1_000
        )
        await eventually(lambda: not a.cache.is_healthy("lost-open"), "reconciled")
        assert 28.0 < a.cache.retry_in("lost-open") <= 30.0
        await eventually(
            lambda: a.cache.breaker_state("lost-expired") is BreakerState.HALF_OPEN, "half"
        )
        assert a.shared is not None
        assert a.shared.adopted == 2


@pytest.mark.asyncio
async def test_probe_leases_in_one_process_and_probing_alone_without_redis(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Two replicas' loops on one endpoint: one probes. With Redis unreachable, each probes."""
    provider = FakeProvider().start_in_thread()
    try:
        model_list = [{
            "model_name": "chat",
            "litellm_params": {"model": "openai/m", "api_base": provider.base_url,
                               "api_key": "sk-probe-lease-key"},
            "model_info": {"id": "fake-1"},
        }]  # fmt: skip
        counts = {"A": 0, "B": 0}
        fleet = []
        for name in counts:
            cb = replica(name, redis_url, namespace, probe_interval=0.05, model_list=model_list)
            cb.probe_listeners.append(lambda _r, n=name: counts.__setitem__(n, counts[n] + 1))
            fleet.append(cb)
        async with replicas(*fleet):
            await eventually(lambda: provider.calls("models") >= 10, "ten probes")
        assert sorted(counts.values())[0] == 0, counts

        nowhere = RedisServer(tmp_path).url  # nothing listens there
        alone = replica("C", nowhere, namespace, probe_interval=0.05, model_list=model_list)
        seen = 0

        def count(_result: object) -> None:
            nonlocal seen
            seen += 1

        alone.probe_listeners.append(count)
        async with alone:
            await eventually(lambda: seen >= 3, "probing on its own")
    finally:
        provider.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["another type", "no expiry"])
async def test_a_damaged_probe_lease_is_replaced_and_counted(
    redis_url: str, namespace: str, damage: str
) -> None:
    """A key of another type at a lease failed every claim (each replica then probed
    every endpoint); a lease that never expires, written by hand, stopped the probes of
    its endpoint for good. Either is replaced by a lease, counted and logged once."""
    provider = FakeProvider().start_in_thread()
    try:
        model_list = [{
            "model_name": "chat",
            "litellm_params": {"model": "openai/m", "api_base": provider.base_url,
                               "api_key": "sk-probe-lease-key"},
            "model_info": {"id": "fake-1"},
        }]  # fmt: skip
        first = replica("A", redis_url, namespace, probe_interval=0.05, model_list=model_list)
        async with replicas(first):
            await eventually(lambda: provider.calls("models") >= 1, "a first probe")
        redis = aioredis.Redis.from_url(redis_url)
        try:
            leases = [key async for key in redis.scan_iter(match=f"{{{namespace}}}:probe:*")]
            assert len(leases) == 1, leases
            await redis.delete(leases[0])
            if damage == "another type":
                await redis.rpush(leases[0], "not a lease")
            else:
                await redis.set(leases[0], "ghost")
        finally:
            await redis.aclose()

        counts = {"A": 0, "B": 0}
        fleet = []
        for name in counts:
            cb = replica(name, redis_url, namespace, probe_interval=0.05, model_list=model_list)
            cb.probe_listeners.append(lambda _r, n=name: counts.__setitem__(n, counts[n] + 1))
            fleet.append(cb)
        async with replicas(*fleet):
            await eventually(lambda: sum(counts.values()) >= 10, "ten probes")
        assert sorted(counts.values())[0] == 0, counts  # one replica probes, as before
        bad = [cb.shared.bad_records for cb in fleet if cb.shared is not None]
        assert sum(bad) == 1, bad
        assert all(cb.shared.errors == 0 for cb in fleet if cb.shared is not None)
    finally:
        provider.stop()


@pytest.mark.asyncio
async def test_closing_a_breaker_ends_every_redis_task(redis_url: str, namespace: str) -> None:
    """After aclose() nothing of it runs: no task left, its later changes stay local."""
    a = replica("A", redis_url, namespace)
    b = replica("B", redis_url, namespace)
    async with b:
        async with a:
            trip(a, "before")
            await eventually(lambda: not b.cache.is_healthy("before"), "shared while running")
        ours = [t for t in asyncio.all_tasks() if t.get_name().startswith("circuit-breaker")]
        assert len(ours) == 3  # B's follow, write and reconcile tasks only
        trip(a, "after")
        trip(b, "from-b")
        await eventually(lambda: b.shared is not None and b.shared.pushed >= 1, "B pushed")
        await asyncio.sleep(0.05)
        assert b.cache.is_healthy("after")
        assert a.cache.is_healthy("from-b")


@pytest.mark.asyncio
async def test_replicas_with_one_name_still_share(redis_url: str, namespace: str) -> None:
    """Workers of one pod share CIRCUIT_BREAKER_REPLICA_NAME: echoes go by process token."""
    a = replica("pod-1", redis_url, namespace)
    b = replica("pod-1", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B adopts its namesake's trip")
        b.cache.force_close("d1")
        await eventually(lambda: a.cache.is_healthy("d1"), "and back")


@pytest.mark.asyncio
async def test_a_window_extended_while_open_is_shared(redis_url: str, namespace: str) -> None:
    """A hold put on an open breaker, and a failure re-arming one, reach the other replica."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "open")
        a.cache.force_open("d1", reason="maintenance")
        await eventually(lambda: b.cache.is_held("d1"), "the hold on an open breaker")
        a.cache.force_open("d2", seconds=5.0)
        await eventually(lambda: not b.cache.is_healthy("d2"), "open for 5 s")
        a.cache.force_open("d2", seconds=500.0)
        await eventually(lambda: b.cache.retry_in("d2") > 400.0, "the longer window")


@pytest.mark.asyncio
async def test_records_that_are_not_ours_are_skipped(redis_url: str, namespace: str) -> None:
    """A foreign record and a stray message are counted and skipped; sharing goes on."""
    a = replica("A", redis_url, namespace, redis_reconcile_sec=0.05)
    b = replica("B", redis_url, namespace)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.hset(f"{{{namespace}}}:breaker:junk", mapping={"state": "exploded", "id": "j"})
        await client.zadd(f"{{{namespace}}}:breakers", {"junk": 2**52})
        async with replicas(a, b):
            await client.publish(f"{namespace}:transitions", "not json")
            trip(b, "d1")
            await eventually(lambda: not a.cache.is_healthy("d1"), "sharing goes on")
            assert a.shared is not None
            await eventually(lambda: a.shared is not None and a.shared.bad_records >= 2, "counted")
            assert a.shared.connected
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_hold_outliving_its_record_is_shared_again(redis_url: str, namespace: str) -> None:
    """The record of a hold expires after the state TTL: the holder writes it again."""
    a = replica("A", redis_url, namespace, redis_state_ttl_sec=1.0, redis_reconcile_sec=0.1)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    key = f"{{{namespace}}}:breaker:d1"
    try:
        async with a:
            a.cache.force_open("d1", reason="maintenance")
            await eventually(lambda: a.shared is not None and a.shared.pushed == 1, "pushed")
            first = await client.hmget(key, ["version", "changed"])
            # Redis expires the record (its TTL, not a window of ours); A writes it back,
            # as it was: the same version, so no replica takes it for a new change.
            started = time.monotonic()
            while await client.hget(key, "changed") in (first[1], None):
                assert time.monotonic() - started < WAIT_SEC, "never written again"
                await asyncio.sleep(0.05)
            assert await client.hget(key, "open_until") == "-1"
            assert await client.hget(key, "version") == first[0]
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_what_reaches_redis_has_no_secret(redis_url: str, namespace: str) -> None:
    """Error lines are redacted before they are shared; deployment keys never go."""
    models = [{
        "model_name": "chat",
        "litellm_params": {"model": "openai/m", "api_base": "http://a.test/v1",
                           "api_key": "sk-live-never-in-redis-123"},
        "model_info": {"id": "d1"},
    }]  # fmt: skip
    a = replica("A", redis_url, namespace, model_list=models)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with a:
            trip(a, "d1", "401 for key sk-live-never-in-redis-123 at api_key=abcd1234efgh")
            await eventually(lambda: a.shared is not None and a.shared.pushed == 1, "pushed")
            dump = json.dumps(await client.hgetall(f"{{{namespace}}}:breaker:d1"))
        assert "sk-live-never-in-redis-123" not in dump
        assert "abcd1234efgh" not in dump
        assert '"group": "chat"' in dump
    finally:
        await client.aclose()


def test_a_password_with_a_slash_is_never_shown() -> None:
    """Base64 passwords hold "/": errors name the host, never a piece of the password."""
    for url in (
        "http://:Zm9v/YmFyc2VjcmV0+x=@cache:6379/0",
        "redis://:Zm9v/YmFyc2VjcmV0+x=@cache:6379/0",  # redis-py wants it %-encoded
    ):
        with pytest.raises(ConfigurationError) as bad:
            CircuitBreaker(redis_url=url)
        assert "YmFy" not in str(bad.value)
        assert "Zm9v" not in str(bad.value)
        assert "cache:6379" in str(bad.value)
    cb = CircuitBreaker(redis_url="redis://:Zm9v%2FYmFy@cache:6379/0")
    assert cb.shared is not None
    assert cb.shared.display_url == "redis://cache:6379/0"


@pytest.mark.asyncio
async def test_a_forgotten_deployment_still_follows_the_fleet(
    redis_url: str, namespace: str
) -> None:
    """B forgets d1 (dropped from its config, then back): A's next opening still reaches B."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B adopts")
        a.cache.mark_healthy("d1")
        await eventually(lambda: b.cache.is_healthy("d1"), "B adopts the close")
        assert b.cache.forget("d1")
        b.cache.mark_unhealthy("d1", "one blip after coming back")  # closed, 1 failure
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B adopts after forgetting")


@pytest.mark.asyncio
async def test_failures_while_open_are_not_shared_one_by_one(
    redis_url: str, namespace: str
) -> None:
    """A hundred failures re-arming an open breaker within a second: one write, not 100."""
    a = replica("A", redis_url, namespace, redis_reconcile_sec=3600.0)
    b = replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "shared")
        share = a.shared
        assert share is not None
        await eventually(lambda: share.pushed == 1, "A's own write done")
        for _ in range(100):
            a.cache.mark_unhealthy("d1", "HTTP 503 while open")
            await asyncio.sleep(0)
        a.cache.force_open("d1", seconds=600.0)  # a real extension still goes out
        await eventually(lambda: b.cache.retry_in("d1") > 500.0, "the extension")
        assert share.pushed == 2


@pytest.mark.asyncio
async def test_each_adapter_counts_what_it_did_in_one_typed_value(
    redis_url: str, namespace: str
) -> None:
    """A's push and B's adoption land in ``counters``; the old attributes read the same."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "B adopts")
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        await eventually(lambda: share_a.counters.pushed == 1, "A's push counted")
        assert share_a.counters == ShareCounters(pushed=1)
        assert share_b.counters == ShareCounters(adopted=1)
        assert (share_a.pushed, share_b.adopted) == (1, 1)
        assert share_b.errors == share_b.bad_records == 0


@pytest.mark.asyncio
async def test_a_forgotten_deployment_leaves_no_entry_once_redis_lets_it_go(
    redis_url: str, namespace: str
) -> None:
    """Removed here: another replica's live record of it is not adopted back; once that
    record is gone from Redis, nothing of the deployment is kept."""
    a = replica("A", redis_url, namespace, redis_reconcile_sec=0.05)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with a:
            share = a.shared
            assert share is not None
            await write_behind_the_channel(
                redis_url, namespace, id="d1", state="open", open_in=60_000
            )
            await eventually(lambda: not a.cache.is_healthy("d1"), "d1 adopted")
            trip(a, "d2")
            await eventually(lambda: share.pushed == 1, "d2 pushed")
            assert share.tracked == {"d1", "d2"}
            assert a.remove_deployment("d1")
            # Records written after the forget mark two reconciles that saw d1's record
            # (the second would adopt it back had the first dropped what it knew of d1).
            await write_behind_the_channel(redis_url, namespace, id="mark-1", state="closed")
            await eventually(lambda: "mark-1" in a.cache, "a reconcile after the forget")
            await write_behind_the_channel(redis_url, namespace, id="mark-2", state="closed")
            await eventually(lambda: "mark-2" in a.cache, "and another")
            assert "d1" not in a.cache
            await client.delete(f"{{{namespace}}}:breaker:d1")
            await client.zrem(f"{{{namespace}}}:breakers", "d1")
            await eventually(lambda: "d1" not in share.tracked, "d1's entry dropped")
            assert share.tracked == {"d2", "mark-1", "mark-2"}
            assert "d1" not in a.cache
    finally:
        await client.aclose()


async def plant_bad_records(url: str, namespace: str) -> None:
    """Records one Redis client could leave behind: non-finite numbers, a key of the wrong type."""
    await write_behind_the_channel(url, namespace, id="nan-window", state="open", open_until="nan")
    await write_behind_the_channel(url, namespace, id="inf-version", state="closed", version="inf")
    # readable, though no UTF-8: must not make the whole reply undecodable
    await write_behind_the_channel(url, namespace, id="latin-1", state="closed", reason=b"caf\xe9")
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.set(f"{{{namespace}}}:breaker:wrong-type", "a string, not a hash", ex=600)
        await client.zadd(f"{{{namespace}}}:breakers", {"wrong-type": 2**52})
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_malformed_records_are_skipped_one_by_one_and_sharing_goes_on(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """NaN and inf fields, a key of the wrong type, a message with an infinite version:
    each is skipped and counted, Redis is not called unreachable, openings still travel."""
    await plant_bad_records(redis_url, namespace)
    a = replica("A", redis_url, namespace, redis_reconcile_sec=0.05)
    b = replica("B", redis_url, namespace)
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    async with replicas(a, b):
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await client.publish(
                f"{namespace}:transitions",
                '{"id": "x", "state": "open", "open_until": 1, "failures": 1, "reason": "",'
                ' "replica": "r", "version": Infinity, "changed": 0, "group": "", "now": 0}',
            )
        finally:
            await client.aclose()
        trip(b, "wrong-type")  # its key cannot hold a record: B keeps it local
        trip(b, "d1")
        await eventually(lambda: not a.cache.is_healthy("d1"), "an opening reaches A")
        await eventually(lambda: share_a.bad_records >= 4, "A counted every bad one")
        assert share_a.connected
        assert share_b.connected
        assert share_a.errors == share_b.errors == 0
        assert a.cache.is_healthy("nan-window")
        assert "latin-1" in a.cache
        assert not b.cache.is_healthy("wrong-type")
    assert "unreachable" not in caplog.text
    assert caplog.text.count("not ours to read") == 2  # once per replica


def test_a_message_with_numbers_out_of_range_is_a_bad_record() -> None:
    """Anyone may publish on the channel: the same ranges hold for what arrives there."""
    base = {"id": "d", "state": "open", "open_until": 1_796_220_060_000, "failures": 2,
            "reason": "", "replica": "r", "version": 1_796_220_000_000, "changed": 0,
            "group": "", "now": 1_796_220_000_000}  # fmt: skip
    assert isinstance(read_record(json.dumps(base)), SharedRecord)
    for field, value in (
        ("version", 1e15), ("version", 10**400), ("open_until", -5), ("open_until", 1e300),
        ("failures", 1e300), ("failures", -3), ("version", 1.5), ("now", -1),
    ):  # fmt: skip
        bad = read_record(json.dumps({**base, field: value}))
        assert isinstance(bad, BadRecord), (field, value)
        assert field in bad.problem
    held = read_record(json.dumps({**base, "open_until": -1}))
    assert isinstance(held, SharedRecord)
    assert held.retry_in == math.inf


@pytest.mark.asyncio
async def test_records_with_numbers_out_of_range_or_another_id_are_bad_records(
    redis_url: str, namespace: str
) -> None:
    """Numbers the scripts would mangle (a version past cjson's 14 digits, a window ending
    in 1e297 s, an ``open_until`` of -5 read as a hold, 1e300 failures) and a record whose
    ``id`` names another deployment: each is a bad record (skipped, counted, listed by
    ``status``), and the next transition of that deployment overwrites it and travels."""
    cases = {
        "huge-version": {"state": "closed", "version": "1e15"},
        "huge-until": {"state": "open", "open_until": "1e300"},
        "neg-until": {"state": "open", "open_until": "-5"},
        "huge-fail": {"state": "open", "open_in": 60_000, "failures": "1e300"},
        "neg-fail": {"state": "open", "open_in": 60_000, "failures": "-3"},
        "half-version": {"state": "open", "open_in": 60_000, "version": "1796220000000.5"},
        # below 1e14, but its next version (one more) would not be: years ahead is damage
        "near-limit-version": {"state": "closed", "version": "99999999999999"},
    }
    for deployment, fields in cases.items():
        await write_behind_the_channel(redis_url, namespace, id=deployment, **fields)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:  # filed under one id, naming another
        await write_behind_the_channel(
            redis_url, namespace, id="wrong-id", state="open", open_in=60_000
        )
        await client.hset(f"{{{namespace}}}:breaker:wrong-id", "id", "someone-else")
        # a key of another type where a record belongs
        await client.set(f"{{{namespace}}}:breaker:a-string", "not a record", ex=600)
        await client.zadd(f"{{{namespace}}}:breakers", {"a-string": 2**52})
    finally:
        await client.aclose()
    cases["a-string"] = {}
    snapshot = await fetch_snapshot(redis_url, namespace)
    assert snapshot.records == []
    assert {b.deployment: b.problem for b in snapshot.bad}.keys() == {*cases, "wrong-id"}
    assert "version" in {b.deployment: b.problem for b in snapshot.bad}["huge-version"]
    a = replica("A", redis_url, namespace)
    b = replica("B", redis_url, namespace)
    async with replicas(a, b):
        share_b = b.shared
        assert share_b is not None
        assert share_b.bad_records >= len(cases) + 1
        assert share_b.adopted == 0
        assert all(b.cache.is_healthy(d) for d in (*cases, "someone-else", "wrong-id"))
        for deployment in cases:
            trip(a, deployment)
        await eventually(lambda: all(not b.cache.is_healthy(d) for d in cases), "B sees them")
        a.cache.force_close("huge-version")
        await eventually(lambda: b.cache.is_healthy("huge-version"), "B sees the close")
        b.cache.force_open("huge-version", seconds=100.0)
        await eventually(lambda: not a.cache.is_healthy("huge-version"), "A sees B's opening")
        assert 90.0 < a.cache.retry_in("huge-version") <= 100.0
        assert b.cache.get_state("huge-fail").consecutive_failures == 2
    snapshot = await fetch_snapshot(redis_url, namespace)
    assert [x.deployment for x in snapshot.bad] == ["wrong-id"]
    assert all(r.version < 10**14 for r in snapshot.records)


@pytest.mark.asyncio
async def test_a_redis_restarted_empty_is_refilled_with_openings_already_shared(
    own_redis: RedisServer, namespace: str
) -> None:
    """A's opening was in Redis before it restarted empty: A writes it again, so a replica
    started afterwards refuses the deployment too (not only openings made during the outage)."""
    url = own_redis.url
    a = replica("A", url, namespace, redis_reconcile_sec=0.05)
    async with a:
        share = a.shared
        assert share is not None
        trip(a, "d1")
        a.cache.force_open("held", reason="maintenance")
        await eventually(lambda: share.pushed == 2, "both shared")
        own_redis.stop()
        await eventually(lambda: not share.connected, "A notices")
        own_redis.start()  # empty: no persistence
        await eventually(lambda: share.connected and share.pushed == 4, "A refills Redis")
        late = replica("late", url, namespace)
        async with late:
            assert not late.cache.is_healthy("d1")
            assert 55.0 < late.cache.retry_in("d1") <= 60.0
            assert late.cache.is_held("held")


@pytest.mark.asyncio
async def test_a_redis_restarted_empty_is_refilled_with_holds_and_openings_only_adopted(
    own_redis: RedisServer, namespace: str
) -> None:
    """An operator's hold and another replica's opening, only adopted by B and C, their
    makers gone: Redis restarts empty and they write both back (the opening with what is
    left of its window, each with the version it had), so a replica started later has
    them, ``status`` lists them and a close from the shell ends the hold; a close C made
    during the outage still ends the opening, whoever reconnects first."""
    url = own_redis.url
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)
    c = replica("C", url, namespace, redis_reconcile_sec=0.05)
    async with replicas(b, c):
        a = replica("A", url, namespace)
        async with a:
            trip(a, "timed")
            trip(a, "closed-meanwhile")
            await operate(url, namespace, "held", BreakerState.OPEN, replica="ops", create=True)
            await eventually(
                lambda: all(
                    x.cache.is_held("held")
                    and not x.cache.is_healthy("timed")
                    and not x.cache.is_healthy("closed-meanwhile")
                    for x in (b, c)
                ),
                "B and C adopt all three",
            )
        before = {r.deployment: r.version for r in (await fetch_snapshot(url, namespace)).records}
        share_b, share_c = b.shared, c.shared
        assert share_b is not None
        assert share_c is not None
        own_redis.stop()
        await eventually(lambda: not share_b.connected and not share_c.connected, "outage seen")
        c.cache.force_close("closed-meanwhile")  # cannot be shared yet
        own_redis.start()  # empty: no persistence
        await eventually(lambda: share_b.connected and share_c.connected, "both reconnect")
        refilled: dict[str, SharedRecord] = {}
        started = time.monotonic()
        while {"held", "timed", "closed-meanwhile"} - set(refilled):
            assert time.monotonic() - started < WAIT_SEC, f"not refilled: {sorted(refilled)}"
            await asyncio.sleep(0.05)
            refilled = {r.deployment: r for r in (await fetch_snapshot(url, namespace)).records}
        assert refilled["held"].retry_in == math.inf
        assert 50.0 < refilled["timed"].retry_in <= 60.0
        assert refilled["held"].version == before["held"]
        assert refilled["timed"].version == before["timed"]
        await eventually(lambda: b.cache.is_healthy("closed-meanwhile"), "C's close reaches B")
        late = replica("late", url, namespace)
        async with late:
            assert late.cache.is_held("held")
            assert 50.0 < late.cache.retry_in("timed") <= 60.0
            assert late.cache.is_healthy("closed-meanwhile")
        done = await operate(url, namespace, "held", BreakerState.CLOSED, replica="ops")
        assert done.written
        await eventually(lambda: b.cache.is_healthy("held") and c.cache.is_healthy("held"), "ended")


@pytest.mark.asyncio
async def test_reasons_read_from_redis_are_logged_as_one_redacted_bounded_line(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Any client of the Redis may write a record: a megabyte reason, a newline forging a
    log line, a key in the reason or the replica name are adopted and logged as one line,
    redacted, at most 200 characters, as ``status()`` shows them."""
    forged = "HTTP 503\nCRITICAL circuit breaker: forged line"
    cases = {
        "nl": (forged, "r"),
        "big": ("B" * 1_000_000, "r"),
        "key": ("upstream said Bearer abcdefghijkl and sk-proj-ABCDEFGHIJKLMNOP", "r"),
        "by": ("HTTP 503", "evil\nCRITICAL forged sk-proj-QRSTUVWXYZ012345"),
    }
    for deployment, (reason, by) in cases.items():
        await write_behind_the_channel(
            redis_url, namespace, id=deployment, state="open", open_in=60_000, reason=reason,
            replica=by,
        )  # fmt: skip
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    b = replica("B", redis_url, namespace)
    async with b:
        assert all(not b.cache.is_healthy(d) for d in cases)
        reasons = {d: b.cache.get_state(d).last_error for d in cases}
    assert reasons["nl"] == "HTTP 503"
    assert reasons["big"] is not None
    assert len(reasons["big"]) == 200
    assert reasons["key"] == "upstream said Bearer *** and ***"
    text = caplog.text
    assert "forged" not in text
    assert "sk-proj" not in text
    assert "abcdefghijkl" not in text
    assert max(len(line) for line in text.splitlines()) < 400
    assert "shared by replica evil:" in text


@pytest.mark.asyncio
async def test_breakers_adopted_from_others_stay_within_max_sdk_breakers(
    redis_url: str, namespace: str
) -> None:
    """Ids B does not configure (another replica's SDK breakers) count against B's
    max_sdk_breakers: B adopts 10 of A's 30 openings and never evicts an open one; once
    they close, a new opening takes a closed one's place; a configured deployment is
    adopted whatever the bound."""
    a = replica("A", redis_url, namespace)
    b = replica("B", redis_url, namespace, max_sdk_breakers=10, redis_reconcile_sec=0.1)
    b.add_deployments(
        [{"model_name": "g", "litellm_params": {"model": "openai/m"}, "model_info": {"id": "cfg"}}]
    )
    ids = [f"sdk-{n}" for n in range(30)]
    async with replicas(a, b):
        for deployment in ids:
            trip(a, deployment)
        await eventually(lambda: b.sdk_breakers.untracked >= 20, "B has no room for 20")
        assert sum(not b.cache.is_healthy(d) for d in ids) == 10
        assert len(b.sdk_breakers) == 10
        assert b.sdk_breakers.evicted == 0
        share_b = b.shared
        assert share_b is not None
        # Nor does B keep an entry for each one it had no room for (it kept all 30).
        assert len(share_b.tracked) <= 11, len(share_b.tracked)
        trip(a, "cfg")
        await eventually(lambda: not b.cache.is_healthy("cfg"), "a configured one is adopted")
        for deployment in ids:
            a.cache.force_close(deployment)
        trip(a, "late")
        await eventually(lambda: not b.cache.is_healthy("late"), "room made by a closed one")
        assert len(b.sdk_breakers) == 10
        assert len(b.cache) <= 11  # the 10 SDK ones and "cfg"


@pytest.mark.asyncio
async def test_a_growing_backoff_without_a_cap_stops_at_one_hour_and_sharing_goes_on(
    redis_url: str, namespace: str, clock: FakeClock
) -> None:
    """1,100 re-openings at multiplier 2 and no max: no OverflowError into the caller, the
    window stops at an hour, every push still fits Redis and later openings still travel."""
    a = replica("A", redis_url, namespace, clock=clock, backoff_multiplier=2.0)
    b = replica("B", redis_url, namespace)
    async with replicas(a, b):
        trip(a, "d1")
        for n in range(1100):
            clock.advance(a.cache.retry_in("d1") + 1.0)  # half-open: the trial fails
            a.cache.mark_unhealthy("d1", "trial failed: HTTP 503")
            if n % 50 == 0:
                await asyncio.sleep(0.005)  # let the writer push some of them
        assert a.cache.retry_in("d1") == 3600.0
        await eventually(lambda: 3500.0 < b.cache.retry_in("d1") <= 3600.0, "B has the hour")
        trip(a, "d2")
        await eventually(lambda: not b.cache.is_healthy("d2"), "a later opening still travels")
        assert a.shared is not None
        assert a.shared.errors == 0


@pytest.mark.asyncio
async def test_absurd_windows_are_refused_with_the_field_and_value(
    redis_url: str, namespace: str
) -> None:
    """force_open(seconds=1e12) and backoff settings past a year (or past a float's range:
    10**400) are refused by name; a window that was refused is never written, so sharing
    goes on for every breaker."""
    for setting, value in (
        ("unhealthy_backoff_sec", 1e12),
        ("max_backoff_sec", 1e12),
        ("backoff_multiplier", 1e6),
        ("redis_state_ttl_sec", 1e12),
    ):
        with pytest.raises(ConfigurationError) as bad:
            replica("A", redis_url, namespace, **{setting: value})
        assert bad.value.field == setting
        assert repr(value) in str(bad.value)
    # an int past a float's range: named the same way, not an OverflowError
    for setting in (
        "unhealthy_backoff_sec", "max_backoff_sec", "redis_state_ttl_sec", "redis_reconcile_sec",
    ):  # fmt: skip
        with pytest.raises(ConfigurationError) as bad:
            replica("A", redis_url, namespace, **{setting: 10**400})
        assert (bad.value.field, bad.value.value) == (setting, 10**400)
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        with pytest.raises(ConfigurationError) as bad:
            a.cache.force_open("d1", seconds=1e12)
        assert (bad.value.field, bad.value.value) == ("seconds", 1e12)
        with pytest.raises(ConfigurationError) as bad:
            a.cache.force_open("d1", seconds=10**400)
        assert (bad.value.field, bad.value.value) == ("seconds", 10**400)
        a.cache.force_open("d2", seconds=365 * 86_400.0)  # a year is allowed
        trip(a, "d3")
        await eventually(lambda: not b.cache.is_healthy("d3"), "sharing goes on")
        await eventually(lambda: b.cache.retry_in("d2") > 364 * 86_400.0, "the year's hold")
        assert a.shared is not None
        assert a.shared.errors == 0


def said_writes_work(caplog: pytest.LogCaptureFixture) -> bool:
    """The INFO line a replica logs once its session after an outage has reconciled.

    It comes after the reconcile's pushes: B may see the opening before A logs it."""
    return any("answers again and takes writes" in r.getMessage() for r in caplog.records)


async def _redis_refuses(
    url: str, a: CircuitBreaker, b: CircuitBreaker, refuse: list[str], allow: list[str]
) -> None:
    """Run the ``refuse`` command, trip a breaker on A, check it stays local while A
    retries, run ``allow`` and wait for the opening to reach B."""
    share_a = a.shared
    assert share_a is not None
    admin = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await admin.execute_command(*refuse)
        trip(a, "during")
        for _ in range(50):  # traffic meanwhile: decided locally, nothing raises
            assert not a.cache.try_acquire("during")
        await eventually(lambda: share_a.errors >= 3, "A retried several times")
        assert b.cache.is_healthy("during")  # nothing could be shared
        await admin.execute_command(*allow)
    finally:
        await admin.aclose()
    await eventually(lambda: not b.cache.is_healthy("during"), "shared once Redis takes writes")


@pytest.mark.asyncio
async def test_a_full_redis_is_an_outage_one_warning_then_a_reconcile(
    own_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """maxmemory reached under noeviction: Redis refuses every write (checked), the replica
    decides locally, warns once naming the refusal, and shares once writes work again."""
    url = own_redis.url
    a = replica("A", url, namespace)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)  # reads all along
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    admin = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        async with replicas(a, b):
            trip(a, "before")
            await eventually(lambda: not b.cache.is_healthy("before"), "shared before")
            assert await admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            await admin.config_set("maxmemory", 1)  # far below what Redis already uses
            with pytest.raises(aioredis.ResponseError, match="maxmemory"):
                await admin.set(f"{namespace}:probe-write", "x")  # writes really are refused
            await _redis_refuses(url, a, b, ["CONFIG", "SET", "maxmemory", "1"],
                                 ["CONFIG", "SET", "maxmemory", "0"])  # fmt: skip
            await eventually(lambda: said_writes_work(caplog), "A says Redis takes writes")
    finally:
        await admin.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    refused = [w for w in warnings if "Redis at" in w]
    assert len(refused) == 1, refused  # A's, once; B had nothing to write
    assert "refused" in refused[0]
    assert "OutOfMemoryError" in refused[0]
    assert "maxmemory" in refused[0]
    assert "unreachable" not in refused[0]
    assert said_writes_work(caplog)
    assert a.internal_errors == {}


@pytest.mark.asyncio
async def test_scripts_refused_are_an_outage_one_warning_then_a_reconcile(
    own_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that forbids EVAL (as some managed Redis plans do): one warning per replica
    naming the refusal, local decisions, and a reconcile once scripts are allowed again."""
    url = own_redis.url
    a = replica("A", url, namespace)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)  # its reads are refused too
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    async with replicas(a, b):
        trip(a, "before")
        await eventually(lambda: not b.cache.is_healthy("before"), "shared before")
        await _redis_refuses(url, a, b, ["ACL", "SETUSER", "default", "-@scripting"],
                             ["ACL", "SETUSER", "default", "+@scripting"])  # fmt: skip
        await eventually(lambda: said_writes_work(caplog), "A says Redis takes writes")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    refused = [w for w in warnings if "Redis at" in w]
    assert len(refused) == 2, refused  # one per replica: B cannot even read
    assert all("refused" in w and "NoPermissionError" in w for w in refused)
    assert not any("unreachable" in w for w in refused)
    assert said_writes_work(caplog)


async def acl_user(server: RedisServer, password: str, *rules: str) -> str:
    """Make ACL user ``cb`` with ``password`` and ``rules``; its URL on ``server``."""
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await admin.execute_command("ACL", "SETUSER", "cb", "on", f">{password}", *rules)
    finally:
        await admin.aclose()
    return server.url.replace("redis://", f"redis://cb:{password}@")


async def plant_open_records(url: str, namespace: str, count: int) -> None:
    """``count`` open records written as the script writes them, in pipelined batches
    (on a single server or a cluster, whose node holding the namespace's slot tells the time)."""
    client = await open_client(url)
    nodes = cluster_nodes(client)
    try:
        if nodes:
            seconds, micros = await client.time(
                target_nodes=client.get_node_from_key(SharedKeys(namespace).index)
            )
        else:
            seconds, micros = await client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        for start in range(0, count, 5000):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(start + 5000, count)):
                key = f"{{{namespace}}}:breaker:d-{n}"
                pipe.hset(key, mapping={
                    "id": f"d-{n}", "state": "open", "open_until": now + 300_000,
                    "failures": 2, "reason": "HTTP 503", "replica": "far", "version": now,
                    "changed": now, "group": "chat", "owner": "far", "model": "m", "host": "h",
                })  # fmt: skip
                pipe.expire(key, 900)
                pipe.zadd(f"{{{namespace}}}:breakers", {f"d-{n}": now + 900_000})
            await pipe.execute()
    finally:
        await close_client(client, nodes)


@pytest.mark.asyncio
async def test_a_namespace_of_60000_records_is_read_a_page_at_a_time(
    redis_url: str, namespace: str
) -> None:
    """60,000 shared breakers: in one script call the read outlasted the client's read
    timeout, so every reconcile failed for good and a new replica never synced. Read a page
    at a time, ``status`` lists every record and a new replica adopts every opening."""
    count = 60_000
    await plant_open_records(redis_url, namespace, count)
    snapshot = await fetch_snapshot(redis_url, namespace)
    assert len(snapshot.records) == count
    assert snapshot.bad == []
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:  # no script call reads more than about a page
        pages = [len(page) async for page in scan_pages(client, SharedKeys(namespace))]
    finally:
        await client.aclose()
    assert sum(pages) >= count
    assert len(pages) >= count // SCAN_PAGE // 2
    assert max(pages) <= 2 * SCAN_PAGE
    late = replica("late", redis_url, namespace, max_sdk_breakers=count)
    async with late:
        share = late.shared
        assert share is not None
        # Adopting 60,000 records outlasts start()'s wait for the first sync (2 s); it
        # ends with the first reconcile (before, every attempt failed with a timeout).
        took = await eventually(lambda: share.connected, "the first sync", within=120.0)
        print(f"first sync of {count} records: {took:.1f}s")
        assert share.errors == 0
        assert share.adopted == count
        assert not late.cache.is_healthy("d-0")
        assert not late.cache.is_healthy(f"d-{count - 1}")
        trip(late, "fresh")  # and sharing goes on: the next reconcile succeeds too
        await eventually(lambda: share.pushed == 1, "the new opening is shared")
    snapshot = await fetch_snapshot(redis_url, namespace)
    assert len(snapshot.records) == count + 1


@pytest.mark.asyncio
async def test_a_redis_user_without_channel_rights_shares_through_the_reconciles(
    own_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis 7 gives a new ACL user no pub/sub channels. Before, SUBSCRIBE's refusal ended
    every session just after it came up (about 8 reconnects a second, for good) and the
    scripts' PUBLISH failed every write. Now: one WARNING naming the grant, no reconnects,
    and changes (a replica's, an operator's) reach the others at their reconciles."""
    admin = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        await admin.execute_command("ACL", "SETUSER", "cb", "on", ">cb-pw-5e6f", "~*", "+@all")
        assert (await admin.execute_command("ACL", "GETUSER", "cb"))[
            "channels"
        ] == ""  # no channel at all, as Redis 7 makes a new user
    finally:
        await admin.aclose()
    url = own_redis.url.replace("redis://", "redis://cb:cb-pw-5e6f@")
    a = replica("A", url, namespace, redis_reconcile_sec=0.05)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    async with replicas(a, b):
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "A's opening reaches B")
        await operate(url, namespace, "d2", BreakerState.OPEN, replica="ops", create=True)
        await eventually(lambda: a.cache.is_held("d2") and b.cache.is_held("d2"), "the hold")
        b.cache.force_close("d1")
        await eventually(lambda: a.cache.is_healthy("d1"), "B's close reaches A")
        for share in (share_a, share_b):
            assert share.connected
            assert not share.following
            assert share.errors == 1  # the refused SUBSCRIBE, and no reconnect since
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    refused = [w for w in warnings if "Redis" in w]
    assert len(refused) == 2, warnings  # one per replica
    assert all(f"&{namespace}:transitions" in w and "NoPermissionError" in w for w in refused)
    assert "cb-pw-5e6f" not in caplog.text
    assert "answers again" not in caplog.text  # never went down


@pytest.mark.asyncio
async def test_a_fault_right_after_each_connect_backs_off(
    own_redis: RedisServer, namespace: str
) -> None:
    """A session that fails within a second of coming up does not start the back-off
    over. Here an admin kills the replica's subscriber connection every 20 ms for 3 s:
    each session comes up (its reconcile works) and dies at once. Before, each was
    followed by a 0.1 s wait (about 20 reconnects in those 3 s, for any such fault for
    as long as it lasts); now the waits double: 0.1, 0.2, 0.4 s..."""
    a = replica("A", own_redis.url, namespace)
    admin = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with a:
            share = a.shared
            assert share is not None
            assert share.following
            errors = share.errors
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < 3.0:
                await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                await asyncio.sleep(0.02)
            failed = share.errors - errors
            # Sessions ending within a second of each other at waits of 0.1 * 2**k s.
            assert 1 <= failed <= math.log2(elapsed / 0.1 + 1) + 1, (failed, elapsed)
            await eventually(lambda: share.following, "A follows once the kills stop", 30.0)
    finally:
        await admin.aclose()


@pytest.mark.asyncio
async def test_a_blip_right_after_an_outage_is_retried_at_once(
    own_redis: RedisServer, namespace: str
) -> None:
    """The back-off an outage grew (to 10 s) is not carried into the next one: after a
    session that held, Redis restarting a moment after the replica reconnected is
    retried after 0.1 s, as any new outage (it waited 10 s when a session shorter than a
    second kept the back-off)."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        if seconds != 3600:  # the reconcile loop's
            waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))  # the wanted wait is recorded, not waited

    share = RedisShare(
        ProviderHealthCache(), url=own_redis.url, replica="A", namespace=namespace,
        reconcile_sec=3600, sleep=sleep,
    )  # fmt: skip
    task = asyncio.create_task(share.run())
    try:
        await eventually(lambda: share.connected, "connected")
        await asyncio.sleep(STABLE_SESSION_SEC)  # a session that held, as in production
        own_redis.stop()
        await eventually(lambda: MAX_RECONNECT_SEC in waits, "the back-off grew to its cap", 60)
        own_redis.start()
        await eventually(lambda: share.connected, "back", 60)
        waits.clear()
        own_redis.stop()  # at once: the session lasted well under a second
        await eventually(lambda: bool(waits), "the blip is noticed")
        own_redis.start()
        await eventually(lambda: share.connected, "back again", 60)
        assert waits[0] == MIN_RECONNECT_SEC, waits
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _swallowing_proxy(port: int) -> asyncio.Server:
    """A TCP proxy to Redis that never answers once a connection sent SUBSCRIBE (as
    some proxies without pub/sub behave), and passes everything else through."""

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bool], *, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if up and b"SUBSCRIBE" in data.upper():
                    seen[0] = True
                if not up and seen[0]:
                    continue  # swallowed
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        seen = [False]
        for args in ((client_r, server_w, seen), (server_r, client_w, seen)):
            task = asyncio.create_task(pipe(*args, up=args[0] is client_r))
            PROXY_TASKS.add(task)
            task.add_done_callback(PROXY_TASKS.discard)

    return await asyncio.start_server(handle, "127.0.0.1", 0)


PROXY_TASKS: set[asyncio.Task[None]] = set()


@pytest.mark.asyncio
@pytest.mark.parametrize("refusal", ["renamed", "never answered"])
async def test_a_redis_that_will_not_take_subscribe_still_shares(
    own_redis: RedisServer, namespace: str, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SUBSCRIBE renamed away (hardened configs), or never answered (a proxy without
    pub/sub): before, nothing was ever written (the session failed before its first
    reconcile, for good); now sharing goes on through the reconciles, one WARNING."""
    url = own_redis.url
    proxy: asyncio.Server | None = None
    if refusal == "renamed":
        own_redis.stop()
        own_redis.extra_args = ["--rename-command", "SUBSCRIBE", ""]
        own_redis.start()
    else:
        proxy = await _swallowing_proxy(own_redis.port)
        url = f"redis://127.0.0.1:{proxy.sockets[0].getsockname()[1]}/0"
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    a = replica("A", url, namespace, redis_reconcile_sec=0.05)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)
    try:
        async with replicas(a, b):
            share_a = a.shared
            assert share_a is not None
            await eventually(lambda: share_a.connected, "A up", 30)
            trip(a, "d1")
            await eventually(lambda: not b.cache.is_healthy("d1"), "A's opening reaches B", 30)
            assert not share_a.following
            assert share_a.errors == 1
    finally:
        if proxy is not None:
            proxy.close()
    refused = [r.getMessage() for r in caplog.records if "did not take the subscription" in
               r.getMessage()]  # fmt: skip
    assert len(refused) == 2, refused  # one per replica
    assert "unreachable" not in caplog.text


@pytest.mark.asyncio
async def test_a_redis_user_without_publish_warns_once_and_shares_through_reconciles(
    own_redis: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Allowed to subscribe but not to publish: the scripts' writes still land, the
    refusal is counted and said once (before: silently, changes took a reconcile)."""
    url = await acl_user(own_redis, "cb-pw-1a2b", "~*", "&*", "+@all", "-publish")
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    a = replica("A", url, namespace)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)
    async with replicas(a, b):
        share_a = a.shared
        assert share_a is not None
        trip(a, "d1")
        trip(a, "d2")
        await eventually(lambda: not b.cache.is_healthy("d2"), "at B's reconcile")
        assert share_a.following
        assert share_a.counters.unpublished == 2
        assert share_a.errors == 0
    refused = [r.getMessage() for r in caplog.records if "not its message" in r.getMessage()]
    assert len(refused) == 1, refused
    assert "+publish" in refused[0]
    assert "cb-pw-1a2b" not in caplog.text


@pytest.mark.asyncio
async def test_the_status_route_reads_a_namespace_of_100000_records(
    redis_url: str, namespace: str
) -> None:
    """The route bounded the whole read by 2 s and answered "Redis did not answer" for a
    namespace that takes longer to read (3 s at 100,000 records) while Redis answered
    in a millisecond. Each read is bounded now, not their sum."""
    from litellm_circuit_breaker._http import status_document  # noqa: PLC0415

    count = 100_000
    await plant_open_records(redis_url, namespace, count)
    breaker = CircuitBreaker(probe_interval=None, redis_url=redis_url, redis_namespace=namespace)
    document = await status_document(breaker)
    shared = document["shared"]
    assert shared["error"] is None
    assert len(shared["records"]) == count


@pytest.mark.asyncio
async def test_an_unreadable_index_makes_no_write_storm(
    own_redis: RedisServer, namespace: str
) -> None:
    """With the index a key of another type, every opening looked "lost" to each
    reconcile and was written back, refused, every time (500 openings: 2,127 writes in
    5 s). What Redis holds is unknown then, not empty: a reconcile is one read."""
    a = replica("A", own_redis.url, namespace, redis_reconcile_sec=0.05)
    admin = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with a:
            share = a.shared
            assert share is not None
            for n in range(50):
                trip(a, f"d{n}")
            await eventually(lambda: share.pushed == 50, "all shared")
            index = f"{{{namespace}}}:breakers"
            await admin.delete(index)
            await admin.set(index, "written by hand")
            await eventually(lambda: share.bad_records >= 1, "the index is unreadable")
            await admin.config_resetstat()
            bad = share.bad_records
            await eventually(lambda: share.bad_records >= bad + 5, "five reconciles")
            stats = await admin.info("commandstats")
            evals = stats.get("cmdstat_eval", {}).get("calls", 0)
            assert evals <= share.bad_records - bad + 2, evals  # one read per reconcile
            assert share.connected
    finally:
        await admin.aclose()


@pytest.mark.asyncio
async def test_an_index_of_another_type_is_replaced_by_the_next_transition(
    own_redis: RedisServer, namespace: str
) -> None:
    """A string at the index hid every record from reconciles, `status` and new replicas,
    for good. The next transition replaces it, and the replicas' reconciles index again
    the openings they hold: a replica started afterwards sees them all."""
    a = replica("A", own_redis.url, namespace, redis_reconcile_sec=0.05)
    admin = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with a:
            share = a.shared
            assert share is not None
            for n in range(3):
                trip(a, f"d{n}")
            await eventually(lambda: share.pushed == 3, "all shared")
            index = f"{{{namespace}}}:breakers"
            await admin.delete(index)
            await admin.set(index, "written by hand")
            await eventually(lambda: share.bad_records >= 1, "the index is unreadable")
            trip(a, "after")
            await eventually(lambda: share.pushed == 4, "the next opening shared")
            assert await admin.type(index) == "zset"

            async def all_indexed() -> bool:
                snapshot = await fetch_snapshot(own_redis.url, namespace)
                return not snapshot.bad and {r.deployment for r in snapshot.records} == {
                    "d0",
                    "d1",
                    "d2",
                    "after",
                }

            for _ in range(500):  # 10 s at most, as eventually() waits
                if await all_indexed():
                    break
                await asyncio.sleep(0.02)
            assert await all_indexed()
            late = replica("C", own_redis.url, namespace)
            async with late:
                assert not any(late.cache.is_healthy(d) for d in ("d0", "d1", "d2", "after"))
    finally:
        await admin.aclose()


@pytest.mark.asyncio
async def test_a_redis_user_without_info_still_shares_and_reads_status(
    own_redis: RedisServer, namespace: str
) -> None:
    """`+@all -@dangerous`, a common hardening, takes INFO away: the paged read asked
    INFO for the server's id and failed, so every session died in its first reconcile
    and `status` failed. The read goes on without it (it then cannot notice a failover
    between pages)."""
    url = await acl_user(own_redis, "cb-pw-3c4d", "~*", "&*", "+@all", "-@dangerous")
    a = replica("A", url, namespace)
    b = replica("B", url, namespace, redis_reconcile_sec=0.05)
    async with replicas(a, b):
        share_b = b.shared
        assert share_b is not None
        trip(a, "d1")
        await eventually(lambda: not b.cache.is_healthy("d1"), "A's opening reaches B")
        await write_behind_the_channel(url, namespace, id="lost", state="open", open_in=30_000)
        await eventually(lambda: not b.cache.is_healthy("lost"), "B's reconcile reads it")
        assert share_b.connected
        assert share_b.following
        assert share_b.errors == 0
    snapshot = await fetch_snapshot(url, namespace)
    assert sorted(r.deployment for r in snapshot.records) == ["d1", "lost"]
