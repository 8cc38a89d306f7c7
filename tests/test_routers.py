"""The LiteLLM compatibility layer, on the LiteLLM of this environment (`make test` runs both)."""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from typing import Any

import litellm
import pytest
import respx
from litellm.integrations.custom_logger import CustomLogger

from litellm_circuit_breaker import (
    AllDeploymentsOpenError,
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    _routers,
)
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import (
    MESSAGES,
    delete_from_router,
    deployment,
    ok,
    open_breaker,
    router,
    router_entries,
    status,
)

NEW_SURFACE = hasattr(litellm.Router, "registry")


def test_the_environment_runs_the_litellm_it_claims() -> None:
    """1.110 has the Rust core's registry(); 1.108 does not: each branch below is exercised."""
    from importlib.metadata import version  # noqa: PLC0415

    assert (tuple(int(p) for p in version("litellm").split(".")[:2]) >= (1, 110)) == NEW_SURFACE


def test_live_routers_include_every_app_router() -> None:
    """A Router built in app code is found without being registered anywhere."""
    first = router(deployment("chat", "a", "a.test"))
    second = router(deployment("chat", "b", "b.test"))
    found = list(_routers.live_routers())
    assert any(r is first for r in found)
    assert any(r is second for r in found)


def test_group_and_router_entries_name_the_routers_deployments() -> None:
    """A group's deployments, and all of a Router's, by their ids."""
    r = router(
        deployment("chat", "a", "a.test"),
        deployment("chat", "b", "b.test"),
        deployment("other", "c", "c.test"),
    )
    group = [e["model_info"]["id"] for e in _routers.group_entries(r, "chat")]
    every = [e["model_info"]["id"] for e in _routers.router_entries(r)]
    assert sorted(group) == ["a", "b"]
    assert sorted(every) == ["a", "b", "c"]
    assert _routers.group_entries(r, "missing") == []


@pytest.mark.parametrize(
    ("fallbacks", "expected"),
    [
        ([{"chat": ["backup"]}], True),
        ([{"*": ["backup"]}], True),
        ([{"other": ["backup"]}], False),
        ([], False),
    ],
)
def test_fallback_groups_reads_the_routers_fallbacks(
    fallbacks: list[dict[str, list[str]]], expected: bool
) -> None:
    """Specific and generic (``*``) fallbacks count; another group's does not."""
    r = router(deployment("chat", "a", "a.test"), fallbacks=fallbacks)
    assert _routers.fallback_groups(r, "chat") is expected


def test_generated_id_is_the_id_the_router_gives() -> None:
    """A deployment without model_info.id gets the same id from us as from the Router."""
    entry: dict[str, Any] = {
        "model_name": "chat",
        "litellm_params": {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": "k"},
    }
    r = litellm.Router(model_list=[entry])
    (only,) = router_entries(r)
    assert _routers.generated_id("chat", entry["litellm_params"]) == only["model_info"]["id"]


class _ListedRouter:
    """A Router as 1.108 keeps its deployments: a ``model_list`` attribute, no registry()."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.model_list = entries


def test_deployment_entry_matches_ids_as_deployment_id_of_reads_them() -> None:
    """Integer ids match as text; a bool, a float or an empty id names no deployment."""
    entries: list[dict[str, Any]] = [
        {"model_name": "chat", "model_info": {"id": True}},
        {"model_name": "chat", "model_info": {"id": 1.5}},
        {"model_name": "chat", "model_info": {"id": ""}},
        {"model_name": "chat", "model_info": {"id": 7}},
    ]
    listed = _ListedRouter(entries)
    assert _routers.deployment_entry(listed, "7") is entries[3]
    for text in ("True", "1.5", ""):
        assert _routers.deployment_entry(listed, text) is None


class _Spy(CustomLogger):
    """Records which Router each hook was called from."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Any] = []

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: list[Any] | None,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        self.found.append(_routers.calling_router())
        return healthy_deployments

    def pre_call_check(self, deployment: dict[str, Any]) -> dict[str, Any] | None:
        self.found.append(_routers.calling_router())
        return None


@pytest.mark.asyncio
async def test_calling_router_tells_twin_routers_apart(
    litellm_callbacks: None, mock: respx.MockRouter
) -> None:
    """Two Routers with the very same deployment: each hook call is traced to its own Router."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok())
    spy = _Spy()
    litellm.callbacks.append(spy)
    first = router(deployment("chat", "a", "a.test"))
    twin = router(deployment("chat", "a", "a.test"))
    await first.acompletion(model="chat", messages=MESSAGES)
    await twin.acompletion(model="chat", messages=MESSAGES)
    await asyncio.to_thread(twin.completion, model="chat", messages=MESSAGES)
    assert spy.found[0] is first
    assert spy.found[1] is twin
    assert spy.found[-1] is twin  # the sync Router's pre_call_check


def test_calling_router_outside_a_router_is_none() -> None:
    """No Router on the stack: None, never a guess."""
    assert _routers.calling_router() is None


def test_an_unknown_router_surface_raises_a_named_error() -> None:
    """An object with neither LiteLLM surface is reported, not misread."""

    class Stranger:
        pass

    with pytest.raises(_routers.SurfaceUnknownError, match=r"registry\(\)"):
        _routers.router_entries(Stranger())
    with pytest.raises(_routers.SurfaceUnknownError, match="get_model_list"):
        _routers.group_entries(Stranger(), "chat")
    with pytest.raises(_routers.SurfaceUnknownError, match="fallbacks"):
        _routers.fallback_groups(Stranger(), "chat")


@pytest.mark.asyncio
async def test_no_deprecated_router_member_is_used_on_the_rare_paths(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """All-open with a fallback, sync siblings, learning: no DeprecationWarning, no error."""
    mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://s.test/v1/chat/completions").mock(return_value=ok("sibling"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    r = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
    )
    pair = router(
        deployment("pair", "p2", "p.test"), deployment("pair", "s", "s.test"), num_retries=1
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        breaker.attach(r)
        open_breaker(breaker.cache, "p")
        open_breaker(breaker.cache, "p2")
        response = await r.acompletion(model="primary", messages=MESSAGES)
        answers = {
            str(pair.completion(model="pair", messages=MESSAGES).choices[0].message.content)
            for _ in range(4)
        }
    assert response.choices[0].message.content == "fallback"
    assert answers == {"sibling"}
    assert [w.message for w in caught if issubclass(w.category, DeprecationWarning)] == []
    assert breaker.internal_errors == {}
    assert breaker.counters["litellm_surface_unknown"] == 0


def _hide_live_routers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this LiteLLM look like one we do not know: no registry of live Routers, no stack."""
    import litellm.router  # noqa: PLC0415

    monkeypatch.delattr(litellm.router, "_live_routers", raising=False)
    holders = sys.modules.get("litellm.router_utils.global_callback_holders")
    if holders is not None:  # 1.110 and later
        monkeypatch.delattr(holders, "live_check_owners")
    monkeypatch.setattr(_routers, "_STACK_DEPTH", 0)


@pytest.mark.asyncio
async def test_an_unknown_litellm_is_said_once_and_counted_and_attach_still_works(
    breaker: CircuitBreaker,
    mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fallbacks cannot be learned: one WARNING naming what is missing; attach() restores them."""
    mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    r = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
    )
    _hide_live_routers(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="litellm_circuit_breaker"):
        for _ in range(3):
            open_breaker(breaker.cache, "p")
            response = await r.acompletion(model="primary", messages=MESSAGES)
            assert response.choices[0].message.content == "primary"  # fail_open, as documented
    said = [rec.getMessage() for rec in caplog.records if "could not find" in rec.getMessage()]
    assert len(said) == 1
    assert "live Routers" in said[0]
    assert "attach()" in said[0]
    assert breaker.counters["litellm_surface_unknown"] >= 3  # once per all-open request
    breaker.attach(r)
    open_breaker(breaker.cache, "p")
    response = await r.acompletion(model="primary", messages=MESSAGES)
    assert response.choices[0].message.content == "fallback"


@pytest.mark.asyncio
async def test_attach_probes_a_routers_deployments_before_any_traffic(
    mock: respx.MockRouter, clock: FakeClock, litellm_callbacks: None
) -> None:
    """attach(router) learns every deployment at once and joins litellm.callbacks."""
    models = mock.get("http://a.test/v1/models").mock(return_value=ok())
    mock.get("http://b.test/v1/models").mock(return_value=status(503))
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    cb.attach(r)
    assert cb in litellm.callbacks
    assert cb.routers == [r]
    results = await cb.probe_once()
    assert {k: v.ok for k, v in results.items()} == {"a": True, "b": False}
    assert models.call_count == 1
    cb.attach(r)  # idempotent
    assert litellm.callbacks.count(cb) == 1
    assert cb.detach(r) is True
    assert cb.detach(r) is False
    assert cb.routers == []


def test_routers_setting_binds_at_construction_and_is_checked(
    clock: FakeClock, litellm_callbacks: None
) -> None:
    """CircuitBreaker(routers=[...]) binds them; anything else is refused, naming the field."""
    r = router(deployment("chat", "a", "a.test"))
    cb = CircuitBreaker(clock=clock, probe_interval=None, routers=[r])
    assert cb.routers == [r]
    assert set(cb.deployments) == {"a"}
    with pytest.raises(ConfigurationError, match="routers"):
        CircuitBreaker(routers=r)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="routers"):
        CircuitBreaker(routers=["not a router"])
    with pytest.raises(ConfigurationError, match="router"):
        cb.attach(object())


def _filters() -> list[object]:
    return [
        cb
        for cb in litellm.callbacks
        if isinstance(cb, CustomLogger)
        and type(cb).async_filter_deployments is not CustomLogger.async_filter_deployments
    ]


@pytest.mark.asyncio
async def test_the_filter_is_in_litellm_callbacks_only_while_a_breaker_is_not_closed(
    breaker: CircuitBreaker, mock: respx.MockRouter, clock: FakeClock
) -> None:
    """Nothing open: no filter for LiteLLM to run (it is costly on 1.110); open: skipping works."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"))
    assert _filters() == []
    open_breaker(breaker.cache, "a")
    assert len(_filters()) == 1
    answers = {
        str((await r.acompletion(model="chat", messages=MESSAGES)).choices[0].message.content)
        for _ in range(8)
    }
    assert answers == {"b"}
    breaker.cache.force_close("a")
    assert _filters() == []


@pytest.mark.asyncio
async def test_a_replaced_callback_list_is_noticed_on_the_next_request(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """App code that reassigns litellm.callbacks while a breaker is open stays protected."""
    dead = mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"), num_retries=1)
    open_breaker(breaker.cache, "a")
    litellm.callbacks = [breaker]
    answers = set()
    for _ in range(8):
        response = await r.acompletion(model="chat", messages=MESSAGES)
        answers.add(response.choices[0].message.content)
    assert answers == {"b"}
    assert dead.call_count == 0  # the unfiltered attempt was refused before any call


@pytest.mark.asyncio
async def test_a_breaker_opened_before_it_joined_the_callbacks_keeps_traffic_off(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """Opened (e.g. adopted from Redis) before litellm.callbacks had it: no call reaches it."""
    dead = mock.post("http://a.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    cb.cache.force_open("a")
    litellm.callbacks.append(cb)
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"), num_retries=1)
    for _ in range(6):
        response = await r.acompletion(model="chat", messages=MESSAGES)
        assert response.choices[0].message.content == "b"
    assert dead.call_count == 0


@pytest.mark.asyncio
async def test_a_breaker_taken_out_of_the_callbacks_stops_steering(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Removed from litellm.callbacks while open: its filter leaves too, traffic is LiteLLM's."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment("chat", "a", "a.test"))
    open_breaker(breaker.cache, "a")
    litellm.callbacks.remove(breaker)
    breaker.when_all_open = "fail_fast"  # would refuse the request if it still steered
    response = await r.acompletion(model="chat", messages=MESSAGES)
    assert response.choices[0].message.content == "a"
    assert _filters() == []


@pytest.mark.asyncio
async def test_the_filter_leaves_no_copy_in_litellms_other_callback_lists(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Taken out when all close, from every list LiteLLM copied it into."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"))
    open_breaker(breaker.cache, "a")
    for _ in range(3):
        await r.acompletion(model="chat", messages=MESSAGES)
    breaker.cache.force_close("a")
    leftovers = {
        name: getattr(litellm, name).count(breaker._open_filter)
        for name in _routers.CALLBACK_LISTS
        if breaker._open_filter in getattr(litellm, name)
    }
    assert leftovers == {}


def test_forgetting_an_open_deployment_takes_the_filter_out(
    breaker: CircuitBreaker, litellm_callbacks: None
) -> None:
    """remove_deployment and sync_deployments send no state change, yet the filter leaves."""
    breaker.add_deployments([deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test")])
    open_breaker(breaker.cache, "a")
    assert len(_filters()) == 1
    breaker.remove_deployment("a")
    assert _filters() == []
    open_breaker(breaker.cache, "b")
    assert len(_filters()) == 1
    breaker.sync_deployments([])
    assert _filters() == []


@pytest.mark.asyncio
async def test_a_deployment_deleted_from_a_bound_router_is_forgotten(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """Before each probe round the bound Routers are re-read: a deleted deployment goes."""
    mock.get(url__regex=r"http://[ab]\.test/v1/models").mock(return_value=ok())
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    cb.attach(r)
    open_breaker(cb.cache, "a")
    delete_from_router(r, "a")
    await cb.probe_once()
    assert set(cb.deployments) == {"b"}
    assert cb.cache.get_state("a") is None
    assert _filters() == []


@pytest.mark.asyncio
async def test_a_deployment_learned_through_an_alias_keeps_its_routers_group(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Reached as "nick" (an alias of "real"): status and metrics say "real"."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    r = router(deployment("real", "a", "a.test"), model_group_alias={"nick": "real"})
    await r.acompletion(model="nick", messages=MESSAGES)
    assert breaker.deployments["a"].model_group == "real"


@pytest.mark.asyncio
async def test_a_breaker_litellm_does_not_call_never_steers_routers(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """A breaker outside litellm.callbacks engages no filter, whatever its state."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    open_breaker(cb.cache, "a")
    assert _filters() == []
    r = router(deployment("chat", "a", "a.test"))
    response = await r.acompletion(model="chat", messages=MESSAGES)
    assert response.choices[0].message.content == "a"


@pytest.mark.asyncio
async def test_all_open_with_fallback_on_a_bound_router(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """The bound Router's fallback is used even where discovery would find nothing."""
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("fallback"))
    r = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=[{"primary": ["backup"]}],
    )
    cb = CircuitBreaker(clock=clock, probe_interval=None, when_all_open="fail_fast", routers=[r])
    litellm.callbacks.append(cb)
    open_breaker(cb.cache, "p")
    response = await r.acompletion(model="primary", messages=MESSAGES)
    assert response.choices[0].message.content == "fallback"
    lone = router(deployment("lone", "p", "p.test"))
    with pytest.raises(AllDeploymentsOpenError):
        await lone.acompletion(model="lone", messages=MESSAGES)


@pytest.mark.parametrize(
    "fallbacks",
    [
        [{"primary": ["backup"]}],
        [{"primary": ["backup"]}, {"backup": ["primary"]}],  # mutual
        [{"*": ["backup"]}],  # generic: the backup hop must not fall back to itself
    ],
)
@pytest.mark.asyncio
async def test_a_fallback_that_is_all_open_too_fails_open_instead_of_failing(
    breaker: CircuitBreaker, mock: respx.MockRouter, fallbacks: list[dict[str, list[str]]]
) -> None:
    """Every group the request can reach is open: fail_open still answers it."""
    mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("backup"))
    r = router(
        deployment("primary", "p", "p.test"),
        deployment("backup", "fb", "fb.test"),
        fallbacks=fallbacks,
    )
    open_breaker(breaker.cache, "p")
    open_breaker(breaker.cache, "fb")
    response = await r.acompletion(model="primary", messages=MESSAGES)
    assert response.choices[0].message.content in {"primary", "backup"}
    assert breaker.counters["fail_open"] == 1


@pytest.mark.asyncio
async def test_per_request_fallbacks_to_an_all_open_group_fail_open(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """fallbacks= on the request: an all-open fallback group is answered, not refused."""
    mock.post("http://p.test/v1/chat/completions").mock(return_value=ok("primary"))
    mock.post("http://fb.test/v1/chat/completions").mock(return_value=ok("backup"))
    r = router(deployment("primary", "p", "p.test"), deployment("backup", "fb", "fb.test"))
    open_breaker(breaker.cache, "p")
    open_breaker(breaker.cache, "fb")
    response = await r.acompletion(model="primary", messages=MESSAGES, fallbacks=["backup"])
    assert response.choices[0].message.content in {"primary", "backup"}


@pytest.mark.asyncio
async def test_a_fallback_chain_skips_an_all_open_group_for_the_next_one(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """A -> [B, C], A and B open: every request is answered by C, none reaches B."""
    # Ids of this test's own: a late queued event of another test's "a" must not land here.
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    b = mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    mock.post("http://c.test/v1/chat/completions").mock(return_value=ok("c"))
    r = router(
        deployment("ga", "chain-a", "a.test"),
        deployment("gb", "chain-b", "b.test"),
        deployment("gc", "chain-c", "c.test"),
        fallbacks=[{"ga": ["gb", "gc"]}],
    )
    open_breaker(breaker.cache, "chain-a")
    open_breaker(breaker.cache, "chain-b")
    for _ in range(3):
        response = await r.acompletion(model="ga", messages=MESSAGES)
        assert response.choices[0].message.content == "c"
    assert b.call_count == 0


@pytest.mark.asyncio
async def test_deployments_given_by_hand_survive_their_bound_router(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """model_list= deployments are kept (with their breaker) when a bound Router drops them."""
    mock.get(url__regex=r"http://[ab]\.test/v1/models").mock(return_value=ok())
    given = deployment("chat", "a", "a.test")
    r = router(given, deployment("chat", "b", "b.test"))
    cb = CircuitBreaker(clock=clock, probe_interval=None, model_list=[given])
    cb.attach(r)
    cb.cache.force_open("a")
    delete_from_router(r, "a")
    await cb.probe_once()
    assert set(cb.deployments) == {"a", "b"}
    assert cb.cache.breaker_state("a") is BreakerState.OPEN


@pytest.mark.asyncio
async def test_a_router_attached_during_a_probe_round_keeps_its_deployments(
    clock: FakeClock, mock: respx.MockRouter, litellm_callbacks: None
) -> None:
    """attach() from another thread while a round re-reads the bound Routers loses nothing."""
    mock.get(url__regex=r"http://[ac]\.test/v1/models").mock(return_value=ok())
    first = router(deployment("chat", "a", "a.test"))
    second = router(deployment("other", "c", "c.test"))
    cb = CircuitBreaker(clock=clock, probe_interval=None)
    cb.attach(first)
    real = cb._registry.learn_router

    def attach_meanwhile(r: Any) -> list[str]:
        found = real(r)
        if r is first and second not in cb.routers:
            cb.attach(second)  # as another thread would, mid-round
            cb.cache.force_open("c")
        return found

    cb._registry.learn_router = attach_meanwhile  # type: ignore[method-assign]
    await cb.probe_once()
    cb._registry.learn_router = real  # type: ignore[method-assign]
    assert set(cb.deployments) == {"a", "c"}
    assert cb.cache.breaker_state("c") is BreakerState.OPEN
    await cb.probe_once()
    assert set(cb.deployments) == {"a", "c"}


@pytest.mark.asyncio
async def test_a_replaced_callback_list_leaves_no_filter_copies_behind(
    breaker: CircuitBreaker, mock: respx.MockRouter
) -> None:
    """Reassigned litellm.callbacks, then everything closes: no copy left in any list."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(deployment("chat", "a", "a.test"), deployment("chat", "b", "b.test"))
    open_breaker(breaker.cache, "a")
    for _ in range(3):
        await r.acompletion(model="chat", messages=MESSAGES)
    litellm.callbacks = [breaker]
    breaker.cache.force_close("a")
    leftovers = [n for n in _routers.CALLBACK_LISTS if breaker._open_filter in getattr(litellm, n)]
    assert leftovers == []
