"""The deployment registry: which deployments a breaker knows, their endpoints, their Routers.

Deployments come from the operator's configuration (``model_list=``,
``add_deployments``), from bound Routers (re-read before every probe round,
and forgotten when no bound Router has them any more) and from traffic (a
deployment first seen in a hook is looked up in its Router, with its group's
siblings). Deployments sharing an endpoint share one probe target.

:class:`DeploymentRegistry` keeps all of that under its own lock. It knows
nothing of breakers: what to do when the set of endpoints changes, where a
deployment's key goes, and how to report a LiteLLM surface it cannot read are
callbacks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import _routers
from ._endpoints import ProbeTarget
from ._litellm_kwargs import Deployment, deployment_id_of, deployment_of, model_group_of

__all__ = ["DeploymentRegistry"]

logger = logging.getLogger("litellm_circuit_breaker")

# Deployment ids looked up in their Router when first seen in traffic; past this
# many, new ones are no longer looked up (a bound on memory, not a setting).
LEARN_MAX = 100_000

_NO_MEMBERS: tuple[None, frozenset[str]] = (None, frozenset())


class DeploymentRegistry:
    """Known deployments by id, their probe targets, and the Routers they are learned from.

    Callbacks: ``on_endpoints(targets)`` gets every probe target by key each
    time the set changes; ``add_secret(secret)`` each deployment's API key and
    api_base password as it is learned; ``on_surface_unknown(exc)`` what this LiteLLM hides.
    """

    def __init__(
        self,
        *,
        learn_from_traffic: bool,
        on_endpoints: Callable[[Mapping[str, ProbeTarget]], None],
        add_secret: Callable[[str | None], None],
        on_surface_unknown: Callable[[_routers.SurfaceUnknownError], None],
    ) -> None:
        self.learn_from_traffic = learn_from_traffic
        self._on_endpoints = on_endpoints
        self._add_secret = add_secret
        self._on_surface_unknown = on_surface_unknown
        self._lock = threading.Lock()
        self.by_id: dict[str, Deployment] = {}
        """Known deployments. Mutated in place under the lock, never replaced, so
        the hot path may test membership without the lock; read it otherwise
        through :meth:`get` or :meth:`snapshot`."""
        self._endpoints: dict[str, tuple[ProbeTarget, frozenset[str]]] = {}
        self._unprobed: set[str] = set()
        """Probe keys whose endpoint answered 404/405 to its list call."""
        self._bound = _routers.RouterSet()
        self._from_bound: set[str] = set()
        """Deployment ids learned from bound Routers (forgotten when they leave them)."""
        self._from_source: set[str] = set()
        """Deployment ids the deployment source returned last time."""
        self._explicit: set[str] = set()
        """Deployment ids given by hand (``model_list=``, ``add_deployments``): never pruned."""
        self._warned: set[str] = set()
        """Deployment ids whose configuration error was logged (once each)."""
        self._learn_tried: set[str] = set()
        """Deployment ids looked up in their Router when first seen in traffic."""

    # -- reading ------------------------------------------------------------------

    def get(self, deployment_id: str) -> Deployment | None:
        with self._lock:
            return self.by_id.get(deployment_id)

    def snapshot(self) -> dict[str, Deployment]:
        """The known deployments by id, copied."""
        with self._lock:
            return dict(self.by_id)

    def group_of(self, deployment_id: str) -> str | None:
        deployment = self.get(deployment_id)
        return deployment.model_group if deployment else None

    def endpoints(self) -> dict[str, tuple[ProbeTarget, frozenset[str]]]:
        """Probe key -> (target, the deployment ids behind it), copied."""
        with self._lock:
            return dict(self._endpoints)

    def members(self, probe_key: str) -> frozenset[str]:
        """The deployment ids behind one probe target."""
        with self._lock:
            return self._endpoints.get(probe_key, _NO_MEMBERS)[1]

    def unprobed(self) -> set[str]:
        """Probe keys whose endpoint has no list call, copied."""
        with self._lock:
            return set(self._unprobed)

    def note_list_call(self, probe_key: str, *, exists: bool) -> None:
        """Whether the endpoint behind ``probe_key`` answered its list call as one it has."""
        with self._lock:
            if exists:
                self._unprobed.discard(probe_key)
            else:
                self._unprobed.add(probe_key)

    # -- changing -------------------------------------------------------------------

    def add(self, model_list: Iterable[Mapping[str, Any]], *, explicit: bool) -> list[str]:
        """Learn deployments; their ids. ``explicit`` ones are kept until removed by hand."""
        ids: list[str] = []
        changed = False
        for entry in model_list:
            deployment = deployment_of(entry)
            if deployment is None:
                continue
            ids.append(deployment.id)
            with self._lock:
                if self.by_id.get(deployment.id) == deployment:
                    continue
                self.by_id[deployment.id] = deployment
                changed = True
                warn = deployment.config_error is not None and deployment.id not in self._warned
                if warn:
                    self._warned.add(deployment.id)
            for secret in deployment.secrets:  # its key, and its api_base's password
                self._add_secret(secret)
            if warn:
                logger.warning(
                    "deployment %s (%s): %s; it has no probe, its traffic still counts",
                    deployment.id,
                    deployment.name,
                    deployment.config_error,
                )
        if explicit:
            with self._lock:
                self._explicit.update(ids)
        if changed:
            self._rebuild_endpoints()
        return ids

    def sync(self, model_list: Iterable[Mapping[str, Any]]) -> list[str]:
        """Make the known set exactly ``model_list``; the ids forgotten."""
        keep = set(self.add(model_list, explicit=True))
        with self._lock:
            gone = [d for d in self.by_id if d not in keep]
            for deployment_id in gone:
                del self.by_id[deployment_id]
            self._explicit.difference_update(gone)
        if gone:
            self._rebuild_endpoints()
        return gone

    def sync_source(self, model_list: Iterable[Mapping[str, Any]]) -> set[str]:
        """Take the deployment source's list; the ids it brought before and dropped now.

        Only what the source brought is ever pruned: deployments given by hand
        or learned from bound Routers stay, whatever the source says. The caller
        forgets the returned ids (with their breakers) by :meth:`remove`.
        """
        now = set(self.add(model_list, explicit=False))
        with self._lock:
            gone = self._from_source - now - self._explicit - self._from_bound
            self._from_source = now
        return gone

    def remove(self, deployment_id: str) -> bool:
        """Forget one deployment; False if it was not known."""
        with self._lock:
            known = self.by_id.pop(deployment_id, None) is not None
            self._explicit.discard(deployment_id)
            self._from_source.discard(deployment_id)
        if known:
            self._rebuild_endpoints()
        return known

    def _rebuild_endpoints(self) -> None:
        with self._lock:
            members: dict[str, list[str]] = {}
            targets: dict[str, ProbeTarget] = {}
            for deployment in self.by_id.values():
                if deployment.probe is None:
                    continue
                key = deployment.probe.key
                targets[key] = deployment.probe
                members.setdefault(key, []).append(deployment.id)
            self._endpoints = {k: (targets[k], frozenset(v)) for k, v in members.items()}
        self._on_endpoints(targets)

    # -- Routers ----------------------------------------------------------------------

    def bind(self, router: Any) -> None:
        """Bind a Router and learn its deployments at once."""
        with self._lock:
            self._bound.add(router)
        self.learn_router(router)

    def unbind(self, router: Any) -> bool:
        """Unbind a Router; False if it was not bound."""
        with self._lock:
            return self._bound.remove(router)

    def routers(self) -> list[Any]:
        """The bound Routers still alive."""
        with self._lock:
            return self._bound.routers()

    def learn_router(self, router: Any) -> list[str]:
        """Learn a bound Router's deployments; their ids."""
        try:
            ids = self.add(_routers.router_entries(router), explicit=False)
        except _routers.SurfaceUnknownError as exc:
            self._on_surface_unknown(exc)
            return []
        with self._lock:
            self._from_bound.update(ids)
        return ids

    def refresh_bound(self) -> set[str]:
        """Re-read the bound Routers; the ids that came from them and are in none any more.

        The caller forgets those (with their breakers) by :meth:`remove`.
        """
        with self._lock:
            routers = self._bound.routers()
            before = set(self._from_bound)
        if not routers and not before:
            return set()
        now: set[str] = set()
        for router in routers:
            now.update(self.learn_router(router))
        with self._lock:
            # Only what was there before this round and is gone now: a Router
            # attached meanwhile (another thread) keeps what it brought.
            gone = before - now - self._explicit
            self._from_bound -= gone
        return gone

    def learn_group(
        self, group: str, deployment_id: str, entry: Mapping[str, Any] | None = None
    ) -> None:
        """Learn a deployment first seen in traffic, with its group's siblings, from its Router.

        Once per deployment id: an id that cannot be learned is not looked up again.
        """
        if not self.learn_from_traffic:
            return
        with self._lock:
            tried = self._learn_tried
            if deployment_id in tried or len(tried) >= LEARN_MAX:
                return
            tried.add(deployment_id)
        entries = [entry] if entry is not None else []
        try:
            for router in _routers.serving_routers(deployment_id, self.routers()):
                # The Router's own entry names the group: a request may have reached
                # it by an alias or a wildcard route, under another name.
                own = _routers.deployment_entry(router, deployment_id)
                own_group = model_group_of(own) if own is not None else None
                entries = [own] if own is not None else entries
                entries.extend(_routers.group_entries(router, own_group or group))
        except _routers.SurfaceUnknownError as exc:
            self._on_surface_unknown(exc)
        with self._lock:
            unknown = [e for e in entries if deployment_id_of(e) not in self.by_id]
        if unknown:
            self.add(unknown, explicit=False)
