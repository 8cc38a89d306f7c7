"""Prometheus metrics for a :class:`~litellm_circuit_breaker.CircuitBreaker`: just a listener.

Needs the ``prometheus`` extra (``pip install 'litellm-circuit-breaker[prometheus]'``);
this module itself imports without it, and only :class:`BreakerMetrics` asks for it.

Every series is labelled by deployment id and model group at most, never by a URL,
a key or an error message. Only deployments the breaker knows from configuration
or traffic (``breaker.deployments``) get series: direct SDK calls have one
breaker per model and endpoint a caller used, as many as callers like, so
they are left out rather than made labels (``sdk_breakers`` counts them, and
``sdk_breakers_dropped_total`` those the ``max_sdk_breakers`` bound dropped).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import ConfigurationError
from ._probe import ProbeResult
from ._state import BreakerState, StateChange

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.metrics_core import Metric

    from ._litellm_kwargs import Deployment
    from ._plugin import CircuitBreaker

__all__ = ["DEFAULT_NAMESPACE", "LATENCY_BUCKETS", "BreakerMetrics"]

DEFAULT_NAMESPACE = "litellm_circuit_breaker"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the probe latency histogram, in seconds (the default probe timeout is 3)."""

logger = logging.getLogger("litellm_circuit_breaker")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STATE_VALUE = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}
_PROBE_RESULT = {True: "up", False: "down", None: "no_verdict"}
_INSTALL_HINT = (
    "BreakerMetrics needs prometheus-client: pip install 'litellm-circuit-breaker[prometheus]'"
)
_DEPLOYMENT_LABELS = ("deployment", "model_group")


@dataclass(frozen=True, slots=True)
class _Families:
    """prometheus_client's metric family classes, imported only when metrics are wanted."""

    counter: type[CounterMetricFamily]
    gauge: type[GaugeMetricFamily]
    histogram: type[HistogramMetricFamily]
    default_registry: CollectorRegistry


def _load_prometheus() -> _Families:
    try:
        # Imported here, not at the top: the package must work without the extra.
        import prometheus_client  # noqa: PLC0415
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return _Families(
        counter=CounterMetricFamily,
        gauge=GaugeMetricFamily,
        histogram=HistogramMetricFamily,
        default_registry=prometheus_client.REGISTRY,
    )


@dataclass(slots=True)
class _Latency:
    """One deployment's probe latency histogram: per-bucket counts, made cumulative on scrape."""

    buckets: list[int]
    total: float = 0.0


class BreakerMetrics:
    """Exposes one breaker's state, transitions, decisions and probes to Prometheus.

    The constructor registers on ``registry`` (the default registry, which the
    LiteLLM proxy serves on ``/metrics``, when None) and listens to the
    breaker's cache; :meth:`detach` undoes both and :meth:`attach` redoes them.
    Two instances on one registry need different ``namespace`` values.

    The state gauge and the decision counters are read from the breaker at
    scrape time, so an open breaker whose window ended shows as half-open (and
    its transition is counted) without waiting for traffic. A metric update
    that fails is logged once and counted in :attr:`errors`; it never reaches
    the breaker, a request or the probe loop.
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        if not isinstance(namespace, str) or not _NAME.fullmatch(namespace):
            raise ConfigurationError("namespace", namespace, "a Prometheus metric name prefix")
        self._families = _load_prometheus()
        self._breaker = breaker
        self._registry = registry if registry is not None else self._families.default_registry
        self._namespace = namespace
        self._lock = threading.Lock()
        self._attached = False
        self._transitions: dict[tuple[str, str, str], int] = {}
        self._probe_results: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Latency] = {}
        self._errors = 0
        self.attach()

    # -- lifecycle -----------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The prefix of every metric name."""
        return self._namespace

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the metrics are (or were) registered on."""
        return self._registry

    @property
    def attached(self) -> bool:
        """True while registered and listening."""
        return self._attached

    @property
    def errors(self) -> int:
        """Metric updates or scrapes that raised (each kind logged once, none propagated)."""
        return self._errors

    def attach(self) -> None:
        """Register on the registry and listen to the breaker. Idempotent.

        Raises ``ValueError`` when the registry already has these metric names.
        """
        with self._lock:
            if self._attached:
                return
            self._registry.register(self)
            self._attached = True
        self._breaker.cache.add_listener(self._on_change)
        if self.observe_probe not in self._breaker.probe_listeners:
            self._breaker.probe_listeners.append(self.observe_probe)

    def detach(self) -> None:
        """Stop listening and unregister; counts are kept for a later :meth:`attach`."""
        with self._lock:
            if not self._attached:
                return
            self._attached = False
        self._breaker.cache.remove_listener(self._on_change)
        if self.observe_probe in self._breaker.probe_listeners:
            self._breaker.probe_listeners.remove(self.observe_probe)
        self._registry.unregister(self)

    # -- events ----------------------------------------------------------------

    def _on_change(self, event: StateChange, /) -> None:
        """The cache listener: count the transition under the state it entered."""
        if event.old is event.new:
            return  # a window re-armed while open: not a transition
        try:
            deployment = self._breaker.deployments.get(event.deployment)
            if deployment is None:
                return  # an SDK breaker (one per model and endpoint) or a forgotten deployment
            key = (deployment.id, deployment.model_group, event.new.value)
            with self._lock:
                self._transitions[key] = self._transitions.get(key, 0) + 1
        except Exception:  # noqa: BLE001 - a metric must never break the breaker
            self._failed("transition")

    def observe_probe(self, result: ProbeResult, /) -> None:
        """Count one probe result and its latency; never raises.

        Takes a result keyed by deployment id (as :meth:`CircuitBreaker.probe_once`
        returns them) or by endpoint key (as the probe loop applies them), which
        counts once for every deployment behind that endpoint.
        """
        try:
            deployments = self._breaker.deployments
            targets = _deployments_of(result.provider_id, deployments)
            outcome = _PROBE_RESULT[result.ok]
            latency = result.latency
            timed = isinstance(latency, int | float) and math.isfinite(latency) and latency >= 0
            slot = bisect.bisect_left(LATENCY_BUCKETS, latency) if timed else 0
            with self._lock:
                for deployment in targets:
                    labels = (deployment.id, deployment.model_group)
                    key = (*labels, outcome)
                    self._probe_results[key] = self._probe_results.get(key, 0) + 1
                    if timed:
                        histogram = self._latency.setdefault(
                            labels, _Latency([0] * (len(LATENCY_BUCKETS) + 1))
                        )
                        histogram.buckets[slot] += 1
                        histogram.total += latency
        except Exception:  # noqa: BLE001 - a metric must never break the probe loop
            self._failed("probe")

    def _failed(self, kind: str) -> None:
        with self._lock:
            self._errors += 1
            first = self._errors == 1
        if first:
            logger.exception(
                "circuit breaker metrics: %s update failed and was ignored (counted in errors)",
                kind,
            )

    # -- the collector -----------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples, so a registry can detect name clashes."""
        yield from self._empty_families()

    def collect(self) -> Iterator[Metric]:
        """The metric families with their samples, read from the breaker now."""
        try:
            families = self._collect()
        except Exception:  # noqa: BLE001 - one broken collector must not fail the scrape
            self._failed("scrape")
            return
        yield from families

    def _empty_families(
        self,
    ) -> tuple[
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        HistogramMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
    ]:
        f, ns = self._families, self._namespace
        return (
            f.gauge(
                f"{ns}_state",
                "Breaker state per deployment: 0 closed, 1 half-open, 2 open.",
                labels=_DEPLOYMENT_LABELS,
            ),
            f.counter(
                f"{ns}_transitions",
                "Breaker transitions, by the state entered.",
                labels=(*_DEPLOYMENT_LABELS, "state"),
            ),
            f.counter(
                f"{ns}_calls_skipped",
                "Calls kept off open deployments: router attempts filtered, sdk calls refused.",
                labels=("path",),
            ),
            f.counter(f"{ns}_trial_calls", "Half-open trial calls let through.", labels=()),
            f.counter(
                f"{ns}_all_open",
                "Requests whose every deployment was open, by what was done with them.",
                labels=("action",),
            ),
            f.counter(
                f"{ns}_probe_results",
                "Health probe results: up, down, or no_verdict (no cheap probe).",
                labels=(*_DEPLOYMENT_LABELS, "result"),
            ),
            f.histogram(
                f"{ns}_probe_latency_seconds",
                "How long health probes took.",
                labels=_DEPLOYMENT_LABELS,
            ),
            f.gauge(
                f"{ns}_sdk_breakers",
                "Breakers kept for direct SDK calls (at most max_sdk_breakers).",
                labels=(),
            ),
            f.counter(
                f"{ns}_sdk_breakers_dropped",
                "Direct SDK breakers past max_sdk_breakers: evicted (a closed or idle "
                "half-open one made room), or untracked (every one still mattered).",
                labels=("reason",),
            ),
        )

    def _collect(self) -> list[Metric]:
        deployments = self._breaker.deployments
        # breaker_state() also reports an OPEN -> HALF_OPEN move that only time
        # made, so the transitions below include it: done before taking our lock,
        # which our own listener takes.
        states = {d: self._breaker.cache.breaker_state(d) for d in deployments}
        counters = self._breaker.counters
        (
            state,
            transitions,
            skipped,
            trials,
            all_open,
            probes,
            latency,
            sdk_breakers,
            sdk_dropped,
        ) = self._empty_families()
        for deployment in sorted(deployments.values(), key=_order):
            labels = (deployment.id, deployment.model_group)
            state.add_metric(labels, _STATE_VALUE[states[deployment.id]])
        skipped.add_metric(("router",), counters.skipped)
        skipped.add_metric(("sdk",), counters.sdk_refused)
        trials.add_metric((), counters.trials)
        for action in ("fail_open", "fail_fast", "fallback"):
            all_open.add_metric((action,), counters[action])
        sdk = self._breaker.sdk_breakers
        sdk_breakers.add_metric((), len(sdk))
        sdk_dropped.add_metric(("evicted",), sdk.evicted)
        sdk_dropped.add_metric(("untracked",), sdk.untracked)
        with self._lock:
            self._forget_all_but(deployments)
            transition_counts = sorted(self._transitions.items())
            probe_counts = sorted(self._probe_results.items())
            histograms = sorted(
                (labels, list(h.buckets), h.total) for labels, h in self._latency.items()
            )
        for key, count in transition_counts:
            transitions.add_metric(key, count)
        for key, count in probe_counts:
            probes.add_metric(key, count)
        for labels, buckets, total in histograms:
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), buckets, strict=True):
                running += count
                cumulative.append(("+Inf" if math.isinf(bound) else repr(bound), float(running)))
            latency.add_metric(labels, cumulative, sum_value=total)
        return [
            state,
            transitions,
            skipped,
            trials,
            all_open,
            probes,
            latency,
            sdk_breakers,
            sdk_dropped,
        ]

    def _forget_all_but(self, deployments: Mapping[str, Deployment]) -> None:
        """Drop the series of deployments the breaker no longer knows (caller holds the lock)."""
        known = {(d.id, d.model_group) for d in deployments.values()}
        for counts in (self._transitions, self._probe_results):
            for key in [k for k in counts if k[:2] not in known]:
                del counts[key]
        for labels in [k for k in self._latency if k not in known]:
            del self._latency[labels]


def _deployments_of(provider_id: str, deployments: Mapping[str, Deployment]) -> list[Deployment]:
    """The deployments a probe result speaks for: by deployment id, else by endpoint key."""
    found = deployments.get(provider_id)
    if found is not None:
        return [found]
    return [d for d in deployments.values() if d.probe is not None and d.probe.key == provider_id]


def _order(deployment: Deployment) -> tuple[str, str]:
    return (deployment.model_group, deployment.id)
