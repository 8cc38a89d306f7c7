"""The one place that knows how a LiteLLM version exposes its Routers.

Routers, a group's deployments, its fallbacks and the ids LiteLLM generates
are read here and nowhere else, each through the public surface of the
running version first:

============================  =====================================  ==========================
what                          1.110 (Rust router core)               1.108
============================  =====================================  ==========================
a Router's deployments        ``router.registry().all()/.deployments``  ``router.get_model_list()``
a Router's fallbacks          ``router.settings().fallbacks``        ``router.fallbacks``
a group's fallback chain      ``litellm.router_api.fallback_chain``  ``get_fallback_model_group``
a generated deployment id     ``litellm.router_api.deployment_id``   ``Router.generate_model_id``
the Routers of this process   private ``live_check_owners``          private ``_live_routers``
the Router serving a hook     the call stack (private)               the call stack (private)
============================  =====================================  ==========================

No version has a public list of live Routers nor tells a hook which Router
called it, so those two rows use private members; :meth:`CircuitBreaker.attach`
is the public way around both. A surface this module does not recognise raises
:class:`SurfaceUnknownError`, which the breaker logs once and counts; a
``DeprecationWarning`` is never raised by what is read here, and never swallowed.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

# A module object, not its names: _litellm_kwargs imports this module too.
from . import _litellm_kwargs

__all__ = [
    "CALLBACK_LISTS",
    "RouterSet",
    "SurfaceUnknownError",
    "calling_router",
    "deployment_entry",
    "fallback_groups",
    "fallback_targets",
    "generated_id",
    "group_entries",
    "is_router",
    "live_routers",
    "remove_callback",
    "router_entries",
    "router_timeout",
    "serving_routers",
]

# LiteLLM copies ``litellm.callbacks`` into the other lists as calls run, so
# removing a callback means removing it from all six.
CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "input_callback",
)

# How far up the call stack a hook looks for the Router that called it: the
# Router (or its core) is 2-12 frames above the hook on both versions.
_STACK_DEPTH = 24


class SurfaceUnknownError(Exception):
    """This LiteLLM exposes something we need in a way we do not know."""

    def __init__(self, missing: str, instead: str) -> None:
        super().__init__(f"could not find {missing}; {instead}")
        self.missing = missing
        self.instead = instead


def is_router(value: object) -> bool:
    """True for a ``litellm.Router`` (or subclass)."""
    litellm_router = sys.modules.get("litellm.router")
    cls = getattr(litellm_router, "Router", None)
    return isinstance(cls, type) and isinstance(value, cls)


def _router_of_core(core: object) -> Any:
    """The public Router of a 1.110 router core (private: ``_core_owner``), or None.

    A core whose Router was dropped while serving a request (``await
    Router(...).acompletion(...)`` keeps only the core alive) stands for it: it
    answers ``registry()`` and ``settings()`` as its Router would.
    """
    handle = vars(core).get("_core_owner") if hasattr(core, "__dict__") else None
    if not callable(handle):
        return None
    owner = handle()
    return owner if owner is not None else core


def live_routers() -> Iterator[Any]:
    """The proxy's Router, then every live Router of the process LiteLLM keeps track of.

    Private members, since no public registry exists: 1.108 keeps a WeakSet of
    Routers in ``litellm.router._live_routers``; 1.110 a WeakSet of router
    cores in ``litellm.router_utils.global_callback_holders.live_check_owners``.
    """
    seen: set[int] = set()
    candidates: list[Any] = []
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    if proxy is not None:
        candidates.append(getattr(proxy, "llm_router", None))
    legacy = getattr(sys.modules.get("litellm.router"), "_live_routers", None)
    holders = sys.modules.get("litellm.router_utils.global_callback_holders")
    cores = getattr(holders, "live_check_owners", None)
    if legacy is not None:
        candidates.extend(list(legacy))
    elif cores is not None:
        candidates.extend(_router_of_core(core) for core in list(cores))
    else:
        raise SurfaceUnknownError(
            "the live Routers (neither litellm.router._live_routers nor "
            "global_callback_holders.live_check_owners exists)",
            "fallbacks and siblings are known only for Routers passed to attach()",
        )
    for router in candidates:
        if router is not None and id(router) not in seen:
            seen.add(id(router))
            yield router


def calling_router() -> Any:
    """The Router whose routing called the running hook, or None.

    Hooks are not handed their Router, and on 1.110 the deployment dicts they
    get are copies, so the Router cannot be told by identity: it is found on
    the call stack (private: the frames of the Router's or its core's methods),
    a few frames up. Only ever used on the rare path, when a breaker is open.
    """
    # The only way to learn the calling Router.
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_STACK_DEPTH):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            owner = frame.f_locals.get("self")
            router = owner if is_router(owner) else _router_of_core(owner)
            if router is not None:
                return router
        frame = frame.f_back
    return None


def router_entries(router: Any) -> list[Mapping[str, Any]]:
    """Every deployment dict of a Router."""
    registry = getattr(router, "registry", None)
    if callable(registry):
        return list(registry().all() or [])
    get_model_list = getattr(router, "get_model_list", None)
    if callable(get_model_list):
        return list(get_model_list() or [])
    raise SurfaceUnknownError(
        "a Router's deployments (neither Router.registry() nor Router.get_model_list())",
        "only deployments seen in traffic or given in model_list are known",
    )


def group_entries(router: Any, group: str) -> list[Mapping[str, Any]]:
    """The deployment dicts of one model group of a Router."""
    registry = getattr(router, "registry", None)
    if callable(registry):
        return list(registry().deployments(group) or [])
    get_model_list = getattr(router, "get_model_list", None)
    if callable(get_model_list):
        return list(get_model_list(model_name=group) or [])
    raise SurfaceUnknownError(
        "a model group's deployments (neither Router.registry() nor Router.get_model_list())",
        "each deployment is treated as having no sibling",
    )


def _router_fallbacks(router: Any) -> list[Any]:
    settings = getattr(router, "settings", None)
    if callable(settings):
        return list(getattr(settings(), "fallbacks", None) or [])
    if "fallbacks" in vars(router):  # 1.108 keeps it as a plain attribute
        return list(vars(router)["fallbacks"] or [])
    raise SurfaceUnknownError(
        "a Router's fallbacks (neither Router.settings().fallbacks nor Router.fallbacks)",
        "an all-open group is treated as having no fallback (when_all_open applies)",
    )


def _fallback_chain(fallbacks: Sequence[Any], group: str) -> tuple[list[str] | None, int | None]:
    try:
        from litellm.router_api import fallback_chain  # noqa: PLC0415 - 1.110 and later
    except ImportError:
        try:
            from litellm.router_utils.fallback_event_handlers import (  # noqa: PLC0415
                get_fallback_model_group as fallback_chain,
            )
        except ImportError:
            raise SurfaceUnknownError(
                "how LiteLLM reads a fallback chain (neither router_api.fallback_chain "
                "nor get_fallback_model_group)",
                "an all-open group is treated as having no fallback (when_all_open applies)",
            ) from None
    groups, generic = fallback_chain(fallbacks, group)
    return (list(groups) if groups else None), generic


def fallback_targets(router: Any, group: str) -> list[str]:
    """The groups ``router`` falls back to from ``group``: its own entry, else the generic ``*``."""
    fallbacks = _router_fallbacks(router)
    if not fallbacks:
        return []
    groups, generic = _fallback_chain(fallbacks, group)
    if groups:
        return [str(g) for g in groups]
    if generic is None:
        return []
    entry = fallbacks[generic]
    targets = entry.get("*") if isinstance(entry, Mapping) else None
    return [str(g) for g in targets] if isinstance(targets, list) else []


def fallback_groups(router: Any, group: str) -> bool:
    """True when ``router`` has a fallback configured for ``group`` (generic ``*`` included)."""
    return bool(fallback_targets(router, group))


def deployment_entry(router: Any, deployment_id: str) -> Mapping[str, Any] | None:
    """The Router's own dict of one deployment, or None if it has no such id."""
    registry = getattr(router, "registry", None)
    if callable(registry):
        found = registry().deployment_dict(deployment_id)
        return found if isinstance(found, Mapping) else None
    # 1.108: the configured list itself (get_model_list() also lists alias copies).
    entries = vars(router).get("model_list") if hasattr(router, "__dict__") else None
    if not isinstance(entries, list):
        entries = router_entries(router)
    return next((e for e in entries if _litellm_kwargs.deployment_id_of(e) == deployment_id), None)


def router_timeout(router: Any) -> float | None:
    """The Router's own default timeout (``Router(timeout=...)``), when it has one.

    ``timeout`` is a plain public attribute on both 1.108 and 1.110 (not one of
    the members 1.110 deprecated).
    """
    value = getattr(router, "timeout", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def serving_routers(deployment_id: str, bound: Sequence[Any] = ()) -> list[Any]:
    """The Routers that may be serving ``deployment_id`` in the running hook.

    The Router on the call stack when there is one; else every candidate
    (the ``bound`` Routers, or all live ones) holding that id.
    """
    found = calling_router()
    if found is not None:
        return [found]
    candidates = list(bound) if bound else list(live_routers())
    return [router for router in candidates if deployment_entry(router, deployment_id) is not None]


def generated_id(model_group: str, litellm_params: Mapping[str, Any]) -> str:
    """The id LiteLLM's Router gives a deployment whose model_info has none."""
    try:
        from litellm.router_api import deployment_id  # noqa: PLC0415 - 1.110 and later
    except ImportError:
        from litellm.router import Router  # noqa: PLC0415

        return str(Router.generate_model_id(model_group, dict(litellm_params)))
    return str(deployment_id(model_group, litellm_params))


def remove_callback(callback: object) -> None:
    """Take ``callback`` out of every LiteLLM callback list it was copied into."""
    import litellm  # noqa: PLC0415 - already loaded by whoever registered the callback

    for name in CALLBACK_LISTS:
        found = getattr(litellm, name, None)
        if isinstance(found, list):
            while callback in found:
                with contextlib.suppress(ValueError):  # another thread took it out first
                    found.remove(callback)


class RouterSet:
    """Routers bound to a breaker, held weakly so a dropped Router is forgotten."""

    def __init__(self) -> None:
        self._refs: list[weakref.ref[Any]] = []

    def add(self, router: Any) -> bool:
        """Bind ``router``; False if it already was."""
        if any(ref() is router for ref in self._refs):
            return False
        self._refs = [ref for ref in self._refs if ref() is not None]
        self._refs.append(weakref.ref(router))
        return True

    def remove(self, router: Any) -> bool:
        """Unbind ``router``; False if it was not bound."""
        kept = [ref for ref in self._refs if ref() is not None and ref() is not router]
        removed = len(kept) != len([ref for ref in self._refs if ref() is not None])
        self._refs = kept
        return removed

    def routers(self) -> list[Any]:
        """The bound Routers still alive."""
        return [router for ref in self._refs if (router := ref()) is not None]
