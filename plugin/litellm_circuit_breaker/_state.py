"""Plain values shared by the breaker and its listeners: no logic, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BreakerState",
    "BreakerView",
    "ProviderState",
    "StateChange",
    "StateListener",
    "state_at",
]


class BreakerState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    """Traffic flows; failures are being counted."""
    OPEN = "open"
    """Traffic is refused until the backoff window ends."""
    HALF_OPEN = "half_open"
    """The window ended: one trial call decides between closed and open."""


@dataclass
class ProviderState:
    """A copy of one deployment's breaker, as returned by ``get_state``/``snapshot``.

    Times are in the units of the cache's clock (monotonic seconds by default).
    Mutating a copy changes nothing in the cache.
    """

    healthy: bool = True
    consecutive_failures: int = 0
    last_check: float = 0.0
    last_error: str | None = None
    unhealthy_until: float = 0.0

    def breaker_state(self, now: float) -> BreakerState:
        """The breaker state this copy stands for at time ``now``."""
        return state_at(self.healthy, self.unhealthy_until, now)


@dataclass(frozen=True, slots=True)
class BreakerView:
    """Everything an adapter shares of one breaker, read at one instant (one lock)."""

    state: BreakerState
    consecutive_failures: int
    last_error: str | None
    retry_in: float
    """Seconds until a trial is admitted (``math.inf`` while held open); 0 unless open."""
    held: bool
    """An operator holds it open (``force_open`` without seconds)."""
    generation: int
    """The cache's change marker for this breaker at that instant."""


def state_at(healthy: bool, unhealthy_until: float, now: float) -> BreakerState:
    """The one rule: closed while healthy, open until the window ends, then half-open."""
    if healthy:
        return BreakerState.CLOSED
    if unhealthy_until > now:
        return BreakerState.OPEN
    return BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class StateChange:
    """One breaker transition, handed to every listener."""

    deployment: str
    old: BreakerState
    new: BreakerState
    reason: str | None
    at: float
    """When it happened, in the cache clock's units."""
    replica: str | None = None
    """None when this process made the change; else the replica it was adopted from."""
    failures: int = 0
    """Consecutive failures counted when it happened."""
    open_for: float = 0.0
    """For a change to OPEN: the seconds its window runs (``math.inf`` while held)."""
    operator: bool = False
    """Made by an operator's ``force_open``."""

    @property
    def id(self) -> str:
        """The deployment id (alias of ``deployment``)."""
        return self.deployment

    @property
    def time(self) -> float:
        """When it happened (alias of ``at``)."""
        return self.at


class StateListener(Protocol):
    """Anything called with each :class:`StateChange`; it must not block."""

    def __call__(self, event: StateChange, /) -> None: ...
