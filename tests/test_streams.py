"""Streams: a stream with no first token by its deadline fails over, and counts.

Through the real Router and LiteLLM's real HTTP stack against local fake
providers: the deadline is the attempt's timeout, so it runs on real time.
Fixed deadlines here are short (a fraction of a second); the Router's retry
back-offs are skipped and recorded (``backoffs``). One test waits out the
learned deadline's real floor (3 s, twice): the headline promise, as a user
meets it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import litellm
import pytest
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import BreakerConfig, BreakerState, CircuitBreaker, ConfigurationError
from litellm_circuit_breaker._streams import FLOOR_SEC, MIN_STREAMS, FirstTokenDeadlines
from litellm_circuit_breaker.testing import FakeProvider
from tests.llm_helpers import MESSAGES

DEADLINE_SEC = 0.5
WAIT_SEC = 30.0


def entry(group: str, dep_id: str, provider: FakeProvider) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": "openai/fake-model",
            "api_base": provider.base_url,
            "api_key": "sk-stream-test-key-0042",
        },
        "model_info": {"id": dep_id},
    }


@asynccontextmanager
async def primary_and_fallback() -> AsyncIterator[tuple[FakeProvider, FakeProvider]]:
    async with (
        FakeProvider(reply="from primary") as primary,
        FakeProvider(reply="from fallback") as fallback,
    ):
        yield primary, fallback


def router_with_fallback(primary: FakeProvider, fallback: FakeProvider) -> litellm.Router:
    """As users set it up: a fallback group, retries, a 30 s timeout, LiteLLM's cooldowns off
    so only the breaker decides."""
    return litellm.Router(
        model_list=[entry("chat", "a", primary), entry("backup", "b", fallback)],
        fallbacks=[{"chat": ["backup"]}],
        num_retries=2,
        timeout=30,
        disable_cooldowns=True,
    )


async def stream_text(router: litellm.Router, **kwargs: Any) -> str:
    response = await router.acompletion(model="chat", messages=MESSAGES, stream=True, **kwargs)
    text = ""
    async for chunk in response:
        text += chunk.choices[0].delta.content or ""
    return text


async def settle() -> None:
    """Deliver LiteLLM's queued log events (a finished stream is reported through them)."""
    await GLOBAL_LOGGING_WORKER.flush()


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll until ``predicate`` holds (a broken stream's failure is logged from a task of
    its own): a bound on waiting, never a measure of time."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > WAIT_SEC:
            pytest.fail(f"not within {WAIT_SEC}s: {what}")
        await asyncio.sleep(0.01)


def attach(breaker: CircuitBreaker) -> CircuitBreaker:
    litellm.callbacks.append(breaker)
    return breaker


# -- the deadline a history gives ---------------------------------------------------


def test_auto_gives_no_deadline_until_the_deployment_has_a_history() -> None:
    deadlines = FirstTokenDeadlines("auto")
    for _ in range(MIN_STREAMS - 1):
        deadlines.observe("a", 0.2)
    assert deadlines.deadline("a") is None
    deadlines.observe("a", 0.2)
    assert deadlines.deadline("a") == FLOOR_SEC  # fast: the floor
    assert deadlines.deadline("b") is None  # each deployment its own


def test_auto_is_four_times_the_p95_in_whole_seconds_so_always_slow_is_never_cut() -> None:
    deadlines = FirstTokenDeadlines("auto")
    for _ in range(20):
        deadlines.observe("reasoning", 1.5)
    assert deadlines.deadline("reasoning") == 6.0
    for _ in range(20):
        deadlines.observe("slower", 2.6)  # 10.4 s, rounded up
    assert deadlines.deadline("slower") == 11.0


def test_auto_follows_the_recent_streams_and_ignores_nonsense() -> None:
    deadlines = FirstTokenDeadlines("auto")
    for _ in range(50):
        deadlines.observe("a", 5.0)
    assert deadlines.deadline("a") == 20.0
    for _ in range(50):  # it got faster: the old history is gone
        deadlines.observe("a", 0.1)
    assert deadlines.deadline("a") == FLOOR_SEC
    for bad in (-1.0, math.inf, math.nan):
        deadlines.observe("a", bad)
    assert len(deadlines.history("a")) == 50
    deadlines.forget("a")
    assert deadlines.deadline("a") is None


def test_a_fixed_deadline_applies_at_once_and_none_turns_it_off() -> None:
    assert FirstTokenDeadlines(7.0).deadline("never-seen") == 7.0
    off = FirstTokenDeadlines(None)
    off.observe("a", 0.1)
    assert off.deadline("a") is None
    assert off.history("a") == ()


@pytest.mark.parametrize("bad", ["fast", 0, -1, math.nan, math.inf, 7200, True])
def test_a_bad_first_token_timeout_is_refused_by_name(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="first_token_timeout"):
        BreakerConfig(first_token_timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"), [("auto", "auto"), (" AUTO ", "auto"), ("12.5", 12.5), ("off", None)]
)
def test_the_environment_sets_the_first_token_timeout(raw: str, expected: object) -> None:
    config = BreakerConfig.from_env({"CIRCUIT_BREAKER_FIRST_TOKEN_TIMEOUT_SEC": raw})
    assert config.first_token_timeout == expected


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="CIRCUIT_BREAKER_FIRST_TOKEN_TIMEOUT_SEC"):
        BreakerConfig.from_env({"CIRCUIT_BREAKER_FIRST_TOKEN_TIMEOUT_SEC": "soon"})


# -- through the Router ---------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["hang", "stall_stream"])
@pytest.mark.asyncio
async def test_a_stream_without_a_first_token_fails_over_and_opens_the_breaker(
    litellm_callbacks: None, backoffs: list[float], fault: str
) -> None:
    """Accepted and never answered, or headers and then silence: the fallback answers,
    the deployment gets at most the threshold of calls, and the next stream skips it."""
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=DEADLINE_SEC))
        router = router_with_fallback(primary, fallback)
        assert await stream_text(router) == "from primary"
        getattr(primary, fault)()
        primary.reset_counts()

        assert await stream_text(router) == "from fallback"
        await settle()
        assert primary.calls("chat") == 2
        state = breaker.cache.get_state("a")
        assert not state.healthy
        # the request's retry waited twice as long, and missed that too
        assert state.last_error == f"no first token within {2 * DEADLINE_SEC:g}s"
        assert breaker.counters["first_token_timeouts"] == 2

        assert await stream_text(router) == "from fallback"
        assert primary.calls("chat") == 2  # not touched again
        primary.healthy()


@pytest.mark.asyncio
async def test_without_the_breaker_the_same_stream_waits_out_litellms_timeout(
    litellm_callbacks: None, backoffs: list[float]
) -> None:
    """The baseline the deadline beats: the Router's own 1 s timeout, three attempts."""
    async with primary_and_fallback() as (primary, fallback):
        router = litellm.Router(
            model_list=[entry("chat", "a", primary), entry("backup", "b", fallback)],
            fallbacks=[{"chat": ["backup"]}],
            num_retries=2,
            timeout=1,
            disable_cooldowns=True,
        )
        primary.stall_stream()
        assert await stream_text(router) == "from fallback"
        assert primary.calls("chat") == 3  # every retry on the dead deployment
        primary.healthy()


@pytest.mark.asyncio
async def test_the_learned_deadline_fails_a_hung_stream_over_after_a_healthy_history(
    litellm_callbacks: None,
) -> None:
    """``auto``, after a healthy streaming history: the fallback answers after two learned
    deadlines (3 s, the floor, then twice that for the request's retry) rather than
    three 30 s timeouts."""
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout="auto"))
        router = router_with_fallback(primary, fallback)
        for _ in range(MIN_STREAMS):
            assert await stream_text(router) == "from primary"
        await settle()
        assert breaker.counters["first_token_deadlines"] == 0  # none before a history
        deadlines = breaker._first_token
        assert deadlines is not None
        await eventually(lambda: deadlines.deadline("a") == FLOOR_SEC, "a learned deadline")
        primary.stall_stream()
        primary.reset_counts()

        assert await stream_text(router) == "from fallback"
        await settle()
        assert primary.calls("chat") == 2
        state = breaker.cache.get_state("a")
        assert state is not None
        assert state.last_error == f"no first token within {2 * FLOOR_SEC:g}s"
        assert await stream_text(router) == "from fallback"
        assert primary.calls("chat") == 2
        primary.healthy()


@pytest.mark.asyncio
async def test_a_deployment_slow_to_first_token_from_the_start_is_never_cut_off(
    litellm_callbacks: None,
) -> None:
    """1.5 s to the first token on every call: every stream is answered by it, and it
    stays closed; the deadline it earns is 4x that."""
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout="auto"))
        router = router_with_fallback(primary, fallback)
        primary.slow_first_token(1.5)
        deadlines = breaker._first_token
        assert deadlines is not None
        for _ in range(MIN_STREAMS):
            assert await stream_text(router) == "from primary"
        await settle()
        await eventually(lambda: deadlines.deadline("a") is not None, "a learned deadline")
        assert await stream_text(router) == "from primary"  # under the deadline now
        assert breaker.counters["first_token_deadlines"] == 1
        assert breaker.counters["first_token_timeouts"] == 0
        assert breaker.cache.breaker_state("a") is BreakerState.CLOSED
        deadline = deadlines.deadline("a")
        assert deadline is not None
        assert deadline >= 6.0
        primary.healthy()


@pytest.mark.asyncio
async def test_a_lone_deployment_without_a_fallback_gets_no_learned_deadline(
    litellm_callbacks: None,
) -> None:
    """Nowhere else to go: cutting its stream could only fail a request waiting would answer."""
    async with FakeProvider(reply="only") as only:
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout="auto"))
        router = litellm.Router(model_list=[entry("chat", "a", only)], disable_cooldowns=True)
        deadlines = breaker._first_token
        assert deadlines is not None
        for _ in range(MIN_STREAMS):
            assert await stream_text(router) == "only"
        await settle()
        await eventually(lambda: deadlines.deadline("a") == FLOOR_SEC, "a learned deadline")
        assert await stream_text(router) == "only"
        assert breaker.counters["first_token_deadlines"] == 0


@pytest.mark.asyncio
async def test_the_callers_own_shorter_timeout_is_left_alone(
    litellm_callbacks: None, backoffs: list[float]
) -> None:
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=5.0))
        router = router_with_fallback(primary, fallback)
        assert await stream_text(router, timeout=2) == "from primary"
        assert breaker.counters["first_token_deadlines"] == 0
        assert await stream_text(router) == "from primary"  # the Router's 30 s: shortened
        assert breaker.counters["first_token_deadlines"] == 1


@pytest.mark.asyncio
async def test_calls_that_are_not_streamed_never_get_a_deadline(litellm_callbacks: None) -> None:
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=DEADLINE_SEC))
        router = router_with_fallback(primary, fallback)
        primary.slow(2 * DEADLINE_SEC)
        response = await router.acompletion(model="chat", messages=MESSAGES)
        assert response.choices[0].message.content == "from primary"
        assert breaker.counters["first_token_deadlines"] == 0
        primary.healthy()


@pytest.mark.asyncio
async def test_a_stream_broken_mid_way_counts_but_is_no_first_token_miss(
    litellm_callbacks: None, backoffs: list[float]
) -> None:
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=DEADLINE_SEC))
        router = router_with_fallback(primary, fallback)
        primary.break_stream(after_chunks=2)
        with pytest.raises(Exception):  # noqa: B017, PT011 - whatever LiteLLM raises mid-stream
            await stream_text(router)
        await settle()
        await eventually(lambda: breaker.cache.get_state("a") is not None, "the failure counted")
        state = breaker.cache.get_state("a")
        assert state is not None
        assert state.consecutive_failures >= 1
        assert "first token" not in (state.last_error or "")
        assert breaker.counters["first_token_timeouts"] == 0
        primary.healthy()


@pytest.mark.asyncio
async def test_by_default_streams_get_no_deadline(litellm_callbacks: None) -> None:
    """Off unless asked for: the deadline is the attempt's read timeout, so it would also
    end a stream that pauses that long after its first chunk."""
    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None))
        assert breaker.config.first_token_timeout is None
        router = router_with_fallback(primary, fallback)
        for _ in range(MIN_STREAMS + 2):
            assert await stream_text(router) == "from primary"
        await settle()
        assert breaker.counters["first_token_deadlines"] == 0


@pytest.mark.asyncio
async def test_a_slow_first_token_on_healthy_siblings_still_gets_its_answer(
    litellm_callbacks: None, backoffs: list[float]
) -> None:
    """A long prompt: every deployment of the group takes 1.5 s to its first token where a
    0.5 s deadline was set. Each retry of the request waits twice as long as the one
    before, so the answer comes rather than an error."""
    async with FakeProvider(reply="a") as a, FakeProvider(reply="b") as b:
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=DEADLINE_SEC))
        router = litellm.Router(
            model_list=[entry("chat", "a", a), entry("chat", "b", b)],
            num_retries=3,
            timeout=30,
            disable_cooldowns=True,
        )
        a.slow_first_token(1.5)
        b.slow_first_token(1.5)
        assert await stream_text(router) in ("a", "b")
        assert breaker.counters["first_token_timeouts"] >= 1  # the first attempts were cut
        a.healthy()
        b.healthy()


@pytest.mark.asyncio
async def test_a_stream_timeout_is_shortened_too(
    litellm_callbacks: None, backoffs: list[float]
) -> None:
    """LiteLLM 1.110's Router hands a stream its ``stream_timeout`` apart from its
    ``timeout``: both must carry the deadline, or the stream waits the longer one."""
    seen: list[tuple[object, object]] = []

    class Spy(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
        async def async_pre_call_deployment_hook(
            self, kwargs: dict[str, Any], call_type: Any
        ) -> None:
            if kwargs.get("stream"):
                seen.append((kwargs.get("timeout"), kwargs.get("stream_timeout")))

    async with primary_and_fallback() as (primary, fallback):
        breaker = attach(CircuitBreaker(probe_interval=None, first_token_timeout=DEADLINE_SEC))
        litellm.callbacks.append(Spy())  # after the breaker: sees what it handed on
        router = litellm.Router(
            model_list=[entry("chat", "a", primary), entry("backup", "b", fallback)],
            fallbacks=[{"chat": ["backup"]}],
            num_retries=2,
            timeout=30,
            stream_timeout=20,
            disable_cooldowns=True,
        )
        primary.stall_stream()
        assert await stream_text(router) == "from fallback"
        first = seen[0]
        assert first[0] == DEADLINE_SEC
        assert first[1] in (None, DEADLINE_SEC)  # 1.108 folds it into timeout
        assert breaker.counters["first_token_timeouts"] == 2
        primary.healthy()
