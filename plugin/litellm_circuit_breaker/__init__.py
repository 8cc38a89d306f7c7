"""Per-deployment circuit breakers and token-free health probes for LiteLLM.

The core (``ProviderHealthCache``, ``HealthProbe``) imports nothing from
LiteLLM; ``CircuitBreaker`` and ``DeploymentStatus`` are loaded on first use,
so code that only needs the core never pays LiteLLM's import.
"""

import typing as _typing

from ._cache import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
    ProviderHealthCache,
)
from ._config import BreakerConfig
from ._errors import (
    AllDeploymentsOpenError,
    CircuitBreakerError,
    CircuitOpenError,
    ConfigurationError,
)
from ._policy import Classification, FailurePolicy, Verdict
from ._probe import (
    DEFAULT_PROBE_CONCURRENCY,
    DEFAULT_PROBE_INTERVAL_SEC,
    DEFAULT_PROBE_TIMEOUT_SEC,
    HealthProbe,
    ProbeResult,
)
from ._state import BreakerState, ProviderState, StateChange, StateListener

__version__ = "0.1.0.dev0"
"""This release; the one place it is written (the build reads it from here)."""

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_PROBE_CONCURRENCY",
    "DEFAULT_PROBE_INTERVAL_SEC",
    "DEFAULT_PROBE_TIMEOUT_SEC",
    "DEFAULT_TRIAL_LEASE_SEC",
    "DEFAULT_UNHEALTHY_BACKOFF_SEC",
    "AllDeploymentsOpenError",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerError",
    "CircuitOpenError",
    "Classification",
    "ConfigurationError",
    "DeploymentStatus",
    "FailurePolicy",
    "HealthProbe",
    "ProbeResult",
    "ProviderHealthCache",
    "ProviderState",
    "StateChange",
    "StateListener",
    "Verdict",
]

if _typing.TYPE_CHECKING:
    from ._plugin import CircuitBreaker, DeploymentStatus

_LAZY = frozenset({"CircuitBreaker", "DeploymentStatus"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from . import _plugin  # noqa: PLC0415 - imports litellm, only when asked for

        value = getattr(_plugin, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
