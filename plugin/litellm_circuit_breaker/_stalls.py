"""The stall watchdog: a call unanswered past a limit gets its endpoint probed at once.

:class:`StallWatch` keeps the calls in flight and when each deployment last
answered; a few times per limit it looks for a deployment whose oldest call
went unanswered that long and probes its endpoint, token-free. A silent
endpoint (timeout, no connection) counts the stalled call as a failure too.
A stream is watched until its first chunk: it has answered then, however long
it goes on (LiteLLM stamps the attempt's logging object when the first chunk
arrives, and each round reads that stamp).

Time comes from the injected ``clock`` (monotonic seconds) and ``sleep``
(async), the loop's pause and the probe's deadline alike, so tests move it by
hand. What the watch needs of the breaker (which endpoint to probe, the probe
itself, what to do with a verdict) it is handed as callbacks: it knows nothing
of LiteLLM, of the breakers' records nor of HTTP beyond which errors mean silence.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable

import httpx

from ._counters import CounterName
from ._endpoints import ProbeError, ProbeTarget
from ._probe import describe_error
from ._tasks import cancel_and_wait

__all__ = ["StallWatch"]

# A call in flight this long is assumed lost (its end event dropped), not stalled.
IN_FLIGHT_MAX_AGE_SEC = 600.0
IN_FLIGHT_MAX = 10_000
# At most one stall probe per endpoint per this many stall limits (5 s at the
# default), so slow but healthy traffic costs a few token-free list calls.
STALL_PROBE_GAP = 10
# A deployment is suspect (new calls go to a sibling while one can take them) once
# a call has gone unanswered this many times its own last answer time, and at
# least the stall limit: slow but always slow is never suspect, and one that has
# never answered a watched call (no baseline) is never suspect either.
SUSPECT_LATENCY_FACTOR = 4.0
# A stalled call makes its deployment suspect for at most this many stall limits
# (5 s at the default): a call cancelled by its client (no end event) cannot keep
# traffic off a deployment for long, and a real hang is caught again by the next
# call that reaches it.
SUSPECT_SPAN = 10

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class StallWatch:
    """Calls in flight, last answers and stall probes, on an injected clock and sleep.

    Callbacks: ``target_of(breaker_id)`` names the endpoint to probe for a
    stalled call (None: not a configured endpoint, or its breaker is not
    closed); ``probe(target)`` probes it, raising on failure as the probe loop
    does; ``on_stall(breaker_id, reason)`` counts the stalled call against its
    deployment; ``on_probe_failed(probe_key, reason, latency)`` applies the
    failed probe; ``count(name)`` bumps a counter; ``on_error(kind, exc)``
    reports an internal error of the watch's own.
    """

    def __init__(
        self,
        stall_after: float,
        probe_timeout: float,
        *,
        target_of: Callable[[str], ProbeTarget | None],
        probe: Callable[[ProbeTarget], Awaitable[object]],
        on_stall: Callable[[str, str], None],
        on_probe_failed: Callable[[str, str, float], None],
        count: Callable[[CounterName], None],
        on_error: Callable[[str, BaseException], None],
        on_suspects: Callable[[], None] = lambda: None,
        on_latency: Callable[[str, float], None] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.stall_after = stall_after
        self.probe_timeout = probe_timeout
        self.clock = clock
        """Monotonic seconds; injected (tests replace it before the watch starts)."""
        self.sleep = sleep
        """The loop's pause and the probe's deadline; injected like ``clock``."""
        self._target_of = target_of
        self._probe = probe
        self._on_stall = on_stall
        self._on_probe_failed = on_probe_failed
        self._count = count
        self._on_error = on_error
        self._on_suspects = on_suspects
        self._on_latency = on_latency
        """Told each watched call's answer time (not a stream's), as it is measured."""
        self._timed_out: dict[str, float] = {}
        """Breaker id -> the caller's timeout that ended a call to it: probe it next round."""
        self.suspects: frozenset[str] = frozenset()
        """Deployments with a call unanswered past their own usual time (see
        :data:`SUSPECT_LATENCY_FACTOR`), nothing answered since: as of the last
        :meth:`check`, less those that answered since."""
        self._in_flight: dict[tuple[str, str], float] = {}
        """(call id, breaker id) -> start, for calls not answered yet."""
        self._streams: dict[tuple[str, str], object] = {}
        """Streams among them -> the attempt's LiteLLM logging object, whose
        ``completion_start_time`` is set when the first chunk arrives."""
        self._stream_latency: dict[str, float] = {}
        """Seconds each deployment's last watched stream took to its first chunk."""
        self._last_answer: dict[str, float] = {}
        """Breaker id -> when its deployment last answered a call."""
        self._latency: dict[str, float] = {}
        """Seconds each deployment took to answer the last call watched to its answer."""
        self._probed: dict[str, float] = {}
        """Probe key -> when its last stall probe started."""
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the hot path: one call each ------------------------------------------------
    # No lock: each method makes single dict operations, atomic under the GIL, so
    # calls on LiteLLM's threads and the loop interleave safely; ``check`` reads a
    # copy. (A lock here cost a few µs per request on the hot path, for nothing.)

    def track(
        self, call_id: object, breaker_id: str, stream: object, first_chunk: object = None
    ) -> None:
        """Watch an attempt until its deployment answers: a stream until its first chunk.

        ``first_chunk`` is a stream's LiteLLM logging object; a stream without
        one (no ``completion_start_time`` to read) is not watched, since it
        would look stalled for as long as it streams.
        """
        in_flight = self._in_flight
        if type(call_id) is str and call_id and len(in_flight) < IN_FLIGHT_MAX:
            if not stream:
                in_flight[call_id, breaker_id] = self.clock()
            elif getattr(first_chunk, "completion_start_time", False) is None:
                key = (call_id, breaker_id)
                self._streams[key] = first_chunk
                in_flight[key] = self.clock()

    def answered(self, key: tuple[str, str] | None, answered_by: str | None, *, ends: bool) -> None:
        """End the watch of attempt ``key``; note that ``answered_by`` spoke, and how fast."""
        started = self._in_flight.pop(key, None) if key is not None and ends else None
        # A stream ending before a round saw its first chunk: its time is not one to first chunk.
        stream = key is not None and ends and self._streams.pop(key, None) is not None
        if answered_by is not None:
            if answered_by in self.suspects:
                self.suspects = self.suspects - {answered_by}
                self._on_suspects()
            now = self._last_answer[answered_by] = self.clock()
            if started is not None and not stream and key is not None and key[1] == answered_by:
                latency = self._latency[answered_by] = now - started
                if self._on_latency is not None:
                    self._on_latency(answered_by, latency)

    def latency(self, breaker_id: str) -> float | None:
        """How long ``breaker_id`` took to answer the last call watched, or None."""
        return self._latency.get(breaker_id)

    def watching(self, key: tuple[str, str]) -> bool:
        """Whether attempt ``key`` is still in flight (not ended, nor assumed lost)."""
        return key in self._in_flight

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Look for stalled calls a few times per limit until cancelled; then stop the probes."""
        try:
            while True:
                await self.sleep(self.stall_after / 2)
                try:
                    self.check(self.clock())
                except Exception as exc:  # noqa: BLE001 - the watch outlives its own bugs
                    self._on_error("stall_watch", exc)
        finally:
            for task in list(self._tasks):
                await cancel_and_wait(task)

    def _first_chunks(self) -> None:
        """Streams whose first chunk arrived since the last round have answered."""
        for key, logging_obj in self._streams.copy().items():
            if key not in self._in_flight:
                self._streams.pop(key, None)  # ended (or assumed lost)
            elif getattr(logging_obj, "completion_start_time", None) is not None:
                self._streams.pop(key, None)
                started = self._in_flight.pop(key, None)
                self.answered(None, key[1], ends=False)
                if started is not None:
                    self._stream_latency[key[1]] = self.clock() - started

    def check(self, now: float) -> None:
        """Start a probe for each endpoint whose oldest call is unanswered past the limit."""
        self._first_chunks()
        self._probe_timed_out(now)
        cutoff = now - self.stall_after
        stalled: dict[str, tuple[float, tuple[str, str]]] = {}
        newest: dict[str, tuple[float, bool]] = {}
        """Breaker id -> start of its newest stalled call (nothing answered since), and
        whether it is a stream (judged against the deployment's time to first chunk)."""
        for key, started in self._in_flight.copy().items():
            breaker_id = key[1]
            if started < now - IN_FLIGHT_MAX_AGE_SEC:
                self._in_flight.pop(key, None)  # its end was never reported
            elif started <= cutoff:
                answered = self._last_answer.get(breaker_id, -math.inf)
                oldest = stalled.get(breaker_id, (math.inf,))[0]
                if answered < started < oldest:  # nothing answered since it went out
                    stalled[breaker_id] = (started, key)
                if answered < started > newest.get(breaker_id, (-math.inf,))[0]:
                    newest[breaker_id] = (started, key in self._streams)
        suspects = frozenset(
            breaker_id
            for breaker_id, (started, stream) in newest.items()
            if (usual := (self._stream_latency if stream else self._latency).get(breaker_id))
            is not None
            and (limit := max(self.stall_after, SUSPECT_LATENCY_FACTOR * usual))
            < now - started
            <= limit + SUSPECT_SPAN * self.stall_after
        )
        if suspects != self.suspects:
            self.suspects = suspects
            self._on_suspects()
        for breaker_id, (started, call) in stalled.items():
            self._probe_endpoint_of(breaker_id, now, self._still_stalled(call, started))

    def _still_stalled(self, call: tuple[str, str], started: float) -> Callable[[], str | None]:
        """What a silent probe says of a stalled call: nothing once it ended (and counted)."""

        def verdict() -> str | None:
            if not self.watching(call):
                return None
            waited = self.clock() - started
            return f"call unanswered for {waited:.1f}s and its endpoint is silent too"

        return verdict

    def probe_for_timeout(self, breaker_id: str, waited: float) -> None:
        """A caller's own short timeout ended a call to ``breaker_id``: probe its endpoint.

        The timeout itself counts for nothing (it is the caller's choice); a probe
        that finds the endpoint silent too counts the call as a stall, as for a call
        unanswered past the limit. The watch's next round starts it (from the
        background task, which holds the probe client): at most one probe per
        endpoint per gap, as for stalls; only configured endpoints with a closed
        breaker."""
        if len(self._timed_out) < IN_FLIGHT_MAX:
            self._timed_out[breaker_id] = waited

    def _probe_timed_out(self, now: float) -> None:
        """Start the probes :meth:`probe_for_timeout` asked for."""
        asked, self._timed_out = self._timed_out, {}
        for breaker_id, waited in asked.items():
            text = f"call timed out after the caller's {waited:g}s and its endpoint is silent too"
            self._probe_endpoint_of(breaker_id, now, functools.partial(str, text))

    def _probe_endpoint_of(
        self, breaker_id: str, now: float, silent: Callable[[], str | None]
    ) -> None:
        """Start a stall probe of ``breaker_id``'s endpoint, at most one per endpoint per
        gap; only configured endpoints with a closed breaker are probed."""
        target = self._target_of(breaker_id)
        if target is None:
            return
        gap = max(STALL_PROBE_GAP * self.stall_after, self.probe_timeout)
        if now - self._probed.get(target.key, -math.inf) < gap:
            return
        self._probed[target.key] = now
        self._count("stall_probes")
        task = asyncio.get_running_loop().create_task(
            self._stall_probe(breaker_id, target, silent),
            name="litellm-circuit-breaker-stall-probe",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stall_probe(
        self, breaker_id: str, target: ProbeTarget, silent: Callable[[], str | None]
    ) -> None:
        """Probe now. Silent too (timeout, no connection): ``silent()`` says what counts as
        a stall of the call as well (None: nothing more, it ended meanwhile).

        A probe answered with an error (5xx...) counts once, as in the probe loop: the
        endpoint is up enough to answer, so the call is not known hung.
        """
        began = time.perf_counter()
        hung = False
        try:
            await self._probe_within_timeout(target)
        except TimeoutError:
            reason, hung = f"probe timeout after {self.probe_timeout:g}s", True
        except (httpx.TimeoutException, httpx.ConnectError, OSError) as exc:
            reason, hung = describe_error(exc), True
        except (httpx.HTTPError, ProbeError) as exc:
            reason = describe_error(exc)
        except Exception as exc:  # noqa: BLE001 - the watch outlives its own bugs
            self._on_error("stall_watch", exc)
            return
        else:
            return  # it answers: a slow call (or a short timeout), not a dead endpoint
        stall = silent() if hung else None
        if stall is not None:
            self._count("stalls")
            self._on_stall(breaker_id, stall)
        self._on_probe_failed(target.key, reason, time.perf_counter() - began)

    async def _probe_within_timeout(self, target: ProbeTarget) -> None:
        """The probe, cancelled with a ``TimeoutError`` once ``sleep(probe_timeout)`` is over."""
        probe = asyncio.ensure_future(self._probe(target))
        timer = asyncio.ensure_future(self.sleep(self.probe_timeout))
        try:
            await asyncio.wait((probe, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (timer, probe):
                if not task.done():
                    task.cancel()
                    await asyncio.wait((task,))
        if probe.cancelled():
            raise TimeoutError
        probe.result()
