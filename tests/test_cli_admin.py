"""``litellm-circuit-breaker open`` / ``close``: an operator's decision, followed by the fleet.

Real breakers sharing a real redis-server; the command runs in a thread of its own
(it runs its own event loop, as from a shell) while the replicas run on the test's.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
import redis.asyncio as aioredis
import respx

from litellm_circuit_breaker import AllDeploymentsOpenError, BreakerState, CircuitBreaker
from litellm_circuit_breaker import _shared as shared
from litellm_circuit_breaker._cli import main
from litellm_circuit_breaker._records import SharedKeys
from litellm_circuit_breaker._shared import _TRANSITION_LUA, SharedRecord, fetch_records
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES, deployment, ok, router
from tests.redis_harness import RedisCluster, RedisServer
from tests.test_shared import eventually, replica, replicas, trip

SCRIPT = Path(sys.executable).parent / "litellm-circuit-breaker"
PASSWORD = "pw-never-shown-4417"


async def cli(*argv: str) -> int:
    """Run the command as a shell would: in its own thread, with its own event loop."""
    return await asyncio.to_thread(main, list(argv))


def where(url: str, namespace: str) -> tuple[str, ...]:
    return ("--redis-url", url, "--namespace", namespace)


async def records(url: str, namespace: str) -> dict[str, SharedRecord]:
    return {r.deployment: r for r in await fetch_records(url, namespace)}


async def known_and_closed(cb: CircuitBreaker, url: str, namespace: str, deployment: str) -> None:
    """An outage and its recovery, shared: the namespace now holds a closed record for it."""
    trip(cb, deployment)
    cb.cache.mark_healthy(deployment)
    for _ in range(2000):
        record = (await records(url, namespace)).get(deployment)
        if record is not None and record.state is BreakerState.CLOSED:
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"Redis never held {deployment} closed")


def refusing(*fleet: CircuitBreaker, deployment: str) -> Callable[[], bool]:
    return lambda: all(not cb.cache.is_healthy(deployment) for cb in fleet)


def accepting(*fleet: CircuitBreaker, deployment: str) -> Callable[[], bool]:
    return lambda: all(cb.cache.breaker_state(deployment) is BreakerState.CLOSED for cb in fleet)


@pytest.mark.asyncio
async def test_open_holds_a_deployment_open_on_every_replica_until_close(
    redis_url: str, namespace: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`open ID`: both replicas refuse it, held (no success or time ends it); `close ID`:
    both accept it again."""
    a = replica("A", redis_url, namespace, clock=clock)
    b = replica("B", redis_url, namespace, clock=clock)
    async with replicas(a, b):
        await known_and_closed(a, redis_url, namespace, "dep-a")
        assert (
            await cli("open", "dep-a", "--reason", "maintenance", *where(redis_url, namespace)) == 0
        )
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        assert "opened dep-a: held open until 'litellm-circuit-breaker close dep-a'" in out
        assert f"2 processes following namespace {namespace}" in out
        await eventually(refusing(a, b, deployment="dep-a"), "both refuse dep-a")
        for cb in (a, b):
            assert cb.cache.is_held("dep-a")
            assert not cb.cache.try_acquire("dep-a")
            assert cb.cache.get_state("dep-a").last_error == "maintenance"  # type: ignore[union-attr]
        b.cache.mark_healthy("dep-a")  # a success does not end an operator's hold
        a.cache.mark_probe_passed("dep-a")  # nor does a probe
        clock.advance(30 * 86_400.0)  # nor does a month
        assert not a.cache.is_healthy("dep-a")
        assert not b.cache.is_healthy("dep-a")
        assert await cli("status", *where(redis_url, namespace), "--json") == 1
        row = json.loads(capsys.readouterr().out)[0]
        assert (row["deployment"], row["state"], row["held"]) == ("dep-a", "open", True)
        assert row["changed_by"].startswith("cli@")
        assert row["last_error"] == "maintenance"

        assert await cli("close", "dep-a", *where(redis_url, namespace)) == 0
        out = capsys.readouterr().out
        assert out.startswith("closed dep-a; 2 processes following")
        await eventually(accepting(a, b, deployment="dep-a"), "both accept dep-a")
        for cb in (a, b):
            assert not cb.cache.is_held("dep-a")
            assert cb.cache.try_acquire("dep-a")
            assert cb.cache.get_state("dep-a").consecutive_failures == 0  # type: ignore[union-attr]


async def ask(r: litellm.Router, group: str) -> str:
    response = await r.acompletion(model=group, messages=MESSAGES)
    return str(response.choices[0].message.content)


@pytest.mark.asyncio
async def test_a_router_sends_nothing_to_a_deployment_held_open_from_the_shell(
    redis_url: str,
    namespace: str,
    litellm_callbacks: None,
    mock: respx.MockRouter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through a real Router: held from the shell, the deployment gets no call (its
    sibling serves them all; alone, it is refused); closed, it serves again."""
    held = mock.post("http://held.test/v1/chat/completions").mock(return_value=ok("held"))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    cb = replica("proxy", redis_url, namespace, when_all_open="fail_fast")
    litellm.callbacks.append(cb)
    pair = router(deployment("chat", "held", "held.test"), deployment("chat", "live", "live.test"))
    alone = router(deployment("solo", "held", "held.test"))
    async with cb:
        assert await ask(alone, "solo") == "held"  # it never failed: no record in Redis
        assert await cli("open", "held", "--create", *where(redis_url, namespace)) == 0
        await eventually(lambda: not cb.cache.is_healthy("held"), "the replica follows")
        assert [await ask(pair, "chat") for _ in range(20)] == ["live"] * 20
        with pytest.raises(AllDeploymentsOpenError):
            await ask(alone, "solo")
        assert held.call_count == 1  # only the call before the open
        assert await cli("close", "held", *where(redis_url, namespace)) == 0
        await eventually(lambda: cb.cache.is_healthy("held"), "the replica follows the close")
        assert await ask(alone, "solo") == "held"
        assert held.call_count == 2


@pytest.mark.asyncio
async def test_open_for_seconds_ends_on_the_replicas_own_clock(
    redis_url: str, namespace: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """`open ID --for 300`: refused everywhere for 300 s, not held; then one trial decides."""
    a = replica("A", redis_url, namespace, clock=clock)
    b = replica("B", redis_url, namespace, clock=clock)
    async with replicas(a, b):
        await known_and_closed(a, redis_url, namespace, "dep-a")
        assert await cli("open", "dep-a", "--for", "300", *where(redis_url, namespace)) == 0
        assert capsys.readouterr().out.startswith("opened dep-a for 300s; 2 processes")
        await eventually(refusing(a, b, deployment="dep-a"), "both refuse dep-a")
        for cb in (a, b):
            assert not cb.cache.is_held("dep-a")
            assert 290.0 < cb.cache.retry_in("dep-a") <= 300.0
        clock.advance(290.0)
        assert not a.cache.is_healthy("dep-a")
        assert not b.cache.is_healthy("dep-a")
        clock.advance(10.0)
        assert a.cache.breaker_state("dep-a") is BreakerState.HALF_OPEN
        assert b.cache.breaker_state("dep-a") is BreakerState.HALF_OPEN
        assert a.cache.try_acquire("dep-a")  # A's trial
        a.cache.mark_healthy("dep-a")
        await eventually(lambda: b.cache.breaker_state("dep-a") is BreakerState.CLOSED, "closed")


@pytest.mark.asyncio
async def test_a_timed_open_is_an_ordinary_opening_a_passing_probe_may_end(
    redis_url: str, namespace: str, clock: FakeClock
) -> None:
    """As with force_open(seconds=): a probe passing on one replica half-opens it for all."""
    a = replica("A", redis_url, namespace, clock=clock)
    b = replica("B", redis_url, namespace, clock=clock)
    async with replicas(a, b):
        await known_and_closed(a, redis_url, namespace, "dep-a")
        assert await cli("open", "dep-a", "--for", "300", *where(redis_url, namespace)) == 0
        await eventually(refusing(a, b, deployment="dep-a"), "both refuse dep-a")
        a.cache.mark_probe_passed("dep-a")
        await eventually(
            lambda: b.cache.breaker_state("dep-a") is BreakerState.HALF_OPEN, "B half-open"
        )


@pytest.mark.asyncio
async def test_an_unknown_id_is_refused_naming_it_and_where_the_known_ones_are(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo writes nothing: exit 2, the id, the known ids, `status` and --create named."""
    a = replica("A", redis_url, namespace)
    async with a:
        await known_and_closed(a, redis_url, namespace, "dep-a")
        for command in ("open", "close"):
            assert await cli(command, "dep-typo", *where(redis_url, namespace)) == 2
            captured = capsys.readouterr()
            assert captured.out == ""
            for words in (
                "'dep-typo'",
                f"namespace {namespace}",
                "known: dep-a",
                "status",
                "--create",
            ):
                assert words in captured.err, captured.err
            assert await cli(command, "dep-typo", "--json", *where(redis_url, namespace)) == 2
            assert "'dep-typo'" in json.loads(capsys.readouterr().out)["error"]
        assert set(await records(redis_url, namespace)) == {"dep-a"}
        assert a.cache.is_healthy("dep-typo")


@pytest.mark.asyncio
async def test_create_opens_a_deployment_that_never_failed_and_keeps_the_hold_in_redis(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A healthy deployment has no record: --create holds it open everywhere, and the hold
    outlives the replicas' record TTL in Redis (no replica would write it back)."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        assert await cli("open", "fresh", "--create", *where(redis_url, namespace)) == 0
        assert "opened fresh (new record): held open" in capsys.readouterr().out
        await eventually(refusing(a, b, deployment="fresh"), "both refuse fresh")
        assert a.cache.is_held("fresh")
        assert b.cache.is_held("fresh")
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            ttl_ms = await client.pttl(f"{{{namespace}}}:breaker:fresh")
        finally:
            await client.aclose()
        assert ttl_ms > 300 * 86_400 * 1000
        # A replica started afterwards begins with the hold.
        late = replica("late", redis_url, namespace)
        async with late:
            assert late.cache.is_held("fresh")


@pytest.mark.asyncio
async def test_open_never_shortens_a_longer_opening_or_a_hold(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--for 60 on a 600 s opening, or on a hold, leaves it as it is and says so (exit 0)."""
    a = replica("A", redis_url, namespace, unhealthy_backoff_sec=600.0)
    async with a:
        trip(a, "long")
        await eventually(lambda: a.shared is not None and a.shared.pushed >= 1, "shared")
        assert await cli("open", "long", "--for", "60", "--json", *where(redis_url, namespace)) == 0
        said = json.loads(capsys.readouterr().out)
        assert (said["changed"], said["state"], said["held"]) == (False, "open", False)
        assert said["retry_in"] > 590
        assert await cli("open", "long", "--for", "60", *where(redis_url, namespace)) == 0
        assert "long was already open for" in capsys.readouterr().out
        assert a.cache.retry_in("long") > 590

        assert await cli("open", "long", *where(redis_url, namespace)) == 0
        capsys.readouterr()
        await eventually(lambda: a.cache.is_held("long"), "held")
        assert await cli("open", "long", "--for", "60", *where(redis_url, namespace)) == 0
        assert "long was already held open until close; nothing changed" in capsys.readouterr().out
        assert await cli("close", "long", *where(redis_url, namespace)) == 0
        assert await cli("open", "long", "--for", "60", *where(redis_url, namespace)) == 0
        assert "opened long for 60s" in capsys.readouterr().out.splitlines()[1]  # shortened
        await eventually(lambda: 0 < a.cache.retry_in("long") <= 60, "A opened for 60 s")
        assert await cli("close", "long", *where(redis_url, namespace)) == 0
        assert await cli("close", "long", *where(redis_url, namespace)) == 0
        assert "long was already closed; nothing changed" in capsys.readouterr().out.splitlines()[1]


@pytest.mark.asyncio
async def test_json_says_what_was_done_in_the_keys_status_uses(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one object, snake_case keys shared with `status --json`, followers counted."""
    a, b = replica("A", redis_url, namespace), replica("B", redis_url, namespace)
    async with replicas(a, b):
        assert await cli("open", "dep", "--create", "--json", *where(redis_url, namespace)) == 0
        opened = json.loads(capsys.readouterr().out)
        assert opened == {
            "action": "open",
            "deployment": "dep",
            "changed": True,
            "created": True,
            "state": "open",
            "held": True,
            "retry_in": None,
            "model_group": None,
            "changed_by": opened["changed_by"],
            "followers": 2,
            "namespace": namespace,
        }
        assert opened["changed_by"].startswith("cli@")
        assert await cli("close", "dep", "--json", *where(redis_url, namespace)) == 0
        closed = json.loads(capsys.readouterr().out)
        assert (closed["action"], closed["changed"], closed["created"]) == ("close", True, False)
        assert (closed["state"], closed["held"], closed["retry_in"]) == ("closed", False, 0)
    assert await cli("close", "dep", "--json", *where(redis_url, namespace)) == 0
    assert json.loads(capsys.readouterr().out)["followers"] == 0  # nobody subscribed now


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "31536001", "five"])
def test_a_bad_for_is_refused_naming_the_flag_and_value(
    value: str, redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative, zero, NaN, infinite, past a year, not a number: exit 2, nothing written."""
    argv = ["open", "dep", "--create", f"--for={value}", *where(redis_url, namespace)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--for={value!r} is invalid" in err
    assert "31536000" in err
    assert asyncio.run(records(redis_url, namespace)) == {}


def test_bad_ids_namespaces_and_reasons_name_what_is_wrong(
    redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty id, a namespace with a space or a brace, a reason of many lines: exit 2, named."""
    for argv, words in [
        (["open", " ", "--create"], "ID=' '"),
        (["open", "dep", "--create", "--reason", "two\nlines"], "--reason="),
        (["open", "dep", "--create", "--reason", "x" * 201], "--reason="),
        (["close", "dep", "--namespace", "a b"], "--namespace='a b'"),
        (["open", "dep", "--create", "--namespace", "}fleet"], "--namespace='}fleet'"),
        (["status", "--namespace", "{x}"], "--namespace='{x}'"),
    ]:
        full = [*argv, "--redis-url", redis_url]
        if "--namespace" not in argv:
            full += ["--namespace", namespace]
        assert main(full) == 2
        assert words in capsys.readouterr().err
    assert asyncio.run(records(redis_url, namespace)) == {}


def test_redis_down_is_one_clear_line_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens: exit 2, the host named, no password, no traceback; --json too."""
    silent = RedisServer(tmp_path)  # never started
    url = f"redis://:{PASSWORD}@127.0.0.1:{silent.port}/0"
    for argv in (["open", "dep", "--for", "60"], ["close", "dep"]):
        assert main([*argv, "--redis-url", url]) == 2
        captured = capsys.readouterr()
        assert captured.err.strip() == (
            f"litellm-circuit-breaker: error: Redis at redis://127.0.0.1:{silent.port}/0 "
            "did not answer: ConnectionError"
        )
        assert main([*argv, "--redis-url", url, "--json"]) == 2
        captured = capsys.readouterr()
        assert "did not answer" in json.loads(captured.out)["error"]
        assert PASSWORD not in captured.out + captured.err
    assert main(["open", "dep", "--redis-url", f"http://:{PASSWORD}@x"]) == 2
    err = capsys.readouterr().err
    assert "redis_url" in err
    assert PASSWORD not in err


def test_a_redis_that_refuses_scripts_is_named_as_refusing(
    own_redis: RedisServer, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ACL without EVAL: exit 2 and Redis's refusal said as it is, not "did not answer"."""
    import redis  # noqa: PLC0415 - the sync client, to set the ACL once

    with redis.Redis(port=own_redis.port) as admin:
        admin.execute_command("ACL", "SETUSER", "default", "-@scripting")
    assert main(["open", "dep", "--create", *where(own_redis.url, namespace)]) == 2
    err = capsys.readouterr().err
    assert f"Redis at {own_redis.url} refused the command (NoPermissionError: " in err
    assert err.count("\n") == 1


def test_the_password_in_the_url_is_never_printed_when_it_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Redis that needs a password: open and close work, and no output shows it."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        import redis  # noqa: PLC0415 - the sync client, to set the password once

        with redis.Redis(port=server.port) as admin:
            admin.config_set("requirepass", PASSWORD)
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        assert main(["open", "dep", "--create", "--redis-url", url]) == 0
        assert main(["close", "dep", "--redis-url", url]) == 0
        assert main(["open", "nope", "--redis-url", url]) == 2
        captured = capsys.readouterr()
        assert f"at redis://127.0.0.1:{server.port}/0" in captured.out
        assert f"at redis://127.0.0.1:{server.port}/0" in captured.err
        assert PASSWORD not in captured.out + captured.err
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_a_close_that_lost_to_an_opening_made_meanwhile_exits_one(
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A replica re-opens between the close's read and its write: Redis keeps the newer
    opening, and the command says so (exit 1) instead of claiming it closed."""
    assert await cli("open", "dep", "--create", "--for", "60", *where(redis_url, namespace)) == 0
    capsys.readouterr()
    real_open = shared.open_client

    async def opened_between_read_and_write(url: str, **kwargs: Any) -> Any:
        client = await real_open(url, **kwargs)
        real_eval = client.eval
        calls = 0

        async def eval_(script: str, *args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # the close read the record and is about to write
                await real_eval(
                    _TRANSITION_LUA, 2, f"{{{namespace}}}:breaker:dep", f"{{{namespace}}}:breakers",
                    "dep", "open", 120_000, 2, "HTTP 503", "replica-z", 0, 60_000,
                    f"{namespace}:transitions", "", "z-token",
                )  # fmt: skip
            return await real_eval(script, *args)

        client.eval = eval_
        return client

    monkeypatch.setattr(shared, "open_client", opened_between_read_and_write)
    assert await cli("close", "dep", *where(redis_url, namespace)) == 1
    out = capsys.readouterr().out
    assert "dep NOT closed: replica-z changed it meanwhile (now open)" in out
    record = (await records(redis_url, namespace))["dep"]
    assert record.state is BreakerState.OPEN
    assert record.replica == "replica-z"


def test_the_installed_command_opens_and_closes_from_the_environment(
    redis_url: str, namespace: str
) -> None:
    """The console script, with CIRCUIT_BREAKER_REDIS_URL/_NAMESPACE and no flag."""
    assert SCRIPT.exists(), f"run pip install -e . to create {SCRIPT}"
    env = {
        **os.environ,
        "CIRCUIT_BREAKER_REDIS_URL": redis_url,
        "CIRCUIT_BREAKER_REDIS_NAMESPACE": namespace,
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own console script
            [str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    done = run("open", "dep-sh", "--create", "--for", "120", "--json")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert (said["deployment"], said["state"], said["changed"]) == ("dep-sh", "open", True)
    assert 110 < said["retry_in"] <= 120
    record = asyncio.run(records(redis_url, namespace))["dep-sh"]
    assert record.state is BreakerState.OPEN
    assert not math.isinf(record.retry_in)
    done = run("close", "dep-sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("closed dep-sh; no process follows")
    assert "Traceback" not in done.stderr
    assert asyncio.run(records(redis_url, namespace))["dep-sh"].state is BreakerState.CLOSED
    done = run("close", "dep-missing")
    assert done.returncode == 2
    assert "'dep-missing'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """Three primaries and three replicas on loopback, made with ``redis-cli --cluster``."""
    made = RedisCluster(tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.mark.asyncio
async def test_open_and_close_reach_replicas_through_a_redis_cluster(
    cluster: RedisCluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a node that does not hold the namespace's slot: both replicas follow, and the
    processes following are counted where they listen."""
    holder = cluster.primary_of(SharedKeys(namespace).index)
    url = next(n for n in cluster.nodes if n is not holder).url
    a, b = replica("A", url, namespace), replica("B", url, namespace)
    async with replicas(a, b):
        share_a, share_b = a.shared, b.shared
        assert share_a is not None
        assert share_b is not None
        await eventually(lambda: share_a.connected and share_b.connected, "both on the cluster")
        assert await cli("open", "dep", "--create", "--json", *where(url, namespace)) == 0
        assert json.loads(capsys.readouterr().out)["followers"] == 2
        await eventually(lambda: a.cache.is_held("dep") and b.cache.is_held("dep"), "held")
        assert await cli("close", "dep", *where(url, namespace)) == 0
        assert "closed dep; 2 processes following" in capsys.readouterr().out
        await eventually(accepting(a, b, deployment="dep"), "both accept dep")


@pytest.mark.asyncio
async def test_open_and_close_by_a_user_without_pubsub_rights_succeed_and_say_so(
    own_redis: RedisServer, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A least-privilege user may EVAL and publish but not run PUBSUB NUMSUB: `open`
    wrote the hold, then exited 2 saying Redis refused the command. The change is made,
    so it succeeds, and says it could not count who follows."""
    admin = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "ops", "on", f">{PASSWORD}", "~*", "&*", "+@all", "-pubsub"
        )
    finally:
        await admin.aclose()
    url = own_redis.url.replace("redis://", f"redis://ops:{PASSWORD}@")
    capsys.readouterr()
    opened = await cli("open", "dep", "--create", "--reason", "maintenance", *where(url, namespace))
    assert opened == 0
    out = capsys.readouterr().out
    assert "refused to count who follows" in out
    assert PASSWORD not in out
    assert (await records(own_redis.url, namespace))["dep"].state is BreakerState.OPEN
    assert await cli("close", "dep", *where(url, namespace), "--json") == 0
    assert json.loads(capsys.readouterr().out)["followers"] is None
    assert (await records(own_redis.url, namespace))["dep"].state is BreakerState.CLOSED
