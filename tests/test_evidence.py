"""Evidence that blames the right party and never switches the breaker off (issue 11)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import litellm
import pytest
import respx
from litellm.integrations.custom_logger import CustomLogger

from litellm_circuit_breaker import BreakerState, CircuitBreaker, _routers
from litellm_circuit_breaker._ledger import AttemptLedger
from litellm_circuit_breaker._litellm_kwargs import deployment_of
from litellm_circuit_breaker._redact import public_url
from litellm_circuit_breaker._trials import TrialProber
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES, deployment, ok, router, status

GROUP = "chat"
MALFORMED = "http://[::1:8000/v1"


@pytest.mark.asyncio
async def test_one_malformed_api_base_leaves_the_rest_of_the_group_protected(
    breaker: CircuitBreaker, mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The bad deployment gets at most the threshold of calls; no internal error, no traceback."""
    caplog.set_level(logging.WARNING, logger="litellm_circuit_breaker")
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    bad = deployment(GROUP, "bad", "unused.test")
    bad["litellm_params"]["api_base"] = MALFORMED
    r = router(bad, deployment(GROUP, "live", "live.test"), num_retries=2)
    answers = []
    for _ in range(20):
        response = await r.acompletion(model=GROUP, messages=MESSAGES)
        answers.append(response.choices[0].message.content)
    assert answers == ["live"] * 20
    assert breaker.internal_errors == {}
    assert not breaker.cache.is_healthy("bad")
    state = breaker.cache.get_state("bad")
    assert state is not None
    assert state.consecutive_failures == breaker.cache.failure_threshold  # then never again
    assert MALFORMED not in caplog.text  # named by its id, never by the raw URL
    named = [r for r in caplog.records if "deployment bad" in r.getMessage()]
    assert len([r for r in named if "not a valid URL" in r.getMessage()]) == 1


def test_a_malformed_api_base_has_no_probe_and_no_readable_display() -> None:
    """It stays passive (no probe), and what is shown of it cannot leak a password."""
    entry = {
        "model_name": GROUP,
        "litellm_params": {"model": "openai/m", "api_base": "http://u:pw@[::1:8000/v1"},
        "model_info": {"id": "bad"},
    }
    found = deployment_of(entry)
    assert found is not None
    assert found.probe is None
    assert "pw" not in (found.display_base or "")
    assert public_url("http://u:pw@[::1:8000/v1").startswith("(invalid URL ")


def _answers_in(seconds: float) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """A deployment that answers in ``seconds``: a shorter read timeout times out at once."""

    async def answer(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        if timeout is not None and timeout < seconds:
            raise httpx.ReadTimeout("timed out", request=request)
        await asyncio.sleep(seconds)  # the provider's own latency, not a window waited out
        return ok("a")

    return answer


def _watching(mock: respx.MockRouter, *hosts: str, probe_timeout: float = 3.0) -> CircuitBreaker:
    """A breaker with probes on (so its stall watch times each call), providers answering."""
    for host in hosts:
        mock.get(f"http://{host}/v1/models").mock(return_value=httpx.Response(200, json={}))
    cb = CircuitBreaker(probe_interval=30, probe_timeout=probe_timeout)
    litellm.callbacks.append(cb)
    return cb


@pytest.mark.asyncio
async def test_a_callers_own_short_timeout_never_opens_a_healthy_deployment(
    mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """Shorter than the deployment's own timeout and than it takes to answer: the caller's."""
    cb = _watching(mock, "a.test")
    mock.post("http://a.test/v1/chat/completions").mock(side_effect=_answers_in(0.3))
    r = router(deployment(GROUP, "a", "a.test"), timeout=30)
    await r.acompletion(model=GROUP, messages=MESSAGES)  # it answers, in 0.3 s
    for _ in range(3):
        with pytest.raises(litellm.Timeout):
            await r.acompletion(model=GROUP, messages=MESSAGES, timeout=0.05)
    state = cb.cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 0  # nothing counted
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED
    response = await r.acompletion(model=GROUP, messages=MESSAGES)
    assert response.choices[0].message.content == "a"
    assert cb.internal_errors == {}
    await cb.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["cold", "httpx.Timeout", "after a fast 400", "slower than"])
async def test_a_callers_short_timeout_is_the_callers_however_little_is_known(
    mock: respx.MockRouter, litellm_callbacks: None, case: str
) -> None:
    """The adversarial pass opened a healthy 0.3 s deployment with the caller's own
    timeout in each of these: a replica that never saw it answer (cold), a timeout given
    as ``httpx.Timeout``, a fast 400 just before, a last answer faster than this one."""
    cb = _watching(mock, "a.test")
    chat = mock.post("http://a.test/v1/chat/completions")
    chat.mock(side_effect=_answers_in(0.3))
    r = router(deployment(GROUP, "a", "a.test"), timeout=30)
    short: Any = 0.05
    if case == "httpx.Timeout":
        short = httpx.Timeout(0.05)
    elif case == "after a fast 400":
        chat.mock(return_value=status(400))
        with pytest.raises(litellm.BadRequestError):
            await r.acompletion(model=GROUP, messages=MESSAGES)
        chat.mock(side_effect=_answers_in(0.3))
    elif case == "slower than":
        chat.mock(side_effect=_answers_in(0.05))
        await r.acompletion(model=GROUP, messages=MESSAGES)  # its last answer: 0.05 s
        chat.mock(side_effect=_answers_in(0.3))
        short = 0.15
    for _ in range(3):
        with pytest.raises(litellm.Timeout):
            await r.acompletion(model=GROUP, messages=MESSAGES, timeout=short)
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED
    state = cb.cache.get_state("a")
    assert state is None or state.consecutive_failures == 0
    response = await r.acompletion(model=GROUP, messages=MESSAGES)
    assert response.choices[0].message.content == "a"
    assert cb.internal_errors == {}
    await cb.aclose()


@pytest.mark.asyncio
async def test_a_hang_behind_the_callers_own_timeout_opens_once_its_endpoint_is_silent(
    mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """The caller allows 1 s and the box behind the deployment went silent (chat and its
    list call alike): the timeout itself counts for nothing, the stall probe it prompts
    finds the endpoint silent and opens the breaker."""
    cb = _watching(mock, "a.test", probe_timeout=0.5)
    route = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment(GROUP, "a", "a.test"), timeout=30)
    await r.acompletion(model=GROUP, messages=MESSAGES, timeout=1)
    route.mock(side_effect=_answers_in(3600))
    mock.get("http://a.test/v1/models").mock(side_effect=httpx.ConnectTimeout("silent"))
    with pytest.raises(litellm.Timeout):
        await r.acompletion(model=GROUP, messages=MESSAGES, timeout=1)
    for _ in range(2000):  # the prompted probe runs in the background
        if cb.cache.breaker_state("a") is BreakerState.OPEN:
            break
        await asyncio.sleep(0.005)
    assert cb.cache.breaker_state("a") is BreakerState.OPEN
    assert cb.counters["stall_probes"] >= 1
    assert cb.counters["stalls"] == 1  # the prompted probe found it silent
    assert cb.internal_errors == {}
    await cb.aclose()


@pytest.mark.asyncio
async def test_a_hang_behind_the_callers_own_timeout_with_a_blind_probe_stays_closed(
    mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """The documented limit: chat hangs but the list call answers, so the probe the
    caller's timeout prompts passes; the caller's timeouts alone never open it."""
    cb = _watching(mock, "a.test")
    route = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment(GROUP, "a", "a.test"), timeout=30)
    await r.acompletion(model=GROUP, messages=MESSAGES, timeout=1)
    route.mock(side_effect=_answers_in(3600))
    for _ in range(3):
        with pytest.raises(litellm.Timeout):
            await r.acompletion(model=GROUP, messages=MESSAGES, timeout=1)
    for _ in range(2000):  # the watch's next round sends the prompted probe
        if cb.counters["stall_probes"]:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # and respx answers it at once
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED
    assert cb.counters["stall_probes"] == 1  # one per gap, not one per timeout
    assert cb.counters["stalls"] == 0
    await cb.aclose()


@pytest.mark.asyncio
async def test_the_operators_own_short_timeout_still_counts(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """The deployment's configured timeout is the operator's: its timeouts open the breaker."""
    mock.post("http://a.test/v1/chat/completions").mock(side_effect=_answers_in(0.3))
    short = deployment(GROUP, "a", "a.test")
    short["litellm_params"]["timeout"] = 0.05
    r = router(short)
    for _ in range(2):
        with pytest.raises(litellm.Timeout):
            await r.acompletion(model=GROUP, messages=MESSAGES)
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN


def _wildcard_provider(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content)["model"] == "made-up":
        return status(404)
    return ok("w")


@pytest.mark.asyncio
async def test_a_made_up_model_on_a_wildcard_route_never_opens_it(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """404s for models the caller named on ``openai/*`` are the caller's; valid calls go on."""
    mock.post("http://w.test/v1/chat/completions").mock(side_effect=_wildcard_provider)
    wildcard = {
        "model_name": "openai/*",
        "litellm_params": {"model": "openai/*", "api_base": "http://w.test/v1", "api_key": "k"},
        "model_info": {"id": "w"},
    }
    r = router(wildcard)
    await r.acompletion(model="openai/m", messages=MESSAGES)  # the route works
    for _ in range(3):
        with pytest.raises(litellm.NotFoundError):
            await r.acompletion(model="openai/made-up", messages=MESSAGES)
    assert breaker.cache.breaker_state("w") is BreakerState.CLOSED
    response = await r.acompletion(model="openai/m", messages=MESSAGES)
    assert response.choices[0].message.content == "w"


@pytest.mark.asyncio
async def test_a_made_up_model_on_a_cold_wildcard_route_never_opens_it_once_probed(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """No call has succeeded yet (a replica just started), but the route's probe passed:
    two typos are the caller's, and the next valid request is served."""
    mock.post("http://w.test/v1/chat/completions").mock(side_effect=_wildcard_provider)
    mock.get("http://w.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    wildcard = {
        "model_name": "openai/*",
        "litellm_params": {"model": "openai/*", "api_base": "http://w.test/v1", "api_key": "k"},
        "model_info": {"id": "w"},
    }
    cb = CircuitBreaker(clock=clock, probe_interval=None, when_all_open="fail_fast")
    litellm.callbacks.append(cb)
    r = router(wildcard)
    cb.attach(r)
    await cb.probe_once()
    for _ in range(2):
        with pytest.raises(litellm.NotFoundError):
            await r.acompletion(model="openai/made-up", messages=MESSAGES)
    assert cb.cache.breaker_state("w") is BreakerState.CLOSED
    response = await r.acompletion(model="openai/m", messages=MESSAGES)
    assert response.choices[0].message.content == "w"


@pytest.mark.asyncio
async def test_a_wildcard_route_that_answers_nothing_but_404_still_opens(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """A retired route or a lost access: no call ever succeeds, so its 404s are evidence."""
    mock.post("http://w.test/v1/chat/completions").mock(return_value=status(404))
    wildcard = {
        "model_name": "openai/*",
        "litellm_params": {"model": "openai/*", "api_base": "http://w.test/v1", "api_key": "k"},
        "model_info": {"id": "w"},
    }
    r = router(wildcard)
    for _ in range(2):
        with pytest.raises(litellm.NotFoundError):
            await r.acompletion(model="openai/m", messages=MESSAGES)
    assert breaker.cache.breaker_state("w") is BreakerState.OPEN


@pytest.mark.asyncio
async def test_a_404_for_the_configured_model_still_counts(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Outside a wildcard route, a missing model is the operator's: it opens the breaker."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=status(404))
    r = router(deployment(GROUP, "a", "a.test"))
    for _ in range(2):
        with pytest.raises(litellm.NotFoundError):
            await r.acompletion(model=GROUP, messages=MESSAGES)
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN


def test_asyncio_run_per_call_probes_at_most_once_per_interval(
    mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """Scripts and task queues start a loop per call: one probe round per interval, not per loop."""
    listed = mock.get(url__regex=r"^http://e\d\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    mock.post(url__regex=r"^http://e\d\.test/v1/chat/completions$").mock(return_value=ok("e"))
    r = router(*(deployment(GROUP, f"e{i}", f"e{i}.test") for i in range(10)))
    cb = CircuitBreaker(probe_interval=30)
    cb.attach(r)

    async def call() -> None:
        await r.acompletion(model=GROUP, messages=MESSAGES)
        await asyncio.sleep(0.05)  # a little work after the call: the first round has run

    for _ in range(8):
        asyncio.run(call())
    assert listed.call_count == 10  # one round over the ten endpoints, in the first loop
    assert cb.internal_errors == {}


@pytest.mark.asyncio
async def test_a_queued_success_however_late_never_closes_a_breaker_opened_since(
    breaker: CircuitBreaker, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """A non-stream call's queued success is a copy of its inline one: never evidence again."""
    seen: list[dict[str, Any]] = []

    class Spy(CustomLogger):  # type: ignore[misc]
        async def async_post_call_success_deployment_hook(
            self, request_data: dict[str, Any], response: object, call_type: object
        ) -> None:
            seen.append(request_data)

    litellm.callbacks.append(Spy())
    breaker._ledger = AttemptLedger(memory=1)  # "later than the memory holds", made short
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment(GROUP, "a", "a.test"))
    for _ in range(2):
        await r.acompletion(model=GROUP, messages=MESSAGES)
    for _ in range(breaker.cache.failure_threshold):
        breaker.cache.mark_unhealthy("a", "HTTP 503")
    # The first call's queued success, arriving now: its kwargs, as LiteLLM queues them.
    late = {**seen[0], "stream": False}
    await breaker.async_log_success_event(late, None, None, None)
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN
    assert breaker.internal_errors == {}


@pytest.mark.asyncio
async def test_a_restricted_key_refused_its_list_call_is_no_usable_probe(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """/models answers 403 while chat with the same key answers 200: no probe, never opened."""
    mock.get("http://a.test/v1/models").mock(return_value=status(403))
    chat = mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    litellm.callbacks.append(cb)
    r = router(deployment(GROUP, "a", "a.test"))
    cb.attach(r)
    await r.acompletion(model=GROUP, messages=MESSAGES)
    for _ in range(4):  # quiet probe rounds
        clock.advance(30)
        await cb.probe_once()
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED
    assert cb.status()[0].probe == "unprobed"
    for _ in range(5):
        await r.acompletion(model=GROUP, messages=MESSAGES)
    assert chat.call_count == 6


@pytest.mark.asyncio
async def test_failing_probes_never_hold_a_breaker_open_without_a_trial(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """Probes failing while open keep the window as it was: when it ends, one call decides."""
    mock.get("http://a.test/v1/models").mock(return_value=status(403))
    chat = mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    litellm.callbacks.append(cb)
    r = router(deployment(GROUP, "a", "a.test"))
    cb.attach(r)
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await r.acompletion(model=GROUP, messages=MESSAGES)
    assert cb.cache.breaker_state("a") is BreakerState.OPEN
    window = cb.cache.retry_in("a")
    for _ in range(5):
        clock.advance(10)
        await cb.probe_once()  # every one of them fails
    assert cb.cache.retry_in("a") == pytest.approx(window - 50)
    clock.advance(10)
    chat.mock(return_value=ok("a"))
    response = await r.acompletion(model=GROUP, messages=MESSAGES)  # the trial, and it works
    assert response.choices[0].message.content == "a"
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_failures_still_count_when_this_litellm_hides_its_routers(
    breaker: CircuitBreaker, mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judging what the caller chose needs no Router for a 503: it opens, no internal error."""

    def hidden(*args: object) -> list[object]:
        raise _routers.SurfaceUnknownError("the Routers", "no fallbacks are read")

    entry = deployment(GROUP, "a", "a.test")
    breaker.add_deployments([entry])  # known from the configuration, not from a Router
    monkeypatch.setattr(_routers, "serving_routers", hidden)
    mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    r = router(entry)
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await r.acompletion(model=GROUP, messages=MESSAGES)
    assert breaker.cache.breaker_state("a") is BreakerState.OPEN
    assert breaker.internal_errors == {}


async def _eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Yield to the loop until ``predicate`` holds: a bound on waiting, not a measure."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not within the bound"
        await asyncio.sleep(0.01)


def _is_trial(request: httpx.Request) -> bool:
    """A trial completion: the breaker's one-token "ping", not a user's request."""
    body = json.loads(request.content)
    return body.get("max_tokens") == 1 and body["messages"][0]["content"] == "ping"


async def _blind_probe_outage(
    mock: respx.MockRouter,
    clock: FakeClock,
    cb: CircuitBreaker,
    probe_phase: float,
    trial_every: float | None = None,
) -> tuple[int, float | None, list[float]]:
    """The issue's scenario: a 60 s outage the list call cannot see, on the fake clock.

    One request every 4 s to a primary group with a fallback, a probe round
    every 30 s (``probe_phase`` seconds into the run), the primary's /models
    answering 200 throughout while its chat answers 503 from t=20 to t=80; with
    ``trial_every``, the trial-completion loop's turn every that many seconds.
    Returns the user calls that reached the dead primary, the seconds from the
    heal to the first request it answered again (None: never, by t=200), and
    when trial completions reached it.
    """
    mock.get(url__regex=r"^http://[ab]\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={"object": "list", "data": []})
    )
    down = False
    trials: list[float] = []
    dead_calls = 0

    def primary_answers(request: httpx.Request) -> httpx.Response:
        nonlocal dead_calls
        if _is_trial(request):
            trials.append(clock() - start)
        elif down:
            dead_calls += 1  # a user's call (a ping in flight meanwhile is not one)
        return status(503) if down else ok("a")

    mock.post("http://a.test/v1/chat/completions").mock(side_effect=primary_answers)
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    litellm.callbacks.append(cb)
    r = router(
        deployment("primary", "a", "a.test"),
        deployment("backup", "b", "b.test"),
        fallbacks=[{"primary": ["backup"]}],
    )
    cb.attach(r)
    outage, heal, end = 20.0, 80.0, 200.0
    events = [(float(t), "request") for t in range(0, int(end), 4)]
    events += [(probe_phase + 30.0 * k, "probe") for k in range(int(end // 30) + 1)]
    if trial_every is not None:
        events += [(trial_every * k, "trial") for k in range(1, int(end / trial_every))]
    start = clock()
    back: float | None = None
    for at, kind in sorted(events):
        clock.advance(max(0.0, start + at - clock()))
        down = outage <= at < heal
        if kind == "probe":
            await cb.probe_once()
            continue
        if kind == "trial":
            assert cb._trials is not None
            await cb._trials.tick()  # the loop's body; the loop only sleeps between them
            continue
        response = await r.acompletion(model="primary", messages=MESSAGES)
        if not down and at >= heal and back is None and response.choices[0].message.content == "a":
            back = at - heal
    assert set(cb.cache.ids()) == {"a", "b"}  # trial completions are never counted as calls
    return dead_calls, back, trials


@pytest.mark.asyncio
@pytest.mark.parametrize("probe_phase", [0.0, 7.5, 15.0, 22.5])
async def test_a_probe_blind_to_the_fault_costs_one_trial_per_window_and_recovers(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None, probe_phase: float
) -> None:
    """GET /models answers 200 while chat answers 503: <= 3 dead calls, back within 40 s."""
    cb = CircuitBreaker(clock=clock, probe_interval=None, trial_probe_interval=None)
    dead_calls, back, trials = await _blind_probe_outage(mock, clock, cb, probe_phase)
    assert dead_calls <= 3
    assert back is not None
    assert back <= 40.0
    assert trials == []


@pytest.mark.asyncio
@pytest.mark.parametrize("probe_phase", [0.0, 7.5, 15.0, 22.5])
async def test_trial_completions_bring_a_blind_probed_deployment_back_within_seconds(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None, probe_phase: float
) -> None:
    """Trial completions every 5 s: no user call is a trial, and the healed primary is back fast.

    The passing probe's trial is a ping, not a user's call, so the outage costs
    the user calls that opened the breaker and nothing more.
    """
    # The probe loop on (trial completions run in it), its rounds driven by hand.
    cb = CircuitBreaker(clock=clock, probe_interval=3600.0, stall_after_sec=None)
    async with cb:
        dead_calls, back, trials = await _blind_probe_outage(mock, clock, cb, probe_phase, 5.0)
    assert dead_calls == cb.cache.failure_threshold
    assert back is not None
    assert back <= 5.0 + 4.0  # one trial interval, then the next request
    assert trials  # sent only while open with a blind probe, one per 5 s at most
    assert all(20.0 < t <= 80.0 + 5.0 for t in trials)
    # At most one per interval, besides the one a passing probe asks for at once.
    assert len(trials) <= 60 / 5 + 200 / 30
    assert cb.counters["trial_probes_passed"] == 1


@pytest.mark.asyncio
async def test_a_deployment_that_refuses_the_trial_completion_gets_no_more(
    mock: respx.MockRouter,
    clock: FakeClock,
    litellm_callbacks: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 400 to the one-token ping: one WARNING, no more trial completions, the window decides."""
    mock.get(url__regex=r"^http://[ab]\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={})
    )
    refused = 0

    def chat(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        if _is_trial(request):
            refused += 1
            return status(400)
        return status(503)

    mock.post("http://a.test/v1/chat/completions").mock(side_effect=chat)
    cb = CircuitBreaker(clock=clock, probe_interval=3600.0, stall_after_sec=None)
    litellm.callbacks.append(cb)
    r = router(deployment(GROUP, "a", "a.test"))
    cb.attach(r)

    async def until_open() -> None:
        while cb.cache.breaker_state("a") is not BreakerState.OPEN:
            with pytest.raises(litellm.ServiceUnavailableError):
                await r.acompletion(model=GROUP, messages=MESSAGES)

    await until_open()
    with caplog.at_level(logging.WARNING, logger="litellm_circuit_breaker"):
        await cb.probe_once()  # passes: a ping goes at once to confirm it... refused
        # The probe's pass then grants a real call as the trial instead.
        await _eventually(lambda: cb.cache.breaker_state("a") is BreakerState.HALF_OPEN)
        await until_open()  # that trial fails: the probe is blind
        assert cb._trials is not None
        for _ in range(3):
            clock.advance(5)
            await cb._trials.tick()
            await cb.probe_once()
    assert refused == 1
    assert sum("refused a trial completion" in r.getMessage() for r in caplog.records) == 1
    assert cb.cache.breaker_state("a") is BreakerState.OPEN
    assert cb.internal_errors == {}
    await cb.aclose()


def _trial_prober(**overrides: Any) -> TrialProber:
    """A ping loop on its own: 5 s apart, 3 s each, callbacks that do nothing unless given."""
    arguments: dict[str, Any] = {
        "wanted": list,
        "deployment_of": lambda _: None,
        "on_pass": lambda _: None,
        "on_fail": lambda _, __: None,
        "on_refused": lambda _: None,
        "count": lambda _: None,
        "on_error": lambda kind, exc: None,
        "redact": str,
    }
    return TrialProber(5.0, 3.0, **{**arguments, **overrides})


@pytest.mark.asyncio
async def test_the_trial_loop_outlives_its_own_errors() -> None:
    """An error in one turn is reported and the next turn still comes."""
    turns: list[str] = []
    errors: list[str] = []

    def wanted() -> list[str]:
        turns.append("turn")
        if len(turns) == 1:
            raise RuntimeError("boom")
        return []

    async def sleep(seconds: float) -> None:
        assert seconds == 5.0
        if len(turns) == 3:
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    trials = _trial_prober(
        wanted=wanted,
        on_error=lambda kind, exc: errors.append(f"{kind}: {exc}"),
        sleep=sleep,
    )
    with pytest.raises(asyncio.CancelledError):
        await trials.run()
    assert turns == ["turn"] * 3
    assert errors == ["trial_probe: boom"]


@pytest.mark.asyncio
async def test_a_ping_is_sent_whatever_litellm_params_the_deployment_carries(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """max_tokens, metadata and stream in litellm_params: the ping still goes, as a ping."""
    mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200, json={}))
    pings: list[dict[str, Any]] = []

    def chat(request: httpx.Request) -> httpx.Response:
        if _is_trial(request):
            pings.append(json.loads(request.content))
            return ok("a")
        return status(503)

    mock.post("http://a.test/v1/chat/completions").mock(side_effect=chat)
    entry = deployment(GROUP, "a", "a.test")
    entry["litellm_params"].update(max_tokens=256, metadata={"team": "x"}, stream=False)
    cb = CircuitBreaker(clock=clock, probe_interval=3600.0, stall_after_sec=None)
    litellm.callbacks.append(cb)
    r = router(entry)
    cb.attach(r)
    async with cb:
        while cb.cache.breaker_state("a") is not BreakerState.OPEN:
            with pytest.raises(litellm.ServiceUnavailableError):
                await r.acompletion(model=GROUP, messages=MESSAGES)
        await cb.probe_once()  # passes: a ping goes at once
        await _eventually(lambda: bool(pings))
        await _eventually(lambda: cb.cache.breaker_state("a") is BreakerState.HALF_OPEN)
    assert len(pings) == 1
    assert pings[0]["max_tokens"] == 1
    assert cb.cache.breaker_state("a") is BreakerState.HALF_OPEN  # the next call is the trial
    assert cb.internal_errors == {}


def test_pings_go_in_every_event_loop_a_process_makes() -> None:
    """asyncio.run per call: the ping loop's primitives follow the loop it runs in."""
    entry = deployment(GROUP, "a", "a.test")
    target = deployment_of(entry)
    sent: list[dict[str, Any]] = []

    async def complete(**arguments: Any) -> None:
        sent.append(arguments)

    trials = _trial_prober(
        wanted=lambda: ["a"],
        deployment_of=lambda _: target,
        on_error=lambda kind, exc: pytest.fail(f"{kind}: {exc}"),
        complete=complete,
    )

    async def never(_seconds: float) -> None:
        await asyncio.Event().wait()

    trials.sleep = never

    async def one_loop(turns: int) -> None:
        loop = asyncio.create_task(trials.run())
        for _ in range(20):  # nothing wakes it: no ping, however often the loop yields
            await asyncio.sleep(0)
        assert len(sent) == turns * 1
        trials.wake()  # a probe passed: one ping at once
        while len(sent) == turns:
            await asyncio.sleep(0)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    for turns in range(3):
        asyncio.run(one_loop(turns))
    assert len(sent) == 3
    assert sent[0]["api_key"] == "sk-test-key-123456"
    assert sent[0]["metadata"]["tags"] == ["litellm-internal-health-check"]


@pytest.mark.asyncio
async def test_calls_in_flight_when_it_opened_close_nothing_as_they_succeed(
    breaker: CircuitBreaker,
) -> None:
    """Three long calls are out when the deployment starts answering 503: the breaker
    opens after two failures, and their successes, landing later, neither close it
    (the flapping the adversarial pass found: open, closed, open...) nor let more
    calls reach the dead deployment."""
    from litellm_circuit_breaker.testing import FakeProvider  # noqa: PLC0415

    transitions: list[str] = []
    breaker.cache.add_listener(lambda e: transitions.append(e.new.value))
    primary, backup = FakeProvider(reply="P"), FakeProvider(reply="B")
    await primary.start()
    await backup.start()
    try:
        r = litellm.Router(
            model_list=[
                {
                    "model_name": "chat",
                    "litellm_params": {
                        "model": "openai/m",
                        "api_base": primary.base_url,
                        "api_key": "sk-x",
                    },
                    "model_info": {"id": "primary"},
                },
                {
                    "model_name": "chat-b",
                    "litellm_params": {
                        "model": "openai/m",
                        "api_base": backup.base_url,
                        "api_key": "sk-x",
                    },
                    "model_info": {"id": "backup"},
                },
            ],
            fallbacks=[{"chat": ["chat-b"]}],
            num_retries=0,
            disable_cooldowns=True,
        )

        async def ask() -> str:
            answer = await r.acompletion(model="chat", messages=MESSAGES)
            return str(answer.choices[0].message.content)

        assert await ask() == "P"
        primary.slow(1.0)
        in_flight = [asyncio.create_task(ask()) for _ in range(3)]
        for _ in range(2000):  # until all three reached the provider
            if primary.calls("chat") == 4:
                break
            await asyncio.sleep(0.005)
        primary.error(503)
        assert [await ask() for _ in range(2)] == ["B", "B"]  # two failures: it opens
        assert breaker.cache.breaker_state("primary") is BreakerState.OPEN
        assert await asyncio.gather(*in_flight) == ["P", "P", "P"]
        dead_calls = primary.calls("chat")
        assert [await ask() for _ in range(5)] == ["B"] * 5
        assert primary.calls("chat") == dead_calls, "calls reached the dead deployment"
        assert breaker.cache.breaker_state("primary") is BreakerState.OPEN
        assert transitions == ["open"]
        assert breaker.counters["stale_successes"] == 3
    finally:
        await primary.aclose()
        await backup.aclose()
