"""The bound on direct SDK breakers: which one makes room, and which never does."""

from __future__ import annotations

from litellm_circuit_breaker import ProviderHealthCache
from litellm_circuit_breaker._sdk import SdkBreakers
from litellm_circuit_breaker.testing import FakeClock


def table(limit: int, clock: FakeClock) -> tuple[ProviderHealthCache, SdkBreakers, list[str]]:
    cache = ProviderHealthCache(clock=clock)
    evicted: list[str] = []

    def forget(breaker_id: str) -> None:
        evicted.append(breaker_id)
        cache.forget(breaker_id)

    return cache, SdkBreakers(cache, limit=limit, on_evict=forget), evicted


def open_one(cache: ProviderHealthCache, breaker_id: str) -> None:
    for _ in range(cache.failure_threshold):
        cache.mark_unhealthy(breaker_id, "HTTP 503")


def test_the_least_recently_used_closed_breaker_makes_room() -> None:
    """A use moves a breaker to the back; the oldest closed one goes first."""
    clock = FakeClock()
    cache, sdk, evicted = table(2, clock)
    for breaker_id in ("a", "b"):
        assert sdk.admit(breaker_id, None)
        cache.mark_healthy(breaker_id)
    assert sdk.admit("a", None)  # used again: "b" is now the oldest
    assert sdk.admit("c", "http://c.test")
    assert evicted == ["b"]
    assert "b" not in cache
    assert sdk.endpoint("c") == "http://c.test"
    assert (len(sdk), sdk.evicted, sdk.untracked) == (2, 1, 0)


def test_a_closed_breaker_goes_before_an_idle_half_open_one() -> None:
    """Even an older half-open breaker is kept while a closed one can make room."""
    clock = FakeClock()
    cache, sdk, evicted = table(2, clock)
    sdk.admit("half", None)
    open_one(cache, "half")
    sdk.admit("closed", None)
    cache.mark_healthy("closed")
    clock.advance(60)  # "half" is half-open now, its trial not taken
    assert sdk.admit("new", None)
    open_one(cache, "new")
    assert evicted == ["closed"]
    assert sdk.admit("newer", None)  # then the idle half-open one
    assert evicted == ["closed", "half"]


def test_open_held_and_trial_breakers_are_never_evicted() -> None:
    """A running window, an operator's hold and a trial out all matter: the newcomer waits."""
    clock = FakeClock()
    cache, sdk, evicted = table(3, clock)
    for breaker_id in ("open", "held", "trial"):
        sdk.admit(breaker_id, None)
    open_one(cache, "open")
    cache.force_open("held")
    open_one(cache, "trial")
    clock.advance(30)
    cache.force_open("open", seconds=60)  # still open past the next advance
    clock.advance(30)
    assert cache.try_acquire("trial")  # half-open, its one trial now out
    assert not sdk.admit("new", None)
    assert evicted == []
    assert sdk.untracked == 1
    assert "new" not in sdk
    assert len(sdk) == 3
