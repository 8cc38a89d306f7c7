"""Shared fixtures: a fake clock, and LiteLLM kept offline and restored between tests."""

from __future__ import annotations

import os

# Before anything imports litellm: never download the cost map, and let respx
# see litellm's HTTP calls (its default aiohttp transport bypasses httpx).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")

import pytest

from litellm_circuit_breaker.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when a test advances it."""
    return FakeClock()
