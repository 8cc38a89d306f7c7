"""Token-free probes, lifecycle and settings of the plugin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import litellm
import pytest
import respx

from litellm_circuit_breaker import BreakerState, CircuitBreaker, ConfigurationError
from litellm_circuit_breaker._litellm_kwargs import sdk_key
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES, call_until, deployment, ok, open_breaker, router, status

KEY_A = "sk-live-aaaaaaaaaaaaaaaa"
KEY_B = "sk-live-bbbbbbbbbbbbbbbb"


def config() -> list[dict[str, Any]]:
    """Two deployments on one endpoint and key, one elsewhere, one with no cheap probe."""
    return [
        deployment("chat", "a1", "a.test", KEY_A),
        deployment("chat-mini", "a2", "a.test", KEY_A),
        deployment("chat", "b", "b.test", KEY_B),
        {
            "model_name": "claude",
            "litellm_params": {"model": "bedrock/anthropic.claude-v2", "aws_region_name": "x"},
            "model_info": {"id": "bedrock"},
        },
    ]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as m:
        yield m


@pytest.mark.asyncio
async def test_one_probe_per_endpoint_and_key_with_the_deployments_key(
    mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Deployments sharing api_base and key share a probe; each probe sends its own key."""
    a = mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    b = mock.get("http://b.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    cb = CircuitBreaker(clock=clock, probe_interval=None, model_list=config())
    results = await cb.probe_once()
    assert set(results) == {"a1", "a2", "b"}
    assert all(r.ok for r in results.values())
    assert (a.call_count, b.call_count) == (1, 1)
    assert a.calls[0].request.headers["authorization"] == f"Bearer {KEY_A}"
    assert b.calls[0].request.headers["authorization"] == f"Bearer {KEY_B}"
    probes = {row.deployment: row.probe for row in cb.status()}
    assert probes == {"a1": "openai-models", "a2": "openai-models", "b": "openai-models",
                      "bedrock": "passive"}  # fmt: skip


@pytest.mark.asyncio
async def test_probes_find_a_dead_endpoint_and_revive_it_without_a_chat_call(
    mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Two failed probes open the breaker; a passing one half-opens it; no tokens spent."""
    models = mock.get("http://a.test/v1/models").mock(return_value=status(503))
    mock.get("http://b.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    chat = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=None, model_list=config())
    await cb.probe_once()
    assert cb.cache.breaker_state("a1") is BreakerState.CLOSED  # one failure is a blip
    results = await cb.probe_once()
    assert results["a1"].ok is False
    assert "503" in (results["a1"].reason or "")
    assert cb.cache.breaker_state("a1") is BreakerState.OPEN
    assert cb.cache.breaker_state("a2") is BreakerState.OPEN
    assert cb.cache.breaker_state("b") is BreakerState.CLOSED
    models.mock(return_value=httpx.Response(200, json={"data": []}))
    await cb.probe_once()
    assert cb.cache.is_healthy("a1")
    assert cb.cache.breaker_state("a1") is BreakerState.HALF_OPEN
    assert chat.call_count == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "counts"),
    [
        (httpx.Response(401), False),  # a restricted key looks the same: no verdict
        (httpx.Response(403), False),
        (httpx.Response(500), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.Response(404), False),
        (httpx.Response(405), False),
        (httpx.Response(429), False),
    ],
)
async def test_probe_answers_that_count_and_those_that_do_not(
    mock: respx.MockRouter, clock: FakeClock, answer: httpx.Response | Exception, counts: bool
) -> None:
    """5xx, refused and timeouts are failures; 404/405 mean 'no cheap probe'; 401/403 and
    429 give no verdict (a list call refused says nothing of the key's calls)."""
    route = mock.get("http://a.test/v1/models")
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)
    cb = CircuitBreaker(
        clock=clock, probe_interval=None, failure_threshold=1, model_list=[config()[0]]
    )
    await cb.probe_once()
    assert (cb.cache.breaker_state("a1") is BreakerState.OPEN) is counts
    no_list_call = isinstance(answer, httpx.Response) and answer.status_code in (404, 405)
    assert (cb.status()[0].probe == "unprobed") is no_list_call


@pytest.mark.asyncio
async def test_passing_probe_cannot_make_a_deployment_with_failing_completions_flap(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """/models answers but completions fail: one probe pass buys one trial, never a close.

    Once that trial has failed the probe is known blind to the fault: later
    passes buy nothing, and only the end of the window admits the next trial.
    """
    mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    chat = mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    cb = CircuitBreaker(clock=clock, probe_interval=None, model_list=[config()[0]])
    litellm.callbacks.append(cb)
    r = router(deployment("chat", "a1", "a.test", KEY_A), deployment("chat", "b", "b.test"))
    await call_until(
        lambda: cb.cache.breaker_state("a1") is BreakerState.OPEN,
        lambda: r.acompletion(model="chat", messages=MESSAGES, num_retries=2),
    )
    assert chat.call_count == 2
    for _ in range(10):
        await r.acompletion(model="chat", messages=MESSAGES, num_retries=2)
    assert chat.call_count == 2
    await cb.probe_once()
    assert cb.cache.breaker_state("a1") is BreakerState.HALF_OPEN
    for _ in range(10):
        await r.acompletion(model="chat", messages=MESSAGES, num_retries=2)
    assert cb.cache.breaker_state("a1") is BreakerState.OPEN
    assert chat.call_count == 3  # the one trial
    for _round in range(3):
        clock.advance(15)
        await cb.probe_once()
        assert cb.cache.breaker_state("a1") is BreakerState.OPEN
        for _ in range(10):
            await r.acompletion(model="chat", messages=MESSAGES, num_retries=2)
    assert chat.call_count == 3  # blind passes bought nothing
    clock.advance(15)  # the window ends: the next trial, as without probes
    await r.acompletion(model="chat", messages=MESSAGES, num_retries=2)
    assert chat.call_count == 4


@pytest.mark.asyncio
async def test_probes_only_go_to_configured_endpoints_never_to_request_ones(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """An api_base supplied by a direct SDK call is never probed; Router deployments are."""
    mock.post("http://caller.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    caller_models = mock.get("http://caller.test/v1/models").mock(return_value=httpx.Response(200))
    configured = mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    litellm.callbacks.append(cb)
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await litellm.acompletion(
                model="openai/m",
                api_base="http://caller.test/v1",
                api_key="k",
                messages=MESSAGES,
                max_retries=0,
            )
    await router(deployment("chat", "a1", "a.test")).acompletion(model="chat", messages=MESSAGES)
    results = await cb.probe_once()
    assert set(results) == {"a1"}
    assert caller_models.call_count == 0
    assert configured.call_count == 1
    passive = [row for row in cb.status() if row.probe == "passive"]
    assert [(row.deployment, row.endpoint) for row in passive] == [
        (sdk_key("http://caller.test/v1", "openai/m"), "http://caller.test/v1")
    ]


@pytest.mark.asyncio
async def test_learning_from_traffic_can_be_turned_off(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """With learn_from_traffic=False only the given model_list is probed."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=None, learn_from_traffic=False)
    litellm.callbacks.append(cb)
    await router(deployment("chat", "a1", "a.test")).acompletion(model="chat", messages=MESSAGES)
    assert await cb.probe_once() == {}
    assert cb.deployments == {}


@pytest.mark.asyncio
async def test_a_bug_in_a_probe_is_counted_not_held_against_the_endpoint(
    mock: respx.MockRouter,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception that is not the endpoint's answer leaves the breaker alone."""
    cb = CircuitBreaker(
        clock=clock, probe_interval=None, failure_threshold=1, model_list=[config()[0]]
    )

    async def broken(*args: object) -> bool:
        raise KeyError("probe bug")

    monkeypatch.setattr("litellm_circuit_breaker._probing.run_http_probe", broken)
    results = await cb.probe_once()
    assert results["a1"].ok is None
    assert cb.cache.breaker_state("a1") is BreakerState.CLOSED
    assert cb.internal_errors["probe"] == 1
    assert any("internal error in probe" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_async_with_runs_the_loop_and_closes_it(
    mock: respx.MockRouter, clock: FakeClock
) -> None:
    """The first tick runs at once inside `async with`; leaving stops the task."""
    route = mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200))
    cb = CircuitBreaker(clock=clock, probe_interval=30, model_list=[config()[0]])
    assert not cb.running
    async with cb:
        assert cb.running
        for _ in range(1000):
            if route.call_count:
                break
            await asyncio.sleep(0.005)
        assert route.call_count == 1
    assert not cb.running
    await cb.aclose()  # twice is fine


@pytest.mark.asyncio
async def test_loop_starts_lazily_on_the_first_async_hook(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """App code that only appends the callback still gets background probes."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=30)
    litellm.callbacks.append(cb)
    assert not cb.running
    await router(deployment("chat", "a1", "a.test")).acompletion(model="chat", messages=MESSAGES)
    assert cb.running
    await cb.aclose()
    assert not cb.running


def test_loop_is_recreated_for_a_new_event_loop(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """asyncio.run twice: each loop gets its own probe task."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=30)
    litellm.callbacks.append(cb)
    r = router(deployment("chat", "a1", "a.test"))
    tasks = []

    async def one_request() -> None:
        await r.acompletion(model="chat", messages=MESSAGES)
        assert cb.running
        tasks.append(cb._task)
        await cb.aclose()

    asyncio.run(one_request())
    asyncio.run(one_request())
    assert len(tasks) == 2
    assert tasks[0] is not tasks[1]


@pytest.mark.asyncio
async def test_secrets_never_show_in_status_logs_or_errors(
    mock: respx.MockRouter, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Configured keys stay out of status rows, reprs, logs and recorded errors."""
    caplog.set_level(logging.DEBUG, logger="litellm_circuit_breaker")
    mock.get("http://a.test/v1/models").mock(
        return_value=httpx.Response(503, text=f"bad key {KEY_A}")
    )
    mock.get("http://b.test/v1/models").mock(side_effect=httpx.ConnectError(f"{KEY_B} refused"))
    cb = CircuitBreaker(clock=clock, probe_interval=None, failure_threshold=1, model_list=config())
    await cb.probe_once()
    cb.cache.mark_unhealthy("a1", f"echoed Authorization: Bearer {KEY_A}")
    shown = " ".join(
        [repr(cb.status()), repr(cb.deployments), caplog.text, repr(cb.cache.snapshot())]
    )
    assert "open" in shown
    assert KEY_A not in repr(cb.status())
    assert KEY_A not in repr(cb.deployments)
    assert KEY_B not in shown
    assert KEY_A not in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"unhealthy_backoff_sec": -1}, "unhealthy_backoff_sec"),
        ({"probe_interval": 0}, "probe_interval"),
        ({"probe_interval": -5}, "probe_interval"),
        ({"probe_timeout": 0}, "probe_timeout"),
        ({"when_all_open": "fail_sometimes"}, "when_all_open"),
        ({"failure_policy": "strict"}, "failure_policy"),
        ({"model_list": "gpt-4o"}, "model_list"),
        ({"model_list": [1, 2]}, "model_list"),
        ({"probe_concurrency": 0}, "probe_concurrency"),
        ({"probe_jitter": -1}, "probe_jitter"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"learn_from_traffic": "yes"}, "learn_from_traffic"),
        ({"redis_namespace": "two words"}, "redis_namespace"),
        ({"redis_state_ttl_sec": 0}, "redis_state_ttl_sec"),
    ],
)
def test_bad_settings_name_the_setting_and_the_value(kwargs: dict[str, Any], field: str) -> None:
    """Every setting is validated at construction with a ValueError naming it (the public name)."""
    with pytest.raises(ConfigurationError, match=field) as info:
        CircuitBreaker(**kwargs)
    assert info.value.field == field
    assert repr(next(iter(kwargs.values())))[:20] in str(info.value)


def test_two_breakers_with_equal_settings_are_not_merged_by_litellm() -> None:
    """LiteLLM de-duplicates callbacks by public attributes; ours differ per instance."""
    first, second = CircuitBreaker(probe_interval=None), CircuitBreaker(probe_interval=None)
    assert first.instance_id != second.instance_id


@pytest.mark.asyncio
async def test_removed_deployments_are_forgotten(clock: FakeClock) -> None:
    """sync_deployments drops state and probes for deployments no longer configured."""
    cb = CircuitBreaker(clock=clock, probe_interval=None, model_list=config())
    open_breaker(cb.cache, "b")
    cb.sync_deployments(config()[:2])
    assert set(cb.deployments) == {"a1", "a2"}
    assert cb.cache.get_state("b") is None
    assert cb.remove_deployment("a2")
    assert not cb.remove_deployment("never-seen")
    assert set(cb.deployments) == {"a1"}


@pytest.mark.asyncio
async def test_a_broken_probe_never_fails_a_request(
    mock: respx.MockRouter,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    litellm_callbacks: None,
) -> None:
    """With every probe raising a bug, requests through the Router all still succeed."""

    async def broken(*args: object) -> bool:
        raise RuntimeError("probe bug")

    monkeypatch.setattr("litellm_circuit_breaker._probing.run_http_probe", broken)
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    cb = CircuitBreaker(clock=clock, probe_interval=0.01, model_list=[config()[0]])
    litellm.callbacks.append(cb)
    r = router(deployment("chat", "a1", "a.test", KEY_A))
    async with cb:
        for _ in range(20):
            response = await r.acompletion(model="chat", messages=MESSAGES)
            assert response.choices[0].message.content == "a"
            await asyncio.sleep(0.005)  # let probe rounds run between requests
    assert cb.internal_errors["probe"] >= 2
    assert cb.cache.breaker_state("a1") is BreakerState.CLOSED


def test_a_deployment_source_is_the_probed_set_and_is_followed() -> None:
    """What the source returns is probed; what it drops is forgotten; None means not ready."""
    current: list[dict[str, Any]] | None = None
    cb = CircuitBreaker(probe_interval=None, deployment_source=lambda: current)
    assert cb.refresh_deployments() is False
    current = [deployment("g", "a", "a.test"), deployment("g", "b", "b.test")]
    assert cb.refresh_deployments() is True
    assert set(cb.deployments) == {"a", "b"}
    cb.cache.mark_unhealthy("a", "HTTP 503")
    current = [deployment("g", "b", "b.test")]
    cb.refresh_deployments()
    assert set(cb.deployments) == {"b"}
    assert "a" not in cb.cache
    with pytest.raises(ConfigurationError, match="deployment_source"):
        CircuitBreaker(deployment_source=[deployment("g", "a", "a.test")])  # type: ignore[arg-type]


def test_a_deployment_source_never_prunes_what_it_did_not_bring(litellm_callbacks: None) -> None:
    """Deployments given by hand or from an attached Router keep their breakers, open ones too."""
    cb = CircuitBreaker(
        probe_interval=None,
        model_list=[deployment("g", "explicit", "e.test")],
        deployment_source=lambda: [deployment("g", "sourced", "s.test")],
    )
    r = router(deployment("g", "routed", "r.test"))
    cb.attach(r)
    for deployment_id in ("explicit", "routed"):
        open_breaker(cb.cache, deployment_id)
    for _ in range(2):  # two rounds: the second compares with what the first brought
        cb._before_tick()
    assert set(cb.deployments) == {"explicit", "routed", "sourced"}
    assert cb.cache.breaker_state("explicit") is BreakerState.OPEN
    assert cb.cache.breaker_state("routed") is BreakerState.OPEN


def test_a_deployment_source_returning_no_list_is_named_in_the_error() -> None:
    """A dict, or a list of something else, names the source and the type, never a key."""
    cb = CircuitBreaker(probe_interval=None, deployment_source=lambda: {"k": "sk-secret-123456"})
    with pytest.raises(ConfigurationError, match=r"deployment_source\(\)") as info:
        cb.refresh_deployments()
    assert "sk-secret" not in str(info.value)
    cb = CircuitBreaker(probe_interval=None, deployment_source=lambda: [{"model_name": "g"}])
    with pytest.raises(ConfigurationError, match=r"deployment_source\(\)\[0\]\.litellm_params"):
        cb.refresh_deployments()
