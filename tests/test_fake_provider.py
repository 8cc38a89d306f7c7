"""The fake provider: each mode, runtime switching, counters, streams, threads and shutdown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest

from litellm_circuit_breaker.testing import FakeClock, _fake_provider
from litellm_circuit_breaker.testing._fake_provider import FakeProvider, Mode, RecordedCall

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
# Long enough that only a hang or a dropped connection can end a request;
# short read timeouts below are the only ones a test waits out.
PATIENT = httpx.Timeout(10.0)
IMPATIENT = httpx.Timeout(10.0, read=0.2)
IMPATIENT_OPENAI = openai.Timeout(10.0, read=0.2)  # openai brings its own HTTP client


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a readiness wait, not a time window)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


def wait_until(condition: Callable[[], bool]) -> None:
    """The same as :func:`until`, for sync code."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def asyncio_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What asyncio logged at ERROR, after collecting garbage so leaked tasks speak up."""
    gc.collect()
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= 40]


async def data_lines(response: httpx.Response) -> list[str]:
    return [line async for line in response.aiter_lines() if line.startswith("data: ")]


async def stream_into(client: httpx.AsyncClient, received: list[str]) -> None:
    """Stream a chat call, keeping its data lines as they arrive, even if the stream breaks."""
    async with client.stream("POST", "/chat/completions", json=STREAM) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                received.append(line)  # noqa: PERF401 - keeps what arrived before a break


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split(" ")[1]), headers, body


def test_module_exports_exactly_its_public_names() -> None:
    """``__all__`` is the public surface of the module."""
    assert sorted(_fake_provider.__all__) == ["Endpoint", "FakeProvider", "Mode", "RecordedCall"]


@pytest.mark.asyncio
async def test_healthy_chat_returns_an_openai_completion_echoing_the_model() -> None:
    """A chat call gets a chat.completion for the requested model with the configured reply."""
    async with (
        FakeProvider(reply="hello there") as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        assert provider.base_url == f"http://127.0.0.1:{provider.port}/v1"
        assert provider.mode is Mode.HEALTHY
        response = await client.post("/chat/completions", json=CHAT)
        bare = await client.post(f"http://127.0.0.1:{provider.port}/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-fake"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert 0 < usage["prompt_tokens"] < 100
    assert 0 < usage["completion_tokens"] < 100
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert bare.status_code == 200


@pytest.mark.asyncio
async def test_models_lists_the_configured_names_at_both_paths() -> None:
    """GET /v1/models and /models return an OpenAI list of the configured models."""
    async with (
        FakeProvider(models=["a", "b"]) as provider,
        httpx.AsyncClient(timeout=PATIENT) as client,
    ):
        v1 = await client.get(f"{provider.base_url}/models")
        bare = await client.get(f"http://127.0.0.1:{provider.port}/models")
    assert v1.status_code == bare.status_code == 200
    assert v1.json()["object"] == "list"
    assert [m["id"] for m in v1.json()["data"]] == ["a", "b"]
    assert {m["object"] for m in v1.json()["data"]} == {"model"}
    assert bare.json() == v1.json()


@pytest.mark.asyncio
async def test_unknown_paths_get_a_json_404_and_wrong_methods_a_405() -> None:
    """Routing errors are JSON in OpenAI's error shape and count as "other" calls."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.error()  # routing does not depend on the mode
        missing = await client.get("/embeddings")
        wrong = await client.get("/chat/completions")
        assert provider.calls("other") == 2
        assert provider.calls("chat") == provider.calls("models") == 0
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", json.dumps({"messages": []}).encode(), b'{"model": "m"}'],
)
async def test_a_malformed_chat_body_is_a_400(body: bytes) -> None:
    """Chat calls without a JSON object holding model and messages are rejected like OpenAI does."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        response = await client.post("/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "kind"), [(503, "server_error"), (400, "invalid_request_error")]
)
async def test_error_mode_answers_chat_and_models_with_an_openai_error(
    status: int, kind: str
) -> None:
    """error(status) fails chat calls and, by default, the model list with that status."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.error(status)
        assert provider.mode is Mode.ERROR
        chat = await client.post("/chat/completions", json=CHAT)
        models = await client.get("/models")
    assert chat.status_code == models.status_code == status
    error = chat.json()["error"]
    assert error["type"] == kind
    assert str(status) in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.asyncio
async def test_error_mode_uses_the_given_message() -> None:
    """error(message=...) puts that message in the error body."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.error(502, message="upstream on fire")
        response = await client.post("/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "upstream on fire"


@pytest.mark.asyncio
async def test_models_stay_healthy_when_they_do_not_follow_the_mode() -> None:
    """models_follow_mode=False keeps /models answering while chat calls fail or hang."""
    async with (
        FakeProvider(models_follow_mode=False) as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=IMPATIENT) as client,
    ):
        provider.error(500)
        assert (await client.get("/models")).status_code == 200
        assert (await client.post("/chat/completions", json=CHAT)).status_code == 500
        provider.hang()
        assert (await client.get("/models")).status_code == 200


@pytest.mark.asyncio
async def test_rate_limit_answers_429_with_retry_after() -> None:
    """rate_limit(retry_after) answers 429 with Retry-After rounded up and retry-after-ms."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.rate_limit(retry_after=1.5)
        response = await client.post("/chat/completions", json=CHAT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.asyncio
async def test_hang_reads_the_request_and_never_answers() -> None:
    """In hang mode the request arrives and is counted, and the client's read times out."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=IMPATIENT) as client,
    ):
        provider.hang()
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chat/completions", json=CHAT)
        assert provider.calls("chat") == 1
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/models")


@pytest.mark.asyncio
@pytest.mark.parametrize(("switch", "status"), [("healthy", 200), ("error", 503)])
async def test_a_hung_request_follows_the_next_mode(switch: str, status: int) -> None:
    """A request hung in hang mode is answered as soon as the mode changes, by the new mode."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.hang()
        hung = asyncio.create_task(client.post("/chat/completions", json=CHAT))
        await until(lambda: provider.calls("chat") == 1)
        assert not hung.done()
        provider.set_mode(switch)
        response = await hung
    assert response.status_code == status


@pytest.mark.asyncio
async def test_a_client_giving_up_on_a_hung_request_frees_it(clock: FakeClock) -> None:
    """When the client hangs up, the hung request ends, recorded with no status."""
    async with (
        FakeProvider(record=True, clock=clock) as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=IMPATIENT) as client,
    ):
        provider.hang()
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chat/completions", json=CHAT)
        await until(lambda: len(provider.recorded()) == 1)
        assert provider.recorded() == [RecordedCall(1000.0, "POST", "/v1/chat/completions", None)]


@pytest.mark.asyncio
async def test_refuse_refuses_connections_and_healing_listens_on_the_same_port() -> None:
    """refuse() makes connecting fail; any other mode listens again on the same port."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        port, base_url = provider.port, provider.base_url
        provider.refuse()
        assert provider.mode is Mode.REFUSE
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                await client.get("/models")
        provider.healthy()
        assert (provider.port, provider.base_url) == (port, base_url)
        assert (await client.get("/models")).status_code == 200
        provider.refuse()
        provider.error(500)  # straight from refuse to another mode also listens again
        assert (await client.get("/models")).status_code == 500
        assert provider.calls() == 2


@pytest.mark.asyncio
async def test_refuse_then_heal_in_one_breath_leaves_it_listening() -> None:
    """Switching refuse/healthy back and forth without yielding ends in the last mode."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        for _ in range(3):
            provider.refuse()
            provider.healthy()
        assert (await client.get("/models")).status_code == 200
        provider.healthy()
        provider.refuse()
        with pytest.raises(httpx.ConnectError):
            await client.get("/models")


@pytest.mark.asyncio
async def test_refuse_drops_open_connections() -> None:
    """refuse() cuts hung requests and pooled connections; the next call cannot connect."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as pooled,
    ):
        assert (await pooled.get("/models")).status_code == 200  # leaves a kept-alive connection
        provider.hang()
        hung = asyncio.create_task(client.post("/chat/completions", json=CHAT))
        await until(lambda: provider.calls("chat") == 1)
        provider.refuse()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await hung
        # The pooled connection is gone: at worst the client notices while reusing it.
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await pooled.get("/models")
        with pytest.raises(httpx.ConnectError):
            await pooled.get("/models")


@pytest.mark.asyncio
async def test_a_provider_started_in_refuse_mode_refuses_until_healed() -> None:
    """Refuse set before start binds the port without listening on it."""
    provider = FakeProvider()
    provider.refuse()
    async with provider, httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/models")
        provider.healthy()
        assert (await client.get("/models")).status_code == 200


@pytest.mark.asyncio
async def test_slow_answers_normally_after_the_injected_sleep(clock: FakeClock) -> None:
    """slow(delay) waits ``delay`` with the provider's sleep, then answers normally."""
    async with (
        FakeProvider(clock=clock, sleep=clock.sleep) as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.slow(30)
        assert provider.mode is Mode.SLOW
        chat = await client.post("/chat/completions", json=CHAT)
        models = await client.get("/models")
    assert (chat.status_code, models.status_code) == (200, 200)
    assert chat.json()["choices"][0]["message"]["content"] == "ok"
    assert clock.sleeps == [30.0, 30.0]


@pytest.mark.asyncio
async def test_slow_beyond_the_client_timeout_times_out() -> None:
    """With the real sleep, a delay longer than the client's read timeout times the call out."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=IMPATIENT) as client,
    ):
        provider.slow(60)
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/chat/completions", json=CHAT)


@pytest.mark.asyncio
async def test_stream_sends_openai_chunks_ending_with_done() -> None:
    """A stream:true call gets text/event-stream chat.completion.chunk events, then [DONE]."""
    async with (
        FakeProvider(reply="one two three") as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
        client.stream("POST", "/chat/completions", json=STREAM) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        lines = await data_lines(response)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"gpt-fake"}
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == "one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]


@pytest.mark.asyncio
async def test_stream_reports_usage_when_asked() -> None:
    """stream_options.include_usage adds a last chunk with usage and no choices."""
    body = {**STREAM, "stream_options": {"include_usage": True}}
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
        client.stream("POST", "/chat/completions", json=body) as response,
    ):
        lines = await data_lines(response)
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0


@pytest.mark.asyncio
@pytest.mark.parametrize("after_chunks", [0, 2, 99])
async def test_break_stream_sends_some_chunks_then_cuts_the_connection(after_chunks: int) -> None:
    """break_stream(n) sends at most n chunks, never [DONE], then closes the connection."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.break_stream(after_chunks=after_chunks)
        received: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            await stream_into(client, received)
        # The reply "ok" streams as three chunks before [DONE].
        assert len(received) == min(after_chunks, 3)
        assert "data: [DONE]" not in received
        assert (await client.post("/chat/completions", json=CHAT)).status_code == 200
        assert (await client.get("/models")).status_code == 200


@pytest.mark.asyncio
async def test_fail_next_fails_that_many_chat_calls_then_follows_the_mode() -> None:
    """fail_next(n, status) fails the next n chat calls only; model-list calls are untouched."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.rate_limit()
        provider.fail_next(2, status=500)
        assert provider.mode is Mode.RATE_LIMIT
        assert (await client.get("/models")).status_code == 429
        statuses = [(await client.post("/chat/completions", json=CHAT)).status_code for _ in "abc"]
    assert statuses == [500, 500, 429]


@pytest.mark.asyncio
async def test_switching_mode_discards_pending_scripted_failures() -> None:
    """set_mode after fail_next drops the failures not yet used."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        provider.fail_next(3)
        assert (await client.post("/chat/completions", json=CHAT)).status_code == 503
        provider.healthy()
        assert (await client.post("/chat/completions", json=CHAT)).status_code == 200


@pytest.mark.asyncio
async def test_counts_each_endpoint_and_resets(clock: FakeClock) -> None:
    """calls() counts requests per endpoint and in total; reset_counts() zeroes them and the log."""
    async with (
        FakeProvider(record=True, clock=clock) as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        await client.post("/chat/completions", json=CHAT)
        clock.advance(5)
        provider.error(502)
        await client.post("/chat/completions", json=CHAT)
        await client.get("/models")
        await client.get("/nowhere")
        assert (provider.calls("chat"), provider.calls("models"), provider.calls("other")) == (
            2,
            1,
            1,
        )
        assert provider.calls() == 4
        assert provider.recorded() == [
            RecordedCall(1000.0, "POST", "/v1/chat/completions", 200),
            RecordedCall(1005.0, "POST", "/v1/chat/completions", 502),
            RecordedCall(1005.0, "GET", "/v1/models", 502),
            RecordedCall(1005.0, "GET", "/v1/nowhere", 404),
        ]
        provider.reset_counts()
        assert provider.calls() == 0
        assert provider.recorded() == []


@pytest.mark.asyncio
async def test_nothing_is_recorded_unless_asked() -> None:
    """Without record=True the provider keeps counts but no log."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        await client.get("/models")
        assert provider.calls() == 1
        assert provider.recorded() == []


@pytest.mark.asyncio
async def test_require_api_key_answers_401_to_other_keys() -> None:
    """With require_api_key, only the matching bearer token is served."""
    async with (
        FakeProvider(require_api_key="sk-right") as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        wrong = await client.get("/models", headers={"Authorization": "Bearer sk-wrong"})
        missing = await client.post("/chat/completions", json=CHAT)
        right = await client.get("/models", headers={"Authorization": "Bearer sk-right"})
    assert (wrong.status_code, missing.status_code, right.status_code) == (401, 401, 200)
    assert wrong.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.asyncio
async def test_openai_client_reads_completions_streams_and_models() -> None:
    """The official openai client parses every healthy answer."""
    async with (
        FakeProvider(models=["gpt-fake"], reply="fine thanks") as provider,
        openai.AsyncOpenAI(base_url=provider.base_url, api_key="sk-x", max_retries=0) as client,
    ):
        completion = await client.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "how are you?"}]
        )
        stream = await client.chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "and now?"}], stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        models = [m.id async for m in client.models.list()]
    assert completion.choices[0].message.content == "fine thanks"
    assert completion.model == "gpt-fake"
    assert streamed == "fine thanks"
    assert models == ["gpt-fake"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (lambda p: p.error(503), openai.InternalServerError),
        (lambda p: p.rate_limit(), openai.RateLimitError),
        (lambda p: p.refuse(), openai.APIConnectionError),
        (lambda p: p.hang(), openai.APITimeoutError),
    ],
)
async def test_openai_client_raises_its_typed_error_for_each_fault(
    fault: Callable[[FakeProvider], None], error: type[Exception]
) -> None:
    """Each failure mode surfaces as the openai error a real provider failure would."""
    async with (
        FakeProvider() as provider,
        openai.AsyncOpenAI(
            base_url=provider.base_url, api_key="sk-x", max_retries=0, timeout=IMPATIENT_OPENAI
        ) as client,
    ):
        fault(provider)
        with pytest.raises(error):
            await client.chat.completions.create(model="m", messages=[])


@pytest.mark.asyncio
async def test_modes_switched_from_another_thread_apply_before_the_call_returns() -> None:
    """set_mode from a foreign thread runs on the provider's loop and is done when it returns."""
    async with (
        FakeProvider() as provider,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        await asyncio.to_thread(provider.error, 500)
        assert (await client.get("/models")).status_code == 500
        await asyncio.to_thread(provider.refuse)
        with pytest.raises(httpx.ConnectError):
            await client.get("/models")
        await asyncio.to_thread(provider.healthy)
        assert (await client.get("/models")).status_code == 200


@pytest.mark.parametrize(
    ("mode", "options", "bad"),
    [
        ("healthy", {"delay": 1.0}, "delay"),
        ("slow", {"status": 500}, "status"),
        ("error", {"status": 200}, "status"),
        ("error", {"status": True}, "status"),
        ("slow", {"delay": -1.0}, "delay"),
        ("slow", {"delay": float("inf")}, "delay"),
        ("rate_limit", {"retry_after": float("nan")}, "retry_after"),
        ("break_stream", {"after_chunks": -1}, "after_chunks"),
        ("sideways", {}, "sideways"),
    ],
)
def test_bad_modes_and_options_raise_value_error_naming_them(
    mode: str, options: dict[str, float], bad: str
) -> None:
    """Unknown modes, options of other modes and out-of-range values are refused, by name."""
    provider = FakeProvider()
    with pytest.raises(ValueError, match=bad):
        provider.set_mode(mode, **options)  # type: ignore[arg-type]
    assert provider.mode is Mode.HEALTHY


def test_bad_settings_are_refused_at_construction() -> None:
    """A bare string of models, a bad port or a bad fail_next count raise, naming the value."""
    with pytest.raises(TypeError, match="models"):
        FakeProvider(models="gpt-fake")
    with pytest.raises(ValueError, match="port"):
        FakeProvider(port=70000)
    with pytest.raises(ValueError, match="n=-1"):
        FakeProvider().fail_next(-1)


def test_set_mode_accepts_mode_names_before_start() -> None:
    """Modes can be set by name, and before the provider starts."""
    provider = FakeProvider()
    provider.set_mode("rate_limit", retry_after=3)
    assert provider.mode is Mode.RATE_LIMIT
    with pytest.raises(RuntimeError, match="port"):
        _ = provider.port


def test_in_thread_provider_serves_sync_code_and_switches_modes() -> None:
    """``with FakeProvider()`` serves from a thread; sync code switches modes and reads counts."""
    with (
        FakeProvider() as provider,
        httpx.Client(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        port = provider.port
        assert client.post("/chat/completions", json=CHAT).json()["choices"][0]["message"] == {
            "role": "assistant",
            "content": "ok",
            "refusal": None,
        }
        provider.error(502)
        assert client.get("/models").status_code == 502
        provider.refuse()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{provider.base_url}/models", timeout=PATIENT)
        provider.healthy()
        assert provider.port == port
        assert client.get("/models").status_code == 200
        assert provider.calls() == 3
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=PATIENT)


def test_in_thread_provider_works_with_the_sync_openai_client() -> None:
    """The sync openai client completes and streams against a threaded provider."""
    provider = FakeProvider().start_in_thread()
    try:
        assert provider.start_in_thread() is provider  # idempotent
        with openai.OpenAI(base_url=provider.base_url, api_key="sk-x", max_retries=0) as client:
            completion = client.chat.completions.create(model="m", messages=[])
            with client.chat.completions.create(model="m", messages=[], stream=True) as stream:
                streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        provider.stop()
        provider.stop()  # idempotent
    assert completion.choices[0].message.content == streamed == "ok"


def test_in_thread_provider_serves_other_processes() -> None:
    """Another process reaches a threaded provider at its base_url and sees its mode."""
    script = (
        "import sys, urllib.error, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1] + '/models', timeout=10).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )
    with FakeProvider() as provider:
        statuses = []
        for fault in (provider.healthy, provider.rate_limit):
            fault()
            child = subprocess.run(  # noqa: S603 - our own interpreter running a fixed script
                [sys.executable, "-c", script, provider.base_url],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            statuses.append(child.stdout.strip())
        assert provider.calls("models") == 2
    assert statuses == ["200", "429"]


def test_stop_ends_a_hung_request_in_flight() -> None:
    """stop() drops a hung request at once and joins the thread."""
    provider = FakeProvider().start_in_thread()
    provider.hang()
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        hung = pool.submit(client.post, "/chat/completions", json=CHAT)
        wait_until(lambda: provider.calls("chat") == 1)
        provider.stop()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            hung.result(timeout=10)


def test_connections_arriving_as_the_provider_stops_are_closed_with_it() -> None:
    """A connection accepted just as stop() runs is closed, not left to the garbage collector.

    One accepted while asyncio's own server closed used to outlive the provider
    and surface later, in whatever test was running, as an "unclosed transport".
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(100):
            provider = FakeProvider().start_in_thread()
            with socket.create_connection(("127.0.0.1", provider.port), timeout=10) as client:
                provider.stop()
                with contextlib.suppress(ConnectionResetError):  # refused from the backlog
                    assert client.recv(1) == b"", "the provider left the connection open"
            del provider
            gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.asyncio
async def test_in_thread_provider_serves_async_clients_and_closes_with_aclose() -> None:
    """A threaded provider also serves async code, and aclose() stops it from a loop."""
    provider = FakeProvider().start_in_thread()
    async with httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client:
        assert (await client.get("/models")).status_code == 200
        await provider.aclose()
        with pytest.raises(httpx.ConnectError):
            await client.get("/models")


@pytest.mark.asyncio
async def test_aclose_ends_hung_slow_and_idle_connections_without_leaks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aclose() drops every connection, leaving no task, socket or asyncio error behind."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    provider = await FakeProvider().start()
    assert await provider.start() is provider  # idempotent
    async with (
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as idle,
        httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client,
    ):
        assert (await idle.get("/models")).status_code == 200  # an idle kept-alive connection
        provider.slow(60)
        slow = asyncio.create_task(client.get("/models"))
        await until(lambda: provider.calls("models") == 2)
        provider.hang()
        hung = asyncio.create_task(client.post("/chat/completions", json=CHAT))
        await until(lambda: provider.calls("chat") == 1)

        await asyncio.wait_for(provider.aclose(), timeout=10)
        await provider.aclose()  # idempotent

        for request in (slow, hung):
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await request
        with pytest.raises(httpx.ConnectError):
            await client.get("/models")
    assert asyncio_errors(caplog) == []
    with pytest.raises(RuntimeError, match="restarted"):
        await provider.start()


@pytest.mark.asyncio
async def test_one_connection_serves_several_requests_and_http_1_0_closes() -> None:
    """HTTP/1.1 keeps the connection alive across requests; HTTP/1.0 closes it after one."""
    async with FakeProvider() as provider:
        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        try:
            for _ in range(2):
                writer.write(b"GET /v1/models HTTP/1.1\r\nHost: fake\r\n\r\n")
                status, headers, _ = await read_response(reader)
                assert (status, headers["connection"]) == (200, "keep-alive")
            writer.write(b"GET /v1/models HTTP/1.0\r\n\r\n")
            status, headers, _ = await read_response(reader)
            assert (status, headers["connection"]) == (200, "close")
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()
        assert provider.calls("models") == 3


@pytest.mark.asyncio
async def test_expect_continue_and_chunked_bodies_are_read() -> None:
    """The parser answers Expect: 100-continue and reads chunked request bodies."""
    body = json.dumps(CHAT).encode()
    async with FakeProvider() as provider:
        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        try:
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            status, _, answer = await read_response(reader)
            assert (status, json.loads(answer)["model"]) == (200, "gpt-fake")
        finally:
            writer.close()
            await writer.wait_closed()

        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        try:
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: ignored\r\n\r\n" % (len(body), body)
            )
            status, _, answer = await read_response(reader)
            assert (status, json.loads(answer)["model"]) == (200, "gpt-fake")
        finally:
            writer.close()
            await writer.wait_closed()

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:10]
            yield body[10:]

        async with httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client:
            response = await client.post("/chat/completions", content=chunks())
        assert response.status_code == 200
        assert response.json()["model"] == "gpt-fake"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "garbage",
    [
        b"NONSENSE\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XY",
    ],
)
async def test_malformed_requests_get_a_400_and_a_closed_connection(garbage: bytes) -> None:
    """Bytes that are not a parseable HTTP/1.x request are answered 400, then the line is closed."""
    async with FakeProvider() as provider:
        reader, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        try:
            writer.write(garbage)
            status, headers, _ = await read_response(reader)
            assert (status, headers["connection"]) == (400, "close")
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_client_leaving_mid_request_does_not_disturb_the_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection closed halfway through a request is dropped quietly; others are served."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with FakeProvider() as provider:
        _, writer = await asyncio.open_connection("127.0.0.1", provider.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Le")
        writer.close()
        await writer.wait_closed()
        async with httpx.AsyncClient(base_url=provider.base_url, timeout=PATIENT) as client:
            assert (await client.get("/models")).status_code == 200
    assert asyncio_errors(caplog) == []


@pytest.mark.asyncio
async def test_a_busy_port_fails_start_in_either_mode() -> None:
    """Asking for a port that is taken raises OSError from start() and start_in_thread()."""
    async with FakeProvider() as taken:
        clash = FakeProvider(port=taken.port)
        with pytest.raises(OSError, match="in use"):
            await clash.start()
        with pytest.raises(OSError, match="in use"):
            await asyncio.to_thread(FakeProvider(port=taken.port).start_in_thread)
        await clash.aclose()


@pytest.mark.asyncio
async def test_each_way_of_running_refuses_the_other_way_of_stopping() -> None:
    """stop() is for threaded providers, and a provider runs in one place only."""
    async with FakeProvider() as provider:
        with pytest.raises(RuntimeError, match="aclose"):
            provider.stop()
        with pytest.raises(RuntimeError, match="already running"):
            provider.start_in_thread()
    FakeProvider().stop()  # never started: nothing to do


@pytest.mark.asyncio
@pytest.mark.parametrize("after_chunks", [0, 2])
async def test_stall_stream_sends_headers_and_some_chunks_then_holds_the_rest(
    after_chunks: int,
) -> None:
    """Headers (and ``after_chunks`` chunks) at once, then nothing until the mode changes."""
    async with (
        FakeProvider(reply="one two three") as provider,
        openai.AsyncOpenAI(base_url=provider.base_url, api_key="sk-x", max_retries=0) as client,
    ):
        provider.stall_stream(after_chunks=after_chunks)
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )  # the headers came
        chunks = aiter(stream)
        got = [await anext(chunks) for _ in range(after_chunks)]
        held = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0.2)
        assert not held.done()  # the rest is held
        provider.healthy()
        rest = [await held, *[c async for c in chunks]]
        text = "".join(c.choices[0].delta.content or "" for c in [*got, *rest] if c.choices)
        assert text == "one two three"


@pytest.mark.asyncio
async def test_slow_first_token_delays_the_first_chunk_not_the_headers() -> None:
    sleeps: list[float] = []
    gate = asyncio.Event()

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await gate.wait()

    async with (
        FakeProvider(reply="late", sleep=sleep) as provider,
        openai.AsyncOpenAI(base_url=provider.base_url, api_key="sk-x", max_retries=0) as client,
    ):
        provider.slow_first_token(1.5)
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )  # headers before the delay is over
        first = asyncio.ensure_future(anext(aiter(stream)))
        await asyncio.sleep(0.1)
        assert sleeps == [1.5]
        assert not first.done()
        gate.set()
        chunks = [await first, *[c async for c in stream]]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "late"
        gate.clear()
        slow = asyncio.ensure_future(
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        )
        await asyncio.sleep(0.1)
        assert not slow.done()  # a call that is not streamed waits before any byte
        gate.set()
        assert (await slow).choices[0].message.content == "late"
