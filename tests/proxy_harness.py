"""Start the real `litellm` proxy on loopback for end-to-end tests, and always stop it."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from litellm_circuit_breaker.testing import free_port, stop_process_group

MASTER_KEY = "sk-e2e-master-5c1d9a7b"
# The proxy imports all of LiteLLM before it answers: about 25 s on an idle machine
# (1.110), well over a minute on a loaded one. A deadline to wait for, never a bar.
STARTUP_TIMEOUT_SEC = 300.0


@dataclass
class Proxy:
    """A running proxy: its base URL, its process and where its output goes."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def chat(
        self, model: str, timeout: float = 60.0, body: Mapping[str, object] | None = None
    ) -> httpx.Response:
        """A chat request for ``model`` (``timeout``: the client's); ``body`` adds fields."""
        return httpx.post(
            f"{self.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], **(body or {})},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=timeout,
        )


def chat_until(proxy: Proxy, model: str, done: Callable[[], bool], limit: int = 40) -> list[int]:
    """Chat requests for ``model`` until ``done()`` holds: their status codes.

    The proxy's Router picks a group's deployment at random, so a fixed number of
    requests reaches a given one only by luck. Fails the test after ``limit``.
    """
    statuses: list[int] = []
    while not done():
        if len(statuses) == limit:
            raise AssertionError(f"still not done after {limit} requests: {statuses}")
        statuses.append(proxy.chat(model).status_code)
    return statuses


def litellm_command() -> str:
    return str(Path(sys.executable).with_name("litellm"))


def proxy_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CIRCUIT_BREAKER_", "LITELLM_"))
    }
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "DISABLE_AIOHTTP_TRANSPORT": "True",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def running_proxy(
    config: str, workdir: Path, env: Mapping[str, str], args: Sequence[str] = ()
) -> Iterator[Proxy]:
    """Write the config, start the proxy, wait until it answers, and kill it afterwards."""
    config_path = workdir / "config.yaml"
    config_path.write_text(config)
    port = free_port()
    log = workdir / "proxy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own venv's litellm, fixed arguments
            [
                litellm_command(),
                "--config",
                str(config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=proxy_env(env),
            cwd=workdir,
            start_new_session=True,
        )
    proxy = Proxy(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SEC
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"proxy exited with {process.returncode}:\n{proxy.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{proxy.url}/health/liveliness", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"proxy did not start in time:\n{proxy.output()[-3000:]}")
            time.sleep(0.1)
        yield proxy
    finally:
        stop_process_group(process)


def wait_for(
    condition: object, timeout: float, message: str, detail: Callable[[], str] | None = None
) -> None:
    """Poll ``condition()`` until it is true; real time, since the proxy runs on it.

    On timeout the error carries ``detail()`` too (e.g. the proxy's own output).
    """
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(message if detail is None else f"{message}\n{detail()}")
        time.sleep(0.05)


def breaker_lines(output: str, deployment: str, text: str) -> list[str]:
    """The breaker's log lines about ``deployment`` saying ``text``: each names it by its
    id and then, in brackets, its group, model and host (``deployment a (chat: ...) text``)."""
    pattern = re.compile(rf"deployment {re.escape(deployment)} \([^()]*\) {re.escape(text)}")
    return [line for line in output.splitlines() if pattern.search(line)]
