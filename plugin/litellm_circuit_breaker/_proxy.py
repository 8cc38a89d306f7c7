"""The LiteLLM proxy adapter: settings from the environment, the proxy's router, 503s.

``litellm_settings: {callbacks: ["litellm_circuit_breaker.proxy.breaker"]}``
imports :mod:`litellm_circuit_breaker.proxy`, whose ``breaker`` comes from
:func:`proxy_breaker` here. This module is imported the normal way, so however
often the proxy re-executes ``proxy.py`` there is one breaker and one probe
loop per process (one per worker with ``--num_workers``), and one
``GET /circuit-breaker/status`` route on the proxy's app (:mod:`._http`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import _http, _routers
from ._config import ENV_VARS, REUSE_LITELLM_REDIS, BreakerConfig, litellm_redis_url
from ._errors import AllDeploymentsOpenError
from ._plugin import CircuitBreaker

if TYPE_CHECKING:
    from .metrics import BreakerMetrics

__all__ = [
    "ENV_VARS",
    "REUSE_LITELLM_REDIS",
    "ProxyCircuitBreaker",
    "ProxySettings",
    "litellm_redis_url",
    "proxy_breaker",
    "settings_from_env",
]

logger = logging.getLogger("litellm_circuit_breaker")

# How long the probe task waits for the proxy to build its router after import.


ProxySettings = BreakerConfig
"""The proxy's settings: a :class:`BreakerConfig` read from the environment."""


def settings_from_env(environ: Mapping[str, str] | None = None) -> BreakerConfig:
    """Read and check every ``CIRCUIT_BREAKER_*`` variable; errors name variable and value.

    Values that may carry a secret (the Redis URL) are shown without it.
    """
    return BreakerConfig.from_env(environ)


def _kwargs(settings: BreakerConfig) -> dict[str, Any]:
    """The breaker's keyword settings; the proxy never learns deployments from requests."""
    return {**settings.as_kwargs(), "learn_from_traffic": False}


def _proxy_router() -> Any:
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(proxy_server, "llm_router", None)


def _proxy_router_entries() -> list[Any] | None:
    """The proxy router's deployments (re-read each time: a config reload replaces it)."""
    router = _proxy_router()
    return None if router is None else _routers.router_entries(router)


class ProxyCircuitBreaker(CircuitBreaker):
    """The breaker as the proxy runs it: probes follow the proxy's own router.

    Only the router built from the operator's config is probed, never a
    deployment a request brought (``learn_from_traffic`` is off), and the set is
    re-read before every probe round, so deployments added or removed at
    runtime are picked up. An all-open group under ``fail_fast`` answers 503
    with ``Retry-After``.
    """

    def __init__(self, settings: ProxySettings) -> None:
        self._announce_due = True
        super().__init__(**_kwargs(settings), deployment_source=self._router_entries)
        self.settings = settings
        self.metrics: BreakerMetrics | None = None
        """The breaker's Prometheus metrics, once exported."""

    def serve_status(self) -> bool:
        """Serve ``GET /circuit-breaker/status`` on the proxy's app; True once it is served.

        Never stops the proxy: a LiteLLM whose app or auth we do not know gets
        one WARNING and a ``litellm_surface_unknown`` count, and no route.
        """
        try:
            return _http.add_status_route(self)
        except _routers.SurfaceUnknownError as exc:
            self._surface_unknown(exc)
        except Exception as exc:  # noqa: BLE001 - nothing here may stop the proxy
            self._internal_error("status route", exc)
        return False

    def refresh_from_router(self) -> bool:
        """Make the probed set the proxy router's deployments now; False if it has none yet."""
        return self.refresh_deployments()

    def _router_entries(self) -> list[Any] | None:
        """The deployment source; the first time it has the router, the startup line follows."""
        entries = _proxy_router_entries()
        if entries is not None and self._announce_due:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # read from sync code: the next read in the loop announces
                return entries
            self._announce_due = False
            loop.call_soon(self.announce)  # once the breaker has taken these deployments in
        return entries

    def announce(self) -> None:
        """Log the one INFO line that says the breaker is on, and how it is set up."""
        self._announce_due = False
        logger.info("%s", startup_line(self))

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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shown_setting(value: object) -> str:
    if value is None:
        return "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def startup_line(breaker: ProxyCircuitBreaker) -> str:
    """Enabled; how many deployments are probed; sharing on or off; the non-default settings.

    Never a secret: the Redis URL is shown without its password, and nothing
    of a deployment but the count.
    """
    settings = breaker.settings
    if settings.probe_interval is None:
        probing = "probes off"
    else:
        rows = breaker.status()
        probed = sum(row.probe != "passive" for row in rows)
        probing = (
            f"probing {probed} of {_count(len(rows), 'deployment')} "
            f"every {_shown_setting(settings.probe_interval)}s"
        )
    changed = settings.differences()
    url = changed.pop("redis_url", None)
    sharing = f"sharing on through {url}" if url is not None else "sharing off"
    settings_text = (
        "settings changed from the defaults: "
        + ", ".join(f"{name}={_shown_setting(value)}" for name, value in changed.items())
        if changed
        else "default settings"
    )
    return f"circuit breaker enabled: {probing}, {sharing}; {settings_text}"


LITELLM_PROXY_LOGGER = "LiteLLM Proxy"


class _LiteLLMHandlers(logging.Handler):
    """Hands each record to the handlers LiteLLM's proxy logger has when it is written.

    So the format is LiteLLM's (JSON lines with ``JSON_LOGS=True`` or
    ``litellm_settings: {json_logs: true}``, its plain format otherwise), and so
    are the stream, the ``LITELLM_LOG`` level and its secret-redaction filters,
    even after LiteLLM swaps its handlers at startup (``turn_on_json``). Once the
    root logger has handlers of its own (``turn_on_json`` or a host's logging
    config put them there), the record reaches them by propagation and is not
    handed on twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        for handler in logging.getLogger(LITELLM_PROXY_LOGGER).handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def _show_transitions() -> None:
    """Let operators see every transition in the proxy's output, in LiteLLM's log format.

    We log transitions, never traffic, so INFO is a few lines per outage. The
    proxy configures no root handler, and Python's last-resort handler prints
    WARNING and up only, in its own format; so, unless logging was configured
    (a handler on our logger or the root, e.g. ``--log_config``), our records
    go through LiteLLM's own handlers (:class:`_LiteLLMHandlers`).
    """
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        logger.addHandler(_LiteLLMHandlers())


def _export_metrics(breaker: ProxyCircuitBreaker) -> None:
    """Put the breaker's series where LiteLLM's ``/metrics`` reads them.

    In one process that is the default registry; in Prometheus multiprocess mode
    (LiteLLM turns it on with ``--num_workers`` > 1 or ``--prometheus_metrics_port``)
    it is ``PROMETHEUS_MULTIPROC_DIR``, which ``/metrics`` and LiteLLM's separate
    metrics server read for every worker. Harmless when LiteLLM's Prometheus is
    off (nothing serves them).
    """
    if importlib.util.find_spec("prometheus_client") is None:
        return
    from .metrics import BreakerMetrics  # noqa: PLC0415 - only with the prometheus extra

    try:
        breaker.metrics = BreakerMetrics(breaker)
    except Exception as exc:  # noqa: BLE001 - metrics must never stop the proxy
        breaker.internal_errors["metrics"] += 1
        logger.error(  # noqa: TRY400 - the message says what; a traceback adds nothing
            "circuit breaker metrics not exported, the breaker runs without them: %s",
            type(exc).__name__,
        )


_lock = threading.Lock()
_breaker: ProxyCircuitBreaker | None = None


def proxy_breaker() -> ProxyCircuitBreaker:
    """The process's one proxy breaker, created from the environment on first use.

    Called at import time inside the proxy, where a loop is already running:
    the probe task is started there, at once, and the status route is added to
    the proxy's app (already built by then).
    """
    global _breaker  # noqa: PLW0603 - the one per-process instance the proxy asks for
    with _lock:
        if _breaker is None:
            _breaker = ProxyCircuitBreaker(settings_from_env())
            _show_transitions()
            _export_metrics(_breaker)
            if _breaker.settings.probe_interval is None and _breaker.settings.redis_url is None:
                _breaker.announce()  # no background task will read the router: say so now
        breaker = _breaker
    breaker.serve_status()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return breaker  # imported outside the proxy: the first async hook starts it
    breaker.ensure_started()
    return breaker
