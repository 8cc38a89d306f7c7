"""A clock and sleep you move by hand, so tests never wait out a window."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock that only moves when told to.

    Pass the instance wherever a ``clock=`` is taken and ``clock.sleep`` where
    a ``sleep=`` is: sleeping advances the clock at once and yields to the
    event loop, so a probe loop runs tick after tick with no real waiting.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every delay passed to :meth:`sleep`, in order."""

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(f"seconds={seconds!r} is invalid: a clock cannot go back")
        with self._lock:
            self._now += seconds
            return self._now

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (negative counts as zero) and yield once."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
