"""The transition log: a listener that writes one line per breaker transition.

The state machine only emits :class:`StateChange` events; this listener,
attached to every cache first, turns the ones a person wants to read into log
lines (house style: log transitions, not traffic). Re-armed windows and
windows that merely ran out are not logged; a replica's adopted change is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._state import BreakerState, StateChange

__all__ = [
    "PING_PASSED",
    "PROBE_PASSED",
    "SLOW_CALLS",
    "TransitionLog",
    "log_transition",
    "logger",
]

logger = logging.getLogger("litellm_circuit_breaker")

PROBE_PASSED = "probe passed"
"""The reason of an OPEN -> HALF_OPEN move made by evidence rather than time."""
PING_PASSED = "trial completion answered"
"""The same, when a one-token trial completion answered (see ``_trials``)."""
SLOW_CALLS = "slow: "
"""How the reason of an opening made by the slow-call rule starts: no failure made it."""


def _as_is(deployment: str) -> str:
    return deployment


class TransitionLog:
    """The listener a cache starts with: :func:`log_transition` with names.

    ``describe(id)`` is how a line shows a deployment; the breaker sets it to
    the id followed by its model group, model and host, so a LiteLLM-generated
    id still says which deployment it is.
    """

    def __init__(self, describe: Callable[[str], str] = _as_is) -> None:
        self.describe = describe

    def __call__(self, event: StateChange) -> None:
        log_transition(event, self.describe)


def log_transition(event: StateChange, describe: Callable[[str], str] = _as_is) -> None:
    """Write the line for ``event``, if it is one a person should read."""
    deployment, old, new = describe(event.deployment), event.old, event.new
    if event.replica is not None:
        if old is not new:
            reason = f": {event.reason}" if event.reason and new is not BreakerState.CLOSED else ""
            logger.info(
                "deployment %s circuit %s, shared by replica %s%s",
                deployment,
                new.value.replace("_", "-"),
                event.replica,
                reason,
            )
    elif new is BreakerState.CLOSED:
        if old is not BreakerState.CLOSED:
            logger.info("deployment %s recovered: circuit closed", deployment)
    elif new is BreakerState.HALF_OPEN:
        if event.reason in (PROBE_PASSED, PING_PASSED):
            logger.info(
                "deployment %s half-open: %s, next call is a trial", deployment, event.reason
            )
    elif event.operator:
        logger.warning("deployment %s circuit %s", deployment, event.reason)
    elif old is BreakerState.HALF_OPEN:
        logger.info(
            "deployment %s circuit re-opened for %.1fs: trial failed: %s",
            deployment,
            event.open_for,
            event.reason,
        )
    elif old is BreakerState.CLOSED:
        if event.reason and event.reason.startswith(SLOW_CALLS):
            after = ""
        elif event.failures == 1:
            after = " after 1 failure"
        else:
            after = f" after {event.failures} consecutive failures"
        logger.warning(
            "deployment %s circuit opened for %.1fs%s: %s",
            deployment,
            event.open_for,
            after,
            event.reason,
        )
