"""``GET /circuit-breaker/status`` on the LiteLLM proxy: one worker's breakers, and the fleet's.

The route is added to the proxy's own FastAPI app (``litellm.proxy.proxy_server.app``)
when the proxy loads the callback, behind the proxy's own auth
(``user_api_key_auth``): the master key, or a key whose role is
``proxy_admin`` / ``proxy_admin_viewer``; any other key is refused with 403.
Each process answers for itself (``--num_workers``: the worker that took the
connection, named by its pid); with Redis the answer also carries the shared
records, as ``litellm-circuit-breaker status --json`` shows them.

Nothing here changes a decision: the route reads the breaker (and re-reads the
proxy's router, as every probe round does), never writes to it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

from ._redact import public_url
from ._routers import SurfaceUnknownError
from ._status import format_status_json

if TYPE_CHECKING:
    from ._plugin import CircuitBreaker, DeploymentStatus

__all__ = ["ADMIN_ROLES", "STATUS_PATH", "add_status_route", "status_document"]

STATUS_PATH = "/circuit-breaker/status"
ADMIN_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer"})
"""LiteLLM's roles that may read the route (the master key is ``proxy_admin``)."""
REDIS_READ_TIMEOUT_SEC = 2.0
"""The longest the route waits for the shared records; past it, the local view alone."""

_NOT_SERVED = f"GET {STATUS_PATH} is not served; the breaker runs as before"


def _deployment_row(row: DeploymentStatus) -> dict[str, Any]:
    """One local row, with the fields and conventions of ``status --json``."""
    held = math.isinf(row.retry_in)
    return {
        "deployment": row.deployment,
        "model_group": row.model_group,
        "name": row.name,
        "endpoint": row.endpoint,
        "probe": row.probe,
        "state": row.state.value,
        "consecutive_failures": row.consecutive_failures,
        "retry_in": None if held else round(row.retry_in, 3),
        "held": held,
        "last_error": row.last_error,
    }


async def _shared_document(breaker: CircuitBreaker) -> dict[str, Any] | None:
    """The fleet's records as ``status --json`` has them, or why they could not be read."""
    url = breaker.config.redis_url
    if url is None:
        return None
    namespace = breaker.config.redis_namespace
    share = breaker.shared
    document: dict[str, Any] = {
        "url": public_url(url),
        "namespace": namespace,
        "connected": share is not None and share.connected,
        # False while connected: the Redis user may not use the channel, so other
        # replicas' changes arrive at each reconcile, not at once.
        "following": share is not None and share.following,
        "records": None,
        "error": None,
    }
    from ._shared import fetch_snapshot  # noqa: PLC0415 - the Redis adapter, only with Redis

    try:
        # Each read bounded, not the whole: a namespace of 100,000 records takes 3 s.
        snapshot = await fetch_snapshot(url, namespace, page_timeout=REDIS_READ_TIMEOUT_SEC)
    except Exception as exc:  # noqa: BLE001 - Redis down: the local view still answers
        # The type only: a Redis client's message may carry the URL.
        document["error"] = f"Redis did not answer: {type(exc).__name__}"
        return document
    records: list[dict[str, Any]] = json.loads(format_status_json(snapshot.records, snapshot.bad))
    for record in records:  # written redacted by their replicas; masked here too
        for field in ("last_error", "problem"):
            if record[field] is not None:
                record[field] = breaker._redact_text(record[field]) or None
    document["records"] = records
    return document


async def status_document(breaker: CircuitBreaker) -> dict[str, Any]:
    """What the route answers: who answered, this process's breakers, the fleet's records.

    ``shared`` is null without Redis. Never a secret: errors are redacted,
    endpoints and the Redis URL shown without credentials.
    """
    # The deployment source is read now, so a deployment no traffic and no probe
    # round has reached yet (probes off) is a row too; a failing read is counted.
    breaker._guard("refresh", breaker.refresh_deployments, default=False)
    share = breaker.shared
    return {
        "worker": {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "replica": share.replica if share is not None else None,
        },
        "deployments": [_deployment_row(row) for row in breaker.status()],
        "shared": await _shared_document(breaker),
    }


def _role_of(auth: object) -> str | None:
    role = getattr(auth, "user_role", None)
    value = getattr(role, "value", role)  # LiteLLM's roles are a str enum
    return value if isinstance(value, str) else None


def _status_endpoint(breaker: CircuitBreaker, auth_dependency: Any) -> Any:
    """The route's handler: admins only, then the document (an internal error is a 500)."""
    from fastapi import Depends, HTTPException  # noqa: PLC0415 - the proxy always has it

    admin = Depends(auth_dependency)

    async def circuit_breaker_status(auth: Any = admin) -> dict[str, Any]:
        """Every deployment's breaker in this worker and, with Redis, the fleet's records."""
        if _role_of(auth) not in ADMIN_ROLES:
            raise HTTPException(
                status_code=403,
                detail={
                    "error": "the circuit breaker's status is for proxy admins: use the "
                    "master key or a proxy_admin / proxy_admin_viewer key",
                    "type": "auth_error",
                },
            )
        try:
            return await status_document(breaker)
        except Exception as exc:  # noqa: BLE001 - a 500 that says so; logged once, counted
            breaker._internal_error("status route", exc)
            raise HTTPException(
                status_code=500,
                detail={"error": f"circuit breaker status failed: {type(exc).__name__}"},
            ) from None

    return circuit_breaker_status


def add_status_route(breaker: CircuitBreaker) -> bool:
    """Serve ``GET /circuit-breaker/status`` on the running proxy's app; True once it is there.

    False outside the proxy (its server module was never imported). Idempotent:
    the proxy may run the callback's module more than once. Raises
    :class:`SurfaceUnknownError` when this LiteLLM has no app or auth we know.
    """
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    if proxy_server is None:
        return False
    app = getattr(proxy_server, "app", None)
    add_api_route = getattr(app, "add_api_route", None)
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not callable(add_api_route) or not isinstance(routes, list):
        raise SurfaceUnknownError("the proxy's FastAPI app (proxy_server.app)", _NOT_SERVED)
    if any(getattr(route, "path", None) == STATUS_PATH for route in routes):
        return True
    try:
        from litellm.proxy.auth.user_api_key_auth import (  # noqa: PLC0415 - in the proxy only
            user_api_key_auth,
        )
    except ImportError:
        raise SurfaceUnknownError(
            "the proxy's auth (user_api_key_auth)", _NOT_SERVED + " (it would be unauthenticated)"
        ) from None
    try:
        add_api_route(
            STATUS_PATH,
            _status_endpoint(breaker, user_api_key_auth),
            methods=["GET"],
            response_model=None,
            tags=["circuit breaker"],
        )
        # First, so no path pattern the proxy adds (``/{name}/...``) can ever shadow it.
        if getattr(routes[-1], "path", None) == STATUS_PATH:
            routes.insert(0, routes.pop())
    except Exception as exc:  # noqa: BLE001 - a changed app must never stop the proxy
        raise SurfaceUnknownError(
            f"a way to add a route to the proxy's app ({type(exc).__name__})", _NOT_SERVED
        ) from None
    return True
