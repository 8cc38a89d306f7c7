"""The plugin inside a real async Router, with respx standing in for the providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import litellm
import pytest
import respx
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import (
    AllDeploymentsOpenError,
    BreakerState,
    CircuitBreaker,
    StateChange,
)
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES, deployment, ok, open_breaker, router, status

GROUP = "chat"


async def ask(r: litellm.Router, group: str = GROUP) -> str:
    response = await r.acompletion(model=group, messages=MESSAGES)
    return str(response.choices[0].message.content)


async def ask_many(r: litellm.Router, n: int, group: str = GROUP) -> list[str | BaseException]:
    out: list[str | BaseException] = []
    for _ in range(n):
        try:
            out.append(await ask(r, group))
        except Exception as exc:
            out.append(exc)
    return out


@pytest.mark.asyncio
async def test_dead_deployment_gets_exactly_threshold_calls_then_none_until_window_ends(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Two failures open the breaker; the sibling serves everything until a trial is due."""
    dead = mock.post("http://dead.test/v1/chat/completions").mock(return_value=status(503))
    live = mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(
        deployment(GROUP, "dead", "dead.test"),
        deployment(GROUP, "live", "live.test"),
        num_retries=2,
    )
    answers = await ask_many(r, 30)
    assert answers == ["live"] * 30  # the Router retried the sibling; nobody saw an error
    assert dead.call_count == 2
    assert breaker.cache.breaker_state("dead") is BreakerState.OPEN
    clock.advance(59)
    await ask_many(r, 10)
    assert dead.call_count == 2
    clock.advance(1)  # the window ends: exactly one trial, which fails and re-opens
    await ask_many(r, 10)
    assert dead.call_count == 3
    assert breaker.cache.breaker_state("dead") is BreakerState.OPEN
    assert live.call_count >= 48


@pytest.mark.asyncio
async def test_failure_reaching_threshold_protects_the_very_next_request(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """No waiting for the queued log events: the next request already skips the dead one."""
    dead = mock.post("http://dead.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok())
    r = router(deployment(GROUP, "dead", "dead.test"), deployment(GROUP, "live", "live.test"))
    r_dead_only = router(deployment("solo", "dead", "dead.test"))
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await ask(r_dead_only, "solo")
    assert dead.call_count == 2
    for _ in range(20):
        assert await ask(r) == "ok"
    assert dead.call_count == 2


@pytest.mark.asyncio
async def test_client_errors_never_trip_the_breaker(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """400, 422 and context-window errors are the caller's, however many there are."""
    route = mock.post("http://a.test/v1/chat/completions")
    r = router(deployment(GROUP, "a", "a.test"))
    for response in [status(400)] * 5 + [status(422)] * 3:
        route.mock(return_value=response)
        with pytest.raises((litellm.BadRequestError, litellm.UnprocessableEntityError)):
            await ask(r)
    route.mock(
        return_value=httpx.Response(
            400,
            json={"error": {"message": "This model's maximum context length is 8 tokens"}},
        )
    )
    for _ in range(3):
        with pytest.raises(litellm.ContextWindowExceededError):
            await ask(r)
    assert breaker.cache.breaker_state("a") is BreakerState.CLOSED
    state = breaker.cache.get_state("a")
    assert state is None or state.consecutive_failures == 0
    assert route.call_count == 11


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response", "error"),
    [
        (status(500), litellm.InternalServerError),
        (status(502), litellm.BadGatewayError),
        (status(429), litellm.RateLimitError),
        (status(401), litellm.AuthenticationError),
        (status(403), litellm.APIError),  # litellm maps an openai-compatible 403 so
        (status(404), litellm.NotFoundError),
        (httpx.ConnectError("refused"), litellm.InternalServerError),
        (httpx.ReadTimeout("slow"), litellm.Timeout),
    ],
)
async def test_provider_faults_trip_the_breaker(
    breaker: CircuitBreaker,
    mock: respx.MockRouter,
    response: httpx.Response | Exception,
    error: type[Exception],
) -> None:
    """5xx, 429, 401/403, 404, refused connections and timeouts each count."""
    route = mock.post("http://a.test/v1/chat/completions")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    r = router(deployment(GROUP, "a", "a.test"), deployment(GROUP, "b", "b.test"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r_a = router(deployment("only-a", "a", "a.test"))
    for _ in range(2):
        with pytest.raises(error):
            await ask(r_a, "only-a")
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN
    assert await ask(r) == "b"
    assert route.call_count == 2


@pytest.mark.asyncio
async def test_rate_limit_retry_after_sets_a_floor_on_the_window(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A 429 with Retry-After: 300 keeps the breaker open past the 60 s default."""
    mock.post("http://a.test/v1/chat/completions").mock(
        return_value=status(429, **{"retry-after": "300"})
    )
    r = router(deployment(GROUP, "a", "a.test"))
    for _ in range(2):
        with pytest.raises(litellm.RateLimitError):
            await ask(r)
    assert breaker.cache.retry_in("a") == pytest.approx(300)


@pytest.mark.asyncio
async def test_exactly_one_trial_in_half_open_under_concurrency(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Twenty concurrent requests in half-open: one trial reaches the deployment."""
    release = asyncio.Event()

    async def slow_trial(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return status(503)

    dead = mock.post("http://dead.test/v1/chat/completions").mock(side_effect=slow_trial)
    live = mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(deployment(GROUP, "dead", "dead.test"), deployment(GROUP, "live", "live.test"))
    open_breaker(breaker.cache, "dead")
    clock.advance(60)

    async def release_when_others_done() -> None:
        while live.call_count < 19:
            await asyncio.sleep(0.001)
        release.set()

    releaser = asyncio.create_task(release_when_others_done())
    results = await asyncio.gather(*(ask(r) for _ in range(20)), return_exceptions=True)
    await releaser
    assert dead.call_count == 1
    assert results.count("live") == 19
    assert breaker.counters["trials"] == 1
    assert breaker.cache.breaker_state("dead") is BreakerState.OPEN


@pytest.mark.asyncio
async def test_good_trial_closes_and_traffic_returns(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """After the window a successful trial closes the breaker and both serve again."""
    a = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment(GROUP, "a", "a.test"), deployment(GROUP, "b", "b.test"))
    open_breaker(breaker.cache, "a")
    await ask_many(r, 5)
    assert a.call_count == 0
    clock.advance(60)
    assert await ask(r) == "a"  # the trial
    assert breaker.cache.breaker_state("a") is BreakerState.CLOSED
    answers = await ask_many(r, 40)
    assert "a" in answers
    assert "b" in answers


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [1, 2])
async def test_all_open_group_with_fallback_answers_from_fallback_at_once(
    breaker: CircuitBreaker, mock: respx.MockRouter, size: int, backoffs: list[float]
) -> None:
    """No call to the open group and no Router retry back-off, for 1 and 2 deployments."""
    primary_routes = [
        mock.post(f"http://p{i}.test/v1/chat/completions").mock(return_value=status(503))
        for i in range(size)
    ]
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    r = router(
        *[deployment("primary", f"p{i}", f"p{i}.test") for i in range(size)],
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
        num_retries=3,
    )
    for i in range(size):
        open_breaker(breaker.cache, f"p{i}")
    for _ in range(3):
        assert await ask(r, "primary") == "fallback"
    assert all(route.call_count == 0 for route in primary_routes)
    assert backoffs == [], "the Router backed off before falling back"
    assert breaker.counters["fallback"] == 3


@pytest.mark.asyncio
async def test_all_open_without_fallback_fails_open_to_the_soonest_window(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """fail_open (default): the request still goes out, to the deployment due first."""
    first = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    second = mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment(GROUP, "a", "a.test"), deployment(GROUP, "b", "b.test"))
    open_breaker(breaker.cache, "b")
    clock.advance(10)
    open_breaker(breaker.cache, "a")  # a opened later: b is due first
    assert await ask(r) == "b"
    assert (first.call_count, second.call_count) == (0, 1)
    assert breaker.counters["fail_open"] == 1
    assert breaker.cache.breaker_state("b") is BreakerState.CLOSED  # the success was evidence


@pytest.mark.asyncio
async def test_all_open_without_fallback_fails_fast_when_asked(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None, backoffs: list[float]
) -> None:
    """fail_fast: a clear error naming the group, the deployments and the wait; no call."""
    cb = CircuitBreaker(clock=clock, probe_interval=None, when_all_open="fail_fast")
    litellm.callbacks.append(cb)
    route = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    r = router(deployment(GROUP, "a", "a.test"), num_retries=3)
    open_breaker(cb.cache, "a")
    clock.advance(15)
    with pytest.raises(AllDeploymentsOpenError) as info:
        await ask(r)
    assert backoffs == [], "the Router backed off before failing fast"
    assert route.call_count == 0
    assert info.value.model_group == GROUP
    assert info.value.deployments == ("a",)
    assert info.value.retry_after == pytest.approx(45)
    assert "chat" in str(info.value)
    assert "45.0s" in str(info.value)


@pytest.mark.asyncio
async def test_broken_listener_never_fails_a_request(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """A listener that raises on every transition changes nothing for callers."""

    def broken(event: StateChange) -> None:
        raise RuntimeError("listener bug")

    breaker.cache.add_listener(broken)
    mock.post("http://dead.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(
        deployment(GROUP, "dead", "dead.test"),
        deployment(GROUP, "live", "live.test"),
        num_retries=2,
    )
    assert await ask_many(r, 10) == ["live"] * 10
    assert breaker.cache.listener_errors >= 1


@pytest.mark.asyncio
async def test_internal_error_in_a_hook_is_swallowed_logged_once_and_counted(
    breaker: CircuitBreaker,
    mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug inside the plugin leaves requests exactly as they would be without it."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment(GROUP, "a", "a.test"))

    def explode(*args: object) -> None:
        raise KeyError("plugin bug")

    # The filter is engaged only while some breaker is open: open one elsewhere.
    open_breaker(breaker.cache, "elsewhere")
    monkeypatch.setattr(breaker, "_filter", explode)
    monkeypatch.setattr(breaker, "_on_success", explode)
    monkeypatch.setattr(breaker.cache, "touch_if_settled", explode)  # the success hot path
    for _ in range(5):
        assert await ask(r) == "a"
    assert breaker.internal_errors["filter"] == 5
    assert breaker.internal_errors["success"] >= 5
    logged = [rec for rec in caplog.records if "internal error in filter" in rec.getMessage()]
    assert len(logged) == 1


@pytest.mark.asyncio
async def test_each_failed_attempt_is_counted_once_despite_queued_duplicates(
    breaker: CircuitBreaker, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """The inline hook and the queued log event for one attempt count as one failure."""
    seen = asyncio.Event()

    class Spy(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
        async def async_log_failure_event(
            self, kwargs: object, response_obj: object, start_time: object, end_time: object
        ) -> None:
            seen.set()

    litellm.callbacks.append(Spy())
    mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    r = router(deployment(GROUP, "a", "a.test"))
    with pytest.raises(litellm.ServiceUnavailableError):
        await ask(r)
    await asyncio.wait_for(seen.wait(), timeout=30)
    # Every copy queued on LiteLLM's logging worker has run: waited for, not slept out.
    await GLOBAL_LOGGING_WORKER.flush()
    state = breaker.cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 1
    assert breaker.cache.breaker_state("a") is BreakerState.CLOSED


async def _aiter(chunks: list[bytes], error: Exception | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if error is not None:
        raise error


def _sse(*texts: str) -> list[bytes]:
    out = []
    for i, text in enumerate(texts):
        body = (
            '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
            f'[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":'
            f"{'null' if i < len(texts) - 1 else chr(34) + 'stop' + chr(34)}}}]}}"
        )
        out.append(f"data: {body}\n\n".encode())
    return out


async def _stream(r: litellm.Router) -> str:
    response = await r.acompletion(model=GROUP, messages=MESSAGES, stream=True)
    parts = [chunk.choices[0].delta.content or "" async for chunk in response]
    return "".join(parts)


@pytest.mark.asyncio
async def test_streams_count_failures_before_and_during_and_success_at_the_end(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """503 before the first chunk and a stream cut mid-way both count; a full stream heals."""
    route = mock.post("http://a.test/v1/chat/completions")
    r = router(deployment(GROUP, "a", "a.test"))
    route.mock(return_value=status(503))
    with pytest.raises(litellm.ServiceUnavailableError):
        await _stream(r)
    state = breaker.cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 1

    route.mock(
        side_effect=lambda request: httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_aiter(_sse("he", "ll"), httpx.ReadError("connection dropped")),  # type: ignore[arg-type]
        )
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - litellm's wrapping varies by version
        await _stream(r)
    for _ in range(500):  # the mid-stream failure only arrives as a queued log event
        if breaker.cache.breaker_state("a") is BreakerState.OPEN:
            break
        await asyncio.sleep(0.01)
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN

    clock.advance(60)
    route.mock(
        side_effect=lambda request: httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_aiter([*_sse("he", "llo"), b"data: [DONE]\n\n"]),  # type: ignore[arg-type]
        )
    )
    assert await _stream(r) == "hello"
    for _ in range(500):  # a finished stream reports through the queued success event
        if breaker.cache.breaker_state("a") is BreakerState.CLOSED:
            break
        await asyncio.sleep(0.01)
    assert breaker.cache.breaker_state("a") is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_the_backoffs_fixture_sees_a_routers_real_back_off(
    litellm_callbacks: None, mock: respx.MockRouter, backoffs: list[float]
) -> None:
    """Without the plugin a failing single deployment is retried with back-off: recorded."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    r = router(deployment(GROUP, "a", "a.test"), num_retries=2)
    with pytest.raises(litellm.ServiceUnavailableError):
        await ask(r)
    assert backoffs, "the fixture missed LiteLLM's retry back-off"
    with pytest.raises(litellm.ServiceUnavailableError):
        await asyncio.to_thread(r.completion, model=GROUP, messages=MESSAGES)
    assert len(backoffs) >= 2, "the fixture missed the sync Router's retry back-off"
