"""Slowness as evidence: a deployment far slower than its own usual time opens its breaker.

The rule itself is pure (``SlowCalls``, fed seconds by hand). Through the real
Router, LiteLLM measures the calls on real time, so those tests lower the
rule's floor (2 s) to a few tens of milliseconds to keep slow calls short.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import litellm
import pytest
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    _slow,
)
from litellm_circuit_breaker._slow import BASELINE_MIN, BATCH, MIN_CALLS, RATE, SlowCalls
from litellm_circuit_breaker.testing import FakeProvider
from tests.llm_helpers import MESSAGES

WAIT_SEC = 30.0


def feed(rule: SlowCalls, seconds: float, n: int, kind: _slow.CallKind = "call") -> list[str]:
    """``n`` calls of ``seconds`` each: the reasons to open, if any came."""
    return [r for _ in range(n) if (r := rule.observe("a", kind, seconds)) is not None]


def test_nothing_is_slow_before_the_deployment_has_a_usual_time() -> None:
    rule = SlowCalls()
    assert feed(rule, 30.0, BASELINE_MIN - 1) == []
    assert rule.usual("a", "call") is None


def test_slow_from_the_first_call_on_is_its_own_usual_and_never_opens() -> None:
    rule = SlowCalls()
    for i in range(200):
        assert rule.observe("a", "stream", 1.5 + (i % 5) * 0.1) is None
    assert rule.usual("a", "stream") == pytest.approx(1.7)


def test_a_deployment_that_becomes_far_slower_opens_after_the_window_fills() -> None:
    rule = SlowCalls()
    assert feed(rule, 0.1, BASELINE_MIN) == []
    assert feed(rule, 3.0, MIN_CALLS - 1) == []  # not yet: too few calls in the window
    reasons = feed(rule, 3.0, 1)
    assert reasons == [
        "slow: 10 of its last 10 calls slower than 2.0s (the 2s floor; its usual is 0.10s)"
    ]
    # a fresh window afterwards: it takes as many calls again
    assert feed(rule, 3.0, MIN_CALLS - 1) == []


def test_the_reason_names_the_factor_when_the_usual_time_sets_the_limit() -> None:
    rule = SlowCalls()
    assert feed(rule, 1.0, BASELINE_MIN) == []
    assert feed(rule, 5.0, MIN_CALLS) == [
        "slow: 10 of its last 10 calls slower than 4.0s (4x its usual 1.00s)"
    ]


def test_half_the_window_slow_opens_fewer_does_not() -> None:
    rule = SlowCalls()
    feed(rule, 1.0, BASELINE_MIN)
    pattern = [10.0, 1.0, 1.0] * 10  # a third slow
    assert [r for s in pattern if (r := rule.observe("a", "call", s))] == []
    pattern = [10.0, 1.0] * 10  # half slow
    assert len([r for s in pattern if (r := rule.observe("a", "call", s))]) >= 1


def test_the_floor_keeps_fast_deployments_from_opening_on_small_slowdowns() -> None:
    rule = SlowCalls()
    feed(rule, 0.04, BASELINE_MIN)
    assert feed(rule, 0.5, 50) == []  # 12x slower, still under 2 s


def test_streams_and_calls_have_their_own_usual_times() -> None:
    rule = SlowCalls()
    feed(rule, 0.2, BASELINE_MIN, kind="stream")
    feed(rule, 8.0, BASELINE_MIN, kind="call")  # whole answers take long: normal
    assert feed(rule, 8.0, 30, kind="call") == []
    assert len(feed(rule, 8.0, MIN_CALLS, kind="stream")) == 1
    rule.forget("a")
    assert rule.usual("a", "stream") is None


def test_slow_call_detection_is_a_checked_setting() -> None:
    with pytest.raises(ConfigurationError, match="slow_call_detection"):
        BreakerConfig(slow_call_detection="yes")  # type: ignore[arg-type]
    assert (
        BreakerConfig.from_env({"CIRCUIT_BREAKER_SLOW_CALLS": "false"}).slow_call_detection is False
    )
    with pytest.raises(ConfigurationError, match="CIRCUIT_BREAKER_SLOW_CALLS"):
        BreakerConfig.from_env({"CIRCUIT_BREAKER_SLOW_CALLS": "sometimes"})


# -- through the Router ---------------------------------------------------------------


def entry(dep_id: str, provider: FakeProvider, group: str = "chat") -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": "openai/fake-model",
            "api_base": provider.base_url,
            "api_key": "sk-slow-test-key-0042",
        },
        "model_info": {"id": dep_id},
    }


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll until ``predicate`` holds: a bound on waiting, never a measure of time."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > WAIT_SEC:
            pytest.fail(f"not within {WAIT_SEC}s: {what}")
        await asyncio.sleep(0.01)


async def ask(router: litellm.Router, *, stream: bool) -> str:
    if not stream:
        response = await router.acompletion(model="chat", messages=MESSAGES)
        return str(response.choices[0].message.content)
    chunks = await router.acompletion(model="chat", messages=MESSAGES, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in chunks])


@pytest.fixture
def short_floor(monkeypatch: pytest.MonkeyPatch) -> float:
    """Slow calls that are short in real time: the rule's floor at 50 ms."""
    monkeypatch.setattr(_slow, "FLOOR_SEC", 0.05)
    return 0.05


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["calls", "streams"])
async def test_a_deployment_that_slows_down_is_opened_and_its_sibling_serves(
    litellm_callbacks: None, short_floor: float, stream: bool
) -> None:
    async with FakeProvider(reply="a") as slowing, FakeProvider(reply="b") as sibling:
        breaker = CircuitBreaker(probe_interval=None)
        litellm.callbacks.append(breaker)
        router = litellm.Router(
            model_list=[entry("a", slowing), entry("b", sibling, group="chat-b")],
            fallbacks=[{"chat": ["chat-b"]}],
            disable_cooldowns=True,
            num_retries=0,
        )
        kind: _slow.CallKind = "stream" if stream else "call"
        slow_rule = breaker._slow
        assert slow_rule is not None
        calls = 0
        while slow_rule.usual("a", kind) is None:  # judged in batches of BATCH calls
            assert await ask(router, stream=stream) == "a"
            await GLOBAL_LOGGING_WORKER.flush()
            calls += 1
            assert calls <= BASELINE_MIN + BATCH, "no usual time after enough calls"
        delay = 20 * max(slow_rule.usual("a", kind) or 0.0, short_floor)
        if stream:
            slowing.slow_first_token(delay)
        else:
            slowing.slow(delay)
        slow_calls = 0
        while breaker.cache.breaker_state("a") is not BreakerState.OPEN:
            assert await ask(router, stream=stream) == "a"  # slow, but answered
            await GLOBAL_LOGGING_WORKER.flush()
            slow_calls += 1
            assert slow_calls <= MIN_CALLS + BATCH, "not opened after enough slow calls"
        assert slow_calls >= math.ceil(RATE * MIN_CALLS)  # half a window, at the least
        state = breaker.cache.get_state("a")
        assert state is not None
        assert "of its last 10" in (state.last_error or "")
        assert breaker.counters["slow_openings"] == 1

        calls_before = slowing.calls("chat")
        for _ in range(5):
            assert await ask(router, stream=stream) == "b"  # its fallback serves
        assert slowing.calls("chat") == calls_before
        slowing.healthy()


@pytest.mark.asyncio
async def test_a_slow_deployment_with_nowhere_else_to_go_is_never_opened_for_it(
    litellm_callbacks: None, short_floor: float
) -> None:
    """No sibling, no fallback: a slow answer beats a refusal (the adversarial pass saw
    ``AllDeploymentsOpenError`` under ``fail_fast`` for calls that all succeeded)."""
    async with FakeProvider(reply="a") as slowing:
        breaker = CircuitBreaker(probe_interval=None, when_all_open="fail_fast")
        litellm.callbacks.append(breaker)
        # An id and group of its own, bound explicitly: no other test's Router (on
        # 1.108 found among the live ones) lends it a sibling or a fallback.
        router = litellm.Router(
            model_list=[entry("lone", slowing, group="lone")],
            disable_cooldowns=True,
            num_retries=0,
        )
        breaker.attach(router)
        slow_rule = breaker._slow
        assert slow_rule is not None

        async def lone() -> str:
            response = await router.acompletion(model="lone", messages=MESSAGES)
            return str(response.choices[0].message.content)

        while slow_rule.usual("lone", "call") is None:
            assert await lone() == "a"
            await GLOBAL_LOGGING_WORKER.flush()
        slowing.slow(20 * max(slow_rule.usual("lone", "call") or 0.0, short_floor))
        for _ in range(MIN_CALLS + 2 * BATCH):  # more than enough to open it otherwise
            assert await lone() == "a"  # slow, and every one answered
            await GLOBAL_LOGGING_WORKER.flush()
        assert slow_rule.usual("lone", "call") is not None  # judged all along
        assert breaker.cache.breaker_state("lone") is BreakerState.CLOSED
        assert breaker.counters["slow_openings"] == 0
        slowing.healthy()


@pytest.mark.asyncio
async def test_a_deployment_slow_from_its_first_stream_is_never_opened(
    litellm_callbacks: None, short_floor: float
) -> None:
    async with FakeProvider(reply="thinking") as reasoning:
        breaker = CircuitBreaker(probe_interval=None)
        litellm.callbacks.append(breaker)
        router = litellm.Router(
            model_list=[entry("r", reasoning)], disable_cooldowns=True, num_retries=0
        )
        reasoning.slow_first_token(0.15)  # 3x the lowered floor, on every call
        for _ in range(BASELINE_MIN + MIN_CALLS + 5):
            assert await ask(router, stream=True) == "thinking"
        await GLOBAL_LOGGING_WORKER.flush()
        assert breaker.cache.breaker_state("r") is BreakerState.CLOSED
        assert breaker.counters["slow_openings"] == 0
        reasoning.healthy()
