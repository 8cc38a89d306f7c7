"""The exceptions this package raises, as one small tree.

::

    CircuitBreakerError                 base of everything raised here
    ├── ConfigurationError(ValueError)  a bad setting, named with its value
    └── CircuitOpenError                a call refused because its breaker is open
        └── AllDeploymentsOpenError     every deployment of a model group is open

Catching ``ValueError`` still catches configuration mistakes, so code written
against the plain standard exceptions keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AllDeploymentsOpenError",
    "CircuitBreakerError",
    "CircuitOpenError",
    "ConfigurationError",
]


class CircuitBreakerError(Exception):
    """Base class of every exception this package raises."""


class ConfigurationError(CircuitBreakerError, ValueError):
    """A setting is invalid; the message names the setting and the bad value."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}={value!r} is invalid: expected {expected}")


class CircuitOpenError(CircuitBreakerError):
    """A call was refused without touching the network: its breaker is open.

    ``retry_after`` is the number of seconds until the breaker lets a trial
    call through (rounded up, never negative).
    """

    # Read by LiteLLM's Router as the retry count after this error: the breaker
    # already decided, so retrying the same group would be refused at once.
    num_retries: int | None = 0
    # Not a retryable status for the Router (so no back-off sleep before a
    # fallback), and "Failed Dependency" is what happened. The proxy answers 503.
    status_code = 424

    def __init__(self, deployment: str, retry_after: float, message: str | None = None) -> None:
        self.deployment = deployment
        self.retry_after = max(0.0, retry_after)
        super().__init__(
            message
            or f"circuit open for deployment {deployment!r}: next trial in {self.retry_after:.1f}s"
        )


class AllDeploymentsOpenError(CircuitOpenError):
    """Every deployment of a model group is open (fallback to go to, or ``fail_fast``)."""

    def __init__(self, model_group: str, deployments: Sequence[str], retry_after: float) -> None:
        self.model_group = model_group
        self.deployments = tuple(deployments)
        super().__init__(
            deployment=",".join(self.deployments),
            retry_after=retry_after,
            message=(
                f"all deployments of model group {model_group!r} are circuit-open "
                f"({', '.join(self.deployments)}); next trial in {max(0.0, retry_after):.1f}s"
            ),
        )
