"""The LiteLLM proxy adapter: settings from the environment, the proxy's router, 503s.

``litellm_settings: {callbacks: ["litellm_circuit_breaker.proxy.breaker"]}``
imports :mod:`litellm_circuit_breaker.proxy`, whose ``breaker`` comes from
:func:`proxy_breaker` here. This module is imported the normal way, so however
often the proxy re-executes ``proxy.py`` there is one breaker and one probe
loop per process (one per worker with ``--num_workers``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._cache import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
)
from ._errors import AllDeploymentsOpenError, ConfigurationError
from ._plugin import CircuitBreaker, WhenAllOpen
from ._probe import DEFAULT_PROBE_CONCURRENCY, DEFAULT_PROBE_INTERVAL_SEC, DEFAULT_PROBE_TIMEOUT_SEC

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


def _integer(raw: str) -> int:
    return int(raw.strip())


def _number(raw: str) -> float:
    return float(raw.strip())


def _number_or_off(raw: str) -> float | None:
    return None if raw.strip().lower() in ("off", "none", "disabled") else float(raw.strip())


def _choice(raw: str) -> str:
    return raw.strip().lower()


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
}
# The field a ConfigurationError names -> the variable that set it.
_VARIABLE_OF = {setting: variable for variable, (setting, _, _) in ENV_VARS.items()} | {
    "max_concurrency": "CIRCUIT_BREAKER_PROBE_CONCURRENCY",
}
_NOT_YET = {
    "CIRCUIT_BREAKER_REDIS_URL": "sharing breaker state through Redis is not available yet",
}


def settings_from_env(environ: Mapping[str, str] | None = None) -> ProxySettings:
    """Read and check every ``CIRCUIT_BREAKER_*`` variable; errors name variable and value."""
    env = os.environ if environ is None else environ
    for name, why in _NOT_YET.items():
        if env.get(name, "").strip():
            raise ConfigurationError(name, env[name], f"unset ({why})")
    values: dict[str, Any] = {}
    for variable, (setting, parse, expected) in ENV_VARS.items():
        raw = env.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            values[setting] = parse(raw)
        except ValueError:
            raise ConfigurationError(variable, raw, expected) from None
    settings = ProxySettings(**values)
    try:  # the breaker's own checks, reported under the variable's name
        CircuitBreaker(**_kwargs(settings), probe_interval=settings.probe_interval)
    except ConfigurationError as exc:
        found = _VARIABLE_OF.get(exc.field)
        if found is None:  # pragma: no cover - every setting has its variable
            raise
        variable = found
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

    def refresh_from_router(self) -> bool:
        """Make the probed set the proxy router's deployments; False if it has none yet."""
        router = _proxy_router()
        if router is None:
            return False
        self.sync_deployments(router.get_model_list() or [])
        return True

    def _before_tick(self) -> None:
        self._guard("refresh", self.refresh_from_router, default=False)

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
        breaker = _breaker
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return breaker  # imported outside the proxy: the first async hook starts it
    breaker._guard("background", breaker._ensure_background, default=None)
    return breaker
