"""pytest fixtures for testing your own fallbacks with the breaker, as this project tests its own.

pytest loads this module by itself once litellm-circuit-breaker is installed
(the ``pytest11`` entry point ``litellm_circuit_breaker.pytest_plugin``); with
plugin autoload off, name it: ``-p litellm_circuit_breaker.pytest_plugin``.
``-p no:litellm_circuit_breaker.pytest_plugin`` turns it off.

Every fixture is named ``cb_*`` and none is autouse, so a test that asks for
none of them runs as it would without the plugin, with one exception, made
before your ``conftest.py`` is imported: ``LITELLM_LOCAL_MODEL_COST_MAP`` is
set to ``True`` unless it is already set (to anything), so importing LiteLLM in
a test session never downloads a cost map. A fixture of your own with the same
name wins over ours, as pytest always lets a conftest fixture win over a plugin's.

- ``cb_clock``: a :class:`~litellm_circuit_breaker.testing.FakeClock`.
- ``cb_fake_provider``: a running :class:`~litellm_circuit_breaker.testing.FakeProvider`
  on loopback, served from its own thread (so sync and async tests alike can
  call it), stopped after the test; ``cb_make_fake_provider(**options)`` starts
  more of them.
- ``cb_litellm``: the ``litellm`` module with ``litellm.disable_aiohttp_transport``
  set for the test (so respx sees LiteLLM's calls), and every LiteLLM callback
  list put back as it was when the test ends.
- ``cb_breaker``: a :class:`~litellm_circuit_breaker.CircuitBreaker` on ``cb_clock``
  with probes off, in ``litellm.callbacks`` for the test (through ``cb_litellm``).

LiteLLM takes seconds to import, so this module never imports it: only the
fixtures that need it do, when a test asks for them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from .testing import FakeClock, FakeProvider, restored_litellm_callbacks

if TYPE_CHECKING:
    from ._plugin import CircuitBreaker

__all__ = [
    "cb_breaker",
    "cb_clock",
    "cb_fake_provider",
    "cb_litellm",
    "cb_make_fake_provider",
    "pytest_load_initial_conftests",
]

COST_MAP_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"
"""Read by LiteLLM once, at import: ``True`` loads the cost map it ships, with no download."""


def _offline_cost_map() -> None:
    os.environ.setdefault(COST_MAP_ENV, "True")


def pytest_load_initial_conftests() -> None:
    """Before any ``conftest.py`` (and so any LiteLLM import) runs: keep the cost map local."""
    _offline_cost_map()


@pytest.fixture
def cb_clock() -> FakeClock:
    """A monotonic clock that moves only when the test calls ``cb_clock.advance(seconds)``."""
    return FakeClock()


@pytest.fixture
def cb_make_fake_provider() -> Iterator[Callable[..., FakeProvider]]:
    """Start a FakeProvider (any of its options) in its own thread; all stop after the test."""
    started: list[FakeProvider] = []

    def make(**options: Any) -> FakeProvider:
        provider = FakeProvider(**options)
        started.append(provider)
        return provider.start_in_thread()

    try:
        yield make
    finally:
        for provider in reversed(started):
            provider.stop()


@pytest.fixture
def cb_fake_provider(cb_make_fake_provider: Callable[..., FakeProvider]) -> FakeProvider:
    """A healthy FakeProvider on loopback (``.base_url``), stopped after the test."""
    return cb_make_fake_provider()


@pytest.fixture
def cb_litellm() -> Iterator[ModuleType]:
    """LiteLLM, with httpx transport for the test and every callback list restored after it."""
    if "litellm" not in sys.modules:
        _offline_cost_map()  # loaded by a conftest's ``pytest_plugins``: the hook came too late
    import litellm  # noqa: PLC0415 - seconds to import: only for tests that use it

    with pytest.MonkeyPatch.context() as patch, restored_litellm_callbacks():
        # LiteLLM's default aiohttp transport bypasses httpx, so respx would see nothing.
        patch.setattr(litellm, "disable_aiohttp_transport", True)
        yield litellm


@pytest.fixture
def cb_breaker(cb_clock: FakeClock, cb_litellm: ModuleType) -> CircuitBreaker:
    """A CircuitBreaker on ``cb_clock`` with probes off, in ``litellm.callbacks`` for the test."""
    from ._plugin import CircuitBreaker  # noqa: PLC0415 - imports litellm

    breaker = CircuitBreaker(clock=cb_clock, probe_interval=None)
    cb_litellm.callbacks.append(breaker)
    return breaker
