"""Shared fixtures: a fake clock, and LiteLLM kept offline and restored between tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Before anything imports litellm: never download the cost map, and let respx
# see litellm's HTTP calls (its default aiohttp transport bypasses httpx).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")

import litellm
import pytest
import respx

from litellm_circuit_breaker import CircuitBreaker
from litellm_circuit_breaker.testing import FakeClock, restored_litellm_callbacks
from tests.redis_harness import RedisServer

_namespaces = itertools.count(1)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when a test advances it."""
    return FakeClock()


@pytest.fixture
def litellm_callbacks() -> Iterator[None]:
    """Restore every LiteLLM callback list after the test, so breakers never leak."""
    litellm.disable_aiohttp_transport = True
    with restored_litellm_callbacks():
        yield


@pytest.fixture
def breaker(clock: FakeClock, litellm_callbacks: None) -> CircuitBreaker:
    """A breaker on the fake clock, attached the way app code does, probes off."""
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    litellm.callbacks.append(cb)
    return cb


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each retry back-off a LiteLLM Router asks for, skipped and recorded.

    A test that a request moved on "at once" asserts this stays empty: no timing,
    so no luck with the machine's load. Only sleeps of 50 ms or more called from
    LiteLLM's router modules are taken (``litellm.router*``); the rest sleep as usual.
    """
    asked: list[float] = []
    real_async, real_sync = asyncio.sleep, time.sleep

    def from_router() -> bool:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        return isinstance(caller, str) and caller.startswith("litellm.router")

    async def fake_async(delay: float, result: object = None) -> object:
        if delay >= 0.05 and from_router():
            asked.append(delay)
            delay = 0
        return await real_async(delay, result)

    def fake_sync(delay: float) -> None:
        if delay >= 0.05 and from_router():
            asked.append(delay)
            return
        real_sync(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_async)
    monkeypatch.setattr(time, "sleep", fake_sync)
    return asked


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """respx in place of every provider; unmatched routes fail the request."""
    with respx.mock(assert_all_called=False) as m:
        yield m


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (fails under CI when not installed)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis URL."""
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A key namespace of this test's own, so tests never see each other's breakers."""
    return f"test-{os.getpid()}-{next(_namespaces)}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may kill and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
