"""The breaker state machine: every rule of ProviderHealthCache, on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sys
import threading

import pytest

from litellm_circuit_breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
    BreakerState,
    ConfigurationError,
    ProviderHealthCache,
    ProviderState,
    StateChange,
)
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import open_breaker


def make(clock: FakeClock, **kwargs: object) -> ProviderHealthCache:
    return ProviderHealthCache(clock=clock, **kwargs)  # type: ignore[arg-type]


def test_defaults_match_the_documented_values() -> None:
    """Two failures open the breaker for sixty seconds unless told otherwise."""
    cache = ProviderHealthCache()
    assert DEFAULT_FAILURE_THRESHOLD == 2
    assert DEFAULT_UNHEALTHY_BACKOFF_SEC == 60.0
    assert cache.failure_threshold == 2
    assert cache.unhealthy_backoff_sec == 60.0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_failure_threshold_is_refused_with_its_name(bad: object) -> None:
    """A threshold that is not an integer >= 1 raises a ValueError naming it."""
    with pytest.raises(ValueError, match="failure_threshold") as info:
        ProviderHealthCache(failure_threshold=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [-0.001, -60, math.nan, math.inf, "60"])
def test_bad_backoff_is_refused_with_its_name(bad: object) -> None:
    """A negative or non-finite backoff raises a ValueError mentioning backoff."""
    with pytest.raises(ValueError, match="backoff"):
        ProviderHealthCache(unhealthy_backoff_sec=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backoff_multiplier", 0.5),
        ("max_backoff_sec", 10.0),
        ("trial_lease_sec", 0),
        ("clock", 42),
    ],
)
def test_bad_optional_settings_name_the_field(field: str, value: object) -> None:
    """Every setting is checked at construction and the error names it and its value."""
    with pytest.raises(ConfigurationError, match=field) as info:
        ProviderHealthCache(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.value == value


def test_zero_backoff_is_allowed_and_goes_straight_to_half_open(clock: FakeClock) -> None:
    """With no backoff an opened breaker is immediately half-open and takes a trial."""
    cache = make(clock, unhealthy_backoff_sec=0)
    cache.mark_unhealthy("a", "boom")
    cache.mark_unhealthy("a", "boom")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    assert cache.is_healthy("a")
    assert cache.try_acquire("a")
    assert not cache.try_acquire("a")


def test_unknown_deployment_is_healthy_and_has_no_state(clock: FakeClock) -> None:
    """A deployment never seen is healthy and get_state returns None."""
    cache = make(clock)
    assert cache.is_healthy("nope")
    assert cache.get_state("nope") is None
    assert cache.breaker_state("nope") is BreakerState.CLOSED
    assert cache.try_acquire("nope")
    assert cache.retry_in("nope") == 0.0


def test_first_failure_is_a_blip_second_opens(clock: FakeClock) -> None:
    """One failure leaves the deployment healthy; the second consecutive one opens it."""
    cache = make(clock)
    cache.mark_unhealthy("a", "503")
    state = cache.get_state("a")
    assert state == ProviderState(
        healthy=True, consecutive_failures=1, last_check=clock(), last_error="503"
    )
    assert cache.is_healthy("a")
    clock.advance(1)
    cache.mark_unhealthy("a", "timeout")
    state = cache.get_state("a")
    assert state is not None
    assert not state.healthy
    assert state.consecutive_failures == 2
    assert state.last_error == "timeout"
    assert state.unhealthy_until == clock() + 60.0
    assert not cache.is_healthy("a")


def test_success_between_failures_resets_the_count(clock: FakeClock) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    cache = make(clock)
    cache.mark_unhealthy("a", "x")
    cache.mark_healthy("a")
    cache.mark_unhealthy("a", "x")
    assert cache.is_healthy("a")
    state = cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 1


def test_open_until_the_window_ends_then_half_open(clock: FakeClock) -> None:
    """is_healthy is False exactly while unhealthy_until > now, True again after."""
    cache = make(clock, unhealthy_backoff_sec=60)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(59.999)
    assert not cache.is_healthy("a")
    assert cache.retry_in("a") == pytest.approx(0.001)
    clock.advance(0.001)
    assert cache.is_healthy("a")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    state = cache.get_state("a")
    assert state is not None
    assert not state.healthy  # half-open is still "unhealthy" in the record
    assert state.breaker_state(clock()) is BreakerState.HALF_OPEN


def test_failure_while_open_or_half_open_rearms_the_window(clock: FakeClock) -> None:
    """Another failure while unhealthy pushes unhealthy_until to now + backoff."""
    cache = make(clock, unhealthy_backoff_sec=60)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(30)
    cache.mark_unhealthy("a", "again")  # while open
    state = cache.get_state("a")
    assert state is not None
    assert state.unhealthy_until == clock() + 60
    clock.advance(60)  # half-open now
    assert cache.is_healthy("a")
    cache.mark_unhealthy("a", "trial failed")
    assert not cache.is_healthy("a")
    state = cache.get_state("a")
    assert state is not None
    assert state.unhealthy_until == clock() + 60
    assert state.consecutive_failures == 4


def test_success_closes_and_fully_resets(clock: FakeClock) -> None:
    """mark_healthy restores every field to its healthy value and stamps last_check."""
    cache = make(clock)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(61)
    cache.mark_healthy("a")
    assert cache.get_state("a") == ProviderState(last_check=clock())
    assert cache.breaker_state("a") is BreakerState.CLOSED


def test_touch_if_settled_agrees_with_mark_healthy_only_where_it_would_change_nothing(
    clock: FakeClock,
) -> None:
    """The success hot path: a no-op success is stamped in place, any other is refused to it."""
    cache = make(clock)
    events: list[StateChange] = []
    cache.add_listener(events.append)
    clock.advance(5)
    assert cache.touch_if_settled("new")  # a first success: a closed record, stamped
    assert cache.get_state("new") == ProviderState(last_check=clock())
    clock.advance(5)
    assert cache.touch_if_settled("new")
    assert cache.get_state("new") == ProviderState(last_check=clock())
    cache.mark_unhealthy("new", "x")  # one failure counted: a success must reset it
    assert not cache.touch_if_settled("new")
    state = cache.get_state("new")
    assert state is not None
    assert state.consecutive_failures == 1
    cache.mark_unhealthy("new", "x")  # open, then half-open: never the hot path
    assert not cache.touch_if_settled("new")
    clock.advance(61)
    assert not cache.touch_if_settled("new")
    cache.force_open("held")
    assert not cache.touch_if_settled("held")
    assert [e.new for e in events] == [BreakerState.OPEN, BreakerState.OPEN]


def test_recovered_is_logged_once_and_only_on_recovery(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO 'recovered' line on unhealthy -> healthy; none for healthy -> healthy."""
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    cache = make(clock)
    cache.mark_healthy("a")
    cache.mark_unhealthy("a", "x")
    cache.mark_healthy("a")
    assert not [r for r in caplog.records if "recovered" in r.getMessage()]
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    cache.mark_healthy("a")
    cache.mark_healthy("a")
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(recovered) == 1
    assert recovered[0].levelno == logging.INFO


def test_opening_logs_one_warning(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """Opening logs one WARNING; further failures while open log nothing more."""
    caplog.set_level(logging.DEBUG, logger="litellm_circuit_breaker")
    cache = make(clock)
    for _ in range(5):
        cache.mark_unhealthy("a", "HTTP 503")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "opened" in warnings[0].getMessage()
    assert "HTTP 503" in warnings[0].getMessage()


def test_get_state_and_snapshot_hand_out_copies(clock: FakeClock) -> None:
    """Mutating what get_state or snapshot returned changes nothing in the cache."""
    cache = make(clock)
    cache.mark_unhealthy("a", "x")
    copy = cache.get_state("a")
    assert copy is not None
    copy.healthy = False
    copy.consecutive_failures = 99
    snap = cache.snapshot()
    snap["a"].last_error = "mutated"
    snap["b"] = ProviderState(healthy=False)
    assert cache.get_state("a") == ProviderState(
        consecutive_failures=1, last_check=clock(), last_error="x"
    )
    assert cache.get_state("b") is None
    assert cache.is_healthy("a")


def test_snapshot_fills_expected_ids_without_overwriting(clock: FakeClock) -> None:
    """Expected ids without state get a fresh ProviderState; known ones keep theirs."""
    cache = make(clock)
    cache.mark_unhealthy("a", "x")
    snap = cache.snapshot(expected=["a", "b"])
    assert set(snap) == {"a", "b"}
    assert snap["a"].consecutive_failures == 1
    assert snap["b"] == ProviderState()
    assert "b" not in cache
    assert cache.snapshot() == {"a": snap["a"]}


def test_trial_permit_goes_to_exactly_one_caller(clock: FakeClock) -> None:
    """Closed admits all, open admits none, half-open admits one until it reports back."""
    cache = make(clock, unhealthy_backoff_sec=10)
    assert cache.try_acquire("a")
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert not cache.try_acquire("a")
    clock.advance(10)
    assert cache.try_acquire("a")
    assert not cache.try_acquire("a")
    assert not cache.try_acquire("a")
    assert cache.retry_in("a") == pytest.approx(cache.trial_lease_sec)
    cache.mark_healthy("a")
    assert cache.try_acquire("a")
    assert cache.try_acquire("a")


def test_failed_trial_reopens_and_next_window_gives_a_new_permit(clock: FakeClock) -> None:
    """A failed trial re-opens; after the next window a new trial is allowed."""
    cache = make(clock, unhealthy_backoff_sec=10)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(10)
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "trial failed")
    assert not cache.try_acquire("a")
    clock.advance(10)
    assert cache.try_acquire("a")


def test_trial_lease_expires_so_a_lost_trial_cannot_wedge_the_breaker(clock: FakeClock) -> None:
    """If the trial never reports back, another caller gets a permit after the lease."""
    cache = make(clock, unhealthy_backoff_sec=10, trial_lease_sec=5)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(10)
    assert cache.try_acquire("a")
    clock.advance(4.9)
    assert not cache.try_acquire("a")
    clock.advance(0.1)
    assert cache.try_acquire("a")


def test_released_permit_is_available_again(clock: FakeClock) -> None:
    """A trial that ended without a verdict (a caller's 400) hands its permit back."""
    cache = make(clock, unhealthy_backoff_sec=10)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(10)
    assert cache.try_acquire("a")
    cache.release("a")
    assert cache.try_acquire("a")
    cache.release("unknown")  # harmless


def test_listeners_see_every_transition_with_reason_and_time(clock: FakeClock) -> None:
    """closed->open->half_open->closed and half_open->open each reach the listener once."""
    cache = make(clock, unhealthy_backoff_sec=10)
    seen: list[StateChange] = []
    cache.add_listener(seen.append)
    cache.mark_unhealthy("a", "e1")
    t_open = clock()
    cache.mark_unhealthy("a", "e2")
    clock.advance(15)
    assert cache.is_healthy("a")  # observing the elapsed window reports half-open
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "trial failed")
    clock.advance(10)
    cache.breaker_state("a")
    cache.mark_healthy("a")
    assert [(e.old, e.new) for e in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert seen[0].deployment == "a"
    assert seen[0].reason == "e2"
    assert seen[0].at == t_open
    assert seen[1].at == t_open + 10  # when the window actually ended
    assert seen[2].reason == "trial failed"
    with pytest.raises(AttributeError):
        seen[0].reason = "changed"  # type: ignore[misc]


def test_listener_runs_outside_the_lock(clock: FakeClock) -> None:
    """A listener may call back into the cache without deadlocking."""
    cache = make(clock)
    states: list[bool] = []
    cache.add_listener(lambda event: states.append(cache.is_healthy(event.deployment)))
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert states == [False]


def test_raising_listener_is_logged_once_and_never_propagates(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken listener neither breaks the caller nor starves the other listeners."""

    def broken(event: StateChange) -> None:
        raise RuntimeError("listener bug")

    seen: list[StateChange] = []
    cache = make(clock, unhealthy_backoff_sec=1)
    cache.add_listener(broken)
    cache.add_listener(seen.append)
    for _ in range(3):
        cache.mark_unhealthy("a", "x")
        cache.mark_unhealthy("a", "x")
        cache.mark_healthy("a")
    assert len(seen) == 6
    assert cache.listener_errors == 6
    logged = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(logged) == 1
    cache.remove_listener(broken)
    cache.remove_listener(broken)  # unknown now: ignored
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert cache.listener_errors == 6


def test_growing_backoff_multiplies_each_reopening_up_to_the_cap(clock: FakeClock) -> None:
    """With a multiplier, each re-opening waits longer, never beyond max_backoff_sec."""
    cache = make(clock, unhealthy_backoff_sec=10, backoff_multiplier=2, max_backoff_sec=35)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    windows = []
    for _ in range(4):
        windows.append(cache.retry_in("a"))
        cache.mark_unhealthy("a", "while open: same window length")
        assert cache.retry_in("a") == windows[-1]
        clock.advance(windows[-1])
        assert cache.try_acquire("a")
        cache.mark_unhealthy("a", "trial failed")
    assert windows == [10, 20, 35, 35]
    cache.mark_healthy("a")
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert cache.retry_in("a") == 10  # a close starts the growth over


def test_default_multiplier_keeps_the_plain_window(clock: FakeClock) -> None:
    """Without opting in, every opening waits exactly unhealthy_backoff_sec."""
    cache = make(clock, unhealthy_backoff_sec=10)
    for _ in range(3):
        cache.mark_unhealthy("a", "x")
        cache.mark_unhealthy("a", "x")
        assert cache.retry_in("a") == 10
        clock.advance(10)
        assert cache.try_acquire("a")


def test_retry_after_is_a_floor_on_the_window(clock: FakeClock) -> None:
    """A provider's Retry-After lengthens the window, never shortens it, and is capped."""
    cache = make(clock, unhealthy_backoff_sec=10)
    cache.mark_unhealthy("a", "429")
    cache.mark_unhealthy("a", "429", retry_after=45)
    assert cache.retry_in("a") == 45
    cache.mark_unhealthy("b", "429")
    cache.mark_unhealthy("b", "429", retry_after=3)
    assert cache.retry_in("b") == 10
    cache.mark_unhealthy("c", "429")
    cache.mark_unhealthy("c", "429", retry_after=10**9)
    assert cache.retry_in("c") == 3600
    cache.mark_unhealthy("d", "429")
    cache.mark_unhealthy("d", "429", retry_after=math.nan)
    assert cache.retry_in("d") == 10


def test_passing_probe_half_opens_without_erasing_failures(clock: FakeClock) -> None:
    """A probe pass lets one trial through at once but does not close the breaker."""
    cache = make(clock, unhealthy_backoff_sec=60)
    cache.mark_probe_passed("unknown")  # no state, nothing to do
    assert cache.get_state("unknown") is None
    cache.mark_unhealthy("a", "x")
    cache.mark_probe_passed("a")  # closed with one failure: the count stays
    state = cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 1
    cache.mark_unhealthy("a", "x")
    cache.mark_probe_passed("a")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    state = cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 2
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "completions still fail")
    assert cache.breaker_state("a") is BreakerState.OPEN
    assert cache.retry_in("a") == 60


def test_a_probe_proven_blind_grants_nothing_until_the_breaker_closes(clock: FakeClock) -> None:
    """Probe passed, trial failed: later passes move nothing, the window still admits a trial."""
    cache = make(clock, unhealthy_backoff_sec=60)
    open_breaker(cache, "a")
    cache.mark_probe_passed("a")
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "chat still 503")  # the probe is blind to this fault
    for _ in range(3):
        clock.advance(15)
        cache.mark_probe_passed("a")
        assert cache.breaker_state("a") is BreakerState.OPEN
        assert not cache.try_acquire("a")
    clock.advance(15)  # the window ends: one trial, as without probes
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    assert cache.try_acquire("a")
    cache.mark_healthy("a")
    open_breaker(cache, "a")  # a new outage: the probe is trusted again
    cache.mark_probe_passed("a")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN


def test_a_trial_failing_after_the_window_does_not_make_the_probe_blind(
    clock: FakeClock,
) -> None:
    """Only a trial a probe granted can prove the probe blind."""
    cache = make(clock, unhealthy_backoff_sec=60)
    open_breaker(cache, "a")
    clock.advance(60)
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "still down")
    cache.mark_probe_passed("a")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN


def test_force_open_holds_until_force_close(clock: FakeClock) -> None:
    """An operator's hold survives time, successes and probe passes."""
    cache = make(clock)
    cache.force_open("a", reason="maintenance")
    clock.advance(10**6)
    cache.mark_healthy("a")
    cache.mark_probe_passed("a")
    cache.mark_unhealthy("a", "x")
    assert not cache.is_healthy("a")
    assert not cache.try_acquire("a")
    assert cache.retry_in("a") == math.inf
    cache.force_close("a")
    assert cache.is_healthy("a")
    assert cache.get_state("a") == ProviderState(last_check=clock())


def test_force_open_for_a_time_behaves_like_an_opening(clock: FakeClock) -> None:
    """force_open(seconds=...) opens for that long, then half-opens as usual."""
    cache = make(clock)
    cache.force_open("a", seconds=5)
    assert not cache.is_healthy("a")
    clock.advance(5)
    assert cache.try_acquire("a")
    with pytest.raises(ValueError, match="seconds"):
        cache.force_open("a", seconds=-1)


def test_forget_drops_state(clock: FakeClock) -> None:
    """A forgotten deployment is unknown again, so nothing leaks for removed ids."""
    cache = make(clock)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert cache.forget("a")
    assert not cache.forget("a")
    assert "a" not in cache
    assert len(cache) == 0
    assert cache.is_healthy("a")


def test_concurrent_threads_count_every_failure(clock: FakeClock) -> None:
    """Many threads marking failures at once lose no update and open exactly once."""
    cache = make(clock, failure_threshold=1000)
    opened: list[StateChange] = []
    cache.add_listener(opened.append)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(250):
            cache.mark_unhealthy("a", "x")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = cache.get_state("a")
    assert state is not None
    assert state.consecutive_failures == 2000
    transitions = [e for e in opened if e.old is not e.new]
    assert [e.new for e in transitions] == [BreakerState.OPEN]
    assert len(opened) == 1 + 1000  # and every failure after it re-armed the window


def test_a_window_rearmed_while_open_is_told_as_open_to_open(clock: FakeClock) -> None:
    """A failure while open, or a hold on an open breaker: an OPEN -> OPEN event."""
    cache = make(clock)
    seen: list[StateChange] = []
    cache.add_listener(seen.append)
    for _ in range(2):
        cache.mark_unhealthy("a", "HTTP 503")
    clock.advance(30)
    cache.mark_unhealthy("a", "HTTP 504")
    cache.force_open("a", reason="maintenance")
    assert [(e.old, e.new, e.reason) for e in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "HTTP 503"),
        (BreakerState.OPEN, BreakerState.OPEN, "HTTP 504"),
        (BreakerState.OPEN, BreakerState.OPEN, "maintenance"),
    ]
    assert cache.generation("a") == 3
    assert cache.generation("unknown") == 0


def test_concurrent_threads_get_exactly_one_trial_permit(clock: FakeClock) -> None:
    """Half-open under thread contention hands out one permit, not one per thread."""
    cache = make(clock, unhealthy_backoff_sec=1)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(1)
    barrier = threading.Barrier(16)
    granted: list[bool] = []

    def worker() -> None:
        barrier.wait()
        granted.append(cache.try_acquire("a"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 1


def test_failed_trial_reopens_with_an_info_line_not_a_second_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Only closed -> open warns; a failed half-open trial logs INFO 're-opened'."""
    caplog.set_level(logging.DEBUG, logger="litellm_circuit_breaker")
    cache = make(clock, unhealthy_backoff_sec=10)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    clock.advance(10)
    cache.mark_unhealthy("a", "trial failed")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert any("re-opened" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_events_also_answer_to_id_and_time(clock: FakeClock) -> None:
    """StateChange carries (id, old, new, reason, time) under both spellings."""
    cache = make(clock)
    seen: list[StateChange] = []
    cache.add_listener(seen.append)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")
    assert (seen[0].id, seen[0].time) == ("a", clock())


def test_adopting_another_replicas_opening_refuses_calls_for_its_window(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """adopt(OPEN, retry_in=40): open for 40 s here, listeners told which replica, one INFO."""
    cache = make(clock)
    events: list[StateChange] = []
    cache.add_listener(events.append)
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    cache.adopt("d", BreakerState.OPEN, retry_in=40.0, failures=3, reason="HTTP 503", replica="r2")
    assert not cache.is_healthy("d")
    assert cache.retry_in("d") == 40.0
    state = cache.get_state("d")
    assert state is not None
    assert (state.consecutive_failures, state.last_error) == (3, "HTTP 503")
    assert [(e.new, e.replica) for e in events] == [(BreakerState.OPEN, "r2")]
    assert [r.getMessage() for r in caplog.records] == [
        "deployment d circuit open, shared by replica r2: HTTP 503"
    ]
    cache.adopt("d", BreakerState.OPEN, retry_in=50.0, replica="r3")
    assert len(events) == 1  # still open: no transition, the window follows the record
    assert cache.retry_in("d") == 50.0
    clock.advance(50.0)
    assert cache.try_acquire("d")  # then this replica's own half-open trial


def test_adopted_hold_and_release_behave_like_local_ones(clock: FakeClock) -> None:
    """An adopted hold ignores successes; an adopted close ends it and clears the count."""
    cache = make(clock)
    cache.adopt("d", BreakerState.OPEN, retry_in=math.inf, reason="maintenance", replica="ops")
    assert cache.is_held("d")
    cache.mark_healthy("d")
    assert cache.breaker_state("d") is BreakerState.OPEN
    cache.adopt("d", BreakerState.CLOSED, replica="ops")
    assert not cache.is_held("d")
    assert cache.breaker_state("d") is BreakerState.CLOSED
    state = cache.get_state("d")
    assert state is not None
    assert (state.consecutive_failures, state.last_error) == (0, None)
    assert not cache.is_held("unknown")


def test_adopted_half_open_hands_out_one_trial(clock: FakeClock) -> None:
    """A probe passed elsewhere: here too the next call is the single trial."""
    cache = make(clock)
    for _ in range(2):
        cache.mark_unhealthy("d", "HTTP 500")
    cache.adopt("d", BreakerState.HALF_OPEN, failures=2, reason="HTTP 500", replica="r2")
    assert cache.breaker_state("d") is BreakerState.HALF_OPEN
    assert cache.try_acquire("d")
    assert not cache.try_acquire("d")


def test_view_reads_one_breaker_at_one_instant(clock: FakeClock) -> None:
    """What the Redis adapter shares: state, count, error, window left, hold, generation."""
    cache = make(clock)
    assert cache.view("a") is None
    cache.mark_unhealthy("a", "HTTP 503")
    first = cache.view("a")
    assert first is not None
    assert (first.state, first.consecutive_failures, first.last_error) == (
        BreakerState.CLOSED,
        1,
        "HTTP 503",
    )
    assert first.retry_in == 0.0
    cache.mark_unhealthy("a", "HTTP 503")
    clock.advance(10)
    opened = cache.view("a")
    assert opened is not None
    assert opened.state is BreakerState.OPEN
    assert opened.retry_in == 50.0
    assert not opened.held
    assert opened.generation > first.generation
    cache.force_open("b")
    held = cache.view("b")
    assert held is not None
    assert held.held
    assert held.retry_in == math.inf


def test_transition_lines_come_from_a_listener_that_can_be_removed(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The state machine only emits events; its default listener writes the lines."""
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    events: list[StateChange] = []
    cache = make(clock)
    cache.add_listener(events.append)
    cache.mark_unhealthy("a", "HTTP 503")
    cache.mark_unhealthy("a", "HTTP 503")
    assert [r.getMessage() for r in caplog.records] == [
        "deployment a circuit opened for 60.0s after 2 consecutive failures: HTTP 503"
    ]
    assert (events[-1].failures, events[-1].open_for, events[-1].operator) == (2, 60.0, False)
    cache.remove_listener(cache.transition_log)
    caplog.clear()
    cache.force_open("b", reason="maintenance")
    cache.mark_healthy("a")
    assert caplog.records == []
    assert events[-2].operator
    assert events[-2].open_for == math.inf


def test_an_opening_line_says_what_opened_it(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """One failure is "1 failure"; the slow-call rule's opening claims no failure at all."""
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    single = make(clock, failure_threshold=1)
    single.mark_unhealthy("a", "HTTP 503")
    cache = make(clock)
    cache.mark_unhealthy("b", "slow: 10 of its last 10 calls slower than 2.0s", open_now=True)
    assert [r.getMessage() for r in caplog.records] == [
        "deployment a circuit opened for 60.0s after 1 failure: HTTP 503",
        "deployment b circuit opened for 60.0s: slow: 10 of its last 10 calls slower than 2.0s",
    ]


def test_listeners_get_each_deployments_transitions_in_order_across_threads(
    clock: FakeClock,
) -> None:
    """However threads interleave, each event starts where the one before it ended."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    cache = make(clock, failure_threshold=1)
    seen: list[StateChange] = []
    cache.add_listener(seen.append)
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(2000):
            cache.mark_unhealthy("a", "x")
            cache.mark_healthy("a")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    moves = [e for e in seen if e.old is not e.new]
    assert len(moves) > 100  # the threads did interleave
    broken = [(a.new, b.old) for a, b in itertools.pairwise(moves) if a.new is not b.old]
    assert broken == []


def test_a_listener_raising_a_base_exception_never_reaches_the_caller(clock: FakeClock) -> None:
    """A CancelledError from a listener is counted like any error; later listeners still run."""
    cache = make(clock)

    def cancelled(event: StateChange) -> None:
        raise asyncio.CancelledError

    seen: list[StateChange] = []
    cache.add_listener(cancelled)
    cache.add_listener(seen.append)
    cache.mark_unhealthy("a", "x")
    cache.mark_unhealthy("a", "x")  # opens: must not raise
    assert [e.new for e in seen] == [BreakerState.OPEN]
    assert cache.listener_errors == 1


def test_a_ping_that_answers_grants_one_real_trial_and_a_blind_ping_stops(
    clock: FakeClock,
) -> None:
    """A ping's answer half-opens (never closes); if that trial fails, no more pings."""
    cache = make(clock, unhealthy_backoff_sec=60)
    open_breaker(cache, "a")
    assert cache.want_ping("a")
    assert cache.ping_ids() == ["a"]
    cache.mark_ping_passed("a")
    assert cache.breaker_state("a") is BreakerState.HALF_OPEN
    assert cache.try_acquire("a")
    cache.mark_unhealthy("a", "real prompts still time out")
    assert cache.breaker_state("a") is BreakerState.OPEN
    assert cache.ping_ids() == []  # pings are blind to this fault too
    assert cache.want_ping("a")  # a probe passing again changes nothing for pings
    assert cache.ping_ids() == []
    clock.advance(60)
    assert cache.try_acquire("a")  # the window still admits one real call
    cache.mark_healthy("a")
    open_breaker(cache, "a")
    assert cache.want_ping("a")
    assert cache.ping_ids() == ["a"]  # a new outage: pings are trusted again


def test_a_failed_ping_after_a_probe_pass_makes_the_probe_blind(clock: FakeClock) -> None:
    """The probe said up, the ping said down: pings every interval, nothing re-armed."""
    cache = make(clock, unhealthy_backoff_sec=60)
    open_breaker(cache, "a")
    window = cache.retry_in("a")
    assert cache.want_ping("a")
    cache.mark_ping_failed("a", "trial completion: 503")
    assert cache.retry_in("a") == window
    cache.mark_probe_passed("a")  # blind: no half-open
    assert cache.breaker_state("a") is BreakerState.OPEN
    assert cache.ping_ids() == ["a"]
    cache.force_open("a")
    assert cache.ping_ids() == []  # an operator's hold is never pinged


def test_opened_after_tells_a_call_that_began_before_the_opening(clock: FakeClock) -> None:
    """Failures and a timed operator opening alike: a call that began before either, its
    success landing later, is told apart from one sent after (wall time, as LiteLLM's)."""
    import time  # noqa: PLC0415

    cache = make(clock)
    before = time.time() - 1.0
    assert not cache.opened_after("a", before)  # closed: nothing to tell
    cache.mark_unhealthy("a", "HTTP 503")
    cache.mark_unhealthy("a", "HTTP 503")
    assert cache.opened_after("a", before)
    assert not cache.opened_after("a", time.time() + 1.0)
    cache.force_open("b", seconds=30)
    assert cache.opened_after("b", before)
    cache.mark_healthy("a")
    assert not cache.opened_after("a", before)  # closed again
