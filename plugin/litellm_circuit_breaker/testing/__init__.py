"""Test tooling for code that uses litellm-circuit-breaker: a fake clock and fake providers."""

from ._clock import FakeClock
from ._fake_provider import Endpoint, FakeProvider, Mode, RecordedCall

__all__ = ["Endpoint", "FakeClock", "FakeProvider", "Mode", "RecordedCall"]
