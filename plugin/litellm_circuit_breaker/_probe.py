"""The background probe loop: ask every endpoint "are you up?" on a fixed schedule.

A probe is any ``async () -> bool | None`` callable: True is a pass, False a
failure, None "no verdict" (the endpoint has no cheap probe), and an exception
or a timeout a failure. Results feed a :class:`ProviderHealthCache`. The HTTP
probes that spend no tokens live in the LiteLLM adapter; this loop knows
nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from ._cache import Clock, ProviderHealthCache
from ._config import (
    DEFAULT_PROBE_CONCURRENCY,
    DEFAULT_PROBE_INTERVAL_SEC,
    DEFAULT_PROBE_TIMEOUT_SEC,
)
from ._config import check_number as _check_number
from ._errors import ConfigurationError
from ._tasks import cancel_and_wait, raise_if_cancelled

__all__ = [
    "DEFAULT_PROBE_CONCURRENCY",
    "DEFAULT_PROBE_INTERVAL_SEC",
    "DEFAULT_PROBE_TIMEOUT_SEC",
    "HealthProbe",
    "ProbeFn",
    "ProbeResult",
]


logger = logging.getLogger("litellm_circuit_breaker")

ProbeFn = Callable[[], Awaitable[bool | None]]
Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe said in one tick."""

    provider_id: str
    ok: bool | None
    """True passed, False failed, None gave no verdict (left the breaker alone)."""
    reason: str | None
    """Why it failed; None when it passed."""
    latency: float
    """Seconds the probe took (wall time, for display only)."""


class HealthProbe:
    """Runs every probe concurrently once per ``interval`` and feeds the cache.

    ``on_ok="close"`` treats a passing probe as proof of health
    (``mark_healthy``); ``"half_open"`` only lets one trial call through
    (``mark_probe_passed``), for deployments whose real traffic must have the
    last word. ``max_concurrency`` bounds the probes (and sockets) in flight;
    ``jitter`` adds up to that many seconds to each sleep so a fleet does not
    probe in lockstep. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        cache: ProviderHealthCache,
        probes: Mapping[str, ProbeFn],
        *,
        interval: float = DEFAULT_PROBE_INTERVAL_SEC,
        timeout: float = DEFAULT_PROBE_TIMEOUT_SEC,
        max_concurrency: int = DEFAULT_PROBE_CONCURRENCY,
        jitter: float = 0.0,
        on_ok: Literal["close", "half_open"] = "close",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._interval = _check_number("interval", interval, minimum=0.0, inclusive=False)
        self._timeout = _check_number("timeout", timeout, minimum=0.0, inclusive=False)
        if (
            not isinstance(max_concurrency, int)
            or isinstance(max_concurrency, bool)
            or max_concurrency < 1
        ):
            raise ConfigurationError("max_concurrency", max_concurrency, "an integer >= 1")
        self._jitter = _check_number("jitter", jitter, minimum=0.0)
        if on_ok not in ("close", "half_open"):
            raise ConfigurationError("on_ok", on_ok, "'close' or 'half_open'")
        self._cache = cache
        self._probes: dict[str, ProbeFn] = dict(probes)
        self._max_concurrency = max_concurrency
        self._on_ok = on_ok
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._task: asyncio.Task[None] | None = None
        self._first_tick: asyncio.Event | None = None
        self._next_round_at: float | None = None
        """When the next round is due, kept across runs: a loop that ends (``asyncio.run``
        per call) and a new one that starts do not probe again before it."""
        self._ticks = 0
        self._tick_errors = 0

    # -- properties ---------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between the starts of two ticks."""
        return self._interval

    @property
    def jitter(self) -> float:
        """Most seconds added at random to each sleep."""
        return self._jitter

    @property
    def timeout(self) -> float:
        """Seconds one probe may take before it counts as failed."""
        return self._timeout

    @property
    def provider_ids(self) -> tuple[str, ...]:
        """The ids probed each tick."""
        return tuple(self._probes)

    @property
    def running(self) -> bool:
        """True while the background task is alive."""
        return self._task is not None and not self._task.done()

    @property
    def ticks(self) -> int:
        """Ticks completed since construction."""
        return self._ticks

    @property
    def tick_errors(self) -> int:
        """Ticks that raised unexpectedly (logged; the loop went on)."""
        return self._tick_errors

    def set_probes(self, probes: Mapping[str, ProbeFn]) -> None:
        """Replace the probed set; the next tick uses it."""
        self._probes = dict(probes)

    # -- one round ------------------------------------------------------------

    async def tick_once(self, only: Iterable[str] | None = None) -> dict[str, ProbeResult]:
        """Run every probe (or those in ``only``) once, concurrently, and apply the results."""
        probes = list(self._probes.items())
        if only is not None:
            wanted = set(only)
            probes = [(pid, fn) for pid, fn in probes if pid in wanted]
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def run(provider_id: str, probe: ProbeFn) -> ProbeResult:
            async with semaphore:
                return await self._run_one(provider_id, probe)

        results = await asyncio.gather(*(run(pid, fn) for pid, fn in probes))
        for result in results:
            self._apply(result)
        self._ticks += 1
        return {r.provider_id: r for r in results}

    async def _run_one(self, provider_id: str, probe: ProbeFn) -> ProbeResult:
        started = time.perf_counter()
        ok: bool | None
        reason: str | None
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                verdict = await probe()
        except TimeoutError as exc:
            if deadline.expired():
                ok, reason = False, f"probe timeout after {self._timeout:g}s"
            else:  # the probe raised it itself: name it like any other exception
                ok, reason = False, describe_error(exc)
        except Exception as exc:  # noqa: BLE001 - any probe error is a failed probe
            ok, reason = False, describe_error(exc)
        else:
            if verdict is None:
                ok, reason = None, None
            elif verdict:
                ok, reason = True, None
            else:
                ok, reason = False, "probe returned false"
        return ProbeResult(provider_id, ok, reason, time.perf_counter() - started)

    async def _scheduled_tick(self) -> dict[str, ProbeResult]:
        """One round of the loop; subclasses may narrow it (e.g. to the probes they lease)."""
        return await self.tick_once()

    def _apply(self, result: ProbeResult) -> None:
        """Feed one result into the cache; subclasses may fan it out to several ids."""
        if result.ok is None:
            return
        if not result.ok:
            self._cache.mark_unhealthy(result.provider_id, result.reason)
        elif self._on_ok == "close":
            self._cache.mark_healthy(result.provider_id)
        else:
            self._cache.mark_probe_passed(result.provider_id)

    # -- the background task -------------------------------------------------

    async def start(self) -> None:
        """Start the loop and return once its first tick is done. Idempotent.

        The first tick runs at once, then one every ``interval``; waiting for
        it means ``async with probe:`` begins with every verdict in the cache.
        """
        self.start_soon()
        task, first = self._task, self._first_tick
        if task is not None and first is not None and not first.is_set():
            waiter = asyncio.ensure_future(first.wait())
            try:
                await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    def start_soon(self) -> None:
        """Start the loop from sync code running in the event loop. Idempotent."""
        if self.running:
            return
        self._first_tick = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self.run(), name="litellm-circuit-breaker-probe"
        )

    async def stop(self) -> None:
        """Cancel the loop and wait for it to end; safe before start and twice."""
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
        await self.stop()

    async def run(self) -> None:
        """The loop itself, for owners that run it inside a task of their own.

        Rounds keep one schedule per prober, however many event loops run it in
        turn: a run that starts before the next round is due waits for it (the
        verdicts of the last round are in the cache meanwhile).
        """
        next_at = self._clock()
        due = self._next_round_at
        if due is not None and due > next_at:
            if self._first_tick is not None:
                self._first_tick.set()  # nothing to wait for: the last round stands
            await self._sleep(due - next_at)
            next_at = due
        while True:
            # Booked before the round: a loop ending mid-round still used its slot.
            self._next_round_at = next_at + self._interval
            try:
                await self._scheduled_tick()
            except Exception:
                self._tick_errors += 1
                logger.exception("health probe tick failed; the loop goes on")
            raise_if_cancelled()  # a probe (or a lease claim) may have swallowed our stop
            if self._first_tick is not None:
                self._first_tick.set()
            next_at += self._interval
            now = self._clock()
            if next_at <= now:
                # The tick overran: skip the missed slots instead of bursting.
                missed = int((now - next_at) // self._interval) + 1
                next_at += missed * self._interval
            delay = next_at - now
            if self._jitter:
                delay += self._rng.uniform(0.0, self._jitter)
            await self._sleep(delay)


def describe_error(exc: BaseException) -> str:
    """A short failure reason naming the exception type (messages are truncated)."""
    message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
