"""Issue 10's first measurement, re-run: an app Router with a fallback, the primary answering 503.

    .venv/bin/python bench/app_fallback.py        # litellm 1.110 (the default environment)
    .venv-floor/bin/python bench/app_fallback.py  # litellm 1.108

Ten requests per mode (async in one loop, ``asyncio.run`` per request, sync
``router.completion``), each mode with a fresh breaker attached the way the
README shows (``litellm.callbacks.append``, no ``attach``: the discovery path)
and a fresh Router with LiteLLM's defaults (``num_retries`` 2, cooldowns on).
Prints the calls that reached the dead primary and the median seconds per
request, with and without the plugin. Reported, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")

import httpx
import litellm
import respx
from common import attached, chat_body

from litellm_circuit_breaker import CircuitBreaker

REQUESTS = 10
MESSAGES = [{"role": "user", "content": "hi"}]


def _router() -> litellm.Router:
    def entry(group: str, host: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": "openai/m",
                "api_base": f"http://{host}/v1",
                "api_key": "sk-bench-0000",
            },
        }

    return litellm.Router(
        model_list=[entry("chat", "primary.bench"), entry("chat-backup", "backup.bench")],
        fallbacks=[{"chat": ["chat-backup"]}],
    )


def _async_loop(router: litellm.Router) -> list[float]:
    async def run() -> list[float]:
        times = []
        for _ in range(REQUESTS):
            started = time.perf_counter()
            await router.acompletion(model="chat", messages=MESSAGES)
            times.append(time.perf_counter() - started)
        return times

    return asyncio.run(run())


def _asyncio_run_each(router: litellm.Router) -> list[float]:
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        asyncio.run(router.acompletion(model="chat", messages=MESSAGES))
        times.append(time.perf_counter() - started)
    return times


def _sync(router: litellm.Router) -> list[float]:
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        router.completion(model="chat", messages=MESSAGES)
        times.append(time.perf_counter() - started)
    return times


MODES: dict[str, Callable[[litellm.Router], list[float]]] = {
    "async Router, one loop": _async_loop,
    "asyncio.run per request": _asyncio_run_each,
    "sync router.completion": _sync,
}


def main() -> int:
    litellm.disable_aiohttp_transport = True
    print(f"litellm {metadata.version('litellm')}: {REQUESTS} requests per mode, primary 503")
    for mode, run in MODES.items():
        for arm in ("LiteLLM alone", "with the plugin"):
            callbacks = (CircuitBreaker(probe_interval=None),) if arm != "LiteLLM alone" else ()
            with respx.mock(assert_all_called=False) as mock, attached(*callbacks):
                dead = mock.post("http://primary.bench/v1/chat/completions").mock(
                    return_value=httpx.Response(503, json={"error": {"message": "down"}})
                )
                mock.post("http://backup.bench/v1/chat/completions").mock(
                    return_value=httpx.Response(200, json=chat_body())
                )
                times = run(_router())
            errors = callbacks[0].internal_errors if callbacks else {}
            print(
                f"  {mode:26} {arm:16} calls to the dead primary {dead.call_count:3}; "
                f"p50 {1e3 * statistics.median(times):7.1f} ms; internal errors {dict(errors)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
