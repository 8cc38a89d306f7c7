"""The plugin's decision counters: one typed value, read like a mapping.

Each field counts one kind of decision the breaker made for requests; the
metrics collector and ``status`` read them. Names are checked by mypy where
they are bumped (:data:`CounterName`), and ``breaker.counters["trials"]``
keeps working for readers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["CounterName", "DecisionCounters"]

CounterName = Literal[
    "skipped",
    "sdk_refused",
    "trials",
    "fail_open",
    "fail_fast",
    "fallback",
    "stalls",
    "stall_probes",
    "trial_probes",
    "trial_probes_passed",
    "first_token_deadlines",
    "first_token_timeouts",
    "slow_openings",
    "stale_successes",
    "litellm_surface_unknown",
]
"""The name of one counter, as bumped and as read."""


@dataclass(slots=True, eq=False)
class DecisionCounters(Mapping[str, int]):
    """How often the breaker decided what, since it was built (only ever grows)."""

    skipped: int = 0
    """Attempts kept off open deployments (Router and sync Router)."""
    sdk_refused: int = 0
    """Direct SDK calls refused before any network call."""
    trials: int = 0
    """Half-open trial calls handed out."""
    fail_open: int = 0
    """All-open groups without a fallback sent to the soonest-to-recover deployment."""
    fail_fast: int = 0
    """All-open groups answered at once with AllDeploymentsOpenError."""
    fallback: int = 0
    """All-open groups sent on to their fallback group."""
    stalls: int = 0
    """Calls left unanswered past ``stall_after_sec`` whose endpoint was silent too."""
    stall_probes: int = 0
    """Probes started because a call stalled."""
    trial_probes: int = 0
    """Trial completions sent to open deployments whose free probe is blind."""
    trial_probes_passed: int = 0
    """Trial completions answered: each half-opened its breaker (a real call decides)."""
    first_token_deadlines: int = 0
    """Streamed attempts sent with a first-token deadline as their timeout."""
    first_token_timeouts: int = 0
    """Streamed attempts that had no first chunk by their deadline (each counted as a failure)."""
    slow_openings: int = 0
    """Breakers opened because most of a deployment's recent calls were far slower than usual."""
    stale_successes: int = 0
    """Successes of calls that began before their breaker opened: in flight when the
    deployment failed, they close nothing and end no trial."""
    litellm_surface_unknown: int = 0
    """Times a LiteLLM Router member the breaker needs was missing (logged once)."""

    def bump(self, name: CounterName, n: int = 1) -> None:
        """Add ``n`` to one counter (the caller holds whatever lock guards it)."""
        setattr(self, name, getattr(self, name) + n)

    def __getitem__(self, name: str) -> int:
        if name not in _NAMES:
            raise KeyError(name)
        value: int = getattr(self, name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_NAMES)

    def __len__(self) -> int:
        return len(_NAMES)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self[name]}" for name in _NAMES if self[name])
        return f"DecisionCounters({shown})"


_NAMES: tuple[str, ...] = tuple(f.name for f in fields(DecisionCounters))
"""Same as ``get_args(CounterName)``, in the same order (a test checks it)."""
