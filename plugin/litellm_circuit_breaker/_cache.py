"""The breaker state machine: one breaker per deployment id, pure and thread-safe.

This module does no I/O and imports nothing from LiteLLM, httpx or Redis; "now"
comes from an injected clock. Every adapter (LiteLLM hooks, HTTP probes, Redis,
metrics) calls into :class:`ProviderHealthCache`.

The states, per deployment::

    CLOSED --(failure_threshold consecutive failures)--> OPEN
    OPEN   --(backoff window ends, or a probe passes)--> HALF_OPEN
    HALF_OPEN --(trial succeeds)--> CLOSED
    HALF_OPEN --(trial fails)-----> OPEN (window re-armed)
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass

from ._config import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_BACKOFF_SEC,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
    MAX_BACKOFF_MULTIPLIER,
    MAX_WINDOW_SEC,
)
from ._config import check_number as _check_number
from ._errors import ConfigurationError
from ._logging import PING_PASSED, PROBE_PASSED, TransitionLog
from ._state import BreakerState, BreakerView, ProviderState, StateChange, StateListener, state_at

__all__ = [
    "BACKOFF_ELAPSED",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_TRIAL_LEASE_SEC",
    "DEFAULT_UNHEALTHY_BACKOFF_SEC",
    "MAX_RETRY_AFTER_SEC",
    "PROBE_PASSED",
    "ProviderHealthCache",
]

# A provider's Retry-After is honoured as a floor on the open window, but a
# buggy or hostile header must not park a deployment for days.
MAX_RETRY_AFTER_SEC = 3600.0
# The reasons of the two OPEN -> HALF_OPEN transitions: one is evidence (shared
# with other replicas), the other is only time passing (each replica sees it).
BACKOFF_ELAPSED = "backoff elapsed"

logger = logging.getLogger("litellm_circuit_breaker")  # the cache's own faults only

Clock = Callable[[], float]


@dataclass(slots=True)
class _Breaker:
    """The live record behind one deployment; only touched under the cache lock."""

    healthy: bool = True
    consecutive_failures: int = 0
    last_check: float = 0.0
    last_error: str | None = None
    unhealthy_until: float = 0.0
    openings: int = 0
    """Openings since the last close; drives the opt-in growing backoff."""
    trial_until: float = 0.0
    """While > now, a half-open trial permit is out and nobody else gets one."""
    last_ok: float = -math.inf
    """When a call last succeeded (``mark_healthy``, or the success hot path)."""
    forced: bool = False
    """Held open by an operator: only ``force_close``/``forget`` end it."""
    probe_trial: bool = False
    """This half-open came from a passing probe, before the window ended."""
    probe_blind: bool = False
    """A trial a passing probe granted failed since this breaker opened: its probe
    cannot see this fault, so probe passes grant nothing more until it closes."""
    ping_wanted: bool = False
    """A probe passed while open: a trial completion is to confirm it (in place of a
    user's call as the trial)."""
    ping_trial: bool = False
    """This half-open came from a ping that answered."""
    ping_blind: bool = False
    """A trial a ping granted failed: pings cannot see this fault either (a token
    rate limit, prompts that time out), so none until this breaker closes."""
    reported: BreakerState = BreakerState.CLOSED
    """The state listeners were last told about."""
    opened_wall: float = 0.0
    """When (``time.time()``) it last opened: a call that began before then, succeeding
    later, says nothing about the deployment since (see :meth:`opened_after`)."""
    generation: int = 0
    """When this breaker last changed (not by time passing), on the cache's own
    ever-growing change counter; lets :meth:`adopt` notice a local change raced it."""

    def state(self, now: float) -> BreakerState:
        return state_at(self.healthy, self.unhealthy_until, now)

    def copy_out(self) -> ProviderState:
        return ProviderState(
            healthy=self.healthy,
            consecutive_failures=self.consecutive_failures,
            last_check=self.last_check,
            last_error=self.last_error,
            unhealthy_until=self.unhealthy_until,
        )


class ProviderHealthCache:
    """Per-deployment circuit breakers keyed by deployment id.

    The first failure leaves a deployment healthy (blips happen); the
    ``failure_threshold``-th consecutive one opens its breaker for
    ``unhealthy_backoff_sec``. When the window ends the breaker is half-open:
    :meth:`is_healthy` is True again and :meth:`try_acquire` hands out one trial
    permit; the trial's success closes the breaker, its failure re-opens it.

    Thread-safe: LiteLLM calls sync callbacks from worker threads. One lock,
    held for a few attribute writes; listeners run after it is released.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        unhealthy_backoff_sec: float = DEFAULT_UNHEALTHY_BACKOFF_SEC,
        clock: Clock = time.monotonic,
        backoff_multiplier: float = 1.0,
        max_backoff_sec: float | None = None,
        trial_lease_sec: float = DEFAULT_TRIAL_LEASE_SEC,
    ) -> None:
        if (
            not isinstance(failure_threshold, int)
            or isinstance(failure_threshold, bool)
            or failure_threshold < 1
        ):
            raise ConfigurationError("failure_threshold", failure_threshold, "an integer >= 1")
        self._threshold = failure_threshold
        self._backoff = _check_number(
            "unhealthy_backoff_sec", unhealthy_backoff_sec, minimum=0.0, maximum=MAX_WINDOW_SEC
        )
        self._multiplier = _check_number(
            "backoff_multiplier",
            backoff_multiplier,
            minimum=1.0,
            maximum=MAX_BACKOFF_MULTIPLIER,
        )
        self._max_backoff = (
            max(DEFAULT_MAX_BACKOFF_SEC, self._backoff)
            if max_backoff_sec is None
            else _check_number(
                "max_backoff_sec", max_backoff_sec, minimum=self._backoff, maximum=MAX_WINDOW_SEC
            )
        )
        self._lease = _check_number(
            "trial_lease_sec", trial_lease_sec, minimum=0.0, inclusive=False
        )
        if not callable(clock):
            raise ConfigurationError("clock", clock, "a callable returning seconds")
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}
        self._unhealthy: set[str] = set()
        """Ids whose breaker is open or half-open: the hot path only looks at these."""
        self._unhealthy_copy: frozenset[str] | None = frozenset()
        """:meth:`unhealthy_ids`' answer, made again only after the set changed: with
        thousands open, a copy per request would cost each request the whole set."""
        self.unhealthy_hint: Set[str] = self._unhealthy
        """The same ids, live and unlocked, for a hot path that only asks "any at all?"
        without a call (:meth:`unhealthy_ids` is the consistent copy)."""
        self._changes = itertools.count(1)
        self.transition_log = TransitionLog()
        """The transition log, the first listener: remove it to log your own way."""
        self._listeners: list[StateListener] = [self.transition_log]
        self._listener_errors = 0
        self._failed_listeners: set[int] = set()
        self._pending: list[StateChange] = []
        """Events made under the lock, in the order they were made, not yet delivered."""
        self._delivering = False
        """A thread is delivering ``_pending``; the others leave their events to it."""

    # -- settings ---------------------------------------------------------

    @property
    def failure_threshold(self) -> int:
        """Consecutive failures that open a closed breaker."""
        return self._threshold

    @property
    def unhealthy_backoff_sec(self) -> float:
        """Length of the first open window, in clock seconds."""
        return self._backoff

    @property
    def trial_lease_sec(self) -> float:
        """How long a half-open trial permit lasts if its call never reports back."""
        return self._lease

    @property
    def clock(self) -> Clock:
        """The clock every window is measured with."""
        return self._clock

    @property
    def listener_errors(self) -> int:
        """How many times a listener raised (each was logged, none propagated)."""
        return self._listener_errors

    # -- reads ------------------------------------------------------------

    def is_healthy(self, provider_id: str) -> bool:
        """False only while the breaker is open; unknown ids and half-open are healthy."""
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:
                return True
            events = self._observe(provider_id, b, now)
            healthy = b.healthy or b.unhealthy_until <= now
        self._emit(events)
        return healthy

    def breaker_state(self, provider_id: str) -> BreakerState:
        """CLOSED, OPEN or HALF_OPEN right now (unknown ids are CLOSED)."""
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:
                return BreakerState.CLOSED
            state = b.state(now)
            events = self._observe(provider_id, b, now)
        self._emit(events)
        return state

    def retry_in(self, provider_id: str) -> float:
        """Seconds until the breaker admits a trial call; 0 when it admits calls now."""
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None or b.healthy:
                return 0.0
            return max(0.0, b.unhealthy_until - now, b.trial_until - now)

    def get_state(self, provider_id: str) -> ProviderState | None:
        """A copy of the deployment's state, or None if it was never seen."""
        with self._lock:
            b = self._breakers.get(provider_id)
            return None if b is None else b.copy_out()

    def snapshot(self, expected: Iterable[str] | None = None) -> dict[str, ProviderState]:
        """Copies of every known state; ids in ``expected`` without one get a fresh state."""
        with self._lock:
            out = {pid: b.copy_out() for pid, b in self._breakers.items()}
        for pid in expected or ():
            out.setdefault(pid, ProviderState())
        return out

    def ids(self) -> list[str]:
        """Every deployment id the cache holds state for."""
        with self._lock:
            return list(self._breakers)

    def unhealthy_ids(self) -> frozenset[str]:
        """Ids whose breaker is open or half-open; empty in the common case."""
        if not self._unhealthy:  # unlocked fast path: a stale read only costs a lock
            return frozenset()
        with self._lock:
            copy = self._unhealthy_copy
            if copy is None:
                copy = self._unhealthy_copy = frozenset(self._unhealthy)
            return copy

    def _set_unhealthy(self, provider_id: str, *, unhealthy: bool) -> None:
        """Keep ``_unhealthy`` (and drop its copy) as the breaker is; under the lock."""
        if (provider_id in self._unhealthy) is unhealthy:
            return
        if unhealthy:
            self._unhealthy.add(provider_id)
        else:
            self._unhealthy.discard(provider_id)
        self._unhealthy_copy = None

    def any_unhealthy(self) -> bool:
        """Whether any breaker is open or half-open: O(1), for a check made on every
        transition (a copy of :meth:`unhealthy_ids` there made adopting 60,000 shared
        openings quadratic: 40 s)."""
        return bool(self._unhealthy)

    def __contains__(self, provider_id: object) -> bool:
        with self._lock:
            return provider_id in self._breakers

    def __len__(self) -> int:
        with self._lock:
            return len(self._breakers)

    # -- the router's question ----------------------------------------------

    def try_acquire(self, provider_id: str) -> bool:
        """May a call go to this deployment now? Takes the trial permit in half-open.

        Closed: True. Open: False. Half-open: True for exactly one caller until
        that trial reports back through :meth:`mark_healthy`,
        :meth:`mark_unhealthy` or :meth:`release`, or its lease of
        ``trial_lease_sec`` runs out (so a lost trial cannot wedge the breaker).
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:
                return True
            events = self._observe(provider_id, b, now)
            state = b.state(now)
            granted = state is BreakerState.CLOSED or (
                state is BreakerState.HALF_OPEN and b.trial_until <= now
            )
            if granted and state is BreakerState.HALF_OPEN:
                b.trial_until = now + self._lease
        self._emit(events)
        return granted

    def release(self, provider_id: str) -> None:
        """Hand back a trial permit whose call neither passed nor failed (e.g. a 400)."""
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None:
                b.trial_until = 0.0

    # -- evidence ---------------------------------------------------------

    def mark_healthy(self, provider_id: str) -> None:
        """A call or probe succeeded: full reset to closed.

        Logs one INFO line containing "recovered" when this ends an outage.
        A breaker held open by :meth:`force_open` stays open.
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:  # not setdefault: no throwaway record on every success
                b = self._breakers[provider_id] = _Breaker()
            b.last_check = b.last_ok = now
            if b.forced:
                return
            b.healthy = True
            b.consecutive_failures = 0
            b.last_error = None
            b.unhealthy_until = 0.0
            b.openings = 0
            b.trial_until = 0.0
            b.probe_trial = b.probe_blind = b.ping_wanted = False
            b.ping_trial = b.ping_blind = False
            events = self._move(provider_id, b, BreakerState.CLOSED, "call succeeded", now)
        self._emit(events)

    def opened_after(self, provider_id: str, began_wall: float) -> bool:
        """Whether the breaker is open or half-open since after ``began_wall`` (``time.time()``).

        A success of a call that began before the opening was in flight when the
        deployment failed: it must not close the breaker (calls in flight finishing
        one by one would make it flap), nor end a trial it is not. Wall time, not
        the cache clock: the call's start comes from LiteLLM's logging object.
        """
        b = self._breakers.get(provider_id)
        return b is not None and not b.healthy and b.opened_wall > began_wall

    def touch_if_settled(self, provider_id: str) -> bool:
        """The hot path of a success: True if :meth:`mark_healthy` would change nothing.

        That is a closed breaker with no failure counted. Its ``last_check`` is
        updated and no lock is taken: one attribute read each, atomic under the
        GIL. A failure landing at the same moment on another thread is simply
        ordered after this success, as it could have been anyway.
        """
        b = self._breakers.get(provider_id)
        if b is None:  # the first word of a deployment: a new, closed record
            with self._lock:
                b = self._breakers.setdefault(provider_id, _Breaker())
        if not b.healthy or b.consecutive_failures:
            return False
        b.last_check = b.last_ok = self._clock()
        return True

    def mark_unhealthy(
        self,
        provider_id: str,
        reason: str | None = None,
        *,
        retry_after: float | None = None,
        open_now: bool = False,
    ) -> None:
        """A call or probe failed with ``reason``.

        Reaching ``failure_threshold`` consecutive failures opens the breaker for
        the backoff window (at least ``retry_after`` seconds when the provider
        sent one); a failure while open or half-open re-arms the window.
        ``open_now``: evidence that stands for the threshold on its own (a
        slow-call rate over a window of calls) opens a closed breaker at once.
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.setdefault(provider_id, _Breaker())
            events = self._observe(provider_id, b, now)
            b.consecutive_failures += 1
            if open_now:
                b.consecutive_failures = max(b.consecutive_failures, self._threshold)
            b.last_error = reason
            b.last_check = now
            if not b.forced and (not b.healthy or b.consecutive_failures >= self._threshold):
                if b.reported is not BreakerState.OPEN:  # a new opening, not a re-arm
                    b.openings += 1
                    b.opened_wall = time.time()
                if b.reported is BreakerState.HALF_OPEN:
                    if b.probe_trial:
                        b.probe_blind = True  # the probe said "up", the trial said "down"
                    if b.ping_trial:
                        b.ping_blind = True  # and so did a ping
                b.probe_trial = b.ping_trial = False
                b.healthy = False
                b.unhealthy_until = now + self._window(b.openings, retry_after)
                b.trial_until = 0.0
                # Re-armed while open: told as OPEN -> OPEN, so shared state follows.
                events += self._move(provider_id, b, BreakerState.OPEN, reason, now, again=True)
        self._emit(events)

    def mark_probe_failed(self, provider_id: str, reason: str | None = None) -> None:
        """A health probe failed: a failure for a closed breaker, never a re-arm.

        A closed breaker counts it like a failed call. An open or half-open one
        only records it: its window is not re-armed and a half-open one is not
        re-opened, so a probe that fails while calls would succeed (a list call
        the key may not make) can never hold a breaker open without a trial:
        when the window ends, one real call decides.
        """
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None and not b.healthy:
                b.last_error = reason
                b.last_check = self._clock()
                return
        self.mark_unhealthy(provider_id, reason)

    def mark_probe_passed(self, provider_id: str) -> None:
        """A health probe passed: an open breaker moves to half-open at once.

        Unlike :meth:`mark_healthy` this erases nothing: a deployment whose
        list endpoint answers while its completions fail gets one trial call,
        and that trial decides. Closed and half-open breakers are unchanged.

        Once such a trial has failed, the probe is known blind to this fault
        (GET /models answering while chat fails): until the breaker closes,
        probe passes move nothing and only the end of each window admits a
        trial, so an outage costs at most one trial per window.
        """
        self._half_open_on_evidence(provider_id, by_ping=False)

    # -- operator control --------------------------------------------------

    def force_open(
        self, provider_id: str, *, seconds: float | None = None, reason: str = "forced open"
    ) -> None:
        """Open the breaker by hand; ``seconds=None`` holds it open until :meth:`force_close`."""
        if seconds is not None:
            _check_number("seconds", seconds, minimum=0.0, maximum=MAX_WINDOW_SEC)
        now = self._clock()
        with self._lock:
            b = self._breakers.setdefault(provider_id, _Breaker())
            events = self._observe(provider_id, b, now)
            if b.healthy:
                b.opened_wall = time.time()  # calls already out say nothing of it
            b.healthy = False
            b.forced = seconds is None
            b.unhealthy_until = math.inf if seconds is None else now + seconds
            b.trial_until = 0.0
            b.probe_trial = False
            b.last_error = reason
            b.last_check = now
            events += self._move(
                provider_id, b, BreakerState.OPEN, reason, now, again=True, operator=True
            )
        self._emit(events)

    def force_close(self, provider_id: str) -> None:
        """Close the breaker by hand, clearing any forced hold and failure count."""
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is not None:
                b.forced = False
        self.mark_healthy(provider_id)

    def forget(self, provider_id: str) -> bool:
        """Drop all state for a deployment (e.g. removed from config); True if it was known."""
        with self._lock:
            self._set_unhealthy(provider_id, unhealthy=False)
            return self._breakers.pop(provider_id, None) is not None

    # -- shared state ---------------------------------------------------------

    def adopt(
        self,
        provider_id: str,
        state: BreakerState,
        *,
        retry_in: float = 0.0,
        failures: int = 0,
        reason: str | None = None,
        replica: str,
        unless_changed_since: int | None = None,
    ) -> int | None:
        """Take another replica's breaker as this one's (state shared through Redis).

        OPEN with ``retry_in`` seconds left (``math.inf``: held open by an
        operator), HALF_OPEN or CLOSED. Listeners get the change with
        ``replica`` set, so a sharing adapter does not send it back. Returns
        the breaker's :meth:`generation` after the change; with
        ``unless_changed_since``, nothing happens and None is returned if the
        breaker changed here since that generation.
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.setdefault(provider_id, _Breaker())
            if unless_changed_since is not None and b.generation > unless_changed_since:
                return None
            events = self._observe(provider_id, b, now)
            if state is not BreakerState.HALF_OPEN or b.state(now) is not BreakerState.HALF_OPEN:
                b.trial_until = 0.0  # a trial already out here stays the only one
            if state is not BreakerState.HALF_OPEN:
                b.probe_trial = False  # another replica's verdict, not this probe's
            b.last_check = now
            if state is BreakerState.CLOSED:
                b.healthy, b.forced = True, False
                b.consecutive_failures, b.openings = 0, 0
                b.last_error, b.unhealthy_until = None, 0.0
                b.probe_trial = b.probe_blind = b.ping_wanted = False
                b.ping_trial = b.ping_blind = False
            else:
                if b.reported is BreakerState.CLOSED:
                    b.openings += 1
                    b.opened_wall = time.time()
                b.healthy = False
                b.consecutive_failures = max(failures, 1)
                b.last_error = reason
                left = max(0.0, retry_in) if state is BreakerState.OPEN else 0.0
                b.forced = math.isinf(left)
                b.unhealthy_until = now + left
            events += self._move(provider_id, b, b.state(now), reason, now, replica=replica)
            generation = b.generation
        self._emit(events)
        return generation

    def generation(self, provider_id: str) -> int:
        """A marker of this breaker's last change (0: none, or unknown); only ever grows
        across the whole cache, so a forgotten and re-created breaker never looks older."""
        with self._lock:
            b = self._breakers.get(provider_id)
            return 0 if b is None else b.generation

    def view(self, provider_id: str) -> BreakerView | None:
        """One consistent reading of a breaker for an adapter, or None if it is unknown."""
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:
                return None
            state = b.state(now)
            events = self._observe(provider_id, b, now)
            view = BreakerView(
                state=state,
                consecutive_failures=b.consecutive_failures,
                last_error=b.last_error,
                retry_in=0.0
                if b.healthy
                else max(0.0, b.unhealthy_until - now, b.trial_until - now),
                held=b.forced,
                generation=b.generation,
            )
        self._emit(events)
        return view

    def succeeded_within(self, provider_id: str, seconds: float) -> bool:
        """True if a call to the deployment succeeded in the last ``seconds``."""
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            return b is not None and now - b.last_ok <= seconds

    def want_ping(self, provider_id: str) -> bool:
        """A probe passed while open: ask for a trial completion to confirm it.

        In place of :meth:`mark_probe_passed` (whose trial is a user's call):
        the state stays as it is until the ping answers (:meth:`mark_ping_passed`)
        or fails (:meth:`mark_ping_failed`). False, and nothing asked, unless
        the breaker is open and not held.
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None or b.forced or b.state(now) is not BreakerState.OPEN:
                return False
            b.last_check = now
            b.ping_wanted = True
            return True

    def mark_ping_failed(self, provider_id: str, reason: str | None = None) -> None:
        """A trial completion failed: after a passing probe, that probe is proven blind.

        Never a re-arm: the window ends as it would have, then one call decides.
        """
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None or b.healthy:
                return
            if b.ping_wanted:
                b.probe_blind = True
                b.ping_wanted = False
            b.last_error = reason
            b.last_check = self._clock()

    def mark_ping_passed(self, provider_id: str) -> None:
        """A trial completion answered: half-open, and the next real call is the trial.

        Not a close: a ping can answer while real calls fail. If that trial
        fails, pings are proven blind too and none are wanted until it closes.
        """
        self._half_open_on_evidence(provider_id, by_ping=True)

    def _half_open_on_evidence(self, provider_id: str, *, by_ping: bool) -> None:
        """An open breaker (not held) moves to half-open now; the trial remembers who asked.

        A probe's pass moves nothing once the probe is known blind; a ping's
        answer is no longer awaited once it came.
        """
        now = self._clock()
        with self._lock:
            b = self._breakers.get(provider_id)
            if b is None:
                return
            b.last_check = now
            if by_ping:
                b.ping_wanted = False
            events = self._observe(provider_id, b, now)
            blind = not by_ping and b.probe_blind
            if not b.forced and not blind and b.state(now) is BreakerState.OPEN:
                b.unhealthy_until = now
                if by_ping:
                    b.ping_trial = True
                else:
                    b.probe_trial = True
                reason = PING_PASSED if by_ping else PROBE_PASSED
                events += self._move(provider_id, b, BreakerState.HALF_OPEN, reason, now)
        self._emit(events)

    def ping_ids(self) -> list[str]:
        """Open breakers (not held) a trial completion is for: a probe passed, or it is blind."""
        now = self._clock()
        with self._lock:
            return [
                provider_id
                for provider_id in self._unhealthy
                if (b := self._breakers.get(provider_id)) is not None
                and (b.probe_blind or b.ping_wanted)
                and not b.ping_blind
                and not b.forced
                and b.state(now) is BreakerState.OPEN
            ]

    def is_held(self, provider_id: str) -> bool:
        """True while an operator holds the breaker open (``force_open`` without seconds)."""
        with self._lock:
            b = self._breakers.get(provider_id)
            return b is not None and b.forced

    # -- listeners -----------------------------------------------------------

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(event)`` after every state change, outside the lock."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- internals -----------------------------------------------------------

    def _window(self, openings: int, retry_after: float | None) -> float:
        window = self._backoff
        if self._multiplier > 1.0 and openings > 1:
            try:
                window = min(window * self._multiplier ** (openings - 1), self._max_backoff)
            except OverflowError:  # grown far past any cap
                window = self._max_backoff
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            window = max(window, min(retry_after, MAX_RETRY_AFTER_SEC))
        return window

    def _observe(self, provider_id: str, b: _Breaker, now: float) -> list[StateChange]:
        """Report the one transition time makes on its own: OPEN -> HALF_OPEN."""
        if b.reported is BreakerState.OPEN and b.state(now) is BreakerState.HALF_OPEN:
            return self._move(
                provider_id,
                b,
                BreakerState.HALF_OPEN,
                BACKOFF_ELAPSED,
                b.unhealthy_until,
                local_change=False,  # time passing is no news to share
            )
        return []

    def _move(
        self,
        provider_id: str,
        b: _Breaker,
        new: BreakerState,
        reason: str | None,
        at: float,
        *,
        replica: str | None = None,
        again: bool = False,
        local_change: bool = True,
        operator: bool = False,
    ) -> list[StateChange]:
        """Record the new state; an event unless nothing changed (``again``: even then)."""
        self._set_unhealthy(provider_id, unhealthy=not b.healthy)
        old = b.reported
        if old is new and not again:
            return []
        b.reported = new
        if local_change:
            b.generation = next(self._changes)
        open_for = b.unhealthy_until - at if new is BreakerState.OPEN else 0.0
        event = StateChange(
            provider_id,
            old,
            new,
            reason,
            at,
            replica,
            failures=b.consecutive_failures,
            open_for=open_for,
            operator=operator,
        )
        self._pending.append(event)  # under the lock: the order they happened in
        return [event]

    def _emit(self, events: list[StateChange]) -> None:
        """Deliver every pending event, in order, unless another thread is doing so.

        Events are queued under the lock as they happen; one thread at a time
        hands them to the listeners, outside the lock. So listeners see each
        deployment's transitions in the order they happened, even when threads
        race (and a listener that changes a breaker has its event delivered
        after the current one, not in the middle of it).
        """
        if not events:
            return
        while True:
            with self._lock:
                if self._delivering or not self._pending:
                    return
                self._delivering = True
                batch, self._pending = self._pending, []
                listeners = list(self._listeners)
            done = 0
            try:
                for event in batch:
                    for listener in listeners:
                        self._call(listener, event)
                    done += 1
            finally:
                with self._lock:
                    self._delivering = False
                    if done < len(batch):  # interrupted (Ctrl-C): the rest is not lost
                        self._pending[:0] = batch[done + 1 :]

    def _call(self, listener: StateListener, event: StateChange) -> None:
        try:
            listener(event)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # even a CancelledError: never into a request
            with self._lock:
                self._listener_errors += 1
                first = id(listener) not in self._failed_listeners
                self._failed_listeners.add(id(listener))
            if first:
                logger.exception(
                    "circuit breaker listener %r raised; it is kept, errors are counted",
                    listener,
                )
