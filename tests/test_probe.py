"""The probe loop: verdicts, timeouts, isolation, schedule and lifecycle, on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from litellm_circuit_breaker import (
    DEFAULT_PROBE_INTERVAL_SEC,
    DEFAULT_PROBE_TIMEOUT_SEC,
    BreakerState,
    ConfigurationError,
    HealthProbe,
    ProviderHealthCache,
)
from litellm_circuit_breaker._probe import ProbeFn
from litellm_circuit_breaker._state import ProviderState
from litellm_circuit_breaker.testing import FakeClock


def returning(value: bool | None) -> ProbeFn:
    async def probe() -> bool | None:
        return value

    return probe


def error_of(cache: ProviderHealthCache, pid: str) -> str:
    state = cache.get_state(pid)
    assert isinstance(state, ProviderState), pid
    assert state.last_error is not None, pid
    return state.last_error


async def hanging() -> bool:
    await asyncio.Event().wait()
    return True  # pragma: no cover - never reached


async def raising() -> bool:
    raise ConnectionRefusedError("nobody home")


def test_defaults_are_thirty_seconds_and_three_seconds() -> None:
    """Probes run every 30 s with a 3 s timeout unless told otherwise."""
    probe = HealthProbe(ProviderHealthCache(), {})
    assert DEFAULT_PROBE_INTERVAL_SEC == 30.0
    assert DEFAULT_PROBE_TIMEOUT_SEC == 3.0
    assert (probe.interval, probe.timeout) == (30.0, 3.0)
    assert probe.provider_ids == ()
    assert not probe.running


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1}, "interval"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"jitter": -1}, "jitter"),
        ({"on_ok": "reopen"}, "on_ok"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    """interval/timeout <= 0 and other bad settings fail at construction, named."""
    with pytest.raises(ValueError, match=field) as info:
        HealthProbe(ProviderHealthCache(), {}, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.asyncio
async def test_tick_applies_every_kind_of_verdict(clock: FakeClock) -> None:
    """True heals, False/timeout/exception count as failures with telling reasons, None abstains."""
    cache = ProviderHealthCache(failure_threshold=1, clock=clock)
    cache.mark_unhealthy("up", "was down")
    probe = HealthProbe(
        cache,
        {
            "up": returning(True),
            "false": returning(False),
            "slow": hanging,
            "boom": raising,
            "unprobed": returning(None),
        },
        timeout=0.05,
    )
    assert set(probe.provider_ids) == {"up", "false", "slow", "boom", "unprobed"}
    results = await probe.tick_once()
    assert cache.is_healthy("up")
    assert results["up"].ok is True
    for pid in ("false", "slow", "boom"):
        assert not cache.is_healthy(pid), pid
        assert results[pid].ok is False
    assert "false" in error_of(cache, "false")
    assert "timeout" in error_of(cache, "slow")
    assert "ConnectionRefusedError" in error_of(cache, "boom")
    assert results["unprobed"].ok is None
    assert cache.get_state("unprobed") is None


@pytest.mark.asyncio
async def test_probes_run_concurrently_so_one_hang_costs_one_timeout() -> None:
    """All probes start together: ten hanging probes finish in about one timeout, not ten."""
    cache = ProviderHealthCache()
    started: list[str] = []

    def recording(name: str) -> ProbeFn:
        async def probe() -> bool:
            started.append(name)
            await asyncio.Event().wait()
            return True  # pragma: no cover

        return probe

    probe = HealthProbe(cache, {f"p{i}": recording(f"p{i}") for i in range(10)}, timeout=0.05)
    results = await probe.tick_once()
    assert len(started) == 10
    assert all(r.ok is False for r in results.values())


@pytest.mark.asyncio
async def test_concurrency_is_bounded_by_the_semaphore() -> None:
    """No more than max_concurrency probes are ever in flight at once."""
    in_flight = 0
    peak = 0

    async def probe() -> bool:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return True

    hp = HealthProbe(ProviderHealthCache(), {f"p{i}": probe for i in range(200)}, max_concurrency=7)
    results = await hp.tick_once()
    assert len(results) == 200
    assert peak == 7


@pytest.mark.asyncio
async def test_half_open_policy_lets_a_trial_decide(clock: FakeClock) -> None:
    """With on_ok='half_open' a passing probe half-opens an open breaker, not closes it."""
    cache = ProviderHealthCache(clock=clock)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    probe = HealthProbe(cache, {"a": returning(True)}, on_ok="half_open")
    await probe.tick_once()
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    state = cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 2


@pytest.mark.asyncio
async def test_loop_runs_first_tick_at_once_then_on_a_fixed_schedule(clock: FakeClock) -> None:
    """Ticks start at t0, t0+interval, t0+2*interval... however long each tick took."""
    tick_times: list[float] = []

    async def probe() -> bool:
        tick_times.append(clock())
        clock.advance(2.5)  # the tick itself takes time; the schedule must not drift
        return True

    hp = HealthProbe(
        ProviderHealthCache(clock=clock),
        {"a": probe},
        interval=30,
        clock=clock,
        sleep=clock.sleep,
    )
    t0 = clock()
    await hp.start()
    while len(tick_times) < 4:
        await asyncio.sleep(0)
    await hp.stop()
    assert tick_times[:4] == [t0, t0 + 30, t0 + 60, t0 + 90]
    assert clock.sleeps[:3] == [27.5, 27.5, 27.5]


@pytest.mark.asyncio
async def test_overrunning_tick_skips_missed_slots_instead_of_bursting(clock: FakeClock) -> None:
    """A tick longer than the interval waits for the next slot on the grid."""
    tick_times: list[float] = []

    async def probe() -> bool:
        tick_times.append(clock())
        if len(tick_times) == 1:
            clock.advance(75)  # overruns two and a half intervals
        return True

    hp = HealthProbe(
        ProviderHealthCache(clock=clock), {"a": probe}, interval=30, clock=clock, sleep=clock.sleep
    )
    t0 = clock()
    async with hp:
        while len(tick_times) < 3:
            await asyncio.sleep(0)
    assert tick_times[:3] == [t0, t0 + 90, t0 + 120]


@pytest.mark.asyncio
async def test_jitter_adds_a_bounded_random_delay(clock: FakeClock) -> None:
    """Jitter delays each sleep by at most its value, without drifting the grid."""
    ticks: list[float] = []

    async def probe() -> bool:
        ticks.append(clock())
        return True

    hp = HealthProbe(
        ProviderHealthCache(clock=clock),
        {"a": probe},
        interval=30,
        jitter=5,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )
    async with hp:
        while len(ticks) < 6:
            await asyncio.sleep(0)
    assert all(30 <= s <= 35 for s in clock.sleeps[:1])
    assert all(25 <= s <= 35 for s in clock.sleeps[1:5])
    assert len(set(clock.sleeps[:5])) > 1


@pytest.mark.asyncio
async def test_start_twice_makes_one_task_and_stop_is_safe_anytime(clock: FakeClock) -> None:
    """start() is idempotent; stop() before start, twice, or after start all work."""
    hp = HealthProbe(ProviderHealthCache(clock=clock), {"a": returning(True)}, clock=clock)
    await hp.stop()
    await hp.start()
    first = hp._task
    await hp.start()
    assert hp._task is first
    assert hp.running
    await hp.stop()
    assert not hp.running
    await hp.stop()
    assert first is not None
    assert first.cancelled()


@pytest.mark.asyncio
async def test_loop_survives_an_error_in_a_tick(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in one tick is logged and counted; the next tick still runs."""

    class Exploding(HealthProbe):
        def _apply(self, result: object) -> None:
            if self.ticks == 0 and not self.tick_errors:
                raise RuntimeError("bug in apply")
            super()._apply(result)  # type: ignore[arg-type]

    cache = ProviderHealthCache(clock=clock)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    hp = Exploding(cache, {"a": returning(True)}, clock=clock, sleep=clock.sleep)
    caplog.set_level(logging.ERROR, logger="litellm_circuit_breaker")
    async with hp:
        while hp.ticks < 1:
            await asyncio.sleep(0)
    assert hp.tick_errors == 1
    assert cache.is_healthy("a")
    assert any("tick failed" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_probe_set_can_change_between_ticks() -> None:
    """set_probes replaces what the next tick probes."""
    cache = ProviderHealthCache(failure_threshold=1)
    hp = HealthProbe(cache, {"a": returning(False)})
    await hp.tick_once()
    hp.set_probes({"b": returning(False)})
    assert hp.provider_ids == ("b",)
    results = await hp.tick_once()
    assert set(results) == {"b"}
    assert not cache.is_healthy("b")


@pytest.mark.asyncio
async def test_exception_reason_is_short_and_names_the_type() -> None:
    """Exception reasons keep the type and the first line of the message only."""
    cache = ProviderHealthCache(failure_threshold=1)

    async def noisy() -> bool:
        raise OSError("first line\nsecond line with detail")

    async def silent() -> bool:
        raise KeyError

    await HealthProbe(cache, {"n": noisy, "s": silent}).tick_once()
    assert error_of(cache, "n") == "OSError: first line"
    assert error_of(cache, "s") == "KeyError"


@pytest.mark.asyncio
async def test_start_returns_after_the_first_tick_has_applied_its_verdicts(
    clock: FakeClock,
) -> None:
    """After `await start()` (or entering `async with`) the first results are in the cache."""
    cache = ProviderHealthCache(failure_threshold=1, clock=clock)
    hp = HealthProbe(cache, {"down": returning(False), "up": returning(True)}, clock=clock)
    async with hp:
        assert not cache.is_healthy("down")
        assert cache.get_state("up") is not None
        assert hp.ticks == 1


@pytest.mark.asyncio
async def test_a_probe_raising_timeout_error_itself_is_named_not_taken_for_our_timeout() -> None:
    """Only our own deadline reads 'probe timeout'; a probe's TimeoutError is named."""
    cache = ProviderHealthCache(failure_threshold=1)

    async def own_timeout() -> bool:
        raise TimeoutError("upstream read timed out")

    await HealthProbe(cache, {"t": own_timeout}, timeout=5).tick_once()
    assert error_of(cache, "t") == "TimeoutError: upstream read timed out"


@pytest.mark.asyncio
async def test_stop_ends_the_loop_when_a_round_swallows_the_cancellation(
    clock: FakeClock,
) -> None:
    """redis-py can swallow a cancellation landing mid-read (the shared prober claims its
    leases there): the loop must still end, or ``asyncio.run`` waits on it for good."""
    rounds = 0
    in_round = asyncio.Event()

    class Swallowing(HealthProbe):
        async def _scheduled_tick(self) -> dict[str, object]:  # type: ignore[override]
            nonlocal rounds
            rounds += 1
            in_round.set()
            try:
                await asyncio.Event().wait()  # a read that never answers
            except asyncio.CancelledError:
                if rounds > 1:
                    raise  # once only, so a failing test still ends
                # what redis-py does with a cancellation in the wrong place
            return {}

    hp = Swallowing(ProviderHealthCache(clock=clock), {}, clock=clock, sleep=clock.sleep)
    hp.start_soon()
    await in_round.wait()
    async with asyncio.timeout(10):  # a bound on a hang, not a window waited out
        await hp.stop()
    assert rounds == 1
    assert not hp.running
