"""Direct SDK calls (async and sync) and the sync Router, through real LiteLLM entry points."""

from __future__ import annotations

import time

import httpx
import litellm
import pytest
import respx
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import (
    AllDeploymentsOpenError,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from litellm_circuit_breaker._litellm_kwargs import sdk_key
from litellm_circuit_breaker.testing import FakeClock, restored_litellm_callbacks
from tests.llm_helpers import (
    MESSAGES,
    deployment,
    ok,
    open_breaker,
    router,
    router_deployment,
    status,
)

PRIMARY = "http://primary.test/v1"
BACKUP = "http://backup.test/v1"
PRIMARY_KEY = sdk_key(PRIMARY, "openai/m")


async def sdk_call(**kwargs: object) -> str:
    kwargs.setdefault("api_base", PRIMARY)
    response = await litellm.acompletion(
        model="openai/m", api_key="sk-sdk-key-000000", messages=MESSAGES, max_retries=0, **kwargs
    )
    return str(response.choices[0].message.content)


@pytest.mark.asyncio
async def test_sdk_calls_open_the_breaker_and_then_fail_fast_without_network(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """acompletion without a Router: two 503s open it, the third call never leaves."""
    route = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(503))
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await sdk_call()
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await sdk_call(api_base=f"{PRIMARY}/")  # the same endpoint, spelled differently
    assert route.call_count == 2
    assert info.value.deployment == PRIMARY_KEY
    assert info.value.retry_after == pytest.approx(60)
    assert breaker.counters["sdk_refused"] == 1
    # the breaker's own error was not counted as another provider failure
    state = breaker.cache.get_state(PRIMARY_KEY)
    assert state is not None
    assert state.consecutive_failures == 2


@pytest.mark.asyncio
async def test_sdk_fallbacks_move_on_at_once_when_the_primary_is_open(
    breaker: CircuitBreaker, mock: respx.MockRouter, backoffs: list[float]
) -> None:
    """With SDK fallbacks= the open primary is skipped and the fallback answers."""
    await GLOBAL_LOGGING_WORKER.flush()  # no earlier test's queued event lands on this breaker
    primary = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=ok("primary"))
    mock.post(f"{BACKUP}/chat/completions").mock(return_value=ok("backup"))
    open_breaker(breaker.cache, PRIMARY_KEY)
    answer = await sdk_call(
        fallbacks=[{"model": "openai/m", "api_base": BACKUP, "api_key": "sk-backup-000000"}]
    )
    assert answer == "backup"
    assert primary.call_count == 0
    assert backoffs == []


@pytest.mark.asyncio
async def test_sdk_half_open_admits_one_trial_that_closes_on_success(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """After the window the next SDK call is the trial; success closes the breaker."""
    route = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=ok("back"))
    open_breaker(breaker.cache, PRIMARY_KEY)
    clock.advance(60)
    assert await sdk_call() == "back"
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.CLOSED
    assert route.call_count == 1


def test_sync_completion_failures_count_before_the_caller_sees_them(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """litellm.completion: the sync failure event feeds the breaker inline."""
    mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(503))
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            litellm.completion(
                model="openai/m",
                api_base=PRIMARY,
                api_key="sk-sdk-key-000000",
                messages=MESSAGES,
                max_retries=0,
            )
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.OPEN


def test_sync_completion_success_resets_the_count(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """A sync success arrives on LiteLLM's logging thread and resets the failure count."""
    route = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(503))
    kwargs = {
        "model": "openai/m",
        "api_base": PRIMARY,
        "api_key": "sk-sdk-key-000000",
        "messages": MESSAGES,
        "max_retries": 0,
    }
    with pytest.raises(litellm.ServiceUnavailableError):
        litellm.completion(**kwargs)
    route.mock(return_value=ok())
    litellm.completion(**kwargs)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the success event is handed to a logging thread
        state = breaker.cache.get_state(PRIMARY_KEY)
        if state is not None and state.consecutive_failures == 0:
            break
        time.sleep(0.01)
    state = breaker.cache.get_state(PRIMARY_KEY)
    assert state is not None
    assert state.consecutive_failures == 0


def test_sync_router_sends_everything_to_the_sibling_of_an_open_deployment(
    breaker: CircuitBreaker, mock: respx.MockRouter, backoffs: list[float]
) -> None:
    """Router.completion (sync) asks pre_call_check; the open deployment is skipped at once."""
    dead = mock.post("http://dead.test/v1/chat/completions").mock(return_value=ok("dead"))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(
        deployment("chat", "dead", "dead.test"),
        deployment("chat", "live", "live.test"),
        num_retries=2,
    )
    open_breaker(breaker.cache, "dead")
    answers = [
        str(r.completion(model="chat", messages=MESSAGES).choices[0].message.content)
        for _ in range(12)
    ]
    assert answers == ["live"] * 12
    assert dead.call_count == 0
    assert backoffs == [], "the Router backed off instead of moving on"


def test_sync_router_all_open_goes_to_the_fallback(
    breaker: CircuitBreaker, mock: respx.MockRouter, backoffs: list[float]
) -> None:
    """Sync Router, every deployment open, fallback configured: the fallback answers."""
    primary = mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    r = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
        num_retries=2,
    )
    open_breaker(breaker.cache, "p")
    answer = r.completion(model="primary", messages=MESSAGES).choices[0].message.content
    assert answer == "fallback"
    assert primary.call_count == 0
    assert backoffs == []


def test_sync_router_fail_fast_raises_the_all_open_error(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """Sync Router under fail_fast: a clear error and no call."""
    cb = CircuitBreaker(clock=clock, probe_interval=None, when_all_open="fail_fast")
    litellm.callbacks.append(cb)
    route = mock.post("http://p.test/v1/chat/completions").mock(return_value=ok())
    r = router(deployment("primary", "p", "p.test"))
    open_breaker(cb.cache, "p")
    with pytest.raises(AllDeploymentsOpenError, match="primary"):
        r.completion(model="primary", messages=MESSAGES)
    assert route.call_count == 0


def test_sync_router_half_open_trial_goes_through(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """The sync path hands out the half-open trial too, and its success closes."""
    route = mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("p"))
    r = router(deployment("primary", "p", "p.test"))
    open_breaker(breaker.cache, "p")
    clock.advance(60)
    assert r.completion(model="primary", messages=MESSAGES).choices[0].message.content == "p"
    assert route.call_count == 1
    deadline = time.monotonic() + 10
    while breaker.cache.breaker_state("p") is not BreakerState.CLOSED:
        assert time.monotonic() < deadline, "the success never reached the breaker"
        time.sleep(0.01)


def test_routers_sharing_deployment_ids_are_not_confused(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Another Router reusing the id in another group must not hide this one's siblings."""
    mock.post("http://dead.test/v1/chat/completions").mock(return_value=ok("dead"))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    other = router(deployment("solo", "dead", "dead.test"))
    mine = router(
        deployment("chat", "dead", "dead.test"),
        deployment("chat", "live", "live.test"),
        num_retries=2,
    )
    open_breaker(breaker.cache, "dead")
    answers = {
        str(mine.completion(model="chat", messages=MESSAGES).choices[0].message.content)
        for _ in range(12)
    }
    assert answers == {"live"}
    assert router_deployment(other, "dead") is not None  # still alive, still ambiguous


@pytest.mark.asyncio
async def test_a_fallback_on_another_router_does_not_count_for_this_one(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """fail_open still applies on a Router without fallbacks when a twin Router has them."""
    mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    twin = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
    )
    mine = router(deployment("primary", "p", "p.test"))
    open_breaker(breaker.cache, "p")
    response = await mine.acompletion(model="primary", messages=MESSAGES)
    assert response.choices[0].message.content == "primary"
    assert breaker.cache.breaker_state("p") is BreakerState.CLOSED  # that success was evidence
    open_breaker(breaker.cache, "p")
    response = await twin.acompletion(model="primary", messages=MESSAGES)
    assert response.choices[0].message.content == "fallback"


def test_sync_router_without_retries_still_moves_to_the_sibling(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """num_retries=0 on the Router: skipping an open deployment is not a failed attempt."""
    dead = mock.post("http://dead.test/v1/chat/completions").mock(return_value=ok("dead"))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(
        deployment("chat", "dead", "dead.test"),
        deployment("chat", "live", "live.test"),
        num_retries=0,
    )
    open_breaker(breaker.cache, "dead")
    answers = [
        str(r.completion(model="chat", messages=MESSAGES).choices[0].message.content)
        for _ in range(20)
    ]
    assert answers == ["live"] * 20
    assert dead.call_count == 0


@pytest.mark.asyncio
async def test_sdk_trial_ending_in_a_caller_error_hands_its_permit_back(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """A half-open SDK trial that gets a 400 frees the permit: the next call is the trial."""
    route = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(400))
    open_breaker(breaker.cache, PRIMARY_KEY)
    clock.advance(60)
    with pytest.raises(litellm.BadRequestError):
        await sdk_call()
    route.mock(return_value=ok("back"))
    assert await sdk_call() == "back"
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_the_outer_call_of_sdk_fallbacks_is_never_evidence(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Served by the fallback, the outer call's success must not close the open primary."""
    await GLOBAL_LOGGING_WORKER.flush()  # no earlier test's queued event lands on this breaker
    primary = mock.post(f"{PRIMARY}/chat/completions").mock(return_value=ok("primary"))
    mock.post(f"{BACKUP}/chat/completions").mock(return_value=ok("backup"))
    open_breaker(breaker.cache, PRIMARY_KEY)
    fallbacks = [{"model": "openai/m", "api_base": BACKUP, "api_key": "sk-backup-000000"}]
    for _ in range(3):
        assert await sdk_call(fallbacks=list(fallbacks)) == "backup"
    assert primary.call_count == 0
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.OPEN


@pytest.mark.asyncio
async def test_one_primary_failure_under_sdk_fallbacks_counts_once(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """The outer call's queued copy of the primary's failure is not a second failure."""
    await GLOBAL_LOGGING_WORKER.flush()  # no earlier test's queued event lands on this breaker
    mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(503))
    mock.post(f"{BACKUP}/chat/completions").mock(return_value=ok("backup"))
    fallbacks = [{"model": "openai/m", "api_base": BACKUP, "api_key": "sk-backup-000000"}]
    assert await sdk_call(fallbacks=list(fallbacks)) == "backup"
    await GLOBAL_LOGGING_WORKER.flush()
    state = breaker.cache.get_state(PRIMARY_KEY)
    assert state is not None
    assert state.consecutive_failures == 1
    assert breaker.cache.breaker_state(PRIMARY_KEY) is BreakerState.CLOSED


# -- the bound on SDK breakers (issue 12 item 7) ------------------------------------


async def call_model(n: int, api_base: str = PRIMARY) -> None:
    """One direct SDK call to model ``m{n}`` (on the primary endpoint unless told)."""
    await litellm.acompletion(
        model=f"openai/m{n}",
        api_base=api_base,
        api_key="sk-sdk-key-000000",
        messages=MESSAGES,
        max_retries=0,
    )


@pytest.mark.asyncio
async def test_300_distinct_models_keep_at_most_max_sdk_breakers(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """Every call succeeds: the oldest closed breakers make room, memory stays bounded."""
    mock.post(f"{PRIMARY}/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=None, max_sdk_breakers=100)
    litellm.callbacks.append(cb)
    for n in range(300):
        await call_model(n)
    assert len(cb.cache) == 100
    assert len(cb.sdk_breakers) == 100
    assert cb.sdk_breakers.evicted == 200
    assert cb.sdk_breakers.untracked == 0
    # The most recent ones are kept, the oldest went first.
    assert sdk_key(PRIMARY, "openai/m299") in cb.cache
    assert sdk_key(PRIMARY, "openai/m0") not in cb.cache
    assert len(cb.status()) == 100


@pytest.mark.asyncio
async def test_open_sdk_breakers_are_never_evicted_while_they_matter(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """Five dead models stay refused without a network call through 300 healthy ones."""
    dead = mock.post(f"{BACKUP}/chat/completions").mock(return_value=status(503))
    mock.post(f"{PRIMARY}/chat/completions").mock(return_value=ok())
    cb = CircuitBreaker(clock=clock, probe_interval=None, max_sdk_breakers=10)
    litellm.callbacks.append(cb)
    for n in range(5):
        for _ in range(2):
            with pytest.raises(litellm.ServiceUnavailableError):
                await call_model(n, api_base=BACKUP)
    for n in range(300):
        await call_model(1000 + n)
    calls = dead.call_count
    for n in range(5):
        with pytest.raises(CircuitOpenError):
            await call_model(n, api_base=BACKUP)
    assert dead.call_count == calls == 10
    assert len(cb.cache) == 10
    opened = [r for r in cb.status() if r.state is BreakerState.OPEN]
    assert {r.deployment for r in opened} == {sdk_key(BACKUP, f"openai/m{n}") for n in range(5)}
    assert {r.endpoint for r in opened} == {BACKUP}


@pytest.mark.asyncio
async def test_when_every_sdk_breaker_matters_a_new_model_goes_untracked(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """Bound full of open breakers: a new model's calls pass (counted), the open stay open."""
    mock.post(f"{BACKUP}/chat/completions").mock(return_value=status(503))
    cb = CircuitBreaker(clock=clock, probe_interval=None, max_sdk_breakers=2)
    litellm.callbacks.append(cb)
    for n in range(3):
        for _ in range(2):
            with pytest.raises(litellm.ServiceUnavailableError):
                await call_model(n, api_base=BACKUP)
    states = {r.deployment: r.state for r in cb.status()}
    assert states == {sdk_key(BACKUP, f"openai/m{n}"): BreakerState.OPEN for n in range(2)}
    assert cb.sdk_breakers.untracked == 2  # m2's two failures: not counted
    with pytest.raises(litellm.ServiceUnavailableError):
        await call_model(2, api_base=BACKUP)  # untracked: never refused
    # Once a window ends and no trial is out, that breaker may make room.
    clock.advance(60)
    with pytest.raises(litellm.ServiceUnavailableError):
        await call_model(2, api_base=BACKUP)
    assert sdk_key(BACKUP, "openai/m2") in cb.sdk_breakers
    assert cb.sdk_breakers.evicted == 1


def test_sync_sdk_calls_are_bounded_too(mock: respx.MockRouter, clock: FakeClock) -> None:
    """litellm.completion reports on the logging path; the same bound applies."""
    mock.post(f"{PRIMARY}/chat/completions").mock(return_value=status(503))
    cb = CircuitBreaker(clock=clock, probe_interval=None, max_sdk_breakers=5)
    litellm.disable_aiohttp_transport = True
    with restored_litellm_callbacks():
        litellm.callbacks.append(cb)
        for n in range(12):
            with pytest.raises(litellm.ServiceUnavailableError):
                litellm.completion(
                    model=f"openai/s{n}",
                    api_base=PRIMARY,
                    api_key="sk-sdk-key-000000",
                    messages=MESSAGES,
                    max_retries=0,
                )
    assert len(cb.cache) == 5
    assert cb.sdk_breakers.evicted == 7


def test_sync_router_a_callers_own_short_timeout_never_opens_a_healthy_deployment(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Router.completion (sync), the caller's ``timeout=0.05`` on a deployment whose own
    is 30 s: the caller's, however many times (the adversarial pass opened it)."""

    def answer(request: httpx.Request) -> httpx.Response:
        read = request.extensions.get("timeout", {}).get("read")
        if read is not None and read < 0.3:  # it answers in 0.3 s: this times out
            raise httpx.ReadTimeout("timed out", request=request)
        return ok("a")

    mock.post("http://a.test/v1/chat/completions").mock(side_effect=answer)
    r = router(deployment("chat", "a", "a.test"), timeout=30)
    for _ in range(3):
        with pytest.raises(litellm.Timeout):
            r.completion(model="chat", messages=MESSAGES, timeout=0.05)
    assert breaker.cache.breaker_state("a") is BreakerState.CLOSED
    assert r.completion(model="chat", messages=MESSAGES).choices[0].message.content == "a"
