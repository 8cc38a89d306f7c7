"""The LiteLLM adapter: hook events feed the breakers, open deployments are skipped.

``CircuitBreaker`` is a LiteLLM ``CustomLogger``. Attach it once
(``litellm.callbacks.append(CircuitBreaker())``) and every ``Router`` and
``acompletion`` call in the process is protected:

* evidence: the inline deployment hooks report every attempt as it ends (so the
  failure that reaches the threshold protects the very next request); the
  queued log events cover streams and sync calls, de-duplicated by call id;
* decisions: ``async_filter_deployments`` (async Router), ``pre_call_check``
  (sync Router) and ``async_pre_call_deployment_hook`` (direct SDK calls) keep
  traffic off open deployments and let one trial through when half-open;
* probes: every deployment from the operator's configuration with a cheap
  list endpoint is probed in the background, token-free.

Every hook is guarded: an internal error is logged once per kind, counted, and
the request goes on as if the plugin were absent. Only the plugin's own
deliberate ``CircuitOpenError`` ever reaches a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, TypeVar

from litellm.integrations.custom_logger import CustomLogger

from . import _routers
from ._cache import Clock, ProviderHealthCache
from ._config import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_FIRST_TOKEN_TIMEOUT,
    DEFAULT_MAX_SDK_BREAKERS,
    DEFAULT_NAMESPACE,
    DEFAULT_PROBE_CONCURRENCY,
    DEFAULT_PROBE_INTERVAL_SEC,
    DEFAULT_PROBE_TIMEOUT_SEC,
    DEFAULT_RECONCILE_SEC,
    DEFAULT_STALL_AFTER_SEC,
    DEFAULT_STATE_TTL_SEC,
    DEFAULT_TRIAL_LEASE_SEC,
    DEFAULT_TRIAL_PROBE_INTERVAL_SEC,
    DEFAULT_UNHEALTHY_BACKOFF_SEC,
    BreakerConfig,
    WhenAllOpen,
)
from ._counters import CounterName, DecisionCounters
from ._endpoints import ProbeTarget
from ._errors import (
    AllDeploymentsOpenError,
    CircuitBreakerError,
    CircuitOpenError,
    ConfigurationError,
)
from ._ledger import AttemptLedger
from ._litellm_kwargs import (
    CALL_ID,
    ID,
    LOGGING_OBJ,
    MODEL_INFO,
    STREAM,
    Attempt,
    Deployment,
    attempt_of,
    began_at,
    deployment_id_of,
    exception_of,
    first_token_after,
    model_group_of,
    read_timeout_of,
    routing_of,
    seconds_of,
    secrets_of,
    started_streaming,
    timeout_of,
    trace_id_of,
)
from ._policy import CallerChoices, FailurePolicy, Verdict
from ._probe import ProbeResult
from ._probing import EndpointProber
from ._redact import Redactor, public_url
from ._registry import DeploymentRegistry
from ._routers import is_router as _is_router
from ._sdk import SdkBreakers
from ._shared import CONNECT_TIMEOUT_SEC, RedisShare
from ._slow import CallKind, SlowCalls
from ._stalls import StallWatch
from ._state import BreakerState
from ._streams import FirstTokenDeadlines, FirstTokenSetting
from ._tasks import cancel_and_wait
from ._trials import TrialProber

__all__ = ["DEFAULT_STALL_AFTER_SEC", "CircuitBreaker", "DeploymentStatus", "WhenAllOpen"]

logger = logging.getLogger("litellm_circuit_breaker")

_T = TypeVar("_T")
_K = TypeVar("_K")
_instance_numbers = itertools.count(1)
MISSES_MAX = 10_000


class _SkipDeploymentError(CircuitOpenError):
    """Sync Router only: refuse this deployment but let the Router try a sibling at once.

    A non-retryable 4xx with ``retry_skip_deployment_id`` makes the Router skip
    this id on its retry; 403 is the status it retries without back-off.
    """

    status_code = 403

    def __init__(self, deployment: str, retry_after: float, siblings: int) -> None:
        super().__init__(deployment, retry_after)
        self.retry_skip_deployment_id = deployment
        # Unlike its base, ask for retries: one per sibling, even on a Router
        # configured with num_retries=0, since no provider was tried yet.
        self.num_retries = siblings


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One row of :meth:`CircuitBreaker.status`: safe to print, log or serve."""

    deployment: str
    model_group: str | None
    endpoint: str | None
    probe: str
    """The probe kind, "passive" (no cheap probe) or "unprobed" (answered 404/405)."""
    state: BreakerState
    consecutive_failures: int
    last_error: str | None
    retry_in: float
    name: str | None = None
    """Model group, model and host (``gpt-4o: openai/gpt-4o at api.openai.com``), as
    log lines show it next to the id; None for a deployment the breaker has no entry for."""


class _OpenDeploymentFilter(CustomLogger):
    """The breaker's ``async_filter_deployments``, in ``litellm.callbacks`` only while needed.

    LiteLLM 1.110's router core copies a group's deployment dicts on every
    attempt for each callback whose class defines the filter (1.06x per
    request at 200 deployments, 1.32x at 2,000, even for a filter returning its
    input), so the filter is a callback of its own, engaged while some breaker
    is open or half-open and taken out when all are closed again.
    """

    def __init__(
        self,
        owner: CustomLogger,
        instance_id: str,
        *,
        engage: Callable[[], None],
        decide: Callable[[str, list[Any], Mapping[str, Any] | None], list[Any]],
    ) -> None:
        super().__init__()
        self._owner = owner
        self._engage = engage
        self._decide = decide
        # A distinct public value, so LiteLLM never merges two breakers' filters.
        self.instance_id = f"{instance_id}-filter"

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: list[Any] | None,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict[str, Any]]:
        """Drop open deployments; hand a half-open one its single trial call."""
        import litellm  # noqa: PLC0415 - already loaded

        if self._owner not in litellm.callbacks:  # the breaker was taken out: so is this
            self._engage()
            return healthy_deployments
        return self._decide(model, healthy_deployments, request_kwargs)


DeploymentSource = Callable[[], "Iterable[Mapping[str, Any]] | None"]
"""Where the probed deployments come from: a model list, or None while not ready."""

SOURCE_WAIT_SEC = 60.0
"""How long the first probe round waits for a deployment source to have a list."""
SOURCE_POLL_SEC = 0.1


class CircuitBreaker(CustomLogger):
    """Per-deployment circuit breakers and token-free probes, as a LiteLLM callback.

    Keyword-only settings; each is validated here and a bad one raises
    :class:`ConfigurationError` (a ``ValueError``) naming it and its value.
    ``probe_interval=None`` disables the background probe loop.
    ``model_list`` (LiteLLM's format) names deployments to probe from the start;
    with ``learn_from_traffic`` the deployments a Router passes through the
    hooks are learned too. ``when_all_open`` decides what a request gets when
    every deployment of its group is open and no fallback is configured.
    """

    def __init__(  # noqa: PLR0915 - one statement per part the breaker is built of
        self,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        unhealthy_backoff_sec: float = DEFAULT_UNHEALTHY_BACKOFF_SEC,
        probe_interval: float | None = DEFAULT_PROBE_INTERVAL_SEC,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT_SEC,
        clock: Clock | None = None,
        model_list: Sequence[Mapping[str, Any]] | None = None,
        when_all_open: WhenAllOpen = "fail_open",
        failure_policy: FailurePolicy | None = None,
        probe_concurrency: int = DEFAULT_PROBE_CONCURRENCY,
        probe_jitter: float = 0.0,
        backoff_multiplier: float = 1.0,
        max_backoff_sec: float | None = None,
        trial_lease_sec: float = DEFAULT_TRIAL_LEASE_SEC,
        learn_from_traffic: bool = True,
        redis_url: str | None = None,
        redis_namespace: str = DEFAULT_NAMESPACE,
        replica_name: str | None = None,
        redis_state_ttl_sec: float = DEFAULT_STATE_TTL_SEC,
        redis_reconcile_sec: float = DEFAULT_RECONCILE_SEC,
        stall_after_sec: float | None = DEFAULT_STALL_AFTER_SEC,
        trial_probe_interval: float | None = DEFAULT_TRIAL_PROBE_INTERVAL_SEC,
        max_sdk_breakers: int = DEFAULT_MAX_SDK_BREAKERS,
        first_token_timeout: FirstTokenSetting = DEFAULT_FIRST_TOKEN_TIMEOUT,
        slow_call_detection: bool = True,
        routers: Sequence[Any] | None = None,
        deployment_source: DeploymentSource | None = None,
    ) -> None:
        super().__init__()
        config = BreakerConfig(
            failure_threshold=failure_threshold,
            unhealthy_backoff_sec=unhealthy_backoff_sec,
            probe_interval=probe_interval,
            probe_timeout=probe_timeout,
            when_all_open=when_all_open,
            probe_concurrency=probe_concurrency,
            probe_jitter=probe_jitter,
            backoff_multiplier=backoff_multiplier,
            max_backoff_sec=max_backoff_sec,
            trial_lease_sec=trial_lease_sec,
            learn_from_traffic=learn_from_traffic,
            stall_after_sec=stall_after_sec,
            trial_probe_interval=trial_probe_interval,
            redis_url=redis_url,
            redis_namespace=redis_namespace,
            replica_name=replica_name,
            redis_state_ttl_sec=redis_state_ttl_sec,
            redis_reconcile_sec=redis_reconcile_sec,
            max_sdk_breakers=max_sdk_breakers,
            first_token_timeout=first_token_timeout,
            slow_call_detection=slow_call_detection,
        )
        _check_objects(failure_policy=failure_policy, model_list=model_list)
        if deployment_source is not None and not callable(deployment_source):
            raise ConfigurationError(
                "deployment_source", deployment_source, "a callable returning a model list"
            )
        self._source = deployment_source
        self.config = config
        """Every setting, validated once (see :class:`BreakerConfig`)."""
        self.cache = ProviderHealthCache(
            failure_threshold=config.failure_threshold,
            unhealthy_backoff_sec=config.unhealthy_backoff_sec,
            clock=clock if clock is not None else time.monotonic,
            backoff_multiplier=config.backoff_multiplier,
            max_backoff_sec=config.max_backoff_sec,
            trial_lease_sec=config.trial_lease_sec,
        )
        # LiteLLM merges callbacks whose class and public scalar attributes are
        # equal; a distinct public id keeps two breakers from being merged.
        number = next(_instance_numbers)
        self.instance_id = f"circuit-breaker-{os.getpid()}-{number}"
        self._redact = Redactor()
        self._lock = threading.Lock()
        self._registry = DeploymentRegistry(
            learn_from_traffic=config.learn_from_traffic,
            on_endpoints=self._set_probe_targets,
            add_secret=self._redact.add_secret,
            on_surface_unknown=self._surface_unknown,
        )
        # The registry's own dict, for the hot path's unlocked membership test.
        self._deployments = self._registry.by_id
        self._share = _sharing(
            self.cache,
            number,
            config,
            group_of=self._registry.group_of,
            model_of=self._model_at,
            redact=self._redact_text,
            # Another replica's breaker of an id not configured here counts as an SDK one.
            admit=lambda d: d in self._deployments or self._sdk.admit_shared(d),
        )
        self._prober = EndpointProber(
            self.cache,
            interval=config.probe_interval,
            timeout=config.probe_timeout,
            concurrency=config.probe_concurrency,
            jitter=config.probe_jitter,
            before_round=self._before_tick,
            members=self._registry.members,
            note_list_call=self._registry.note_list_call,
            on_error=self._internal_error,
            on_result=self._tell_probe_listeners,
            redact=self._redact,
            claim=self._share.claim_probes if self._share is not None else None,
            ready=self._first_sync if self._share is not None else None,
            on_pass=self._probe_passed,
        )
        self.when_all_open: WhenAllOpen = config.when_all_open
        # The hot path's own copy: is there a background task to keep running?
        self._probe_interval = config.probe_interval
        self._stalls = (
            None
            if config.stall_detection is None
            else StallWatch(
                config.stall_detection,
                config.probe_timeout,
                target_of=self._stall_target,
                probe=self._prober.probe,
                on_stall=self._stalled,
                on_probe_failed=self._prober.apply_failure,
                count=self._bump,
                on_error=self._internal_error,
                on_suspects=self._engage_filter,
                on_latency=self._call_answered if config.slow_call_detection else None,
            )
        )
        self._trials = (
            None
            if config.trial_probing is None
            else TrialProber(
                config.trial_probing,
                config.probe_timeout,
                wanted=self.cache.ping_ids,
                deployment_of=self._registry.get,
                on_pass=self._trial_passed,
                on_fail=self.cache.mark_ping_failed,
                on_refused=self.cache.mark_probe_passed,
                count=self._bump,
                on_error=self._internal_error,
                redact=self._redact,
                concurrency=config.probe_concurrency,
            )
        )
        self._sdk = SdkBreakers(
            self.cache, limit=config.max_sdk_breakers, on_evict=self.cache.forget
        )
        self.cache.transition_log.describe = self.describe
        self._first_token = (
            None
            if config.first_token_timeout is None
            else FirstTokenDeadlines(config.first_token_timeout)
        )
        self._slow = SlowCalls(self.cache.clock) if config.slow_call_detection else None
        self._slow_opened: set[str] = set()
        """Deployments the slow-call rule opened: only their trial's success closes them
        (the slow calls still in flight would close them again at once)."""
        self._probe_ok: dict[str, float] = {}
        """Deployment id -> when (cache clock) its probe last passed."""
        self._misses: dict[str, int] = {}
        """Client request (trace id) -> first-token deadlines its attempts missed: each
        retry waits twice as long, so a slow answer (a long prompt) still gets through."""
        self._policy = failure_policy or FailurePolicy()
        self._learn_from_traffic = config.learn_from_traffic
        self._ledger = AttemptLedger()
        self._surfaces_reported: set[str] = set()
        """What this LiteLLM hides that we looked for (each logged once)."""
        self._open_filter = _OpenDeploymentFilter(
            self, self.instance_id, engage=self._engage_filter, decide=self._filter_hook
        )
        self._engage_lock = threading.Lock()
        self.cache.add_listener(self._on_state_change)
        self._task: asyncio.Task[None] | None = None
        self._logged_errors: set[str] = set()
        self.internal_errors: Counter[str] = Counter()
        """Internal errors caught in hooks, by hook; each kind was logged once."""
        self.probe_listeners: list[Callable[[ProbeResult], None]] = []
        """Called with each probe round's result per endpoint (metrics use it)."""
        self.counters = DecisionCounters()
        """What the breaker decided for requests, by kind; read like a dict."""
        if model_list:
            self.add_deployments(model_list)
        if routers is not None:
            self._bind(routers)

    # -- configuration ---------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: BreakerConfig,
        *,
        clock: Clock | None = None,
        model_list: Sequence[Mapping[str, Any]] | None = None,
        failure_policy: FailurePolicy | None = None,
        routers: Sequence[Any] | None = None,
        deployment_source: DeploymentSource | None = None,
    ) -> CircuitBreaker:
        """A breaker with these settings (e.g. ``BreakerConfig.from_env()``) and these objects."""
        if not isinstance(config, BreakerConfig):
            raise ConfigurationError("config", config, "a BreakerConfig")
        return cls(
            **config.as_kwargs(),
            clock=clock,
            model_list=model_list,
            failure_policy=failure_policy,
            routers=routers,
            deployment_source=deployment_source,
        )

    @property
    def probe_interval(self) -> float | None:
        """Seconds between probe rounds, or None when the loop is disabled."""
        return self._prober.interval

    @property
    def probe_timeout(self) -> float:
        """Seconds one probe may take."""
        return self._prober.timeout

    @property
    def running(self) -> bool:
        """True while the background task (probes, Redis sharing) is alive."""
        return self._task is not None and not self._task.done()

    @property
    def shared(self) -> RedisShare | None:
        """The Redis sharing adapter, or None when state is local to this process."""
        return self._share

    def _redact_text(self, text: str | None) -> str:
        """Secrets and key-like strings masked: what leaves the process (e.g. to Redis)."""
        return self._redact(text)

    def add_deployments(self, model_list: Iterable[Mapping[str, Any]]) -> list[str]:
        """Learn deployments from the operator's configuration; returns their ids.

        Deployments given here are kept until removed by hand, whatever bound
        Routers do with them. An entry without ``model_name`` or
        ``litellm_params.model`` raises :class:`ConfigurationError` naming it.
        """
        return self._registry.add(_model_list_of("model_list", model_list), explicit=True)

    def sync_deployments(self, model_list: Iterable[Mapping[str, Any]]) -> None:
        """Make the known set exactly ``model_list``: new ones added, removed ones forgotten."""
        gone = self._registry.sync(model_list)
        for deployment_id in gone:
            self.cache.forget(deployment_id)
            self._forget_timings(deployment_id)
        if gone:
            self._engage_filter()  # forgetting sends no state change

    def remove_deployment(self, deployment_id: str) -> bool:
        """Forget a deployment and its breaker (e.g. removed from the config)."""
        known = self._registry.remove(deployment_id)
        forgot = self.cache.forget(deployment_id)
        self._forget_timings(deployment_id)
        self._sdk.forget(deployment_id)
        self._engage_filter()  # forgetting sends no state change
        return known or forgot

    def _forget_timings(self, deployment_id: str) -> None:
        """Its times to first token and usual time go with it (an id added back starts anew)."""
        if self._first_token is not None:
            self._first_token.forget(deployment_id)
        if self._slow is not None:
            self._slow.forget(deployment_id)
        self._slow_opened.discard(deployment_id)

    @property
    def deployments(self) -> dict[str, Deployment]:
        """The deployments known from configuration or traffic, by id."""
        return self._registry.snapshot()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task in the running event loop. Idempotent.

        With ``redis_url`` it returns once the first sync with Redis is done
        (or failed), so a new replica begins with the fleet's view.
        """
        self._ensure_background()
        await asyncio.sleep(0)
        await self._first_sync()

    async def _first_sync(self) -> None:
        """Wait, briefly, for the first sync with Redis (done or failed); no-op without it."""
        if self._share is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * CONNECT_TIMEOUT_SEC):
                    await self._share.wait_synced()

    async def aclose(self) -> None:
        """Stop the probe loop and close its HTTP client; safe to call any time."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def ensure_started(self) -> None:
        """Start the background task in the running event loop unless it runs already.

        The synchronous form of :meth:`start` (it does not wait for Redis), for
        code that runs inside a loop but cannot await; never raises (an error is
        logged once and counted in ``internal_errors``).
        """
        self._guard("background", self._ensure_background, default=None)

    def _ensure_background(self) -> None:
        """Start (or restart, in a new event loop) the background task; no-op when unneeded."""
        if self._probe_interval is None and self._share is None:
            return
        task = self._task
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        if self._share is not None:
            self._share.arm()
        self._task = loop.create_task(self._background(), name="litellm-circuit-breaker")

    async def _background(self) -> None:
        if self._source is not None:
            await self._wait_for_source()
        # A task group, not gather: stopped (or with one job ended), it waits for
        # every job before the probes' client closes; gather returns at the first
        # cancelled job, and a probe still running then met a closed client.
        async with self._prober.session(), asyncio.TaskGroup() as jobs:
            if self._share is not None:
                jobs.create_task(self._share.run(), name="litellm-circuit-breaker-share")
            if self._probe_interval is not None:
                jobs.create_task(self._prober.run(), name="litellm-circuit-breaker-probe")
            if self._stalls is not None:
                jobs.create_task(self._stalls.run(), name="litellm-circuit-breaker-stalls")
            if self._trials is not None:
                jobs.create_task(self._trials.run(), name="litellm-circuit-breaker-trials")

    # -- probing ---------------------------------------------------------------

    async def probe_once(self) -> dict[str, ProbeResult]:
        """Probe every known endpoint once now; results by deployment id.

        Deployments without a cheap probe are absent (see :meth:`status`).
        """
        return await self._prober.probe_once()

    def _set_probe_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        # The registry is built before the prober it feeds: looked up on each change.
        self._prober.set_targets(targets)

    def _tell_probe_listeners(self, result: ProbeResult) -> None:
        for listener in tuple(self.probe_listeners):
            self._guard("probe_listener", listener, result, default=None)

    async def _wait_for_source(self) -> None:
        """Poll the deployment source until it has a model list, for a while at most.

        A source may come up after the breaker (the proxy builds its Router
        after importing its callbacks) and signals nothing when it does.
        """
        deadline = asyncio.get_running_loop().time() + SOURCE_WAIT_SEC
        while not self._guard("refresh", self._refresh_from_source, default=False):
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(SOURCE_POLL_SEC)

    def refresh_deployments(self) -> bool:
        """Re-read the ``deployment_source`` now (it is re-read before every probe round).

        The probed set becomes the source's deployments; False when the breaker
        has no source or the source has no model list yet.
        """
        if self._source is None:
            return False
        return self._refresh_from_source()

    def _refresh_from_source(self) -> bool:
        assert self._source is not None  # noqa: S101 - only called with a source
        try:
            entries = self._source()
            if entries is None:
                return False
            model_list = _model_list_of("deployment_source()", entries)
            for deployment_id in self._registry.sync_source(model_list):
                self.remove_deployment(deployment_id)
        except _routers.SurfaceUnknownError as exc:
            self._surface_unknown(exc)
        return True

    def _before_tick(self) -> None:
        """Called before every probe round: the source and bound Routers are re-read.

        A deployment that came from a bound Router and is in none of them any
        more is forgotten, with its breaker.
        """
        if self._source is not None:
            self._guard("refresh", self._refresh_from_source, default=False)
        for deployment_id in self._registry.refresh_bound():
            self.remove_deployment(deployment_id)

    # -- status ----------------------------------------------------------------

    def describe(self, deployment_id: str) -> str:
        """A deployment as log lines show it: its id, then its model group, model and host
        (``3f2a... (gpt-4o: openai/gpt-4o at api.openai.com)``); never a key."""
        name = self._name_of(deployment_id)
        return f"{deployment_id} ({name})" if name else deployment_id

    def _name_of(self, deployment_id: str) -> str | None:
        deployment = self._registry.get(deployment_id)
        if deployment is not None:
            return deployment.name
        # A direct SDK breaker's id already names its provider and model.
        endpoint = self._sdk.endpoint(deployment_id)
        host = public_url(endpoint, host_only=True) if endpoint else ""
        return f"at {host}" if host else None

    def _model_at(self, deployment_id: str) -> tuple[str, str]:
        """Model and host of a configured deployment, for shared records ("" if unknown)."""
        deployment = self._registry.get(deployment_id)
        if deployment is None:
            return "", ""
        return deployment.model, deployment.host or ""

    def status(self) -> list[DeploymentStatus]:
        """Every known deployment's breaker, without secrets, sorted by group and id."""
        now = self.cache.clock()
        snapshot = self.cache.snapshot()
        deployments = self._registry.snapshot()
        unprobed = self._registry.unprobed()
        rows = []
        for deployment_id in sorted(set(deployments) | set(snapshot)):
            state = snapshot.get(deployment_id)
            deployment = deployments.get(deployment_id)
            if deployment is None:
                probe = "passive"
            elif deployment.probe is not None and deployment.probe.key in unprobed:
                probe = "unprobed"
            else:
                probe = deployment.probe.kind if deployment.probe else "passive"
            rows.append(
                DeploymentStatus(
                    deployment=deployment_id,
                    model_group=deployment.model_group if deployment else None,
                    endpoint=deployment.display_base
                    if deployment
                    else self._sdk.endpoint(deployment_id),
                    probe=probe,
                    state=state.breaker_state(now) if state else BreakerState.CLOSED,
                    consecutive_failures=state.consecutive_failures if state else 0,
                    last_error=self._redact(state.last_error) or None if state else None,
                    retry_in=self.cache.retry_in(deployment_id),
                    name=self._name_of(deployment_id),
                )
            )
        rows.sort(key=lambda r: (r.model_group or "", r.deployment))
        return rows

    # -- guard -----------------------------------------------------------------

    def _bump(self, counter: CounterName, n: int = 1) -> None:
        with self._lock:
            self.counters.bump(counter, n)

    def _internal_error(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            self.internal_errors[kind] += 1
            first = kind not in self._logged_errors
            self._logged_errors.add(kind)
        if not first:
            return
        logger.error(
            "circuit breaker: internal error in %s ignored, the request goes on as if the "
            "plugin were absent (logged once per kind; see internal_errors): %s: %s",
            kind,
            type(exc).__name__,
            self._redact(str(exc)),
        )

    def _guard(self, kind: str, fn: Callable[..., _T], *args: Any, default: _T) -> _T:
        try:
            return fn(*args)
        except CircuitBreakerError:
            raise
        except Exception as exc:  # noqa: BLE001 - never fail a request for our own bug
            self._internal_error(kind, exc)
            return default

    # -- decisions: async Router -----------------------------------------------

    def _filter_hook(
        self, group: str, deployments: list[Any], request_kwargs: Mapping[str, Any] | None
    ) -> list[Any]:
        """What :class:`_OpenDeploymentFilter` runs: drop open deployments, guarded."""
        self._guard("background", self._ensure_background, default=None)
        return self._guard(
            "filter", self._filter, group, deployments, request_kwargs or {}, default=deployments
        )

    def _suspects(self) -> frozenset[str]:
        """Closed deployments holding a call unanswered past their usual time (hang watch)."""
        # Read before the watch exists: _engage_filter runs from the first listener on.
        stalls: StallWatch | None = getattr(self, "_stalls", None)
        return frozenset() if stalls is None else stalls.suspects

    def _filter(
        self, group: str, deployments: list[Any], request_kwargs: Mapping[str, Any]
    ) -> list[Any]:
        unhealthy = self.cache.unhealthy_ids()
        suspects = self._suspects()
        if suspects:
            deployments = self._avoid_suspects(deployments, suspects, unhealthy)
        if not unhealthy:
            return deployments
        kept: list[Any] = []
        refused: list[str] = []
        for entry in deployments:
            deployment_id = deployment_id_of(entry)
            if deployment_id is None or deployment_id not in unhealthy:
                kept.append(entry)
            elif self.cache.try_acquire(deployment_id):
                # Half-open with the permit free: this request is the trial.
                self._hold_trial(deployment_id, trace_id_of(request_kwargs))
                self._bump("trials")
                return [entry]
            else:
                refused.append(deployment_id)
        if kept or not refused:
            if refused:
                self._bump("skipped", len(refused))
            return kept
        chosen = self._all_open(group, refused, request_kwargs)
        return [entry for entry in deployments if deployment_id_of(entry) == chosen]

    def _avoid_suspects(
        self, deployments: list[Any], suspects: frozenset[str], unhealthy: frozenset[str]
    ) -> list[Any]:
        """Keep new calls off a deployment that has left a call hanging, if another can serve.

        A sibling that is neither suspect nor open takes the call; failing that,
        nothing changes here and the breaker's own rules decide. Never the
        fallback group, on suspicion alone: that may be another model, and a
        hang its stall probe confirms opens the breaker anyway.
        """
        kept = [e for e in deployments if deployment_id_of(e) not in suspects]
        if len(kept) == len(deployments):
            return deployments
        if any(deployment_id_of(e) not in unhealthy for e in kept):
            self._bump("skipped", len(deployments) - len(kept))
            return kept
        return deployments

    def _all_open(self, group: str, ids: list[str], request_kwargs: Mapping[str, Any]) -> str:
        """Every deployment of ``group`` is open: the fallback, or ``when_all_open``.

        Returns the deployment to fail open to, or raises :class:`AllDeploymentsOpenError`.
        """
        waits = {deployment_id: self.cache.retry_in(deployment_id) for deployment_id in ids}
        soonest = min(ids, key=waits.__getitem__)
        if self._has_fallback(group, ids[0], request_kwargs):
            # Raised, not returned empty: an empty list costs a single-deployment
            # group seconds of retry back-off before the fallback runs.
            self._bump("fallback")
            self._bump("skipped", len(ids))
            raise AllDeploymentsOpenError(group, ids, waits[soonest])
        if self.when_all_open == "fail_open":
            self._bump("fail_open")
            return soonest
        self._bump("fail_fast")
        self._bump("skipped", len(ids))
        raise AllDeploymentsOpenError(group, ids, waits[soonest])

    def _has_fallback(
        self, group: str, deployment_id: str, request_kwargs: Mapping[str, Any]
    ) -> bool:
        """Will this request fall back to a group it has not tried yet?

        The request's own ``fallbacks=``, else the Router's. A group already
        tried (the request's original group, or this one) does not count: a
        fallback hop to a group that is all open too, or mutual fallbacks,
        must fail open rather than run out of groups. If the Router cannot be
        told apart from others serving the same id, every one of them must have
        one: a wrong "yes" would fail a request that ``fail_open`` would have
        let through.
        """
        tried = {group, *routing_of(request_kwargs).tried_groups}
        own = routing_of(request_kwargs).fallbacks
        if own is not None:
            return any(target not in tried for target in own)
        try:
            routers = _routers.serving_routers(deployment_id, self._registry.routers())
            original = routing_of(request_kwargs).tried_groups
            return bool(routers) and all(
                any(t not in tried for t in _fallbacks_left(r, group, original)) for r in routers
            )
        except _routers.SurfaceUnknownError as exc:
            self._surface_unknown(exc)
            return False

    def _siblings(self, group: str, deployment_id: str) -> list[str]:
        """The other deployment ids of ``group`` in the Router(s) serving this request."""
        try:
            routers = _routers.serving_routers(deployment_id, self._registry.routers())
            ids: dict[str, None] = {}
            for router in routers:
                for entry in _routers.group_entries(router, group):
                    found = deployment_id_of(entry)
                    if found is not None and found != deployment_id:
                        ids[found] = None
            return list(ids)
        except _routers.SurfaceUnknownError as exc:
            self._surface_unknown(exc)
            return []

    def _surface_unknown(self, exc: _routers.SurfaceUnknownError) -> None:
        """This LiteLLM hides something we need: say so once, count every time."""
        with self._lock:
            self.counters.litellm_surface_unknown += 1
            first = exc.missing not in self._surfaces_reported
            self._surfaces_reported.add(exc.missing)
        if first:
            logger.warning(
                "circuit breaker: on litellm %s %s (logged once; counted as "
                "counters['litellm_surface_unknown'])",
                _litellm_version(),
                exc,
            )

    # -- the filter, engaged only while needed ---------------------------------

    def _on_state_change(self, event: Any) -> None:
        self._engage_filter()
        if self._trials is not None and event.new is BreakerState.CLOSED:
            self._trials.forget_refusal(event.deployment)

    def _filter_engaged(self) -> bool:
        import litellm  # noqa: PLC0415 - already loaded

        return self._open_filter in litellm.callbacks

    def _engage_filter(self) -> None:
        """Put the filter in ``litellm.callbacks`` while a breaker is not closed, else take it out.

        Only for a breaker that is itself in ``litellm.callbacks``: a breaker
        LiteLLM does not call must not steer its Routers. Under a lock, and
        decided from the state at that moment, so the last change always wins.
        """
        import litellm  # noqa: PLC0415 - already loaded

        with self._engage_lock:
            callbacks = litellm.callbacks
            want = (self.cache.any_unhealthy() or bool(self._suspects())) and self in callbacks
            present = self._open_filter in callbacks
            if want and not present:
                callbacks.append(self._open_filter)
            elif not want:
                # Out of the lists LiteLLM copied it into too (even after
                # litellm.callbacks itself was replaced), or every later call would
                # still run its (empty) log hooks.
                _routers.remove_callback(self._open_filter)

    # -- which Routers, which deployments --------------------------------------

    def attach(self, router: Any) -> None:
        """Bind this breaker to a Router it serves (the robust path; discovery is the fallback).

        Its deployments are learned (and probed) at once and re-read before
        every probe round, and questions about fallbacks and siblings are asked
        of the bound Routers only. On LiteLLM 1.110 the Routers of a process
        cannot always be told apart (hooks get copies of deployment dicts):
        binding removes the guesswork. Also puts the breaker in
        ``litellm.callbacks`` if it is not there yet. Routers are held weakly.
        """
        import litellm  # noqa: PLC0415 - the module is loaded by our own import anyway

        if not _is_router(router):
            raise ConfigurationError("router", router, "a litellm.Router")
        self._registry.bind(router)
        if self not in litellm.callbacks:
            litellm.callbacks.append(self)
        self._engage_filter()

    def _bind(self, routers: object) -> None:
        """``routers=``: checked whole before any is bound."""
        if isinstance(routers, str | bytes) or not isinstance(routers, Sequence):
            raise ConfigurationError("routers", routers, "a list of litellm.Router")
        for router in routers:
            if not _is_router(router):
                raise ConfigurationError("routers", router, "a litellm.Router")
        for router in routers:
            self._registry.bind(router)

    def detach(self, router: Any) -> bool:
        """Unbind a Router bound with :meth:`attach`; False if it was not bound."""
        return self._registry.unbind(router)

    @property
    def routers(self) -> list[Any]:
        """The Routers bound with :meth:`attach` (or ``routers=``) that are still alive."""
        return self._registry.routers()

    # -- decisions: sync Router --------------------------------------------------

    def pre_call_check(self, deployment: dict[str, Any]) -> dict[str, Any] | None:
        """Sync Router: refuse an open deployment so the Router moves on at once."""
        self._guard("pre_call_check", self._sync_check, deployment, default=None)
        return None

    def _sync_check(self, deployment: Mapping[str, Any]) -> None:
        deployment_id = deployment_id_of(deployment)
        if deployment_id is None:
            return
        group = model_group_of(deployment) or ""
        if deployment_id not in self._deployments:
            self._registry.learn_group(group, deployment_id, deployment)
        if deployment_id not in self.cache.unhealthy_ids():
            return
        if self.cache.try_acquire(deployment_id):
            self._bump("trials")
            self._hold_trial(deployment_id, None)
            return
        siblings = self._siblings(group, deployment_id)
        if any(self.cache.breaker_state(s) is not BreakerState.OPEN for s in siblings):
            self._bump("skipped")
            raise _SkipDeploymentError(
                deployment_id, self.cache.retry_in(deployment_id), len(siblings)
            )
        self._all_open(group, [deployment_id, *siblings], {})

    # -- decisions: direct SDK calls ----------------------------------------------

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        """Every attempt: learn its deployment; refuse an open endpoint of a direct SDK call."""
        if self._probe_interval is not None or self._share is not None:
            task = self._task  # alive in this loop: nothing to start (the common case)
            if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
                self._guard("background", self._ensure_background, default=None)
        # The hot path, spelled out in the hook because every call costs here: a
        # Router attempt on a known deployment while every breaker is closed has
        # nothing to decide (attempt_of would read the same id).
        try:
            model_info = kwargs.get(MODEL_INFO) if type(kwargs) is dict else None
            if type(model_info) is dict:
                deployment_id = model_info.get(ID)
                if (
                    type(deployment_id) is str
                    and deployment_id in self._deployments
                    and not self.cache.unhealthy_hint
                ):
                    stream = kwargs.get(STREAM)
                    stalls = self._stalls
                    if stalls is not None:
                        stalls.track(
                            kwargs.get(CALL_ID),
                            deployment_id,
                            stream,
                            kwargs.get(LOGGING_OBJ) if stream else None,
                        )
                    if stream is True and self._first_token is not None:
                        return self._first_token_deadline(kwargs, deployment_id)
                    return None
        except Exception as exc:  # noqa: BLE001 - never fail a request for our own bug
            self._internal_error("pre_call_deployment", exc)
            return None
        self._guard("pre_call_deployment", self._sdk_check, kwargs, default=None)
        if kwargs.get(STREAM) is True and self._first_token is not None:
            attempt = attempt_of(kwargs)
            if attempt.via_router and attempt.breaker_id and not attempt.is_health_check:
                return self._first_token_deadline(kwargs, attempt.breaker_id)
        return None

    def _first_token_deadline(
        self, kwargs: dict[str, Any], deployment_id: str
    ) -> dict[str, Any] | None:
        """A streamed Router attempt under a first-token deadline: its kwargs with it, or None.

        The deadline becomes the attempt's timeout, so a stream silent that long
        fails inside the Router's attempt and is retried or falls back at once.
        It never lengthens the caller's own timeout. A learned deadline applies
        only where the Router has somewhere else to go (a sibling or a fallback
        group): cutting the one deployment there is would fail a request that
        waiting might have answered. A fixed one applies everywhere.
        """
        deadlines = self._first_token
        if deadlines is None:
            return None
        try:
            seconds = deadlines.deadline(deployment_id)
            if seconds is None:
                return None
            trace = kwargs.get("litellm_trace_id")
            if type(trace) is str and (missed := self._misses.get(trace)):
                seconds *= 2.0 ** min(missed, 10)
            # 1.110's Router hands a stream its stream_timeout apart from its timeout.
            given = kwargs.get("stream_timeout")
            current = read_timeout_of(kwargs.get("timeout") if given is None else given)
            if current is None or current <= seconds:
                return None  # the caller's own timeout is as short, or unreadable
            if deadlines.setting == "auto" and not self._can_move_on(deployment_id):
                return None
            call_id = kwargs.get(CALL_ID)
            if type(call_id) is str:
                deadlines.applied(call_id, deployment_id, seconds)
            self._bump("first_token_deadlines")
            shortened = {"timeout": seconds}
            if given is not None:
                shortened["stream_timeout"] = seconds
            return {**kwargs, **shortened}
        except Exception as exc:  # noqa: BLE001 - never fail a request for our own bug
            self._internal_error("first_token", exc)
            return None

    def _can_move_on(self, deployment_id: str) -> bool:
        """Whether the Router serving this attempt has a sibling that is not open, or a
        fallback group, for ``deployment_id`` (read each time: Routers change)."""
        group = self._registry.group_of(deployment_id) or ""
        siblings = self._siblings(group, deployment_id)
        if any(self.cache.breaker_state(s) is not BreakerState.OPEN for s in siblings):
            return True
        return self._has_fallback(group, deployment_id, {})

    def _sdk_check(self, kwargs: Mapping[str, Any]) -> None:
        attempt = attempt_of(kwargs)
        if attempt.breaker_id is None or attempt.is_health_check:
            return  # the proxy's own health checks are never refused, nor counted
        if attempt.is_fallback_wrapper:
            # The outer call of an SDK ``fallbacks=`` loop: refusing it would skip
            # the loop, refusing each inner attempt moves it on. Its queued events
            # come under its call id, without the list: remember the id.
            self._ledger.mark_wrapper(attempt.call_id)
            return
        if attempt.via_router:
            if attempt.breaker_id not in self._deployments:
                self._registry.learn_group(attempt.model_group or "", attempt.breaker_id)
            if self.cache.unhealthy_ids() and not self._filter_engaged():
                # The callback list was replaced under us, or the breaker opened
                # before it joined it: engage the filter for the next attempts, and
                # decide this unfiltered one here, as the sync Router's check does.
                self._engage_filter()
                self._sync_check(
                    {"model_name": attempt.model_group, MODEL_INFO: {ID: attempt.breaker_id}}
                )
        else:
            self._learn_secrets(kwargs)
            half_open = attempt.breaker_id in self.cache.unhealthy_ids()
            if not self.cache.try_acquire(attempt.breaker_id):
                self._bump("sdk_refused")
                raise CircuitOpenError(attempt.breaker_id, self.cache.retry_in(attempt.breaker_id))
            if half_open:
                self._bump("trials")
                self._hold_trial(attempt.breaker_id, attempt.trace_id)
        if self._stalls is not None:
            stream = kwargs.get(STREAM)
            self._stalls.track(
                attempt.call_id,
                attempt.breaker_id,
                stream,
                kwargs.get(LOGGING_OBJ) if stream else None,
            )

    # -- evidence ------------------------------------------------------------------

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        """Inline: the attempt succeeded."""
        # The hot path, spelled out in the hook: a Router attempt succeeded on a
        # closed breaker with no failure counted, so there is nothing to count
        # (its queued copy is dropped as a non-stream event); end its stall watch.
        try:
            model_info = request_data.get(MODEL_INFO) if type(request_data) is dict else None
            if type(model_info) is dict:
                deployment_id = model_info.get(ID)
                if type(deployment_id) is str and self.cache.touch_if_settled(deployment_id):
                    stalls = self._stalls
                    if stalls is not None:
                        call_id = request_data.get(CALL_ID)
                        key = (call_id, deployment_id) if type(call_id) is str else None
                        stalls.answered(key, deployment_id, ends=True)
                    return None
        except Exception as exc:  # noqa: BLE001 - never fail a request for our own bug
            self._internal_error("success", exc)
            return None
        self._guard("success", self._inline_success, request_data, default=None)
        return None

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, Any],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        """Inline: the attempt failed."""
        self._guard(
            "failure",
            self._inline_failure,
            request_data,
            exception,
            default=None,
        )

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Queued: the end of a finished stream (every other success was reported inline).

        On both supported LiteLLM versions the inline success hook fires for
        every async call except streams, so the queued success of a non-stream
        call is a copy, however late it comes: dropped unparsed, it can never
        close a breaker that opened since.
        """
        if type(kwargs) is dict and not kwargs.get(STREAM):
            if self._slow is not None and self._stalls is None:
                # Its time is evidence all the same; the hang watch, when on, has
                # measured it already (on the hot path's own clock, for less).
                self._guard("slow", self._timed_call, kwargs, start_time, end_time, default=None)
            return
        self._guard("success", self._logged_success, kwargs, default=None)

    def _timed_call(self, kwargs: Mapping[str, Any], start_time: Any, end_time: Any) -> None:
        """A call that was not streamed took ``end_time - start_time``: is it slow?

        Every answered call comes here, so the deployment id is read inline (as
        the hot-path hooks do): a Router attempt on a known deployment. Direct
        SDK calls and the proxy's own health checks carry no ``model_info`` id.
        """
        params = kwargs.get("litellm_params")
        model_info = params.get(MODEL_INFO) if type(params) is dict else None
        deployment_id = model_info.get(ID) if type(model_info) is dict else None
        if type(deployment_id) is str and deployment_id in self._deployments:
            try:
                seconds = (end_time - start_time).total_seconds()
            except (TypeError, AttributeError):
                return  # not datetimes: nothing measured
            self._judge_speed(deployment_id, "call", seconds)

    def _began_before_opening(self, attempt: Attempt, kwargs: Mapping[str, Any]) -> bool:
        """A success of a call in flight when its breaker opened: it proves nothing now.

        Calls already out when a deployment failed finish one by one; each success
        used to close the breaker and the next failures reopened it (flapping, and
        more calls than the threshold). Only on the slow path: a settled breaker's
        success never gets here."""
        deployment_id = attempt.breaker_id
        if deployment_id is None:
            return False
        began = began_at(kwargs)
        if began is None or not self.cache.opened_after(deployment_id, began):
            return False
        self._bump("stale_successes")
        return True

    def _opened_for_slowness(self, attempt: Attempt) -> bool:
        """Whether the slow-call rule holds this deployment open: a success then proves
        nothing (slow calls succeed) until its half-open trial, which decides."""
        slow_opened = self._slow_opened
        deployment_id = attempt.breaker_id
        if not slow_opened or deployment_id not in slow_opened:
            return False
        if self.cache.breaker_state(deployment_id) is BreakerState.OPEN:
            return True
        slow_opened.discard(deployment_id)  # half-open (the trial) or closed: as usual
        return False

    def _call_answered(self, deployment_id: str, seconds: float) -> None:
        """The hang watch timed a call that was not streamed to its answer."""
        self._guard("slow", self._judge_speed, deployment_id, "call", seconds, default=None)

    def _judge_speed(self, deployment_id: str, kind: CallKind, seconds: float) -> None:
        """Collect one answered call's time; judge a batch once one is due."""
        slow = self._slow
        if slow is not None and slow.add(deployment_id, kind, seconds):
            self._judge_slow()

    def _judge_slow(self) -> None:
        """Open each closed breaker whose deployment is now mostly far slower than usual."""
        slow = self._slow
        if slow is None:
            return
        for deployment_id, reason in slow.judge():
            # A slow answer beats none: only where a sibling or fallback can serve.
            if self.cache.breaker_state(deployment_id) is BreakerState.CLOSED and self._guard(
                "slow", self._can_move_on, deployment_id, default=False
            ):
                self._bump("slow_openings")
                # Its usual time is learned anew once it closes: if slower is its new
                # normal, it is opened once for it, not every window.
                slow.forget(deployment_id)
                self._slow_opened.add(deployment_id)
                self.cache.mark_unhealthy(deployment_id, reason, open_now=True)

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Queued: covers streams broken mid-way; de-duplicated against the inline hook.

        The inline failure hook fires for every failed async attempt that did
        not get as far as streaming, so a non-stream call's queued failure is a
        copy: dropped, however late.
        """
        if type(kwargs) is dict and not kwargs.get(STREAM):
            return
        self._guard(
            "failure",
            self._logged_failure,
            kwargs,
            exception_of(kwargs),
            default=None,
        )

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Sync calls, on LiteLLM's logging thread."""
        self._guard("success", self._logged_success, kwargs, default=None)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Sync calls, inline before the caller sees the error."""
        self._guard(
            "failure",
            self._logged_failure,
            kwargs,
            exception_of(kwargs),
            default=None,
        )

    def _hold_trial(self, deployment_id: str, trace_id: str | None) -> None:
        self._ledger.hold_trial(deployment_id, trace_id)

    def _on_success(self, kwargs: Mapping[str, Any], *, inline: bool) -> None:
        attempt = attempt_of(kwargs)
        self._ended(attempt, answered=True, inline=inline)
        counts = self._should_count(attempt, inline=inline, success=True)
        if counts and self._began_before_opening(attempt, kwargs):
            counts = False
        if counts and self._tracked(attempt) and not self._opened_for_slowness(attempt):
            assert attempt.breaker_id is not None  # noqa: S101 - _should_count checked it
            self._ledger.end_trial(attempt.breaker_id, any_trace=True)
            self.cache.mark_healthy(attempt.breaker_id)
        if attempt.breaker_id is not None and kwargs.get(STREAM):
            # After the success counted: a stream far slower than usual may open it.
            self._stream_answered(attempt, attempt.breaker_id, kwargs, counts=counts)

    def _on_failure(self, kwargs: Mapping[str, Any], exception: object, *, inline: bool) -> None:
        if not isinstance(exception, BaseException):
            return
        attempt = attempt_of(kwargs)
        self._learn_secrets(kwargs)  # before its error is read: it may echo the key
        verdict = self._policy.classify(
            exception, self._redact, chosen=self._caller_choices(attempt, kwargs)
        )
        deadlines = self._first_token
        if deadlines is not None and attempt.breaker_id is not None and kwargs.get(STREAM):
            seconds = deadlines.ended(attempt.call_id, attempt.breaker_id)
            if seconds is not None and verdict.timed_out and not started_streaming(kwargs):
                self._bump("first_token_timeouts")
                verdict = replace(verdict, reason=f"no first token within {seconds:g}s")
                trace = attempt.trace_id
                if trace is not None:
                    misses = self._misses
                    if trace not in misses and len(misses) >= MISSES_MAX:
                        misses.pop(next(iter(misses)))  # the oldest request's
                    misses[trace] = misses.get(trace, 0) + 1
        # A caller's 400 is still an answer; a timeout (even the caller's own) or a
        # dropped connection is not.
        answered = verdict.verdict is Verdict.CALLER and not verdict.timed_out
        self._ended(attempt, answered=answered, inline=inline)
        if not self._should_count(attempt, inline=inline):
            return
        assert attempt.breaker_id is not None  # noqa: S101 - _should_count checked it
        if verdict.verdict is Verdict.CALLER and verdict.timed_out and self._stalls is not None:
            # The caller's own short timeout: no evidence, but is the endpoint silent?
            self._stalls.probe_for_timeout(attempt.breaker_id, timeout_of(kwargs) or 0.0)
        # Only a failure that counts makes a breaker (and so takes room among the SDK
        # ones); a refusal of ours or a caller's 400 must not push a real one out.
        if verdict.counts and self._tracked(attempt):
            self._ledger.end_trial(attempt.breaker_id, any_trace=True)
            self.cache.mark_unhealthy(
                attempt.breaker_id, verdict.reason, retry_after=verdict.retry_after
            )
        elif verdict.verdict in (Verdict.CALLER, Verdict.CANCELLED) and self._ledger.end_trial(
            attempt.breaker_id, attempt.trace_id, any_trace=False
        ):
            # The trial ended without a verdict (a caller's 400): hand the permit back.
            self.cache.release(attempt.breaker_id)

    def _stream_answered(
        self, attempt: Attempt, deployment_id: str, kwargs: Mapping[str, Any], *, counts: bool
    ) -> None:
        """A stream ended well: its time to first token feeds its deadline and its speed
        (once per attempt: ``counts``, its first report)."""
        deadlines = self._first_token
        if deadlines is not None:
            deadlines.ended(attempt.call_id, deployment_id)
        if not counts or not attempt.via_router or attempt.is_health_check:
            return
        seconds = first_token_after(kwargs)
        if seconds is not None:
            if deadlines is not None:
                deadlines.observe(deployment_id, seconds)
            self._judge_speed(deployment_id, "stream", seconds)

    def _learn_secrets(self, kwargs: Mapping[str, Any]) -> None:
        """Remember the key and api_base password a call brought, so no output shows them."""
        for secret in secrets_of(kwargs):
            self._redact.add_seen(secret)

    def _tracked(self, attempt: Attempt) -> bool:
        """A Router deployment, or a direct SDK call's breaker within the bound."""
        if attempt.via_router or attempt.breaker_id is None:
            return True
        return self._sdk.admit(attempt.breaker_id, attempt.endpoint)

    @property
    def sdk_breakers(self) -> SdkBreakers:
        """The direct SDK calls' breakers: how many, evicted, untracked (``max_sdk_breakers``)."""
        return self._sdk

    def _caller_choices(self, attempt: Attempt, kwargs: Mapping[str, Any]) -> CallerChoices:
        """What the failed attempt's request chose, beside what the operator configured."""
        deployment = self._registry.get(attempt.breaker_id) if attempt.breaker_id else None
        if deployment is None:
            return CallerChoices()  # a direct SDK call: the caller is the operator
        timeout = timeout_of(kwargs)
        stream = bool(kwargs.get(STREAM))
        configured = None
        if timeout is not None and not stream:
            # Only then can the timeout be the caller's: look up the deployment's own.
            configured = deployment.timeout or self._router_timeout(deployment.id)
        return CallerChoices(
            timeout=timeout,
            configured_timeout=configured,
            stream=stream,
            model_from_wildcard=deployment.wildcard and self._route_alive(deployment.id),
        )

    def _route_alive(self, deployment_id: str) -> bool:
        """A wildcard route answered lately: a call succeeded, or its probe passed, within
        the backoff window. Then a 404 for the model a request named is the caller's; a
        route answering nothing but 404s (a wrong api_base) still counts."""
        window = self.cache.unhealthy_backoff_sec
        probed = self._probe_ok.get(deployment_id)
        if probed is not None and self.cache.clock() - probed <= window:
            return True
        return self.cache.succeeded_within(deployment_id, window)

    def _router_timeout(self, deployment_id: str) -> float | None:
        """The serving Router's own timeout, else LiteLLM's default, for ``deployment_id``."""
        try:
            for router in _routers.serving_routers(deployment_id, self._registry.routers()):
                found = _routers.router_timeout(router)
                if found is not None:
                    return found
        except _routers.SurfaceUnknownError as exc:  # then LiteLLM's default is all we know
            self._surface_unknown(exc)
        import litellm  # noqa: PLC0415 - already loaded by the hook calling us

        return seconds_of(getattr(litellm, "request_timeout", None))

    # Named entry points instead of a partial built on every request.
    def _inline_success(self, kwargs: Mapping[str, Any]) -> None:
        self._on_success(kwargs, inline=True)

    def _inline_failure(self, kwargs: Mapping[str, Any], exception: object) -> None:
        self._on_failure(kwargs, exception, inline=True)

    def _logged_success(self, kwargs: Mapping[str, Any]) -> None:
        # Only streams and sync calls get here; the ledger drops their copies.
        self._on_success(kwargs, inline=False)

    def _logged_failure(self, kwargs: Mapping[str, Any], exception: object) -> None:
        self._on_failure(kwargs, exception, inline=False)

    def _ended(self, attempt: Attempt, *, answered: bool, inline: bool) -> None:
        """The attempt is no longer in flight; ``answered`` if its deployment spoke."""
        stalls = self._stalls
        if stalls is None or attempt.breaker_id is None or attempt.is_fallback_wrapper:
            return
        # The proxy's retries share a call id: a late queued event of an
        # attempt the inline hook already ended must not end the retry.
        key = (attempt.call_id, attempt.breaker_id) if attempt.call_id is not None else None
        ends = key is not None and (inline or not self._ledger.reported_inline(*key))
        # Only configured endpoints are ever stall-probed: remembering when each SDK
        # breaker last answered would be memory without a use, one entry per model.
        spoke = answered and attempt.via_router
        stalls.answered(key, attempt.breaker_id if spoke else None, ends=ends)

    # -- stalls: what the watch asks of the breaker ----------------------------------

    def _stall_target(self, breaker_id: str) -> ProbeTarget | None:
        """The endpoint to probe for a stalled call: configured ones, breaker closed."""
        deployment = self._registry.get(breaker_id)
        if deployment is None or deployment.probe is None:
            return None  # only endpoints from the configuration are ever probed
        if self.cache.breaker_state(breaker_id) is not BreakerState.CLOSED:
            return None
        return deployment.probe

    def _stalled(self, breaker_id: str, reason: str) -> None:
        self.cache.mark_unhealthy(breaker_id, reason)

    def _trial_passed(self, breaker_id: str) -> None:
        """A trial completion answered: one real call is the trial (a ping that answers
        while real calls fail must not close, or the breaker would flap)."""
        self.cache.mark_ping_passed(breaker_id)

    def _probe_passed(self, deployment_id: str) -> None:
        """A probe passed: an open breaker is confirmed by a trial completion where one
        can be sent, so no user's call is spent as the trial; else one call decides."""
        probe_ok = getattr(self, "_probe_ok", None)  # probes may report before it is built
        if probe_ok is not None:
            probe_ok[deployment_id] = self.cache.clock()
        trials = getattr(self, "_trials", None)
        if (
            trials is not None
            and trials.can_ping(deployment_id)
            and self.cache.want_ping(deployment_id)
        ):
            trials.wake()  # the ping goes now, not at the next turn
            return
        self.cache.mark_probe_passed(deployment_id)

    def _should_count(self, attempt: Attempt, *, inline: bool, success: bool = False) -> bool:
        """Count each attempt once, preferring the inline hook's report.

        Inline hooks fire once per attempt and always count. A queued log event
        counts only for an attempt no inline hook reported (streams, sync calls)
        and only once, however many copies of it arrive; an inline success is
        remembered by call id alone, so its queued copy is dropped unparsed.
        """
        if attempt.breaker_id is None or attempt.is_health_check or attempt.is_fallback_wrapper:
            return False
        return self._ledger.counts(
            attempt.call_id, attempt.breaker_id, inline=inline, success=success
        )


def _model_list_of(field: str, value: object) -> list[Mapping[str, Any]]:
    """``value`` as a model list, or a ConfigurationError naming ``field``.

    The bad value is shown only when it holds no mapping: a deployment's
    mapping may hold its key, so those are named by their type alone.
    """
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(field, _shown(value), "a list of LiteLLM deployments")
    entries = list(value)
    if not all(isinstance(entry, Mapping) for entry in entries):
        raise ConfigurationError(field, _shown(entries), "a list of LiteLLM deployments")
    for index, entry in enumerate(entries):
        group, params = entry.get("model_name"), entry.get("litellm_params")
        if not isinstance(group, str) or not group:
            raise ConfigurationError(f"{field}[{index}].model_name", _shown(group), "a group name")
        model = params.get("model") if isinstance(params, Mapping) else params
        if not isinstance(model, str) or not model:
            raise ConfigurationError(
                f"{field}[{index}].litellm_params.model", _shown(model), "a model string"
            )
    return entries


def _shown(value: object) -> object:
    """``value`` for an error message, or its type's name if it may hold a secret."""
    if isinstance(value, Mapping) or (
        isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value)
    ):
        return f"<{type(value).__name__}>"
    return value


def _check_objects(*, failure_policy: object, model_list: object) -> None:
    """The settings that are objects rather than values (BreakerConfig checks the rest)."""
    if failure_policy is not None and not isinstance(failure_policy, FailurePolicy):
        raise ConfigurationError("failure_policy", failure_policy, "a FailurePolicy")
    if model_list is not None:
        _model_list_of("model_list", model_list)


def _sharing(
    cache: ProviderHealthCache,
    number: int,
    config: BreakerConfig,
    *,
    group_of: Callable[[str], str | None],
    model_of: Callable[[str], tuple[str, str]],
    redact: Callable[[str | None], str],
    admit: Callable[[str], bool],
) -> RedisShare | None:
    """The Redis adapter the settings ask for, or None."""
    if config.redis_url is None:
        return None
    replica_name = config.replica_name
    if replica_name is None:
        replica_name = f"{socket.gethostname()}:{os.getpid()}"
        replica_name += f"#{number}" if number > 1 else ""
    return RedisShare(
        cache,
        url=config.redis_url,
        replica=replica_name.strip(),
        namespace=config.redis_namespace,
        state_ttl_sec=config.redis_state_ttl_sec,
        reconcile_sec=config.redis_reconcile_sec,
        group_of=group_of,
        model_of=model_of,
        redact=redact,
        admit=admit,
    )


def _fallbacks_left(router: Any, group: str, original: tuple[str, ...]) -> list[str]:
    """The groups a request in ``group`` may still fall back to: ``group``'s own fallbacks,
    and, on a hop, those after ``group`` in its original group's chain (A -> [B, C] at B: C)."""
    left = _routers.fallback_targets(router, group)
    for first in original:
        chain = _routers.fallback_targets(router, first)
        if group in chain:
            left = [*left, *chain[chain.index(group) + 1 :]]
    return left


def _litellm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("litellm")
    except PackageNotFoundError:  # pragma: no cover - litellm is a dependency
        return "(unknown version)"
