"""Prometheus metrics for a :class:`~litellm_circuit_breaker.CircuitBreaker`: just a listener.

Needs the ``prometheus`` extra (``pip install 'litellm-circuit-breaker[prometheus]'``);
this module itself imports without it, and only :class:`BreakerMetrics` asks for it.

Every series is labelled by ``model_id`` and ``model_group`` at most (LiteLLM's own
label names for a deployment's id and its group, so its series and ours join),
never by a URL, a key or an error message. Only deployments the breaker knows
from configuration or traffic (``breaker.deployments``) get series: direct SDK
calls have one breaker per model and endpoint a caller used, as many as callers
like, so they are left out rather than made labels (``sdk_breakers`` counts them,
and ``sdk_breakers_dropped_total`` those the ``max_sdk_breakers`` bound dropped).

The values live in prometheus-client's own ``Counter``, ``Gauge`` and
``Histogram``, fed by the breaker's events and by :meth:`BreakerMetrics.refresh`.
In one process a scrape refreshes them first; in prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set: LiteLLM's ``--num_workers``)
they are written to that directory, where whoever serves it reads every
worker's, and a thread of the instance's own refreshes them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._errors import ConfigurationError
from ._probe import ProbeResult
from ._state import BreakerState, StateChange

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric

    from ._litellm_kwargs import Deployment
    from ._plugin import CircuitBreaker

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_REFRESH_INTERVAL",
    "LABELS",
    "LATENCY_BUCKETS",
    "BreakerMetrics",
]

DEFAULT_NAMESPACE = "litellm_circuit_breaker"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the probe latency histogram, in seconds (the default probe timeout is 3)."""
DEFAULT_REFRESH_INTERVAL = 5.0
"""Seconds between refreshes in multiprocess mode, where no scrape reaches the worker."""
LABELS = ("model_id", "model_group")
"""A deployment's labels, named as LiteLLM's Prometheus names them."""

logger = logging.getLogger("litellm_circuit_breaker")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STATE_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}
_PROBE_RESULT = {True: "up", False: "down", None: "no_verdict"}
_INSTALL_HINT = (
    "BreakerMetrics needs prometheus-client: pip install 'litellm-circuit-breaker[prometheus]'"
)
_MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_ALL_OPEN_ACTIONS = ("fail_open", "fail_fast", "fallback")
_Kind = Literal["transition", "probe", "scrape", "refresh"]


def _multiprocess_mode() -> bool:
    """True where prometheus-client writes values to files (its own test, at metric creation)."""
    return any(name in os.environ for name in _MULTIPROC_ENV)


@dataclass(frozen=True, slots=True)
class _Series:
    """The metric objects of one namespace, registered nowhere (their owner exports them)."""

    state: Gauge
    transitions: Counter
    calls_skipped: Counter
    trial_calls: Counter
    all_open: Counter
    probe_results: Counter
    probe_latency: Histogram
    sdk_breakers: Gauge
    sdk_dropped: Counter
    deployment_info: Gauge

    def all(self) -> tuple[Counter | Gauge | Histogram, ...]:
        return (
            self.deployment_info,
            self.state,
            self.transitions,
            self.calls_skipped,
            self.trial_calls,
            self.all_open,
            self.probe_results,
            self.probe_latency,
            self.sdk_breakers,
            self.sdk_dropped,
        )


def _make_series(ns: str) -> _Series:
    try:
        # Imported here, not at the top: the package must work without the extra.
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return _Series(
        # What a person reads for a model_id (a generated one is a 64-hex hash): its
        # model (litellm_params.model), never a key or an address; join on model_id.
        deployment_info=Gauge(
            f"{ns}_deployment_info",
            "1 per known deployment, naming its model (litellm_params.model) beside its id.",
            (*LABELS, "model"),
            registry=None,
            multiprocess_mode="liveall",
        ),
        # One value per worker (``pid`` label) in multiprocess mode: each worker has a
        # breaker of its own, and they may disagree; a dead worker's is dropped with it.
        state=Gauge(
            f"{ns}_state",
            "Breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            LABELS,
            registry=None,
            multiprocess_mode="liveall",
        ),
        transitions=Counter(
            f"{ns}_transitions",
            "Breaker transitions, by the state entered.",
            (*LABELS, "state"),
            registry=None,
        ),
        calls_skipped=Counter(
            f"{ns}_calls_skipped",
            "Calls kept off open deployments: router attempts filtered, sdk calls refused.",
            ("path",),
            registry=None,
        ),
        trial_calls=Counter(
            f"{ns}_trial_calls", "Half-open trial calls let through.", registry=None
        ),
        all_open=Counter(
            f"{ns}_all_open",
            "Requests whose every deployment was open, by what was done with them.",
            ("action",),
            registry=None,
        ),
        probe_results=Counter(
            f"{ns}_probe_results",
            "Health probe results: up, down, or no_verdict (no cheap probe).",
            (*LABELS, "result"),
            registry=None,
        ),
        probe_latency=Histogram(
            f"{ns}_probe_latency_seconds",
            "How long health probes took.",
            LABELS,
            registry=None,
            buckets=LATENCY_BUCKETS,
        ),
        # A count of breakers: the workers' counts add up.
        sdk_breakers=Gauge(
            f"{ns}_sdk_breakers",
            "Breakers kept for direct SDK calls (at most max_sdk_breakers).",
            registry=None,
            multiprocess_mode="livesum",
        ),
        sdk_dropped=Counter(
            f"{ns}_sdk_breakers_dropped",
            "Direct SDK breakers past max_sdk_breakers: evicted (a closed or idle "
            "half-open one made room), or untracked (every one still mattered).",
            ("reason",),
            registry=None,
        ),
    )


class BreakerMetrics:
    """Exposes one breaker's state, transitions, decisions and probes to Prometheus.

    In one process the constructor registers on ``registry`` (the default
    registry, which the LiteLLM proxy serves on ``/metrics``, when None); each
    scrape refreshes the values from the breaker first, so an open breaker whose
    window ended shows as half-open (and its transition is counted) without
    waiting for traffic. Two instances on one registry need different
    ``namespace`` values.

    In prometheus-client's multiprocess mode (``multiprocess=None`` follows
    ``PROMETHEUS_MULTIPROC_DIR``) nothing is registered: the values go to that
    directory, state changes and probe results at once, the rest (decision
    counters, time-driven half-opening) every ``refresh_interval`` seconds from a
    thread the instance owns.

    The constructor listens to the breaker; :meth:`detach` stops listening (and
    unregisters, and stops the thread) and :meth:`attach` starts again. A metric
    update that fails is logged once and counted in :attr:`errors`; it never
    reaches the breaker, a request or the probe loop.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        multiprocess: bool | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    ) -> None:
        if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
            raise ConfigurationError("namespace", namespace, "a Prometheus metric name prefix")
        if (
            not isinstance(refresh_interval, int | float)
            or isinstance(refresh_interval, bool)
            or not math.isfinite(refresh_interval)
            or refresh_interval <= 0
        ):
            raise ConfigurationError("refresh_interval", refresh_interval, "seconds > 0")
        self._series = _make_series(namespace)
        if registry is None:
            from prometheus_client import REGISTRY  # noqa: PLC0415 - loaded by _make_series

            registry = REGISTRY
        self._breaker = breaker
        self._registry = registry
        self._namespace = namespace
        self._multiprocess = _multiprocess_mode() if multiprocess is None else multiprocess
        self._refresh_interval = float(refresh_interval)
        self._lock = threading.Lock()
        self._attached = False
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._seen: dict[str, int] = {}
        self._exported: set[tuple[str, str]] = set()
        self._named: dict[str, tuple[str, str, str]] = {}
        self._errors = 0
        self.attach()

    # -- lifecycle -----------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The prefix of every metric name."""
        return self._namespace

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the metrics are (or were) registered on; unused in multiprocess mode."""
        return self._registry

    @property
    def multiprocess(self) -> bool:
        """True when the values go to ``PROMETHEUS_MULTIPROC_DIR`` instead of a registry."""
        return self._multiprocess

    @property
    def attached(self) -> bool:
        """True while listening (and registered, or refreshing in multiprocess mode)."""
        return self._attached

    @property
    def errors(self) -> int:
        """Metric updates, refreshes or scrapes that raised (each logged once, none propagated)."""
        return self._errors

    def attach(self) -> None:
        """Listen to the breaker, and register or start refreshing. Idempotent.

        Raises ``ValueError`` when the registry already has these metric names.
        """
        with self._lock:
            if self._attached:
                return
            if not self._multiprocess:
                self._registry.register(self)
            self._attached = True
        self._breaker.cache.add_listener(self._on_change)
        if self.observe_probe not in self._breaker.probe_listeners:
            self._breaker.probe_listeners.append(self.observe_probe)
        if self._multiprocess:
            self._refresh_safely("refresh")  # every known deployment has a series at once
            stop = threading.Event()
            thread = threading.Thread(
                target=self._refresh_until,
                args=(stop,),
                name="litellm-circuit-breaker-metrics",
                daemon=True,  # a worker that exits without detach() must not hang on it
            )
            self._stop, self._thread = stop, thread
            thread.start()

    def detach(self) -> None:
        """Stop listening, unregister and stop refreshing; counts are kept for :meth:`attach`."""
        with self._lock:
            if not self._attached:
                return
            self._attached = False
            stop, thread = self._stop, self._thread
            self._stop = self._thread = None
        self._breaker.cache.remove_listener(self._on_change)
        if self.observe_probe in self._breaker.probe_listeners:
            self._breaker.probe_listeners.remove(self.observe_probe)
        if stop is not None and thread is not None:
            stop.set()
            if thread is not threading.current_thread():
                thread.join()
        if not self._multiprocess:
            self._registry.unregister(self)

    def _refresh_until(self, stop: threading.Event) -> None:
        while not stop.wait(self._refresh_interval):
            self._refresh_safely("refresh")

    # -- events ----------------------------------------------------------------

    def _on_change(self, event: StateChange, /) -> None:
        """The cache listener: count the transition under the state it entered."""
        if event.old is event.new:
            return  # a window re-armed while open: not a transition
        try:
            deployment = self._breaker.deployments.get(event.deployment)
            if deployment is None:
                return  # an SDK breaker (one per model and endpoint) or a forgotten deployment
            labels = (deployment.id, deployment.model_group)
            self._series.transitions.labels(*labels, event.new.value).inc()
            self._series.state.labels(*labels).set(_STATE_VALUE[event.new])
            with self._lock:
                self._exported.add(labels)
        except Exception:  # noqa: BLE001 - a metric must never break the breaker
            self._failed("transition")

    def observe_probe(self, result: ProbeResult, /) -> None:
        """Count one probe result and its latency; never raises.

        Takes a result keyed by deployment id (as :meth:`CircuitBreaker.probe_once`
        returns them) or by endpoint key (as the probe loop applies them), which
        counts once for every deployment behind that endpoint.
        """
        try:
            targets = _deployments_of(result.provider_id, self._breaker.deployments)
            outcome = _PROBE_RESULT[result.ok]
            latency = result.latency
            timed = isinstance(latency, int | float) and math.isfinite(latency) and latency >= 0
            for deployment in targets:
                labels = (deployment.id, deployment.model_group)
                self._series.probe_results.labels(*labels, outcome).inc()
                if timed:
                    self._series.probe_latency.labels(*labels).observe(latency)
                with self._lock:
                    self._exported.add(labels)
        except Exception:  # noqa: BLE001 - a metric must never break the probe loop
            self._failed("probe")

    def refresh(self) -> None:
        """Bring every value up to the breaker's now: states, decision counts, SDK breakers.

        A scrape calls it in one process, the instance's thread in multiprocess
        mode. Reading an open breaker whose window ended reports its half-opening,
        which the listener counts. The breaker's ``deployment_source`` (the proxy's
        router) is re-read first, as ``GET /circuit-breaker/status`` does, so a
        deployment no probe round or traffic has reached yet has its series too.
        """
        self._breaker.refresh_deployments()
        deployments = self._breaker.deployments
        # breaker_state() reports an OPEN -> HALF_OPEN move that only time made, to our
        # listener, which takes our lock: read before taking it.
        states = {d.id: self._breaker.cache.breaker_state(d.id) for d in deployments.values()}
        known = {(d.id, d.model_group) for d in deployments.values()}
        counters = self._breaker.counters
        sdk = self._breaker.sdk_breakers
        s = self._series
        named = {d.id: (d.id, d.model_group, d.model) for d in deployments.values()}
        for deployment in deployments.values():
            s.state.labels(deployment.id, deployment.model_group).set(
                _STATE_VALUE[states[deployment.id]]
            )
            s.deployment_info.labels(*named[deployment.id]).set(1)
        totals = {
            "skipped": counters.skipped,
            "sdk_refused": counters.sdk_refused,
            "trials": counters.trials,
            **{action: counters[action] for action in _ALL_OPEN_ACTIONS},
            "evicted": sdk.evicted,
            "untracked": sdk.untracked,
        }
        with self._lock:
            deltas = {name: self._advance(name, total) for name, total in totals.items()}
            gone = self._exported - known
            self._exported = known
            renamed = [old for i, old in self._named.items() if named.get(i) != old]
            self._named = named
        s.calls_skipped.labels("router").inc(deltas["skipped"])
        s.calls_skipped.labels("sdk").inc(deltas["sdk_refused"])
        s.trial_calls.inc(deltas["trials"])
        for action in _ALL_OPEN_ACTIONS:
            s.all_open.labels(action).inc(deltas[action])
        s.sdk_breakers.set(len(sdk))
        s.sdk_dropped.labels("evicted").inc(deltas["evicted"])
        s.sdk_dropped.labels("untracked").inc(deltas["untracked"])
        if not self._multiprocess:
            for labels in gone:
                self._forget(labels)
            for info in renamed:
                s.deployment_info.remove(*info)
        else:
            # prometheus-client cannot remove a series from its files: a forgotten
            # deployment reads closed (0) and a replaced name 0, so no alert keeps
            # firing and a dashboard's join on deployment_info == 1 finds one name.
            for labels in gone:
                s.state.labels(*labels).set(0)
            for info in renamed:
                s.deployment_info.labels(*info).set(0)

    def _advance(self, name: str, total: int) -> int:
        """How much ``name`` grew since the last refresh (the caller holds the lock)."""
        delta = max(0, total - self._seen.get(name, 0))
        self._seen[name] = total
        return delta

    def _forget(self, labels: tuple[str, str]) -> None:
        s = self._series
        s.state.remove(*labels)
        s.probe_latency.remove(*labels)
        for new in BreakerState:
            s.transitions.remove(*labels, new.value)
        for outcome in _PROBE_RESULT.values():
            s.probe_results.remove(*labels, outcome)

    def _refresh_safely(self, kind: _Kind) -> bool:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - metrics must never break a scrape or a worker
            self._failed(kind)
            return False
        return True

    def _failed(self, kind: _Kind) -> None:
        with self._lock:
            self._errors += 1
            first = self._errors == 1
        if first:
            logger.exception(
                "circuit breaker metrics: %s update failed and was ignored (counted in errors)",
                kind,
            )

    # -- the collector (one process) ---------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples, so a registry can detect name clashes."""
        for metric in self._series.all():
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        """The metric families with their samples, refreshed from the breaker now."""
        # A failed refresh (counted, logged once) still exports the last values read:
        # an open breaker must not vanish from the scrape because one read failed.
        self._refresh_safely("scrape")
        for metric in self._series.all():
            for family in metric.collect():
                # no ``_created`` series: multiprocess mode has none, and they are noise
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


def _deployments_of(provider_id: str, deployments: Mapping[str, Deployment]) -> list[Deployment]:
    """The deployments a probe result speaks for: by deployment id, else by endpoint key."""
    found = deployments.get(provider_id)
    if found is not None:
        return [found]
    return [d for d in deployments.values() if d.probe is not None and d.probe.key == provider_id]
