"""Which errors count against a deployment: provider faults yes, the caller's mistakes never.

A breaker that opens on a caller's 400 would punish every other caller for one
bad request, so the default policy counts only what says "this deployment is
not serving": 5xx, timeouts, connection errors, a vendor's 429, 401/403 (a
broken key is a broken deployment) and 404 (a missing model). Errors raised
before any provider was called (another hook's rejection, budgets,
"No deployments available", our own ``CircuitOpenError``) and cancellations
are never counted.

Classification goes by status code and by class *name* along the MRO, so this
module needs no LiteLLM or proxy import and keeps working when those modules
move things around.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._errors import CircuitBreakerError, ConfigurationError

__all__ = [
    "CallerChoices",
    "Classification",
    "FailurePolicy",
    "Verdict",
    "retry_after_of",
]


class Verdict(enum.StrEnum):
    """What one failed attempt says about its deployment."""

    FAULT = "fault"
    """The provider failed: count it."""
    CALLER = "caller"
    """The request was at fault (400, context window...): never count."""
    NOT_PROVIDER = "not_provider"
    """Raised before or outside any provider call: never count."""
    CANCELLED = "cancelled"
    """The caller went away: never count."""


@dataclass(frozen=True, slots=True)
class Classification:
    """A verdict with what we want to remember about it."""

    verdict: Verdict
    reason: str
    status: int | None = None
    retry_after: float | None = None
    timed_out: bool = False
    """The attempt ran out of time: the deployment did not answer, whoever is to blame."""

    @property
    def counts(self) -> bool:
        """True when the failure counts against the deployment."""
        return self.verdict is Verdict.FAULT


# Raised by LiteLLM, the proxy or other hooks on the request's side of the
# wire: the provider was never asked, or the caller's own credential failed.
_NOT_PROVIDER_NAMES = frozenset(
    {
        "RouterRateLimitError",
        "RouterRateLimitErrorBasic",
        "HTTPException",
        "ProxyException",
        "BudgetExceededError",
        "GuardrailRaisedException",
        "BlockedPiiEntityError",
        "ModifyResponseException",
        "SensitiveDataRouteException",
        "CallerCredentialAuthenticationError",
        "CallerCredentialRateLimitError",
    }
)
_CALLER_NAMES = frozenset(
    {
        "BadRequestError",
        "UnprocessableEntityError",
        "ContextWindowExceededError",
        "ContentPolicyViolationError",
        "UnsupportedParamsError",
        "RejectedRequestError",
        "InvalidRequestError",
        "ValidationError",
    }
)
_TIMEOUT_NAMES = frozenset({"Timeout", "APITimeoutError", "TimeoutException", "TimeoutError"})
_CONNECTION_NAMES = frozenset(
    {"APIConnectionError", "ConnectError", "NetworkError", "RemoteProtocolError", "ConnectionError"}
)
_VENDOR_RATE_LIMITS = frozenset({None, "vendor_rate_limit", "vendor_batch_rate_limit"})


@dataclass(frozen=True, slots=True)
class CallerChoices:
    """What the request itself chose, beside what the operator configured.

    A failure the caller's own choice explains says nothing about the
    deployment: a timeout shorter than the deployment's own, or a 404 for a
    model name the caller made up on a wildcard route.
    """

    timeout: float | None = None
    """The attempt's timeout in seconds, as LiteLLM ran it."""
    configured_timeout: float | None = None
    """The deployment's own timeout (its ``litellm_params``, else the Router's, else
    LiteLLM's default), or None when unknown."""
    stream: bool = False
    """A streamed attempt (its timeout may be the operator's ``stream_timeout``)."""
    model_from_wildcard: bool = False
    """The deployment is a wildcard route (``openai/*``), so the request named the model,
    and calls to it succeed lately (a wildcard that never answers still counts)."""

    @property
    def short_timeout(self) -> bool:
        """The caller cut the attempt shorter than the deployment is allowed to take.

        Shorter than its own timeout (its ``litellm_params``, the Router's, LiteLLM's
        default): evidence about the caller, never counted, whatever the
        deployment's latency or this process knows of it (a replica that just
        started knows none). A hang behind such a timeout is found by the stall
        probe it prompts (see ``StallWatch.probe_for_timeout``), not by counting
        it. Not for streams, whose timeout may be the operator's ``stream_timeout``.
        """
        return (
            not self.stream
            and self.timeout is not None
            and self.configured_timeout is not None
            and self.timeout < self.configured_timeout
        )


NO_CHOICES = CallerChoices()


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Which failures count. Every switch defaults to the documented behaviour.

    ``extra_fault_types`` always count and ``extra_ignored_types`` never do,
    ahead of every other rule, for errors specific to your stack.
    """

    count_server_errors: bool = True
    count_timeouts: bool = True
    count_connection_errors: bool = True
    count_rate_limits: bool = True
    count_auth_errors: bool = True
    count_not_found: bool = True
    extra_fault_types: tuple[type[BaseException], ...] = field(default=())
    extra_ignored_types: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in (
            "count_server_errors",
            "count_timeouts",
            "count_connection_errors",
            "count_rate_limits",
            "count_auth_errors",
            "count_not_found",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(name, getattr(self, name), "True or False")
        for name in ("extra_fault_types", "extra_ignored_types"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value
            ):
                raise ConfigurationError(name, value, "a tuple of exception types")

    def classify(  # noqa: PLR0911, PLR0912 - one decision table reads best as one function
        self,
        exc: BaseException,
        redact: Callable[[str], str] = lambda s: s,
        chosen: CallerChoices = NO_CHOICES,
    ) -> Classification:
        """Decide whether ``exc`` counts against the deployment that raised it.

        ``chosen`` says what the request itself chose: a timeout shorter than the
        deployment's own, or a 404 for a model the caller named on a wildcard
        route, is the caller's.
        """
        names = {cls.__name__ for cls in type(exc).__mro__}
        status = _status_of(exc)
        reason = _reason(exc, status, redact)

        if self.extra_ignored_types and isinstance(exc, self.extra_ignored_types):
            return Classification(Verdict.CALLER, reason, status)
        if self.extra_fault_types and isinstance(exc, self.extra_fault_types):
            return Classification(Verdict.FAULT, reason, status, retry_after_of(exc))
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) or (
            status == 499 or "ClientDisconnect" in names
        ):
            return Classification(Verdict.CANCELLED, reason, status)
        if isinstance(exc, CircuitBreakerError) or names & _NOT_PROVIDER_NAMES:
            return Classification(Verdict.NOT_PROVIDER, reason, status)
        if status == 429 or "RateLimitError" in names:
            if getattr(exc, "category", None) not in _VENDOR_RATE_LIMITS:
                return Classification(Verdict.NOT_PROVIDER, reason, status)
            return self._fault(self.count_rate_limits, exc, reason, status)
        if names & _CALLER_NAMES:
            return Classification(Verdict.CALLER, reason, status)
        if status == 408 or names & _TIMEOUT_NAMES:
            if chosen.short_timeout:
                own = f"{reason} (the caller's own timeout)"
                return Classification(Verdict.CALLER, own, status, timed_out=True)
            return replace(self._fault(self.count_timeouts, exc, reason, status), timed_out=True)
        if names & _CONNECTION_NAMES:
            return self._fault(self.count_connection_errors, exc, reason, status)
        if status is not None:
            if status >= 500:
                return self._fault(self.count_server_errors, exc, reason, status)
            if status in (401, 403):
                return self._fault(self.count_auth_errors, exc, reason, status)
            if status == 404:
                if chosen.model_from_wildcard:
                    return Classification(Verdict.CALLER, reason, status)
                return self._fault(self.count_not_found, exc, reason, status)
            return Classification(Verdict.CALLER, reason, status)
        if isinstance(exc, TimeoutError):
            return replace(self._fault(self.count_timeouts, exc, reason, status), timed_out=True)
        if isinstance(exc, ConnectionError):
            return self._fault(self.count_connection_errors, exc, reason, status)
        # Unknown errors without a status are not evidence against a provider.
        return Classification(Verdict.NOT_PROVIDER, reason, status)

    @staticmethod
    def _fault(
        enabled: bool, exc: BaseException, reason: str, status: int | None
    ) -> Classification:
        if not enabled:
            return Classification(Verdict.CALLER, reason, status)
        return Classification(Verdict.FAULT, reason, status, retry_after_of(exc))


def _status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
        if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
            return int(value)
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int) and 100 <= value <= 599:
        return value
    return None


# LiteLLM prefixes messages with the class name, often twice:
# "litellm.ServiceUnavailableError: ServiceUnavailableError: OpenAIException - ..."
_LITELLM_PREFIX = re.compile(r"^(?:(?:litellm\.)?[A-Za-z]+(?:Error|Exception|Timeout): ?)+")


def _reason(exc: BaseException, status: int | None, redact: Callable[[str], str]) -> str:
    head = type(exc).__name__ + (f" ({status})" if status is not None else "")
    text = _LITELLM_PREFIX.sub("", str(exc).strip())
    return f"{head}: {redact(text)}" if text else head


def retry_after_of(exc: BaseException, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After``/``retry-after-ms``), if any."""
    for headers in _headers_of(exc):
        ms = _header(headers, "retry-after-ms")
        if ms is not None:
            try:
                value = float(ms) / 1000.0
            except ValueError:
                pass
            else:
                if math.isfinite(value) and value > 0:
                    return value
        raw = _header(headers, "retry-after")
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                continue
            value = when.timestamp() - now()
        if math.isfinite(value) and value > 0:
            return value
    return None


def _headers_of(exc: BaseException) -> list[Mapping[str, str]]:
    candidates: tuple[Any, ...] = (
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    )
    # httpx.Headers is not a Mapping subclass but has a case-insensitive get().
    return [c for c in candidates if hasattr(c, "get")]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return None if value is None else str(value).strip()
