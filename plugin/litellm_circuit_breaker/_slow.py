"""Slowness as evidence: a deployment far slower than its own baseline opens its breaker.

In the spirit of resilience4j's slow-call rate: a call is *slow* when it took
longer than :data:`FACTOR` times its deployment's usual time (the median of its
recent calls that were not slow) and at least :data:`FLOOR_SEC`; when at least
:data:`RATE` of the last :data:`WINDOW` calls were slow, with
:data:`MIN_CALLS` of them seen, the breaker opens. Streams are judged by their
time to first token, other calls by their whole time, each against its own
baseline. A deployment has no baseline, and so nothing is slow, until
:data:`BASELINE_MIN` calls have shown its usual time: one that is slow from its
first call on (a reasoning model) is its own baseline and is never opened for it.

The breaker hands it measured seconds. Every answered call passes through
:meth:`SlowCalls.add`, so that is one list append; the judging happens in
batches (:meth:`SlowCalls.judge`), where it is cheap: every :data:`BATCH`
calls, or on the next call once :data:`JUDGE_EVERY_SEC` passed on the
injected clock.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ._logging import SLOW_CALLS

__all__ = [
    "BASELINE_MIN",
    "FACTOR",
    "FLOOR_SEC",
    "MIN_CALLS",
    "RATE",
    "WINDOW",
    "CallKind",
    "SlowCalls",
]

CallKind = Literal["stream", "call"]

BASELINE_MIN = 20
"""Calls a deployment needs before it has a usual time (and anything can be slow)."""
BASELINE_HISTORY = 100
"""The most recent not-slow times the usual time is the median of."""
FACTOR = 4.0
"""A call is slow past this many times its deployment's usual time..."""
FLOOR_SEC = 2.0
"""...and past this many seconds: 40 ms becoming 200 ms is nobody's outage."""
WINDOW = 20
"""The slow-call rate is over this many of the deployment's most recent calls..."""
MIN_CALLS = 10
"""...once at least this many of them were seen since the breaker last opened for it."""
RATE = 0.5
"""The share of slow calls in the window that opens the breaker."""
_RECOMPUTE_EVERY = 10
"""Baseline additions between recomputations of the median (it moves slowly)."""
BATCH = 8
"""Calls :meth:`SlowCalls.add` collects before they are judged together..."""
JUDGE_EVERY_SEC = 1.0
"""...or fewer, once this long has passed since the last judging."""
PENDING_MAX = 10_000
"""Calls kept waiting to be judged at most (the oldest go first)."""


@dataclass(slots=True)
class _Track:
    baseline: deque[float] = field(default_factory=lambda: deque(maxlen=BASELINE_HISTORY))
    window: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    usual: float | None = None
    added: int = 0


class SlowCalls:
    """Each deployment's usual time per kind of call, and its recent slow-call rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tracks: dict[tuple[str, CallKind], _Track] = {}
        self._pending: list[tuple[str, CallKind, float]] = []
        self._judged = clock()

    def add(self, breaker_id: str, kind: CallKind, seconds: float) -> bool:
        """Collect one answered call; True once a batch is waiting to be judged."""
        pending = self._pending
        pending.append((breaker_id, kind, seconds))
        return len(pending) >= BATCH or self._clock() - self._judged >= JUDGE_EVERY_SEC

    def judge(self) -> list[tuple[str, str]]:
        """Judge the calls collected so far: (breaker id, reason) for each to open."""
        self._judged = self._clock()
        pending, self._pending = self._pending, []
        if len(pending) > PENDING_MAX:
            del pending[:-PENDING_MAX]
        found: list[tuple[str, str]] = []
        for breaker_id, kind, seconds in pending:
            reason = self.observe(breaker_id, kind, seconds)
            if reason is not None:
                found.append((breaker_id, reason))
        return found

    def observe(self, breaker_id: str, kind: CallKind, seconds: float) -> str | None:
        """Record one answered call; a reason to open the breaker when the rate is reached."""
        if not 0 <= seconds < math.inf:
            return None
        track = self._tracks.get((breaker_id, kind))
        if track is None:
            track = self._tracks[breaker_id, kind] = _Track()
        usual = track.usual
        limit = None if usual is None else max(FACTOR * usual, FLOOR_SEC)
        slow = limit is not None and seconds > limit
        if not slow:
            track.baseline.append(seconds)
            track.added += 1
            if len(track.baseline) >= BASELINE_MIN and (
                usual is None or track.added >= _RECOMPUTE_EVERY
            ):
                track.usual = statistics.median(track.baseline)
                track.added = 0
        if limit is None:
            return None
        window = track.window
        window.append(slow)
        if len(window) < MIN_CALLS:
            return None
        count = sum(window)
        if count < RATE * len(window):
            return None
        seen = len(window)
        window.clear()  # a fresh window after the breaker opens (and closes again)
        what = "times to first token" if kind == "stream" else "calls"
        why = (
            f"{FACTOR:g}x its usual {usual:.2f}s"
            if limit > FLOOR_SEC
            else f"the {FLOOR_SEC:g}s floor; its usual is {usual:.2f}s"
        )
        return f"{SLOW_CALLS}{count} of its last {seen} {what} slower than {limit:.1f}s ({why})"

    def usual(self, breaker_id: str, kind: CallKind) -> float | None:
        """The deployment's usual time for this kind of call, or None while it has no baseline."""
        track = self._tracks.get((breaker_id, kind))
        return None if track is None else track.usual

    def forget(self, breaker_id: str) -> None:
        """Drop what is known of a deployment that is gone."""
        for kind in ("stream", "call"):
            self._tracks.pop((breaker_id, kind), None)
        self._pending = [p for p in self._pending if p[0] != breaker_id]
