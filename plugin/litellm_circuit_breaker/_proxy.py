"""The LiteLLM proxy adapter: settings from the environment, the proxy's router, 503s.

``litellm_settings: {callbacks: ["litellm_circuit_breaker.proxy.breaker"]}``
imports :mod:`litellm_circuit_breaker.proxy`, whose ``breaker`` comes from
:func:`proxy_breaker` here. This module is imported the normal way, so however
often the proxy re-executes ``proxy.py`` there is one breaker and one probe
loop per process (one per worker with ``--num_workers``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import _routers
from ._cache import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
)
from ._errors import AllDeploymentsOpenError, ConfigurationError
from ._plugin import DEFAULT_STALL_AFTER_SEC, CircuitBreaker, WhenAllOpen
from ._probe import DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_INTERVAL_SEC, DEFAULT_PROBE_TIMEOUT_SEC
from ._redact import public_url
from ._shared import DEFAULT_NAMESPACE, DEFAULT_RECONCILE_SEC, DEFAULT_STATE_TTL_SEC

if TYPE_CHECKING:
    from .metrics import BreakerMetrics

__all__ = ["ENV_VARS", "ProxyCircuitBreaker", "ProxySettings", "proxy_breaker"]

logger = logging.getLogger("litellm_circuit_breaker")

# How long the probe task waits for the proxy to build its router after import.
ROUTER_WAIT_SEC = 60.0
ROUTER_POLL_SEC = 0.1


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The breaker's settings as the environment gives them."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    unhealthy_backoff_sec: float = DEFAULT_UNHEALTHY_BACKOFF_SEC
    probe_interval: float | None = DEFAULT_PROBE_INTERVAL_SEC
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT_SEC
    when_all_open: WhenAllOpen = "fail_open"
    trial_lease_sec: float = DEFAULT_TRIAL_LEASE_SEC
    backoff_multiplier: float = 1.0
    max_backoff_sec: float | None = None
    probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY
    stall_after_sec: float | None = DEFAULT_STALL_AFTER_SEC
    redis_url: str | None = field(default=None, repr=False)
    """May carry a password: kept out of repr."""
    redis_namespace: str = DEFAULT_NAMESPACE
    replica_name: str | None = None
    redis_state_ttl_sec: float = DEFAULT_STATE_TTL_SEC
    redis_reconcile_sec: float = DEFAULT_RECONCILE_SEC


def _integer(raw: str) -> int:
    return int(raw.strip())


def _number(raw: str) -> float:
    return float(raw.strip())


def _number_or_off(raw: str) -> float | None:
    return None if raw.strip().lower() in ("off", "none", "disabled") else float(raw.strip())


def _choice(raw: str) -> str:
    return raw.strip().lower()


def _text(raw: str) -> str:
    return raw.strip()


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


# variable -> (setting, parser, what the documentation promises)
ENV_VARS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD": ("failure_threshold", _integer, "an integer >= 1"),
    "CIRCUIT_BREAKER_BACKOFF_SEC": ("unhealthy_backoff_sec", _number, "seconds >= 0"),
    "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": ("probe_interval", _number_or_off, "seconds > 0, or off"),
    "CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC": ("probe_timeout", _number, "seconds > 0"),
    "CIRCUIT_BREAKER_WHEN_ALL_OPEN": ("when_all_open", _choice, "fail_open or fail_fast"),
    "CIRCUIT_BREAKER_TRIAL_LEASE_SEC": ("trial_lease_sec", _number, "seconds > 0"),
    "CIRCUIT_BREAKER_BACKOFF_MULTIPLIER": ("backoff_multiplier", _number, "a number >= 1"),
    "CIRCUIT_BREAKER_MAX_BACKOFF_SEC": ("max_backoff_sec", _number, "seconds >= the backoff"),
    "CIRCUIT_BREAKER_PROBE_CONCURRENCY": ("probe_concurrency", _integer, "an integer >= 1"),
    "CIRCUIT_BREAKER_STALL_AFTER_SEC": ("stall_after_sec", _number_or_off, "seconds > 0, or off"),
    "CIRCUIT_BREAKER_REDIS_URL": ("redis_url", _text, "a redis://, rediss:// or unix:// URL"),
    "CIRCUIT_BREAKER_REDIS_NAMESPACE": ("redis_namespace", _text, "a name without spaces"),
    "CIRCUIT_BREAKER_REPLICA_NAME": ("replica_name", _text, "a non-empty name"),
    "CIRCUIT_BREAKER_REDIS_STATE_TTL_SEC": ("redis_state_ttl_sec", _number, "seconds >= 1"),
    "CIRCUIT_BREAKER_REDIS_RECONCILE_SEC": ("redis_reconcile_sec", _number, "seconds > 0"),
}
REUSE_LITELLM_REDIS = "CIRCUIT_BREAKER_REDIS_FROM_LITELLM"
"""Set to true to share state through the Redis LiteLLM itself is given (REDIS_URL or
REDIS_HOST/REDIS_PORT/REDIS_PASSWORD)."""
_SECRET_VARIABLES = frozenset({"CIRCUIT_BREAKER_REDIS_URL"})
# The field a ConfigurationError names -> the variable that set it.
_VARIABLE_OF = {setting: variable for variable, (setting, _, _) in ENV_VARS.items()} | {
    "max_concurrency": "CIRCUIT_BREAKER_PROBE_CONCURRENCY",
}


def _shown(variable: str, raw: str) -> str:
    return public_url(raw) if variable in _SECRET_VARIABLES else raw


def litellm_redis_url(environ: Mapping[str, str]) -> str:
    """The Redis LiteLLM is configured with: ``REDIS_URL``, else ``REDIS_HOST`` and friends."""
    url = environ.get("REDIS_URL", "").strip()
    if url:
        return url
    host = environ.get("REDIS_HOST", "").strip()
    if not host:
        raise ConfigurationError(
            REUSE_LITELLM_REDIS, "true", "REDIS_URL or REDIS_HOST set for LiteLLM as well"
        )
    port = environ.get("REDIS_PORT", "").strip() or "6379"
    user = quote(environ.get("REDIS_USERNAME", "").strip(), safe="")
    password = quote(environ.get("REDIS_PASSWORD", "").strip(), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    scheme = "rediss" if environ.get("REDIS_SSL", "").strip().lower() == "true" else "redis"
    return f"{scheme}://{auth}{host}:{port}"


def settings_from_env(environ: Mapping[str, str] | None = None) -> ProxySettings:
    """Read and check every ``CIRCUIT_BREAKER_*`` variable; errors name variable and value.

    Values that may carry a secret (the Redis URL) are shown without it.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, (setting, parse, expected) in ENV_VARS.items():
        raw = env.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            values[setting] = parse(raw)
        except ValueError:
            raise ConfigurationError(variable, _shown(variable, raw), expected) from None
    reuse = env.get(REUSE_LITELLM_REDIS, "").strip()
    try:
        reuse_litellm = bool(reuse) and _flag(reuse)
    except ValueError:
        raise ConfigurationError(REUSE_LITELLM_REDIS, reuse, "true or false") from None
    if reuse_litellm:
        if "redis_url" in values:
            raise ConfigurationError(
                REUSE_LITELLM_REDIS, reuse, "unset while CIRCUIT_BREAKER_REDIS_URL is set"
            )
        values["redis_url"] = litellm_redis_url(env)
    settings = ProxySettings(**values)
    try:  # the breaker's own checks, reported under the variable's name
        CircuitBreaker(**_kwargs(settings), probe_interval=settings.probe_interval)
    except ConfigurationError as exc:
        found = _VARIABLE_OF.get(exc.field)
        if found is None:  # pragma: no cover - every setting has its variable
            raise
        variable = found
        if variable in _SECRET_VARIABLES:  # the value shown is already without its password
            named = REUSE_LITELLM_REDIS if reuse_litellm else variable
            raise ConfigurationError(named, exc.value, exc.expected) from None
        raise ConfigurationError(
            variable, env.get(variable, exc.value), ENV_VARS[variable][2]
        ) from None
    return settings


def _kwargs(settings: ProxySettings) -> dict[str, Any]:
    return {
        "failure_threshold": settings.failure_threshold,
        "unhealthy_backoff_sec": settings.unhealthy_backoff_sec,
        "probe_timeout": settings.probe_timeout,
        "when_all_open": settings.when_all_open,
        "trial_lease_sec": settings.trial_lease_sec,
        "backoff_multiplier": settings.backoff_multiplier,
        "max_backoff_sec": settings.max_backoff_sec,
        "probe_concurrency": settings.probe_concurrency,
        "stall_after_sec": settings.stall_after_sec,
        "redis_url": settings.redis_url,
        "redis_namespace": settings.redis_namespace,
        "replica_name": settings.replica_name,
        "redis_state_ttl_sec": settings.redis_state_ttl_sec,
        "redis_reconcile_sec": settings.redis_reconcile_sec,
    }


def _proxy_router() -> Any:
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(proxy_server, "llm_router", None)


class ProxyCircuitBreaker(CircuitBreaker):
    """The breaker as the proxy runs it: probes follow the proxy's own router.

    Only the router built from the operator's config is probed, never a
    deployment a request brought (``learn_from_traffic`` is off), and the set is
    re-read before every probe round, so deployments added or removed at
    runtime are picked up. An all-open group under ``fail_fast`` answers 503
    with ``Retry-After``.
    """

    def __init__(self, settings: ProxySettings) -> None:
        super().__init__(
            **_kwargs(settings), probe_interval=settings.probe_interval, learn_from_traffic=False
        )
        self.settings = settings
        self.metrics: BreakerMetrics | None = None
        """The Prometheus collector on the default registry, once exported."""

    def refresh_from_router(self) -> bool:
        """Make the probed set the proxy router's deployments; False if it has none yet."""
        router = _proxy_router()
        if router is None:
            return False
        try:
            self.sync_deployments(_routers.router_entries(router))
        except _routers.SurfaceUnknownError as exc:
            self._surface_unknown(exc)
        return True

    def _before_tick(self) -> None:
        self._guard("refresh", self.refresh_from_router, default=False)
        super()._before_tick()

    async def _background(self) -> None:
        # The proxy imports its callbacks before it builds the router.
        deadline = asyncio.get_running_loop().time() + ROUTER_WAIT_SEC
        # LiteLLM signals nothing when the router is ready: poll, briefly.
        while not self.refresh_from_router():
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(ROUTER_POLL_SEC)
        await super()._background()

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        """An all-open group answers 503 with Retry-After and a message naming it."""
        if not isinstance(original_exception, AllDeploymentsOpenError):
            return None
        from fastapi import HTTPException  # noqa: PLC0415 - the proxy always has it

        retry_after = max(1, math.ceil(original_exception.retry_after))
        return HTTPException(
            status_code=503,
            detail={
                "error": str(original_exception),
                "type": "circuit_open",
                "model_group": original_exception.model_group,
                "deployments": list(original_exception.deployments),
                "retry_after": retry_after,
            },
            headers={"Retry-After": str(retry_after)},
        )


def _show_transitions() -> None:
    """Let operators see every transition in the proxy's output, not only openings.

    We log transitions, never traffic, so INFO is a few lines per outage. The
    proxy configures no root handler, and Python's last-resort handler prints
    WARNING and up only; so, unless logging was configured (a handler on our
    logger or the root, e.g. ``--log_config``), we add one of our own.
    """
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s - litellm_circuit_breaker:%(levelname)s - %(message)s")
        )
        logger.addHandler(handler)
        logger.propagate = False


def _export_metrics(breaker: ProxyCircuitBreaker) -> None:
    """Put the breaker's series where LiteLLM's ``/metrics`` reads: the default registry.

    Harmless when LiteLLM's Prometheus is off (nothing serves the registry).
    In Prometheus multiprocess mode (LiteLLM turns it on with
    ``--num_workers`` > 1) ``/metrics`` reads only the workers' files, never a
    collector: say so once instead of exporting series nobody sees.
    """
    if importlib.util.find_spec("prometheus_client") is None:
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "circuit breaker metrics are not on /metrics: Prometheus multiprocess mode "
            "(--num_workers > 1) serves only its own files; see `litellm-circuit-breaker status`"
        )
        return
    from .metrics import BreakerMetrics  # noqa: PLC0415 - only with the prometheus extra

    breaker.metrics = BreakerMetrics(breaker)


_lock = threading.Lock()
_breaker: ProxyCircuitBreaker | None = None


def proxy_breaker() -> ProxyCircuitBreaker:
    """The process's one proxy breaker, created from the environment on first use.

    Called at import time inside the proxy, where a loop is already running:
    the probe task is started there, at once.
    """
    global _breaker  # noqa: PLW0603 - the one per-process instance the proxy asks for
    with _lock:
        if _breaker is None:
            _breaker = ProxyCircuitBreaker(settings_from_env())
            _show_transitions()
            _breaker._guard("metrics", _export_metrics, _breaker, default=None)
        breaker = _breaker
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return breaker  # imported outside the proxy: the first async hook starts it
    breaker._guard("background", breaker._ensure_background, default=None)
    return breaker
