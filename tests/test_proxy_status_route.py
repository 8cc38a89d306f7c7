"""``GET /circuit-breaker/status`` on the real LiteLLM proxy: per worker, with and without Redis.

Proxy starts are slow (about 25 s idle on 1.110), so each proxy test checks
several things: three starts in all. The in-process tests cover what a real
proxy cannot be made to show: a LiteLLM without the app we know, Redis down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import types
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest

from litellm_circuit_breaker import BreakerState, CircuitBreaker
from litellm_circuit_breaker._http import STATUS_PATH, add_status_route, status_document
from litellm_circuit_breaker._proxy import ProxyCircuitBreaker, ProxySettings
from litellm_circuit_breaker.testing import FakeProvider, free_port
from tests.proxy_harness import (
    MASTER_KEY,
    STARTUP_TIMEOUT_SEC,
    Proxy,
    breaker_lines,
    chat_until,
    running_proxy,
    wait_for,
)
from tests.test_shared import eventually

# Keys of no known shape: only the breaker's knowing them verbatim can mask them.
KEY_A = "tenant-a-7f3a9b2c4d5e-route"
KEY_B = "tenant-b-0c1d2e3f4a5b-route"
ECHOED = f"upstream refused key {KEY_A} for org-7"  # the dead provider's error body
BACKOFF_SEC = 60.0


def config(dead: FakeProvider, live: FakeProvider, general: str = "") -> str:
    """Group "chat": "a" (to be killed, its key echoed in its errors) and "b"; the plugin."""
    return f"""model_list:
  - model_name: chat
    litellm_params: {{model: openai/fake-model, api_base: "{dead.base_url}", api_key: {KEY_A}}}
    model_info: {{id: a}}
  - model_name: chat
    litellm_params: {{model: openai/fake-model, api_base: "{live.base_url}", api_key: {KEY_B}}}
    model_info: {{id: b}}
litellm_settings:
  callbacks: ["litellm_circuit_breaker.proxy.breaker"]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY{general}
"""


# No probes: only the test's traffic moves a breaker, so what each worker shows is
# exactly what its own requests did.
ENV = {"CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off"}


def get_status(proxy: Proxy, key: str | None = MASTER_KEY) -> httpx.Response:
    """One request on a connection of its own (so ``--num_workers`` spreads them)."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{proxy.url}{STATUS_PATH}", headers=headers, timeout=60)


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["deployment"]: row for row in document["deployments"]}


def open_a(proxy: Proxy, dead: FakeProvider) -> None:
    """The dead provider answers 503 (echoing A's key): chat requests until "a" opens."""
    dead.error(503, message=ECHOED)
    statuses = chat_until(
        proxy, "chat", lambda: bool(breaker_lines(proxy.output(), "a", "circuit opened"))
    )
    assert set(statuses) == {200}, "the sibling should have served every request"


def in_proxy_group(proxy: Proxy, pid: int) -> bool:
    """The pid is the proxy's process or one of its workers (same session)."""
    try:
        return os.getpgid(pid) == proxy.process.pid
    except ProcessLookupError:
        return False


def test_the_route_shows_an_open_deployment_redacted_to_the_master_key_only(
    tmp_path: Path,
) -> None:
    """Open after two 503s, seconds to its trial, its error redacted; no key or a wrong one: 4xx."""
    with (
        FakeProvider().start_in_thread() as dead,
        FakeProvider().start_in_thread() as live,
        running_proxy(config(dead, live), tmp_path, ENV) as proxy,
    ):
        refused = get_status(proxy, key=None)
        theirs = httpx.get(f"{proxy.url}/v1/models", timeout=60)
        assert refused.status_code == theirs.status_code  # as on LiteLLM's own routes:
        if not version("litellm").startswith("1.108."):
            assert refused.status_code == 401
        # ... 1.108.7 answers 500 there when its optional `prisma` is not installed.
        assert refused.status_code in (401, 500)
        wrong = get_status(proxy, key="sk-not-the-master-key-0000")
        # Without a database LiteLLM answers 400 "No connected db." for any other key.
        assert 400 <= wrong.status_code < 500
        assert "deployments" not in refused.text + wrong.text

        before = get_status(proxy)
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("application/json")
        # Read from the proxy's router even before any traffic or probe.
        healthy = rows(before.json())
        assert {name: row["state"] for name, row in healthy.items()} == {
            "a": "closed",
            "b": "closed",
        }
        assert healthy["a"]["model_group"] == "chat"
        assert healthy["a"]["endpoint"] == dead.base_url
        host = dead.base_url.removeprefix("http://").removesuffix("/v1")
        assert healthy["a"]["name"] == f"chat: openai/fake-model at {host}"
        assert healthy["a"]["retry_in"] == 0

        open_a(proxy, dead)
        answer = get_status(proxy)
        document = answer.json()
        body = answer.text
        output = proxy.output()
        answered_in_the_proxy = in_proxy_group(proxy, document["worker"]["pid"])
    a, b = rows(document)["a"], rows(document)["b"]
    assert a["state"] == "open"
    assert a["consecutive_failures"] == 2
    assert 0 < a["retry_in"] <= BACKOFF_SEC
    assert a["held"] is False
    assert "503" in a["last_error"]
    assert "upstream refused key" in a["last_error"]  # the provider's words, its key masked
    assert b["state"] == "closed"
    assert b["last_error"] is None
    assert document["shared"] is None  # no Redis: this process's view alone
    assert answered_in_the_proxy
    for secret in (KEY_A, KEY_B, MASTER_KEY):
        assert secret not in body
    assert f'"GET {STATUS_PATH} HTTP/1.1" 200' in output  # the proxy's own access log
    assert "not served" not in output


def test_with_num_workers_each_worker_answers_with_its_own_breakers(tmp_path: Path) -> None:
    """Two workers, two pids, two views: their failure counts add up to the dead one's calls."""
    args = ("--num_workers", "2", "--timeout_worker_healthcheck", str(int(STARTUP_TIMEOUT_SEC)))
    with (
        FakeProvider().start_in_thread() as dead,
        FakeProvider().start_in_thread() as live,
        running_proxy(config(dead, live), tmp_path, ENV, args=args) as proxy,
    ):
        wait_for(
            lambda: proxy.output().count("Application startup complete") == 2,
            STARTUP_TIMEOUT_SEC,
            "the second worker never started",
            lambda: proxy.output()[-4000:],
        )
        dead.error(503, message=ECHOED)
        statuses = [proxy.chat("chat").status_code for _ in range(30)]
        assert statuses == [200] * 30
        calls_to_dead = dead.calls("chat")
        views: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while len(views) < 2 and time.monotonic() < deadline:
            answer = get_status(proxy)
            assert answer.status_code == 200
            document = answer.json()
            views.setdefault(document["worker"]["pid"], document)
        bodies = [json.dumps(view) for view in views.values()]
        workers = [pid for pid in views if in_proxy_group(proxy, pid)]
    assert len(views) == 2, "one worker answered every request"
    assert len(workers) == 2
    failures = {pid: rows(view)["a"]["consecutive_failures"] for pid, view in views.items()}
    # No probes, no Redis: each failed call was counted by the one worker that made it.
    assert 1 <= calls_to_dead <= 2 * 2
    assert sum(failures.values()) == calls_to_dead, (failures, calls_to_dead)
    for pid, view in views.items():
        a = rows(view)["a"]
        assert a["state"] == ("open" if failures[pid] >= 2 else "closed"), view
        assert view["shared"] is None
    assert not [body for body in bodies if KEY_A in body or KEY_B in body]


CUSTOM_AUTH = '''"""The test's auth: the master key is the admin; two keys with other roles."""
import os

from fastapi import HTTPException
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

ROLES = {
    os.environ["LITELLM_MASTER_KEY"]: LitellmUserRoles.PROXY_ADMIN,
    "sk-route-viewer-1111": LitellmUserRoles.PROXY_ADMIN_VIEW_ONLY,
    "sk-route-member-2222": LitellmUserRoles.INTERNAL_USER,
}


async def user_api_key_auth(request, api_key):
    if api_key not in ROLES:
        raise HTTPException(status_code=401, detail="unknown key")
    return UserAPIKeyAuth(api_key=api_key, user_role=ROLES[api_key])
'''


async def _hold_open_elsewhere(redis_url: str, namespace: str) -> None:
    """Another replica of the fleet (this test process) holds a deployment open in Redis."""
    elsewhere = CircuitBreaker(
        probe_interval=None,
        redis_url=redis_url,
        redis_namespace=namespace,
        replica_name="replica-elsewhere",
    )
    async with elsewhere:
        elsewhere.cache.force_open("maintenance", reason="maintenance window")
        await eventually(lambda: elsewhere.shared is not None and elsewhere.shared.pushed >= 1, "")


@pytest.mark.usefixtures("litellm_callbacks")
def test_with_redis_the_fleets_records_appear_and_roles_are_checked(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """Shared records (this proxy's and another replica's); a viewer may read, a member may not."""
    auth = "\n  custom_auth: custom_auth.user_api_key_auth"
    (tmp_path / "custom_auth.py").write_text(CUSTOM_AUTH)
    env = {
        **ENV,
        "CIRCUIT_BREAKER_REDIS_URL": redis_url,
        "CIRCUIT_BREAKER_REDIS_NAMESPACE": namespace,
        "CIRCUIT_BREAKER_REPLICA_NAME": "replica-proxy",
    }
    with (
        FakeProvider().start_in_thread() as dead,
        FakeProvider().start_in_thread() as live,
        running_proxy(config(dead, live, auth), tmp_path, env) as proxy,
    ):
        member = get_status(proxy, key="sk-route-member-2222")
        viewer = get_status(proxy, key="sk-route-viewer-1111")
        asyncio.run(_hold_open_elsewhere(redis_url, namespace))
        open_a(proxy, dead)

        answers: list[httpx.Response] = []

        def shared_and_adopted() -> bool:
            answers.append(get_status(proxy))
            document = answers[-1].json()
            shared = {r["deployment"]: r["state"] for r in document["shared"]["records"] or []}
            adopted = rows(document).get("maintenance", {}).get("state")
            return shared.get("a") == "open" and adopted == "open"

        wait_for(
            shared_and_adopted,
            30,
            "a's opening never reached Redis, or the hold never reached the proxy",
            lambda: answers[-1].text,
        )
        answer = answers[-1]
        document = answer.json()
    assert member.status_code == 403
    assert "proxy admins" in member.text
    assert "deployments" not in member.text
    assert viewer.status_code == 200
    assert document["worker"]["replica"] == "replica-proxy"
    shared = document["shared"]
    assert shared["url"] == redis_url.rstrip("/")
    assert shared["namespace"] == namespace
    assert shared["connected"] is True
    assert shared["following"] is True
    assert shared["error"] is None
    records = {record["deployment"]: record for record in shared["records"]}
    assert records["a"]["changed_by"] == "replica-proxy"
    assert records["a"]["consecutive_failures"] == 2
    assert 0 < records["a"]["retry_in"] <= BACKOFF_SEC
    assert "upstream refused key" in records["a"]["last_error"]
    held = records["maintenance"]
    assert (held["state"], held["held"], held["retry_in"]) == ("open", True, None)
    assert held["changed_by"] == "replica-elsewhere"
    assert held["last_error"] == "maintenance window"
    assert rows(document)["maintenance"]["held"] is True  # adopted: its own view has it too
    for secret in (KEY_A, KEY_B, MASTER_KEY):
        assert secret not in answer.text


# -- in-process: what a real proxy cannot be made to show ------------------------


@pytest.mark.usefixtures("litellm_callbacks")
def test_a_litellm_without_the_app_we_know_gets_one_warning_and_a_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``app`` on the proxy's server module: no route, one WARNING, counted, nothing raised."""
    monkeypatch.setitem(
        sys.modules, "litellm.proxy.proxy_server", types.ModuleType("litellm.proxy.proxy_server")
    )
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    with caplog.at_level(logging.WARNING, logger="litellm_circuit_breaker"):
        assert breaker.serve_status() is False
        assert breaker.serve_status() is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"GET {STATUS_PATH} is not served" in warnings[0]
    assert "proxy_server.app" in warnings[0]
    assert breaker.counters["litellm_surface_unknown"] == 2


def test_the_route_is_added_once_and_ahead_of_the_proxys_path_patterns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However often the module runs, one route, first: a ``/{name}/{rest}`` never shadows it."""
    from fastapi import FastAPI  # noqa: PLC0415 - the proxy's extra, as in the proxy

    app = FastAPI()

    @app.get("/{name}/{rest}")
    async def catch_all(name: str, rest: str) -> str:
        return name + rest

    server = types.ModuleType("litellm.proxy.proxy_server")
    server.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm.proxy.proxy_server", server)
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    assert breaker.serve_status() is True
    assert breaker.serve_status() is True
    paths = [getattr(route, "path", None) for route in app.router.routes]
    assert paths.count(STATUS_PATH) == 1
    assert paths[0] == STATUS_PATH
    assert breaker.counters["litellm_surface_unknown"] == 0


def test_outside_the_proxy_no_route_is_attempted(monkeypatch: pytest.MonkeyPatch) -> None:
    """App code importing the proxy module (no proxy server loaded) gets no route and no warning."""
    monkeypatch.delitem(sys.modules, "litellm.proxy.proxy_server", raising=False)
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    assert add_status_route(breaker) is False
    assert breaker.counters["litellm_surface_unknown"] == 0


@pytest.mark.usefixtures("litellm_callbacks")
def test_redis_down_still_answers_with_the_local_view_and_says_why() -> None:
    """Redis configured but silent: the local rows, and an error naming no URL or password."""
    port = free_port()
    url = f"redis://:route-pw-9f8e7d@127.0.0.1:{port}/0"
    breaker = CircuitBreaker(probe_interval=None, redis_url=url)
    breaker.cache.mark_unhealthy("dep", "boom")
    breaker.cache.mark_unhealthy("dep", "boom")
    document = asyncio.run(status_document(breaker))
    assert rows(document)["dep"]["state"] == BreakerState.OPEN.value
    shared = document["shared"]
    assert shared["records"] is None
    assert shared["connected"] is False
    assert shared["following"] is False
    assert shared["error"].startswith("Redis did not answer: ")
    assert shared["url"] == f"redis://127.0.0.1:{port}/0"
    assert "route-pw-9f8e7d" not in json.dumps(document)
