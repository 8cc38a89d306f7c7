"""No secret in any output: a corpus of real key shapes and URL passwords, end to end.

Direct SDK calls through the real ``litellm.acompletion`` (respx in place of the
providers, which echo the secrets back in their errors) open breakers shared
through a real ``redis-server``; then every output is searched for every secret:
the plugin's log lines, the error a refused call raises, ``status()``, the
``status`` CLI (table and JSON), what the proxy's ``GET /circuit-breaker/status``
answers (local rows and the shared records), the Prometheus exposition, and
every Redis key and record.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import litellm
import pytest
import redis.asyncio as aioredis
import respx
from prometheus_client import CollectorRegistry, generate_latest

from litellm_circuit_breaker import BreakerState, CircuitBreaker, CircuitOpenError
from litellm_circuit_breaker._cli import main
from litellm_circuit_breaker._http import status_document
from litellm_circuit_breaker.metrics import BreakerMetrics
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES
from tests.secret_corpus import SECRET_CORPUS
from tests.test_shared import eventually

# Passwords of api_bases the calls use: one holding "@", one written without a scheme.
AT_PASSWORD = "p@ss@word-71"
SCHEMELESS_PASSWORD = "hunter2-schemeless"


def per_call_key(n: int) -> str:
    """A key of no known shape, passed per call: only knowing it can mask it."""
    return f"tenant-{n:02d}-7f3a9b2c4d5e"


def api_base(n: int) -> str:
    if n == 0:
        return f"http://admin:{AT_PASSWORD}@h{n}.test/v1"
    return f"http://h{n}.test/v1"


async def _open_every_endpoint(cb: CircuitBreaker, mock: respx.MockRouter) -> CircuitOpenError:
    """Two failing calls per endpoint, each echoing its corpus text and its own key."""
    for n, (text, _) in enumerate(SECRET_CORPUS):
        body = {"error": {"message": f"{text} (request key {per_call_key(n)})"}}
        mock.route(host=f"h{n}.test").mock(return_value=httpx.Response(503, json=body))
        for _ in range(2):
            with pytest.raises(litellm.ServiceUnavailableError):
                await litellm.acompletion(
                    model="openai/m",
                    api_base=api_base(n),
                    api_key=per_call_key(n),
                    messages=MESSAGES,
                    max_retries=0,
                )
    # No scheme: LiteLLM's client reads "admin" as one, and its error echoes the rest.
    for _ in range(2):
        with pytest.raises(litellm.InternalServerError):
            await litellm.acompletion(
                model="openai/m",
                api_base=f"admin:{SCHEMELESS_PASSWORD}@schemeless.test/v1",
                api_key=per_call_key(99),
                messages=MESSAGES,
                max_retries=0,
            )
    with pytest.raises(CircuitOpenError) as refused:
        await litellm.acompletion(
            model="openai/m",
            api_base=api_base(0),
            api_key=per_call_key(0),
            messages=MESSAGES,
            max_retries=0,
        )
    return refused.value


def _secrets() -> list[str]:
    found = [secret for _, secret in SECRET_CORPUS]
    found += [per_call_key(n) for n in (*range(len(SECRET_CORPUS)), 99)]
    found += [AT_PASSWORD, "ss@word-71", SCHEMELESS_PASSWORD]
    return found


async def _redis_dump(url: str, namespace: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        dump: dict[str, Any] = {}
        # Every key of the namespace, hash tag or not ("{ns}:breaker:ID" since Cluster).
        async for key in client.scan_iter(match=f"*{namespace}*"):
            kind = await client.type(key)
            if kind == "hash":
                dump[key] = await client.hgetall(key)
            elif kind == "zset":
                dump[key] = await client.zrange(key, 0, -1)
            else:
                dump[key] = await client.get(key)
        return json.dumps(dump)
    finally:
        await client.aclose()


async def _outputs_of_a_fleet_with_secrets(
    cb: CircuitBreaker, mock: respx.MockRouter, redis_url: str, namespace: str
) -> tuple[CircuitOpenError, str, dict[str, Any]]:
    async with cb:
        refused = await _open_every_endpoint(cb, mock)
        opened = len(SECRET_CORPUS) + 1
        assert sum(r.state is BreakerState.OPEN for r in cb.status()) == opened
        await eventually(lambda: cb.shared is not None and cb.shared.pushed >= opened, "shared")
        return refused, await _redis_dump(redis_url, namespace), await status_document(cb)


@pytest.mark.usefixtures("litellm_callbacks")
def test_no_secret_of_the_corpus_reaches_any_output(
    *,
    mock: respx.MockRouter,
    clock: FakeClock,
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Logs, the refusal, status(), the status CLI, metrics and Redis hold none of them."""
    caplog.set_level(logging.DEBUG, logger="litellm_circuit_breaker")
    cb = CircuitBreaker(
        clock=clock, probe_interval=None, redis_url=redis_url, redis_namespace=namespace
    )
    litellm.callbacks.append(cb)
    registry = CollectorRegistry()
    metrics = BreakerMetrics(cb, registry=registry)
    refused, redis_dump, route = asyncio.run(
        _outputs_of_a_fleet_with_secrets(cb, mock, redis_url, namespace)
    )
    opened = len(SECRET_CORPUS) + 1
    capsys.readouterr()
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace]) == 1
    assert main(["status", "--redis-url", redis_url, "--namespace", namespace, "--json"]) == 1
    cli = capsys.readouterr().out
    outputs = {
        "log lines": "\n".join(
            r.getMessage() for r in caplog.records if r.name == "litellm_circuit_breaker"
        ),
        "the refusal": f"{refused} {refused!r} {refused.deployment}",
        "status()": repr(cb.status()),
        "the status CLI": cli,
        "the status route": json.dumps(route),
        "metrics": generate_latest(registry).decode(),
        "Redis": redis_dump,
    }
    metrics.detach()
    for where, text in outputs.items():
        for secret in _secrets():
            assert secret not in text, f"{secret!r} reached {where}"
    assert "opened" in outputs["log lines"]  # the transitions were logged, and shared:
    assert outputs["Redis"].count(":breaker:openai/m@") == opened
    assert f"{opened} shared breakers" in cli
    assert len(route["deployments"]) == len(route["shared"]["records"]) == opened
    # Breaker ids (in Redis keys, records, the CLI and the refusal) name no endpoint.
    for breaker_id in [row.deployment for row in cb.status()] + [refused.deployment]:
        assert ".test" not in breaker_id
        assert "://" not in breaker_id


@pytest.mark.asyncio
async def test_status_shows_an_sdk_breakers_endpoint_without_its_password(
    mock: respx.MockRouter, breaker: CircuitBreaker
) -> None:
    """The id is a digest; the endpoint column names the host, never the user-info."""
    mock.route(host="h0.test").mock(return_value=httpx.Response(503, json={}))
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await litellm.acompletion(
                model="openai/m",
                api_base=api_base(0),
                api_key=per_call_key(0),
                messages=MESSAGES,
                max_retries=0,
            )
    (row,) = breaker.status()
    assert row.state is BreakerState.OPEN
    assert row.endpoint == "http://h0.test/v1"
    assert row.deployment.startswith("openai/m@")
    assert "h0.test" not in row.deployment


def test_no_secret_of_the_corpus_reaches_redis_or_status_through_the_operator_or_others(
    *, redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`open --reason` with a secret in it stored it in Redis verbatim, and `status`
    printed it, as it printed a key in a record another client wrote (its reason or its
    replica name). Both are redacted now: what Redis holds from the shell, and every
    text `status` shows from a record (table, `--wide`, `--json`)."""
    for n, (text, _) in enumerate(SECRET_CORPUS):
        argv = ["open", f"op-{n}", "--create", "--reason", text[:200]]
        assert main([*argv, "--redis-url", redis_url, "--namespace", namespace]) == 0
    asyncio.run(_write_foreign_records(redis_url, namespace))
    capsys.readouterr()
    for extra in ([], ["--wide"], ["--json"]):
        assert main(["status", "--redis-url", redis_url, "--namespace", namespace, *extra]) == 1
    cli = capsys.readouterr().out
    assert "op-0" in cli
    assert "foreign-0" in cli
    for n, (_, secret) in enumerate(SECRET_CORPUS):
        assert secret not in cli, f"{secret!r} reached the status CLI"
        reason = asyncio.run(_field(redis_url, f"{{{namespace}}}:breaker:op-{n}", "reason"))
        assert secret not in (reason or ""), f"{secret!r} reached Redis from `open --reason`"


async def _field(url: str, key: str, field: str) -> str | None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        value: str | None = await client.hget(key, field)
        return value
    finally:
        await client.aclose()


async def _write_foreign_records(url: str, namespace: str) -> None:
    """Records written by another client, each with a corpus text as its reason and its
    replica name, as the script writes them (valid fields otherwise)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        seconds, micros = await client.time()
        now = seconds * 1000 + micros // 1000
        for n, (text, _) in enumerate(SECRET_CORPUS):
            deployment = f"foreign-{n}"
            key = f"{{{namespace}}}:breaker:{deployment}"
            await client.hset(key, mapping={
                "id": deployment, "state": "open", "open_until": now + 60_000, "failures": 2,
                "reason": text, "replica": text, "version": now, "changed": now, "group": "g",
            })  # fmt: skip
            await client.expire(key, 600)
            await client.zadd(f"{{{namespace}}}:breakers", {deployment: now + 600_000})
    finally:
        await client.aclose()
