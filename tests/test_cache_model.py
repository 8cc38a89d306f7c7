"""The cache against a small reference model, under random sequences of operations."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from litellm_circuit_breaker import BreakerState, ProviderHealthCache, StateChange
from litellm_circuit_breaker.testing import FakeClock

IDS = st.sampled_from(["a", "b", "c"])
THRESHOLD = 2
BACKOFF = 10.0
LEASE = 4.0


@dataclass
class Model:
    """The rules of the brief, written as plainly as possible."""

    failures: int = 0
    open_until: float | None = None  # None: closed
    trial_until: float = -1.0
    error: str | None = None
    probe_granted: bool = False  # this half-open came from a passing probe
    probe_blind: bool = False  # such a trial failed: probes grant nothing until closed
    transitions: list[tuple[BreakerState, BreakerState]] = field(default_factory=list)

    def state(self, now: float) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if self.open_until > now else BreakerState.HALF_OPEN


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cache = ProviderHealthCache(
            failure_threshold=THRESHOLD,
            unhealthy_backoff_sec=BACKOFF,
            trial_lease_sec=LEASE,
            clock=self.clock,
        )
        self.models: dict[str, Model] = {}
        self.events: list[StateChange] = []
        self.cache.add_listener(self.events.append)

    def model(self, pid: str) -> Model:
        return self.models.setdefault(pid, Model())

    @rule(pid=IDS)
    def success(self, pid: str) -> None:
        m = self.model(pid)
        m.failures, m.open_until, m.trial_until, m.error = 0, None, -1.0, None
        m.probe_granted = m.probe_blind = False
        self.cache.mark_healthy(pid)

    @rule(pid=IDS, reason=st.sampled_from(["503", "timeout", "refused"]))
    def failure(self, pid: str, reason: str) -> None:
        m = self.model(pid)
        now = self.clock()
        m.failures += 1
        m.error = reason
        if m.open_until is not None or m.failures >= THRESHOLD:
            if m.probe_granted and m.state(now) is BreakerState.HALF_OPEN:
                m.probe_blind = True
            m.probe_granted = False
            m.open_until = now + BACKOFF
            m.trial_until = -1.0
        self.cache.mark_unhealthy(pid, reason)

    @rule(pid=IDS)
    def acquire(self, pid: str) -> None:
        m = self.models.get(pid)
        now = self.clock()
        expected = True
        if m is not None:
            state = m.state(now)
            if state is BreakerState.OPEN:
                expected = False
            elif state is BreakerState.HALF_OPEN:
                expected = m.trial_until <= now
                if expected:
                    m.trial_until = now + LEASE
        assert self.cache.try_acquire(pid) is expected

    @rule(pid=IDS)
    def probe_passed(self, pid: str) -> None:
        m = self.models.get(pid)
        if m is not None and m.state(self.clock()) is BreakerState.OPEN and not m.probe_blind:
            m.open_until = self.clock()
            m.probe_granted = True
        self.cache.mark_probe_passed(pid)

    @rule(pid=IDS)
    def release(self, pid: str) -> None:
        if pid in self.models:
            self.models[pid].trial_until = -1.0
        self.cache.release(pid)

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.9, 4.0, 9.99, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def agrees_with_the_model(self) -> None:
        now = self.clock()
        for pid in ("a", "b", "c"):
            m = self.models.get(pid)
            state = self.cache.get_state(pid)
            if m is None:
                assert state is None
                assert self.cache.is_healthy(pid)
                continue
            assert state is not None
            assert state.consecutive_failures == m.failures
            assert state.last_error == m.error
            assert state.healthy is (m.open_until is None)
            assert self.cache.is_healthy(pid) is (m.state(now) is not BreakerState.OPEN)
            assert self.cache.breaker_state(pid) is m.state(now)

    @invariant()
    def events_form_a_legal_chain_per_deployment(self) -> None:
        last: dict[str, BreakerState] = {}
        legal = {
            (BreakerState.CLOSED, BreakerState.OPEN),
            (BreakerState.OPEN, BreakerState.HALF_OPEN),
            (BreakerState.HALF_OPEN, BreakerState.OPEN),
            (BreakerState.HALF_OPEN, BreakerState.CLOSED),
            (BreakerState.OPEN, BreakerState.CLOSED),
            (BreakerState.OPEN, BreakerState.OPEN),  # the window re-armed while open
        }
        for e in self.events:
            assert e.old is last.get(e.deployment, BreakerState.CLOSED)
            assert (e.old, e.new) in legal
            last[e.deployment] = e.new


CacheMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_cache_agrees_with_reference_model = CacheMachine.TestCase
