"""Test tooling for code that uses litellm-circuit-breaker: a fake clock and fake providers."""

from ._clock import FakeClock
from ._fake_provider import Endpoint, FakeProvider, Mode, RecordedCall
from ._litellm import restored_litellm_callbacks
from ._processes import free_port, group_alive, stop_process_group

__all__ = [
    "Endpoint",
    "FakeClock",
    "FakeProvider",
    "Mode",
    "RecordedCall",
    "free_port",
    "group_alive",
    "restored_litellm_callbacks",
    "stop_process_group",
]
