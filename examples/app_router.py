"""Use it in your app: a LiteLLM Router protected by the circuit breaker.

Runs offline: two fake OpenAI-compatible providers stand in for real ones.
The primary dies mid-run; after two failed calls its breaker opens and every
request goes to the fallback at once, while background probes watch the
primary for free. When it heals, a probe notices, one trial call closes the
breaker and traffic returns. Run it with ``.venv/bin/python examples/app_router.py``.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no cost-map download

import litellm

from litellm_circuit_breaker import CircuitBreaker, StateChange
from litellm_circuit_breaker.testing import FakeProvider


async def main() -> int:
    async with (
        FakeProvider(reply="from primary") as primary,
        FakeProvider(reply="from backup") as backup,
    ):
        model_list = [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": primary.base_url,
                    "api_key": "sk-example-primary",
                },
            },
            {
                "model_name": "chat-backup",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": backup.base_url,
                    "api_key": "sk-example-backup",
                },
            },
        ]
        router = litellm.Router(
            model_list=model_list, fallbacks=[{"chat": ["chat-backup"]}], num_retries=0
        )
        # Short windows so the story fits in a few seconds; the defaults are 60 s / 30 s.
        breaker = CircuitBreaker(unhealthy_backoff_sec=5, probe_interval=1, probe_timeout=1)
        # Bind it to the Router it serves (and join litellm.callbacks): its deployments
        # are probed from now on, and fallbacks are read from this Router alone.
        breaker.attach(router)

        def show(event: StateChange) -> None:
            print(f"    breaker {event.old} -> {event.new} ({event.reason})")

        breaker.cache.add_listener(show)
        primary_id = breaker.add_deployments(model_list[:1])[0]

        async def ask(n: int) -> list[str]:
            answers = []
            for _ in range(n):
                response = await router.acompletion(
                    model="chat", messages=[{"role": "user", "content": "hi"}]
                )
                answers.append(str(response.choices[0].message.content))
            return answers

        async with breaker:  # starts the background probes; stops them on exit
            print("healthy:", await ask(2))
            primary.error(503)
            print("primary answers 503:", await ask(6))
            dead_calls = primary.calls("chat") - 2
            print(f"calls the dead primary received: {dead_calls} (at most the threshold, 2)")
            primary.healthy()
            for _ in range(100):  # a probe notices the heal within one interval
                if breaker.cache.is_healthy(primary_id):
                    break
                await asyncio.sleep(0.1)
            print("after the heal:", await ask(2))
            for row in breaker.status():
                print(f"  {row.model_group:12} {row.endpoint:28} {row.probe:14} {row.state}")
        litellm.callbacks.remove(breaker)
        return 0 if dead_calls <= breaker.cache.failure_threshold else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
