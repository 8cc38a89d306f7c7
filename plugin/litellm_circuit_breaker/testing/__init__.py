"""Test tooling for code that uses litellm-circuit-breaker: a fake clock and fake providers."""

from ._clock import FakeClock

__all__ = ["FakeClock"]
