"""Names people can read: a deployment shows its group, model and host next to its id.

LiteLLM generates 64-hex ids when a config sets no ``model_info.id``; each log line,
``status()`` row and status route row names the deployment as well, never by its key.
"""

from __future__ import annotations

import logging

import litellm
import pytest
import respx

from litellm_circuit_breaker import BreakerState, CircuitBreaker
from tests.llm_helpers import MESSAGES, call_until, ok, router, status

KEY = "sk-names-test-key-0123456789"


def unnamed(group: str, host: str) -> dict[str, object]:
    """A deployment without ``model_info.id``: LiteLLM gives it a generated id."""
    return {
        "model_name": group,
        "litellm_params": {"model": "openai/m", "api_base": f"http://{host}/v1", "api_key": KEY},
    }


@pytest.mark.asyncio
async def test_a_generated_id_is_logged_with_its_group_model_and_host(
    breaker: CircuitBreaker, mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The line that matters most, "circuit opened", says which deployment it is."""
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    mock.post("http://dead.test/v1/chat/completions").mock(return_value=status(503))
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    r = router(unnamed("chat", "dead.test"), unnamed("chat", "live.test"), num_retries=2)

    def dead_opened() -> bool:
        return any(
            d.host == "dead.test" and breaker.cache.breaker_state(d.id) is BreakerState.OPEN
            for d in breaker.deployments.values()
        )

    await call_until(dead_opened, lambda: r.acompletion(model="chat", messages=MESSAGES))
    (dead,) = [d for d in breaker.deployments.values() if d.host == "dead.test"]
    assert len(dead.id) == 64, "LiteLLM generated the id"
    assert breaker.cache.breaker_state(dead.id) is BreakerState.OPEN
    lines = [r.getMessage() for r in caplog.records]
    opened = f"deployment {dead.id} (chat: openai/m at dead.test) circuit opened for 60.0s"
    assert any(line.startswith(opened) for line in lines), lines
    assert not any(KEY in line for line in lines)
    rows = {row.deployment: row for row in breaker.status()}
    assert rows[dead.id].name == "chat: openai/m at dead.test"
    assert breaker.describe(dead.id) == f"{dead.id} (chat: openai/m at dead.test)"


@pytest.mark.asyncio
async def test_a_direct_sdk_breaker_is_logged_with_its_host(
    breaker: CircuitBreaker, mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDK breaker's id names provider and model; the line adds the host, no URL path."""
    caplog.set_level(logging.INFO, logger="litellm_circuit_breaker")
    mock.post("http://sdk.test/v1/chat/completions").mock(return_value=status(503))
    for _ in range(2):
        with pytest.raises(litellm.ServiceUnavailableError):
            await litellm.acompletion(
                model="openai/m", messages=MESSAGES, api_base="http://sdk.test/v1", api_key=KEY
            )
    (row,) = breaker.status()
    assert row.state is BreakerState.OPEN
    assert row.deployment.startswith("openai/m@")
    assert row.name == "at sdk.test"
    lines = [r.getMessage() for r in caplog.records if "circuit opened" in r.getMessage()]
    assert lines
    assert lines[0].startswith(f"deployment {row.deployment} (at sdk.test) circuit opened")
    assert not any(KEY in line for line in lines)


def test_an_unknown_id_is_shown_as_it_is(breaker: CircuitBreaker) -> None:
    """A breaker the plugin has no deployment for (the Python API) keeps its plain id."""
    breaker.cache.force_open("maintenance-target", reason="maintenance")
    assert breaker.describe("maintenance-target") == "maintenance-target"
    (row,) = breaker.status()
    assert row.name is None
