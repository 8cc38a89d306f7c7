"""Sharing through Redis with ``asyncio.run`` per call: each call returns, every time.

A cancellation that lands while redis-py connects or reads can be lost there; the
sharing task then waited on its followers for good and ``asyncio.run`` never
returned (its shutdown waits for every task). Run in a child process, so a hang
is a failed test, not a stuck suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import litellm
    from litellm_circuit_breaker import CircuitBreaker
    from litellm_circuit_breaker.testing import FakeProvider

    litellm.disable_aiohttp_transport = True
    provider = FakeProvider(reply="P").start_in_thread()
    router = litellm.Router(
        model_list=[{
            "model_name": "chat",
            "litellm_params": {
                "model": "openai/fake-model", "api_base": provider.base_url, "api_key": "sk-x",
            },
            "model_info": {"id": "d"},
        }],
        num_retries=0,
    )
    probes = None if sys.argv[3] == "off" else 30
    breaker = CircuitBreaker(
        redis_url=sys.argv[1], redis_namespace=sys.argv[2], probe_interval=probes
    )
    litellm.callbacks = [breaker]
    breaker.attach(router)

    async def one() -> str:
        messages = [{"role": "user", "content": "hi"}]
        answer = await router.acompletion(model="chat", messages=messages)
        return str(answer.choices[0].message.content)

    for i in range(4):
        print(i, asyncio.run(one()), flush=True)
    provider.stop()
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("probes", ["off", "on"])
def test_asyncio_run_per_call_with_redis_returns_every_time(
    redis_url: str, namespace: str, probes: str, tmp_path: Path
) -> None:
    script = tmp_path / "per_call.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env_path = f"{ROOT / 'plugin'}:{ROOT}"
    try:
        done = subprocess.run(  # noqa: S603 - our own script, our own interpreter
            [sys.executable, str(script), redis_url, namespace, probes],
            capture_output=True,
            text=True,
            timeout=180,  # four calls take about a second; minutes of margin for load
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": env_path,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            },
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"asyncio.run never returned: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "P", "1", "P", "2", "P", "3", "P", "done"]
