"""Probing the known endpoints: token-free list calls on a schedule, verdicts to the breakers.

:class:`EndpointProber` owns the probe loop (a :class:`HealthProbe`), the one
shared ``httpx.AsyncClient`` its probes use, and what one probe of one
endpoint means: a list call answered 2xx passes, 404/405 says the endpoint has
no cheap probe, silence or a 5xx fails, and an exception of our own is no
evidence at all. A verdict is applied to every deployment behind the endpoint.

What it needs of the breaker it is handed as callbacks: what to run before a
round, which deployments share an endpoint, how to claim probe leases (shared
state), where list-call facts, internal errors and results go. It knows
nothing of LiteLLM.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx

from ._cache import ProviderHealthCache
from ._config import DEFAULT_PROBE_INTERVAL_SEC
from ._endpoints import ProbeAnswer, ProbeError, ProbeTarget, run_http_probe
from ._probe import HealthProbe, ProbeFn, ProbeResult

__all__ = ["Claim", "EndpointProber"]

Claim = Callable[[Iterable[str], float], Awaitable[set[str]]]
"""Given the probe keys and a lease in seconds: the keys this replica probes this round."""

# A context variable, not an attribute: a client belongs to the task (and event
# loop) that opened it, so a probe_once awaited elsewhere opens its own rather
# than borrow one that may close under it or live on another loop.
_client: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
    "litellm_circuit_breaker_probe_client", default=None
)


class NoteListCall(Protocol):
    """Records whether the endpoint behind ``probe_key`` has its list call."""

    def __call__(self, probe_key: str, *, exists: bool) -> None: ...


class _EndpointProbe(HealthProbe):
    """The loop, narrowed: ``before_round`` first, leased keys only, verdicts to ``apply``."""

    def __init__(
        self,
        cache: ProviderHealthCache,
        *,
        before_round: Callable[[], None],
        apply: Callable[[ProbeResult], None],
        claim: Claim | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(cache, {}, on_ok="half_open", **kwargs)
        self._before_round = before_round
        self._apply_result = apply
        self._claim = claim

    async def tick_once(self, only: Iterable[str] | None = None) -> dict[str, ProbeResult]:
        self._before_round()
        return await super().tick_once(only)

    async def _scheduled_tick(self) -> dict[str, ProbeResult]:
        # With shared state, each endpoint is probed by the replica holding its
        # lease; the others learn the verdict from the transitions it causes.
        self._before_round()
        if self._claim is None:
            return await super().tick_once()
        lease = 1.5 * self.interval + self.timeout + self.jitter
        return await super().tick_once(await self._claim(self.provider_ids, lease))

    def _apply(self, result: ProbeResult) -> None:
        self._apply_result(result)


class EndpointProber:
    """The probe loop, its HTTP client and the per-endpoint verdicts, on callbacks.

    Settings: ``interval`` (None: no background loop; :meth:`probe_once` still
    works), ``timeout`` (set on the client too), ``concurrency`` (probes and
    sockets in flight), ``jitter``. Callbacks: ``before_round()`` runs before
    every round; ``members(probe_key)`` names the deployments behind an
    endpoint; ``claim`` (shared state only) narrows a scheduled round to the
    leased endpoints, after ``ready()``; ``note_list_call(probe_key, exists=)``
    records whether an endpoint has its list call; ``on_error(kind, exc)``
    reports an internal error; ``on_result(result)`` hears every endpoint's
    result once the cache has it; ``redact`` masks secrets in failure reasons.
    """

    def __init__(
        self,
        cache: ProviderHealthCache,
        *,
        interval: float | None,
        timeout: float,
        concurrency: int,
        jitter: float,
        before_round: Callable[[], None],
        members: Callable[[str], Iterable[str]],
        note_list_call: NoteListCall,
        on_error: Callable[[str, BaseException], None],
        on_result: Callable[[ProbeResult], None],
        redact: Callable[[str | None], str],
        claim: Claim | None = None,
        ready: Callable[[], Awaitable[None]] | None = None,
        on_pass: Callable[[str], None] | None = None,
    ) -> None:
        self._cache = cache
        self._on_pass = on_pass or cache.mark_probe_passed
        self._interval = interval
        self._timeout = timeout
        self._concurrency = concurrency
        self._ssl: ssl.SSLContext | None = None
        self._denied_but_working: set[str] = set()
        """Probe keys whose list call answered 401/403 while calls with the key succeeded."""
        self._members = members
        self._note_list_call = note_list_call
        self._on_error = on_error
        self._on_result = on_result
        self._redact = redact
        self._ready = ready
        self._loop = _EndpointProbe(
            cache,
            before_round=before_round,
            apply=self.apply,
            claim=claim,
            interval=interval or DEFAULT_PROBE_INTERVAL_SEC,
            timeout=timeout,
            max_concurrency=concurrency,
            jitter=jitter,
            # The schedule sleeps in real time, so it is measured in real time;
            # an injected clock only drives the breakers' windows.
            clock=time.monotonic,
        )

    @property
    def interval(self) -> float | None:
        """Seconds between rounds, or None when there is no background loop."""
        return self._interval

    @property
    def timeout(self) -> float:
        """Seconds one probe may take."""
        return self._timeout

    def set_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Probe exactly these endpoints, by probe key, from the next round on."""
        probes: dict[str, ProbeFn] = {
            key: functools.partial(self.probe, target) for key, target in targets.items()
        }
        self._loop.set_probes(probes)

    # -- the client ----------------------------------------------------------------

    def _new_client(self) -> httpx.AsyncClient:
        # httpx builds a fresh SSL context per client (certifi's bundle, 100-200 ms
        # on this kind of machine): with ``asyncio.run`` per call, every call paid
        # it. One context per prober, made as httpx makes it, serves every loop.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return httpx.AsyncClient(
            verify=self._ssl,
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=self._concurrency,
                max_keepalive_connections=self._concurrency,
            ),
            follow_redirects=False,
        )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """A fresh client for the probes run in this context (and tasks it starts), closed after."""
        async with self._new_client() as client:
            token = _client.set(client)
            try:
                yield
            finally:
                _client.reset(token)

    # -- rounds --------------------------------------------------------------------

    async def run(self) -> None:
        """The loop, for the owner's background task: after ``ready()``, a round per interval."""
        if self._ready is not None:
            # Probe leases live in Redis: claim them after the first sync, so a
            # new replica does not probe what another already watches.
            await self._ready()
        await self._loop.run()

    async def probe_once(self) -> dict[str, ProbeResult]:
        """Probe every endpoint once now, applied like a round; results by deployment id."""
        if _client.get() is not None:
            results = await self._loop.tick_once()
        else:
            async with self.session():
                results = await self._loop.tick_once()
        out: dict[str, ProbeResult] = {}
        for key, result in results.items():
            for deployment_id in self._members(key):
                reason = self._redact(result.reason) if result.reason else None
                out[deployment_id] = ProbeResult(deployment_id, result.ok, reason, result.latency)
        return out

    # -- one endpoint ----------------------------------------------------------------

    async def probe(self, target: ProbeTarget) -> bool | None:
        """One list call: True up, None no verdict; raises when the endpoint is down or silent."""
        client = _client.get()
        if client is None:  # pragma: no cover - every caller opens a session
            raise RuntimeError("no probe client in this context")
        try:
            answer = await run_http_probe(client, target)
        except ProbeError as exc:
            if exc.status in (401, 403):
                # A list call refused: a restricted key (it may call, not list) and a
                # broken one look alike here. Calls with it that succeed make it "no
                # usable probe" (like a 404/405); until then no verdict, so an idle
                # replica never opens (and shares) a deployment its traffic would
                # find working. A broken key fails its calls, and those count.
                self._note_list_call(target.key, exists=not self._key_works_elsewhere(target.key))
                return None
            self._note_list_call(target.key, exists=True)
            raise  # the endpoint's answer: a failed probe
        except (httpx.HTTPError, OSError):
            self._note_list_call(target.key, exists=True)
            raise  # silence or a broken connection: a failed probe
        except Exception as exc:  # noqa: BLE001 - our bug is no evidence against the endpoint
            self._on_error("probe", exc)
            return None
        self._note_list_call(target.key, exists=answer is not ProbeAnswer.NO_LIST_CALL)
        return True if answer is ProbeAnswer.UP else None

    def _key_works_elsewhere(self, probe_key: str) -> bool:
        """Calls with this endpoint's key succeed (now, or once since it was learned)."""
        if probe_key in self._denied_but_working:
            return True
        window = self._cache.unhealthy_backoff_sec
        if any(self._cache.succeeded_within(d, window) for d in self._members(probe_key)):
            self._denied_but_working.add(probe_key)
            return True
        return False

    def apply(self, result: ProbeResult) -> None:
        """One endpoint's result, to every deployment behind it, then to ``on_result``."""
        for deployment_id in self._members(result.provider_id):
            if result.ok is None:
                continue
            if result.ok:
                self._on_pass(deployment_id)
            else:
                reason = f"probe: {self._redact(result.reason)}"
                self._cache.mark_probe_failed(deployment_id, reason)
        self._on_result(result)

    def apply_failure(self, probe_key: str, reason: str, latency: float) -> None:
        """A probe run outside the loop (a stall probe) failed: applied like a round's."""
        self.apply(
            ProbeResult(
                provider_id=probe_key, ok=False, reason=self._redact(reason), latency=latency
            )
        )
