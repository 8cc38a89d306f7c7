"""What the Routers in this process say about a model group: fallbacks and siblings.

Hooks are not handed their Router, so this module looks among LiteLLM's live
Routers (and the proxy's) for the one serving a request. Several Routers may
share deployment ids (one config loaded twice), so a Router is recognised by
holding the very deployment dicts the hook was given, and failing that by
serving the same id in the same group. It is consulted only when a deployment
is open, never on the common path. Any surprise in LiteLLM's internals answers
"unknown", which callers treat safely.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["group_deployment_ids", "group_has_fallback"]


def _routers() -> Iterator[Any]:
    seen: set[int] = set()
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    candidates = [getattr(proxy, "llm_router", None)] if proxy is not None else []
    live = getattr(sys.modules.get("litellm.router"), "_live_routers", None)
    if live is not None:
        candidates.extend(list(live))
    for router in candidates:
        if router is not None and id(router) not in seen:
            seen.add(id(router))
            yield router


def _group_ids(router: Any, group: str) -> list[str]:
    entries = router.get_model_list(model_name=group) or []
    return [str(e["model_info"]["id"]) for e in entries if e.get("model_info", {}).get("id")]


def _serving(group: str, deployment: Mapping[str, Any] | None, deployment_id: str) -> list[Any]:
    """The Routers serving this deployment: the one holding its dict, else by group and id."""
    routers = list(_routers())
    if deployment is not None:
        for router in routers:
            try:
                if any(entry is deployment for entry in router.model_list):
                    return [router]
            except Exception:  # noqa: BLE001, S112 - a router we cannot read is not ours
                continue
    found = []
    for router in routers:
        try:
            if deployment_id in _group_ids(router, group):
                found.append(router)
        except Exception:  # noqa: BLE001, S112
            continue
    return found


def group_has_fallback(
    group: str, deployment: Mapping[str, Any] | None, deployment_id: str
) -> bool:
    """True when the Router serving this deployment has a fallback for ``group``.

    If the Router cannot be told apart from others serving the same ids, every
    one of them must have a fallback: a wrong "yes" would fail a request that
    ``fail_open`` would have let through.
    """
    routers = _serving(group, deployment, deployment_id)
    if not routers:
        return False
    try:
        from litellm.router_utils.fallback_event_handlers import (  # noqa: PLC0415
            get_fallback_model_group,
        )

        for router in routers:
            fallbacks = list(getattr(router, "fallbacks", None) or [])
            if not fallbacks:
                return False
            groups, generic_index = get_fallback_model_group(fallbacks, group)
            if not groups and generic_index is None:
                return False
        return True
    except Exception:  # noqa: BLE001 - unknown means "no fallback known"
        return False


def group_deployment_ids(
    group: str, deployment: Mapping[str, Any] | None, deployment_id: str
) -> list[str]:
    """Every deployment id of ``group`` in the Router(s) serving this deployment."""
    ids: list[str] = []
    for router in _serving(group, deployment, deployment_id):
        try:
            ids.extend(i for i in _group_ids(router, group) if i not in ids)
        except Exception:  # noqa: BLE001, S112
            continue
    return ids or [deployment_id]
