"""The pytest plugin as a user's suite meets it: the README's test, restored state, no side effects.

Each user suite runs in a pytest subprocess (``pytester.runpytest_subprocess``):
an in-process run would drop the LiteLLM modules it imported from
``sys.modules`` afterwards, under the feet of the tests that follow.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "litellm_circuit_breaker.pytest_plugin"
COST_MAP_ENV = "LITELLM_LOCAL_MODEL_COST_MAP"
FIXTURES = {"cb_breaker", "cb_clock", "cb_fake_provider", "cb_litellm", "cb_make_fake_provider"}

# A user's strict settings, and our own one ignore for LiteLLM's import-time
# pydantic warning: under "error", any warning our fixtures cause fails the run.
USER_INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Items? .* on TypedDict class .* using the `ReadOnly` qualifier:UserWarning
"""

# After the README's test: the discovery path (no attach), a breaker of one's own, respx,
# a sync test, and the providers stopped.
MORE_TESTS = """
import socket

import httpx
import litellm
import pytest
import respx

from litellm_circuit_breaker import BreakerState, CircuitBreaker, CircuitOpenError

MESSAGES = [{"role": "user", "content": "hi"}]
PORTS = []


def deployment(group, provider, deployment_id):
    params = {"model": "openai/fake-model", "api_base": provider.base_url, "api_key": "sk-fake"}
    return {"model_name": group, "litellm_params": params, "model_info": {"id": deployment_id}}


@pytest.mark.asyncio
async def test_an_unattached_breaker_opens_and_admits_one_trial_per_window(
    cb_breaker, cb_clock, cb_make_fake_provider
):
    primary = cb_make_fake_provider(reply="from primary")
    backup = cb_make_fake_provider(reply="from backup")
    PORTS.extend([primary.port, backup.port])
    router = litellm.Router(
        model_list=[deployment("chat", primary, "p"), deployment("chat-backup", backup, "b")],
        fallbacks=[{"chat": ["chat-backup"]}],
        num_retries=0,
    )
    assert cb_breaker in litellm.callbacks

    async def ask():
        response = await router.acompletion(model="chat", messages=MESSAGES)
        return response.choices[0].message.content

    primary.error(503)
    assert [await ask() for _ in range(2)] == ["from backup"] * 2
    assert primary.calls("chat") == 2
    assert cb_breaker.cache.breaker_state("p") is BreakerState.OPEN
    assert [await ask() for _ in range(5)] == ["from backup"] * 5
    assert primary.calls("chat") == 2  # open: the fallback answered, the primary saw nothing
    cb_clock.advance(59)
    assert await ask() == "from backup"
    assert primary.calls("chat") == 2
    cb_clock.advance(1)  # past the window: one trial reaches the primary, fails, re-opens
    assert await ask() == "from backup"
    assert primary.calls("chat") == 3
    assert cb_breaker.cache.breaker_state("p") is BreakerState.OPEN
    assert [await ask() for _ in range(3)] == ["from backup"] * 3
    assert primary.calls("chat") == 3


def test_sync_tests_can_call_the_fake_provider(cb_litellm, cb_fake_provider):
    PORTS.append(cb_fake_provider.port)
    cb_fake_provider.error(503)
    with pytest.raises(litellm.ServiceUnavailableError):
        cb_litellm.completion(
            model="openai/fake-model",
            api_base=cb_fake_provider.base_url,
            api_key="sk-fake",
            messages=MESSAGES,
            num_retries=0,
        )
    cb_fake_provider.healthy()
    answer = httpx.get(f"{cb_fake_provider.base_url}/models")
    assert answer.status_code == 200
    assert cb_fake_provider.calls() == 2


@pytest.mark.asyncio
async def test_a_breaker_of_your_own_on_cb_litellm(cb_litellm, cb_clock, cb_fake_provider):
    PORTS.append(cb_fake_provider.port)
    breaker = CircuitBreaker(clock=cb_clock, probe_interval=None, failure_threshold=5)
    cb_litellm.callbacks.append(breaker)
    cb_fake_provider.error(503)

    async def ask():
        await cb_litellm.acompletion(
            model="openai/fake-model",
            api_base=cb_fake_provider.base_url,
            api_key="sk-fake",
            messages=MESSAGES,
            max_retries=0,
        )

    for _ in range(5):
        with pytest.raises(litellm.ServiceUnavailableError):
            await ask()
    with pytest.raises(CircuitOpenError):
        await ask()
    assert cb_fake_provider.calls("chat") == 5


@pytest.mark.asyncio
async def test_respx_sees_litellms_calls(cb_litellm):
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post("http://respx.test/v1/chat/completions").mock(
            return_value=httpx.Response(503, json={"error": {"message": "down"}})
        )
        with pytest.raises(litellm.ServiceUnavailableError):
            await cb_litellm.acompletion(
                model="openai/fake-model",
                api_base="http://respx.test/v1",
                api_key="sk-fake",
                messages=MESSAGES,
                max_retries=0,
            )
    assert route.call_count == 1


def test_every_provider_was_stopped_after_its_test():
    assert len(PORTS) == 4
    for port in PORTS:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
"""

# Collected (so imported) before any test runs: BEFORE is LiteLLM's state then.
AFTER_TESTS = """
import litellm

from litellm_circuit_breaker import CircuitBreaker

LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "input_callback",
)
BEFORE = {name: list(getattr(litellm, name)) for name in LISTS}
AIOHTTP_BEFORE = litellm.disable_aiohttp_transport


def test_litellm_is_back_as_it_was_before_the_breaker_tests():
    assert {name: list(getattr(litellm, name)) for name in LISTS} == BEFORE
    assert litellm.callbacks == []
    assert not any(isinstance(cb, CircuitBreaker) for n in LISTS for cb in getattr(litellm, n))
    assert litellm.disable_aiohttp_transport is AIOHTTP_BEFORE is False
"""

# A suite that uses none of the fixtures, and reports what it saw.
UNTOUCHED_CONFTEST = f"""
import os

import pytest

AT_IMPORT = os.environ.get({COST_MAP_ENV!r})


@pytest.fixture
def cost_map_env_at_conftest_import():
    return AT_IMPORT


@pytest.fixture
def cb_clock():
    return "the user's own"
"""

UNTOUCHED_TEST = f"""
import json
import os
import sys
from pathlib import Path


def test_report(request, cost_map_env_at_conftest_import):
    Path(os.environ["REPORT"]).write_text(json.dumps({{
        "fixtures": sorted(request.fixturenames),
        "litellm_imported": "litellm" in sys.modules,
        "at_conftest_import": cost_map_env_at_conftest_import,
        "now": os.environ.get({COST_MAP_ENV!r}),
    }}))


def test_a_fixture_of_the_users_own_wins(cb_clock):
    assert cb_clock == "the user's own"
"""


def readme_test() -> str:
    """The user test the README shows, verbatim."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(# tests/test_fallbacks\.py.*?)```", readme, re.DOTALL)
    assert len(blocks) == 1, "the README shows one test using the fixtures"
    return str(blocks[0])


@pytest.fixture
def user_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment of a user's suite: without what our conftest sets for our own tests."""
    monkeypatch.delenv(COST_MAP_ENV, raising=False)
    monkeypatch.delenv("DISABLE_AIOHTTP_TRANSPORT", raising=False)
    return monkeypatch


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)


def test_importing_the_plugin_leaves_litellm_unimported() -> None:
    """pytest loads the plugin in every session: that must not cost LiteLLM's import."""
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", f"import {PLUGIN}, sys; print('litellm' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_users_router_tests_pass_with_the_fixtures_and_leave_litellm_clean(
    pytester: pytest.Pytester, user_environment: pytest.MonkeyPatch
) -> None:
    """The README's test, an unattached breaker, one's own, respx, sync; then LiteLLM as before."""
    pytester.makeini(USER_INI)
    pytester.makepyfile(
        test_1_readme=readme_test(), test_2_more=MORE_TESTS, test_3_after=AFTER_TESTS
    )
    result = run_suite(
        pytester, "-p", PLUGIN, "test_1_readme.py", "test_2_more.py", "test_3_after.py"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=7)
    assert "sk-fake" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(("user_setting", "expected"), [(None, "True"), ("False", "False")])
def test_a_test_using_no_fixture_runs_as_without_the_plugin(
    pytester: pytest.Pytester,
    user_environment: pytest.MonkeyPatch,
    user_setting: str | None,
    expected: str,
) -> None:
    """No autouse fixture, no LiteLLM import, the user's own ``cb_clock`` wins; a local cost map."""
    if user_setting is not None:
        user_environment.setenv(COST_MAP_ENV, user_setting)
    pytester.makeini(USER_INI)
    pytester.makeconftest(UNTOUCHED_CONFTEST)
    pytester.makepyfile(test_untouched=UNTOUCHED_TEST)
    reports = {}
    for name, load in (("with", PLUGIN), ("without", f"no:{PLUGIN}")):
        report = pytester.path / f"{name}.json"
        user_environment.setenv("REPORT", str(report))
        result = run_suite(pytester, "-p", load)
        assert result.ret == 0, result.stdout.str() + result.stderr.str()
        reports[name] = json.loads(report.read_text())
    with_plugin, without = reports["with"], reports["without"]
    assert with_plugin["fixtures"] == without["fixtures"]
    assert not with_plugin["litellm_imported"]
    assert with_plugin["at_conftest_import"] == with_plugin["now"] == expected
    assert without["at_conftest_import"] == without["now"] == user_setting


def test_the_readme_names_every_fixture_the_plugin_offers() -> None:
    """Each ``cb_`` fixture is documented, and nothing the README names is missing."""
    source = (ROOT / "plugin" / "litellm_circuit_breaker" / "pytest_plugin.py").read_text()
    defined = set(re.findall(r"^def (cb_\w+)\(", source, re.MULTILINE))
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Test your own fallbacks", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(cb_\w+)", section))
    assert defined == FIXTURES
    assert named == FIXTURES
