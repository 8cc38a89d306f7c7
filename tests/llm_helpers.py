"""Small builders shared by the LiteLLM-facing tests: responses, deployments, routers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import litellm

MESSAGES = [{"role": "user", "content": "hi"}]


def chat_body(text: str = "ok") -> dict[str, Any]:
    """A minimal OpenAI chat.completion body."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def ok(text: str = "ok") -> httpx.Response:
    return httpx.Response(200, json=chat_body(text))


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": f"status {code}"}}, headers=headers)


def deployment(
    group: str, dep_id: str, host: str, key: str = "sk-test-key-123456"
) -> dict[str, Any]:
    """An OpenAI-compatible deployment at http://{host}/v1 with a fixed id."""
    return {
        "model_name": group,
        "litellm_params": {"model": "openai/m", "api_base": f"http://{host}/v1", "api_key": key},
        "model_info": {"id": dep_id},
    }


def router(*deployments: dict[str, Any], **kwargs: Any) -> litellm.Router:
    """A Router whose own cooldowns are off, so call counts show only our breaker."""
    kwargs.setdefault("num_retries", 0)
    kwargs.setdefault("disable_cooldowns", True)
    return litellm.Router(model_list=list(deployments), **kwargs)


async def call_until(
    done: Callable[[], bool], call: Callable[[], Awaitable[object]], limit: int = 100
) -> int:
    """Make calls until ``done()`` holds; the number made.

    A Router picks among a group's deployments at random, so "N calls reach the
    dead one twice" is luck (ten calls miss it 1 time in 1,024). Fails the test
    if ``limit`` calls were not enough.
    """
    for made in range(1, limit + 1):
        await call()
        if done():
            return made
    raise AssertionError(f"still not done after {limit} calls")


def open_breaker(cache: Any, dep_id: str) -> None:
    """Drive a breaker open through the public API, as failures would."""
    for _ in range(cache.failure_threshold):
        cache.mark_unhealthy(dep_id, "test: HTTP 503")


# Changing a Router at runtime, the way users do on each LiteLLM version: 1.110
# deprecates the 1.108 members (a DeprecationWarning is an error in the suite).


def router_deployment(r: litellm.Router, dep_id: str) -> Any:
    """The deployment with this id, or None."""
    if hasattr(r, "registry"):
        return r.registry().deployment(dep_id)
    return r.get_deployment(model_id=dep_id)


def router_entries(r: litellm.Router) -> list[Any]:
    """Every deployment dict of the Router."""
    if hasattr(r, "registry"):
        return list(r.registry().all())
    return list(r.get_model_list() or [])


def add_to_router(r: litellm.Router, entry: dict[str, Any]) -> None:
    """Add a deployment at runtime."""
    from litellm.types.router import Deployment  # noqa: PLC0415

    if hasattr(r, "apply"):
        from litellm.router_api import ChangeSet  # noqa: PLC0415

        r.apply(ChangeSet(upsert=[Deployment(**entry)]))
    else:
        r.add_deployment(Deployment(**entry))


def delete_from_router(r: litellm.Router, dep_id: str) -> None:
    """Delete a deployment at runtime."""
    if hasattr(r, "apply"):
        from litellm.router_api import ChangeSet  # noqa: PLC0415

        r.apply(ChangeSet(delete=[dep_id]))
    else:
        r.delete_deployment(id=dep_id)
