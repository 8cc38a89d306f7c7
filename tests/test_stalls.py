"""Hang detection: a call unanswered past ``stall_after_sec`` gets its endpoint probed at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import litellm
import pytest
import respx

from litellm_circuit_breaker import BreakerState, CircuitBreaker, ConfigurationError, _probing
from litellm_circuit_breaker._stalls import SUSPECT_SPAN
from litellm_circuit_breaker.testing import FakeProvider
from tests.llm_helpers import MESSAGES, deployment, ok

WAIT_SEC = 10.0
# The watchdog runs on hand-moved time (ManualTime): a stall probe is due once a
# test moves time 0.2 s past a call's start, and its deadline passes only when the
# test moves time on again. The probe's HTTP client still times out in real time,
# so a live endpoint gets as long to answer as a test waits for anything.
STALL_AFTER_SEC = 0.2
PROBE_TIMEOUT_SEC = WAIT_SEC
# Where the probe hangs, a short deadline: its stall probe gap (ten stall limits,
# 2 s) stays longer than it, as at the defaults. Whichever times out first, the
# hand-moved deadline or the client's, the endpoint is silent.
HUNG_PROBE_TIMEOUT_SEC = 1.0
# One step past the stall limit: the watch's next round finds the call stalled.
PAST_STALL_SEC = 1.5 * STALL_AFTER_SEC


class ManualTime:
    """The stall watch's clock and sleep: time moves only in :meth:`advance`.

    Unlike ``FakeClock.sleep`` (which moves time itself), a sleeper here waits
    until a test moves time past its deadline, so the watch's rounds and its
    probe deadlines happen exactly when the test says.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        entry = (self.now + max(0.0, delay), asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, wake every sleeper now due and let them run."""
        self.now += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self.now + 1e-9 and not future.done():
                future.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll until ``predicate`` holds: a bound on waiting, never a measure of time."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > WAIT_SEC:
            pytest.fail(f"not within {WAIT_SEC}s: {what}")
        await asyncio.sleep(0.01)


def model_list(provider: FakeProvider, dep_id: str = "a") -> list[dict[str, Any]]:
    return [
        {
            "model_name": "chat",
            "litellm_params": {
                "model": "openai/fake-model",
                "api_base": provider.base_url,
                "api_key": "sk-stall-test-key",
            },
            "model_info": {"id": dep_id},
        }
    ]


def stall_breaker(
    models: list[dict[str, Any]], manual: ManualTime, **kwargs: Any
) -> CircuitBreaker:
    """Probe rounds far apart, so only the stall watchdog can probe during a test;
    the watchdog on ``manual`` time."""
    kwargs.setdefault("stall_after_sec", STALL_AFTER_SEC)
    kwargs.setdefault("probe_timeout", PROBE_TIMEOUT_SEC)
    cb = CircuitBreaker(model_list=models, probe_interval=3600.0, **kwargs)
    if cb._stalls is not None:
        cb._stalls.clock = manual.clock
        cb._stalls.sleep = manual.sleep
    return cb


class ProbeLatch:
    """A fake provider's ``sleep``: slow answers wait until a probe sent after ``arm()``
    has its answer, so a slow call outlasts its stall probe by construction, not by luck."""

    def __init__(self) -> None:
        self.armed = False
        self.opened = False

    def arm(self) -> None:
        self.armed = True

    def probe_answered(self) -> None:
        self.opened = self.opened or self.armed

    async def sleep(self, _delay: float) -> None:
        await eventually(lambda: self.opened, "a stall probe answered while the call was held")


@pytest.fixture
def latch(monkeypatch: pytest.MonkeyPatch) -> ProbeLatch:
    """Opens when the breaker's probe code returns (passed, failed or timed out)."""
    latch = ProbeLatch()
    real = _probing.run_http_probe

    async def run_http_probe(*args: Any) -> Any:
        try:
            return await real(*args)
        finally:
            latch.probe_answered()

    monkeypatch.setattr(_probing, "run_http_probe", run_http_probe)
    return latch


@asynccontextmanager
async def watched(
    manual: ManualTime,
    *,
    models_follow_mode: bool = True,
    latch: ProbeLatch | None = None,
    **kwargs: Any,
) -> AsyncIterator[tuple[FakeProvider, CircuitBreaker, litellm.Router]]:
    """A fake provider as deployment "a", a stall-watching breaker and a Router over it:
    attached, started, the breaker's first probe round over (then ``latch`` is armed).

    Without a latch a slow answer's delay passes on ``manual`` time."""
    sleep = manual.advance if latch is None else latch.sleep
    async with FakeProvider(models_follow_mode=models_follow_mode, sleep=sleep) as provider:
        models = model_list(provider)
        cb = stall_breaker(models, manual, **kwargs)
        litellm.callbacks.append(cb)
        router = litellm.Router(model_list=models, num_retries=0, timeout=30)
        async with cb:
            await first_round_done(cb)
            if latch is not None:
                latch.arm()
            yield provider, cb, router


async def first_round_done(cb: CircuitBreaker) -> None:
    """The probe loop's first round (run at start) is over: later probes are the watchdog's."""
    rounds: list[object] = []
    cb.probe_listeners.append(rounds.append)
    await cb.start()
    await eventually(lambda: bool(rounds), "the first probe round")


@pytest.fixture
def manual() -> ManualTime:
    """The stall watch's time, moved by the test."""
    return ManualTime()


class Hang:
    """A respx side effect that holds each request until released, then drops it."""

    def __init__(self) -> None:
        self.sent = 0
        self.released = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        await self.released.wait()
        raise httpx.ConnectError("connection dropped", request=request)


@pytest.mark.asyncio
async def test_a_hung_endpoint_opens_before_its_first_call_times_out(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """The call hangs, the stall probe hangs too: open well before the 30 s request timeout."""
    chat, probe = Hang(), Hang()
    mock.post("http://stall.test/v1/chat/completions").mock(side_effect=chat)
    models_route = mock.get("http://stall.test/v1/models")
    models_route.mock(return_value=httpx.Response(200, json={"data": []}))
    models = [deployment("chat", "a", "stall.test")]
    cb = stall_breaker(models, manual, probe_timeout=HUNG_PROBE_TIMEOUT_SEC)
    litellm.callbacks.append(cb)
    router = litellm.Router(model_list=models, num_retries=0, timeout=30)
    async with cb:
        await first_round_done(cb)
        models_route.mock(side_effect=probe)
        started = manual.clock()
        call = asyncio.create_task(router.acompletion(model="chat", messages=MESSAGES))
        await eventually(lambda: chat.sent == 1, "the call sent")
        await manual.advance(PAST_STALL_SEC)
        await eventually(lambda: probe.sent == 1, "the stall probe sent")
        await manual.advance(HUNG_PROBE_TIMEOUT_SEC)  # the probe's deadline
        await eventually(lambda: cb.cache.breaker_state("a") is BreakerState.OPEN, "open")
        assert manual.clock() - started < 5.0
        state = cb.cache.get_state("a")
        assert state is not None
        assert state.consecutive_failures == 2  # the stalled call and the probe
        assert "probe timeout" in (state.last_error or "")
        assert cb.counters["stalls"] == 1
        assert not call.done()  # decided while the call still hangs
        chat.released.set()  # drops the hung connection: the call fails now
        probe.released.set()
        with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError)):
            await call


@pytest.mark.asyncio
async def test_a_slow_call_on_a_live_endpoint_is_left_alone(
    litellm_callbacks: None, latch: ProbeLatch, manual: ManualTime
) -> None:
    """The call is slow but the endpoint answers its probe: nothing counts, the call succeeds."""
    async with watched(manual, models_follow_mode=False, latch=latch) as (provider, cb, router):
        provider.slow(60)  # the latch holds it until its stall probe is answered, no longer
        models_before = provider.calls("models")
        call = asyncio.create_task(router.acompletion(model="chat", messages=MESSAGES))
        await eventually(lambda: provider.calls("chat") == 1, "the call sent")
        await manual.advance(PAST_STALL_SEC)
        response = await call
        assert response.choices[0].message.content == "ok"
        assert provider.calls("models") == models_before + 1  # one stall probe, it passed
        assert cb.counters["stall_probes"] == 1
        assert cb.counters["stalls"] == 0
        assert cb.cache.breaker_state("a") is BreakerState.CLOSED
        state = cb.cache.get_state("a")
        assert state is not None
        assert state.consecutive_failures == 0


@pytest.mark.asyncio
async def test_stall_probes_are_rate_limited_per_endpoint(
    litellm_callbacks: None, latch: ProbeLatch, manual: ManualTime
) -> None:
    """Five slow calls at once on a live endpoint: one stall probe, not five."""
    async with watched(manual, models_follow_mode=False, latch=latch) as (provider, cb, router):
        provider.slow(60)  # all five held until the stall probe is answered
        models_before = provider.calls("models")
        calls = asyncio.gather(
            *(router.acompletion(model="chat", messages=MESSAGES) for _ in range(5))
        )
        await eventually(lambda: provider.calls("chat") == 5, "the five calls sent")
        await manual.advance(PAST_STALL_SEC)
        await calls
        assert provider.calls("models") == models_before + 1
        assert cb.counters["stall_probes"] == 1


@pytest.mark.asyncio
async def test_no_stall_probes_when_turned_off(litellm_callbacks: None, manual: ManualTime) -> None:
    """stall_after_sec=None: a slow call sends nothing but itself."""
    async with watched(manual, models_follow_mode=False, stall_after_sec=None) as (
        provider,
        cb,
        router,
    ):
        provider.slow(1.0)  # past the default limit and a watchdog round after it
        models_before = provider.calls("models")
        await router.acompletion(model="chat", messages=MESSAGES)
        assert provider.calls("models") == models_before
        assert cb.counters["stall_probes"] == 0


@pytest.mark.asyncio
async def test_only_configured_endpoints_are_ever_probed_for_a_stall(
    litellm_callbacks: None, manual: ManualTime
) -> None:
    """Two hung calls: the configured deployment's endpoint is probed, a request's own is not."""
    async with FakeProvider() as stranger, FakeProvider() as configured:
        models = model_list(configured)
        cb = stall_breaker(models, manual, probe_timeout=HUNG_PROBE_TIMEOUT_SEC)
        litellm.callbacks.append(cb)
        router = litellm.Router(model_list=models, num_retries=0, timeout=30)
        async with cb:
            await first_round_done(cb)
            stranger.hang()
            configured.hang()
            probes_before = configured.calls("models")
            sdk_call = asyncio.create_task(
                litellm.acompletion(
                    model="openai/fake-model",
                    api_base=stranger.base_url,
                    api_key="sk-stall-test-key",
                    messages=MESSAGES,
                    timeout=30,
                    max_retries=0,
                )
            )
            routed = asyncio.create_task(router.acompletion(model="chat", messages=MESSAGES))
            await eventually(
                lambda: stranger.calls("chat") == configured.calls("chat") == 1, "both calls sent"
            )
            await manual.advance(PAST_STALL_SEC)
            await eventually(
                lambda: configured.calls("models") == probes_before + 1, "the stall probe sent"
            )
            await manual.advance(HUNG_PROBE_TIMEOUT_SEC)  # the probe's deadline
            await eventually(lambda: cb.counters["stalls"] == 1, "the configured one is caught")
            assert stranger.calls("models") == 0
            assert cb.counters["stall_probes"] == 1
            await stranger.aclose()
            await configured.aclose()
            for call in (sdk_call, routed):
                with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError)):
                    await call


@pytest.mark.asyncio
async def test_a_stream_slow_to_its_first_chunk_on_a_live_endpoint_is_left_alone(
    litellm_callbacks: None, manual: ManualTime
) -> None:
    """Watched until its first chunk: probed once, the endpoint answers, nothing counts."""
    async with watched(manual, models_follow_mode=False) as (provider, cb, router):
        provider.slow(3 * STALL_AFTER_SEC)  # the headers wait: time moves past the limit
        stream = await router.acompletion(model="chat", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        assert chunks
        await eventually(lambda: cb.counters["stall_probes"] == 1, "the stall probe")
        assert cb.counters["stalls"] == 0
        assert cb.cache.breaker_state("a") is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_a_stream_that_has_its_first_chunk_is_never_taken_for_a_stall(
    litellm_callbacks: None, manual: ManualTime
) -> None:
    """A stream answers long before it ends: once its first chunk came, however long the
    rest takes, nothing is probed."""
    async with watched(manual, models_follow_mode=False) as (provider, cb, router):
        provider.stall_stream(after_chunks=2)  # the first chunks, then the rest held
        stream = await router.acompletion(model="chat", messages=MESSAGES, stream=True)
        for _ in range(5):
            await manual.advance(PAST_STALL_SEC)
        assert cb.counters["stall_probes"] == 0
        provider.healthy()
        chunks = [chunk async for chunk in stream]
        assert chunks
        assert cb.counters["stall_probes"] == 0


@pytest.mark.asyncio
async def test_a_stream_without_a_first_chunk_on_a_silent_endpoint_opens_at_once(
    litellm_callbacks: None, manual: ManualTime
) -> None:
    """No history, so no first-token deadline yet: the stall probe finds the endpoint
    silent too and opens the breaker while the stream still waits."""
    async with FakeProvider() as provider:
        models = model_list(provider)
        cb = stall_breaker(
            models, manual, probe_timeout=HUNG_PROBE_TIMEOUT_SEC, first_token_timeout=None
        )
        litellm.callbacks.append(cb)
        router = litellm.Router(model_list=models, num_retries=0, timeout=30)
        async with cb:
            await first_round_done(cb)
            provider.hang()  # chat and /models alike
            probes_before = provider.calls("models")
            call = asyncio.create_task(
                router.acompletion(model="chat", messages=MESSAGES, stream=True)
            )
            await eventually(lambda: provider.calls("chat") == 1, "the stream sent")
            await manual.advance(PAST_STALL_SEC)
            await eventually(
                lambda: provider.calls("models") == probes_before + 1, "the stall probe sent"
            )
            await manual.advance(HUNG_PROBE_TIMEOUT_SEC)  # the probe's deadline
            await eventually(lambda: cb.cache.breaker_state("a") is BreakerState.OPEN, "open")
            assert cb.counters["stalls"] == 1
            assert not call.done()  # decided while the stream still waits
            await provider.aclose()
            with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError)):
                await call


@pytest.mark.asyncio
async def test_a_probe_answered_with_an_error_counts_once_not_twice(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """The endpoint answers its probe with 503 while a call is slow: one failure, still closed."""
    sent = asyncio.Event()
    release = asyncio.Event()

    async def slow_chat(request: httpx.Request) -> httpx.Response:
        sent.set()
        await release.wait()
        return ok()

    mock.post("http://stall.test/v1/chat/completions").mock(side_effect=slow_chat)
    models_route = mock.get("http://stall.test/v1/models")
    models_route.mock(return_value=httpx.Response(200, json={"data": []}))
    models = [deployment("chat", "a", "stall.test")]
    cb = stall_breaker(models, manual)
    litellm.callbacks.append(cb)
    router = litellm.Router(model_list=models, num_retries=0, timeout=30)
    async with cb:
        await first_round_done(cb)
        models_route.mock(return_value=httpx.Response(503, json={"error": "busy"}))
        call = asyncio.create_task(router.acompletion(model="chat", messages=MESSAGES))
        await eventually(sent.is_set, "the call sent")
        await manual.advance(PAST_STALL_SEC)
        await eventually(lambda: models_route.call_count >= 2, "the stall probe")
        await eventually(lambda: cb.cache.get_state("a") is not None, "the probe counted")
        state = cb.cache.get_state("a")
        assert state is not None
        assert state.consecutive_failures == 1
        assert cb.cache.breaker_state("a") is BreakerState.CLOSED
        assert cb.counters["stalls"] == 0
        release.set()
        await call
        assert cb.cache.get_state("a").consecutive_failures == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1"])
def test_a_bad_stall_limit_names_the_setting(bad: object) -> None:
    """stall_after_sec must be seconds > 0 or None."""
    with pytest.raises(ConfigurationError, match="stall_after_sec"):
        CircuitBreaker(stall_after_sec=bad)  # type: ignore[arg-type]


async def _hang_then_count(
    manual: ManualTime,
    router: litellm.Router,
    chat: Hang,
    group: str,
    answered_by: str,
) -> int:
    """One call hangs on "a"; once past its stall limit, 20 more requests: how many reach "a".

    Requests that reach the hung deployment are left hanging (released at the end);
    every other one must be answered by ``answered_by``.
    """
    hung: list[asyncio.Task[Any]] = []
    while chat.sent == 0:  # the Router picks "a" for one of these, then it hangs
        task = asyncio.create_task(router.acompletion(model=group, messages=MESSAGES))
        await eventually(lambda t=task: t.done() or chat.sent > 0, "an answer or the hang")
        if not task.done():
            hung.append(task)
    await manual.advance(PAST_STALL_SEC)  # the watch's next round: "a" is suspect
    before = chat.sent
    for _ in range(20):
        sent = chat.sent
        task = asyncio.create_task(router.acompletion(model=group, messages=MESSAGES))
        await eventually(lambda t=task, n=sent: t.done() or chat.sent > n, "an answer or the hang")
        if task.done():
            assert task.result().choices[0].message.content == answered_by
        else:
            hung.append(task)
    reached = chat.sent - before
    chat.released.set()
    await asyncio.gather(*hung, return_exceptions=True)
    return reached


class HangAfterWarmUp(Hang):
    """Answers until :meth:`hang_now`, then holds each request like :class:`Hang`."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.hanging:
            return ok("a")
        return await super().__call__(request)

    def hang_now(self) -> None:
        self.hanging = True


def _sibling_setup(mock: respx.MockRouter, chat: Hang) -> list[dict[str, Any]]:
    mock.post("http://stall.test/v1/chat/completions").mock(side_effect=chat)
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    mock.get(url__regex=r"^http://(stall|b)\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    return [deployment("chat", "a", "stall.test"), deployment("chat", "b", "b.test")]


async def _warm_up(cb: CircuitBreaker, router: litellm.Router, manual: ManualTime) -> None:
    """Both deployments answer a few calls: "a" has a usual answer time; time moves on."""
    while cb._stalls is not None and cb._stalls.latency("a") is None:
        await router.acompletion(model="chat", messages=MESSAGES)
    await manual.advance(0.05)


@pytest.mark.asyncio
async def test_calls_after_a_stall_go_to_a_sibling_not_to_the_hung_deployment(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """Chat hangs while /models answers (nothing opens): new calls go to the sibling at once."""
    chat = HangAfterWarmUp()
    models = _sibling_setup(mock, chat)
    cb = stall_breaker(models, manual)
    litellm.callbacks.append(cb)
    router = litellm.Router(model_list=models, num_retries=0, timeout=30)
    async with cb:
        await first_round_done(cb)
        await _warm_up(cb, router, manual)
        chat.hang_now()
        reached = await _hang_then_count(manual, router, chat, "chat", "b")
    assert reached == 0
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED  # slow is not dead: not opened
    assert cb.counters["skipped"] >= 20


@pytest.mark.asyncio
async def test_a_call_its_client_gave_up_on_keeps_no_traffic_away_for_long(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """A cancelled call sends no end event: suspicion still ends within its span."""
    chat = HangAfterWarmUp()
    models = _sibling_setup(mock, chat)
    cb = stall_breaker(models, manual)
    litellm.callbacks.append(cb)
    router = litellm.Router(model_list=models, num_retries=0, timeout=30)
    async with cb:
        await first_round_done(cb)
        await _warm_up(cb, router, manual)
        chat.hang_now()
        while chat.sent == 0:
            task = asyncio.create_task(router.acompletion(model="chat", messages=MESSAGES))
            await eventually(lambda t=task: t.done() or chat.sent > 0, "an answer or the hang")
        task.cancel()  # the client gives up: no failure hook, no end event
        await asyncio.gather(task, return_exceptions=True)
        chat.hanging = False  # "a" is fine again
        await manual.advance(PAST_STALL_SEC)
        assert cb._stalls is not None
        assert cb._stalls.suspects == {"a"}
        await manual.advance(SUSPECT_SPAN * STALL_AFTER_SEC)
        await eventually(lambda: not cb._stalls.suspects, "suspicion over")  # type: ignore[union-attr]
        served = {
            (await router.acompletion(model="chat", messages=MESSAGES)).choices[0].message.content
            for _ in range(20)
        }
        chat.released.set()
    assert "a" in served


@pytest.mark.asyncio
async def test_no_suspicion_without_a_usual_answer_time_nor_toward_a_fallback(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """A first call that takes long (cold start), and a group with only a fallback: untouched."""
    chat = Hang()
    mock.post("http://stall.test/v1/chat/completions").mock(side_effect=chat)
    mock.get(url__regex=r"^http://(stall|b)\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    models = [deployment("primary", "a", "stall.test"), deployment("backup", "b", "b.test")]
    cb = stall_breaker(models, manual)
    litellm.callbacks.append(cb)
    router = litellm.Router(
        model_list=models, num_retries=0, timeout=30, fallbacks=[{"primary": ["backup"]}]
    )
    async with cb:
        await first_round_done(cb)
        call = asyncio.create_task(router.acompletion(model="primary", messages=MESSAGES))
        await eventually(lambda: chat.sent == 1, "the call sent")
        await manual.advance(3 * PAST_STALL_SEC)
        assert cb._stalls is not None
        assert cb._stalls.suspects == frozenset()
        chat.released.set()
        await asyncio.gather(call, return_exceptions=True)
    assert cb.counters["fallback"] == 0


@pytest.mark.asyncio
async def test_a_deployment_slow_as_always_is_never_avoided(
    litellm_callbacks: None, mock: respx.MockRouter, manual: ManualTime
) -> None:
    """Past the stall limit but within four times its own last answer time: not suspect."""
    mock.get(url__regex=r"^http://(stall|b)\.test/v1/models$").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    models = [deployment("chat", "a", "stall.test"), deployment("chat", "b", "b.test")]
    cb = stall_breaker(models, manual)
    assert cb._stalls is not None
    cb._stalls.track("earlier", "a", False)
    await manual.advance(1.0)  # its usual answer time: 1 s
    cb._stalls.answered(("earlier", "a"), "a", ends=True)
    await manual.advance(0.1)
    cb._stalls.track("now", "a", False)
    await manual.advance(2.0)  # stalled twice the limit... but half its usual time x 4
    cb._stalls.check(manual.clock())
    assert cb._stalls.suspects == frozenset()
    await manual.advance(2.5)
    cb._stalls.check(manual.clock())
    assert cb._stalls.suspects == {"a"}
    cb._stalls.answered(("now", "a"), "a", ends=True)
    assert cb._stalls.suspects == frozenset()
