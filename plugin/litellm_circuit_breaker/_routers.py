"""What the Routers in this process say about a model group: fallbacks and siblings.

Hooks are not handed their Router, so this module looks among LiteLLM's live
Routers (and the proxy's) for the one serving a deployment id. It is consulted
only when every deployment of a group is open, never on the common path. Any
surprise in LiteLLM's internals answers "unknown", which callers treat safely.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["group_deployment_ids", "group_has_fallback"]


def _routers() -> Iterator[Any]:
    seen: set[int] = set()
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    candidates = [getattr(proxy, "llm_router", None)] if proxy is not None else []
    router_module = sys.modules.get("litellm.router")
    live = getattr(router_module, "_live_routers", None)
    if live is not None:
        candidates.extend(list(live))
    for router in candidates:
        if router is not None and id(router) not in seen:
            seen.add(id(router))
            yield router


def _router_for(deployment_ids: Sequence[str]) -> Any:
    for router in _routers():
        try:
            if any(router.get_deployment(model_id=i) is not None for i in deployment_ids[:1]):
                return router
        except Exception:  # noqa: BLE001, S112 - a router we cannot read is not ours
            continue
    return None


def group_has_fallback(group: str, deployment_ids: Sequence[str]) -> bool:
    """True when the Router serving these deployments has a fallback for ``group``."""
    router = _router_for(deployment_ids)
    if router is None:
        return False
    try:
        from litellm.router_utils.fallback_event_handlers import (  # noqa: PLC0415
            get_fallback_model_group,
        )

        fallbacks = list(getattr(router, "fallbacks", None) or [])
        if not fallbacks:
            return False
        groups, generic_index = get_fallback_model_group(fallbacks, group)
        return bool(groups) or generic_index is not None
    except Exception:  # noqa: BLE001 - unknown means "no fallback known"
        return False


def group_deployment_ids(group: str, deployment_id: str) -> list[str]:
    """Every deployment id of ``group`` in the Router serving ``deployment_id``."""
    router = _router_for([deployment_id])
    if router is None:
        return [deployment_id]
    try:
        entries = router.get_model_list(model_name=group) or []
        ids = [str(e["model_info"]["id"]) for e in entries if e.get("model_info", {}).get("id")]
    except Exception:  # noqa: BLE001 - unknown means "only this one"
        return [deployment_id]
    return ids or [deployment_id]
