"""Per-deployment circuit breakers and token-free health probes for LiteLLM."""

from ._cache import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
    ProviderHealthCache,
)
from ._errors import (
    AllDeploymentsOpenError,
    CircuitBreakerError,
    CircuitOpenError,
    ConfigurationError,
)
from ._plugin import CircuitBreaker, DeploymentStatus
from ._policy import Classification, FailurePolicy, Verdict
from ._probe import (
    DEFAULT_PROBE_CONCURRENCY,
    DEFAULT_PROBE_INTERVAL_SEC,
    DEFAULT_PROBE_TIMEOUT_SEC,
    HealthProbe,
    ProbeResult,
)
from ._state import BreakerState, ProviderState, StateChange, StateListener

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_PROBE_CONCURRENCY",
    "DEFAULT_PROBE_INTERVAL_SEC",
    "DEFAULT_PROBE_TIMEOUT_SEC",
    "DEFAULT_TRIAL_LEASE_SEC",
    "DEFAULT_UNHEALTHY_BACKOFF_SEC",
    "AllDeploymentsOpenError",
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
