"""Evidence that blames the right party and never switches the breaker off (issue 11)."""

from __future__ import annotations

import logging

import pytest
import respx

from litellm_circuit_breaker import CircuitBreaker
from litellm_circuit_breaker._litellm_kwargs import deployment_of
from litellm_circuit_breaker._redact import public_url
from tests.llm_helpers import MESSAGES, deployment, ok, router

GROUP = "chat"
MALFORMED = "http://[::1:8000/v1"


@pytest.mark.asyncio
async def test_one_malformed_api_base_leaves_the_rest_of_the_group_protected(
    breaker: CircuitBreaker, mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The bad deployment gets at most the threshold of calls; no internal error, no traceback."""
    caplog.set_level(logging.WARNING, logger="litellm_circuit_breaker")
    mock.post("http://live.test/v1/chat/completions").mock(return_value=ok("live"))
    bad = deployment(GROUP, "bad", "unused.test")
    bad["litellm_params"]["api_base"] = MALFORMED
    r = router(bad, deployment(GROUP, "live", "live.test"), num_retries=2)
    answers = []
    for _ in range(20):
        response = await r.acompletion(model=GROUP, messages=MESSAGES)
        answers.append(response.choices[0].message.content)
    assert answers == ["live"] * 20
    assert breaker.internal_errors == {}
    assert not breaker.cache.is_healthy("bad")
    state = breaker.cache.get_state("bad")
    assert state is not None
    assert state.consecutive_failures == breaker.cache.failure_threshold  # then never again
    assert MALFORMED not in caplog.text  # named by its id, never by the raw URL


def test_a_malformed_api_base_has_no_probe_and_no_readable_display() -> None:
    """It stays passive (no probe), and what is shown of it cannot leak a password."""
    entry = {
        "model_name": GROUP,
        "litellm_params": {"model": "openai/m", "api_base": "http://u:pw@[::1:8000/v1"},
        "model_info": {"id": "bad"},
    }
    found = deployment_of(entry)
    assert found is not None
    assert found.probe is None
    assert "pw" not in (found.display_base or "")
    assert public_url("http://u:pw@[::1:8000/v1").startswith("(invalid URL ")
