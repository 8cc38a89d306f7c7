"""First-token deadlines: how long a stream may wait for its first chunk, per deployment.

A stream that never yields its first token is the failure users feel most, and
LiteLLM waits its whole ``timeout`` (30 s, three times with retries) for it.
:class:`FirstTokenDeadlines` keeps each deployment's recent times to first
token and turns them into a deadline: under ``auto``, :data:`FACTOR` times
their 95th percentile, at least :data:`FLOOR_SEC`, in whole seconds, and none
until :data:`MIN_STREAMS` streams have shown how fast the deployment usually
is; or one fixed number of seconds for every deployment.

The deadline is applied by the breaker as the attempt's timeout (LiteLLM's
read timeout on the provider's connection), so a stream with no first chunk
by then fails as a ``Timeout`` inside the Router's attempt: the Router retries
or falls back on it at once, and the breaker counts it. Like LiteLLM's own
``stream_timeout``, it then bounds each gap between chunks as well.

Pure and on no clock: the breaker hands it measured seconds.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

__all__ = [
    "FACTOR",
    "FLOOR_SEC",
    "HISTORY",
    "MIN_STREAMS",
    "FirstTokenDeadlines",
    "FirstTokenSetting",
]

FirstTokenSetting = float | Literal["auto"] | None

MIN_STREAMS = 5
"""Streams with a first token a deployment needs before ``auto`` gives it a deadline."""
HISTORY = 50
"""The most recent times to first token kept per deployment."""
FACTOR = 4.0
"""``auto``: the deadline is this many times the deployment's 95th percentile..."""
FLOOR_SEC = 3.0
"""...and at least this long, so a fast deployment's blip is never cut off."""
APPLIED_MAX = 10_000
"""Attempts remembered as running under a deadline (their end is usually reported)."""


class FirstTokenDeadlines:
    """Each deployment's times to first token, and the deadline they give.

    ``setting``: ``"auto"`` (learned), a number of seconds (fixed, for every
    deployment at once), or None (off; nothing is kept).
    """

    def __init__(self, setting: FirstTokenSetting) -> None:
        self.setting = setting
        self._seen: dict[str, deque[float]] = {}
        self._deadline: dict[str, float] = {}
        """Breaker id -> its deadline under ``auto``, recomputed as streams end."""
        self._applied: dict[tuple[str, str], float] = {}
        """(call id, breaker id) -> the deadline its attempt runs under."""

    def observe(self, breaker_id: str, seconds: float) -> None:
        """A stream of ``breaker_id`` had its first chunk ``seconds`` after it started."""
        if self.setting != "auto" or not 0 <= seconds < math.inf:
            return
        seen = self._seen.get(breaker_id)
        if seen is None:
            seen = self._seen[breaker_id] = deque(maxlen=HISTORY)
        seen.append(seconds)
        if len(seen) >= MIN_STREAMS:
            ordered = sorted(seen)
            p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
            self._deadline[breaker_id] = float(math.ceil(max(FLOOR_SEC, FACTOR * p95)))

    def deadline(self, breaker_id: str) -> float | None:
        """Seconds a stream of ``breaker_id`` may wait for its first chunk, or None."""
        setting = self.setting
        if setting is None:
            return None
        if setting == "auto":
            return self._deadline.get(breaker_id)
        return setting

    def history(self, breaker_id: str) -> tuple[float, ...]:
        """The times to first token kept for ``breaker_id``, oldest first."""
        return tuple(self._seen.get(breaker_id, ()))

    def forget(self, breaker_id: str) -> None:
        """Drop what is known of a deployment that is gone."""
        self._seen.pop(breaker_id, None)
        self._deadline.pop(breaker_id, None)

    # -- attempts running under a deadline -------------------------------------------

    def applied(self, call_id: str, breaker_id: str, seconds: float) -> None:
        """Attempt ``(call_id, breaker_id)`` runs under a deadline of ``seconds``."""
        applied = self._applied
        if len(applied) >= APPLIED_MAX:
            applied.pop(next(iter(applied)))  # the oldest: its end was never reported
        applied[call_id, breaker_id] = seconds

    def ended(self, call_id: str | None, breaker_id: str) -> float | None:
        """The deadline attempt ``(call_id, breaker_id)`` ran under (None: none), now ended."""
        if call_id is None:
            return None
        return self._applied.pop((call_id, breaker_id), None)
