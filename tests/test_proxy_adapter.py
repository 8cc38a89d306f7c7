"""The proxy adapter in-process: settings from the environment, one breaker, 503 answers."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException

from litellm_circuit_breaker import (
    AllDeploymentsOpenError,
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
)
from litellm_circuit_breaker._proxy import (
    ENV_VARS,
    ProxyCircuitBreaker,
    ProxySettings,
    proxy_breaker,
    settings_from_env,
    startup_line,
)
from tests.llm_helpers import add_to_router, delete_from_router


def test_no_variables_give_the_documented_defaults() -> None:
    """An empty environment means 2 failures, 60 s, probes every 30 s with 3 s, fail_open."""
    assert settings_from_env({}) == ProxySettings()
    s = ProxySettings()
    assert (s.failure_threshold, s.unhealthy_backoff_sec) == (2, 60.0)
    assert (s.probe_interval, s.probe_timeout, s.when_all_open) == (30.0, 3.0, "fail_open")


def test_every_variable_is_read() -> None:
    """Each documented variable reaches its setting."""
    settings = settings_from_env(
        {
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "3",
            "CIRCUIT_BREAKER_BACKOFF_SEC": "12.5",
            "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off",
            "CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC": "1",
            "CIRCUIT_BREAKER_WHEN_ALL_OPEN": "FAIL_FAST",
            "CIRCUIT_BREAKER_TRIAL_LEASE_SEC": "9",
            "CIRCUIT_BREAKER_BACKOFF_MULTIPLIER": "2",
            "CIRCUIT_BREAKER_MAX_BACKOFF_SEC": "300",
            "CIRCUIT_BREAKER_PROBE_CONCURRENCY": "8",
            "CIRCUIT_BREAKER_STALL_AFTER_SEC": "off",
            "CIRCUIT_BREAKER_TRIAL_PROBE_INTERVAL_SEC": "7",
            "CIRCUIT_BREAKER_REDIS_URL": " redis://:pw@cache:6379/2 ",
            "CIRCUIT_BREAKER_REDIS_NAMESPACE": "prod-eu",
            "CIRCUIT_BREAKER_REPLICA_NAME": "pod-7",
            "CIRCUIT_BREAKER_REDIS_STATE_TTL_SEC": "600",
            "CIRCUIT_BREAKER_REDIS_RECONCILE_SEC": "2.5",
            "CIRCUIT_BREAKER_MAX_SDK_BREAKERS": "250",
            "CIRCUIT_BREAKER_FIRST_TOKEN_TIMEOUT_SEC": "8",
            "CIRCUIT_BREAKER_SLOW_CALLS": "false",
        }
    )
    assert settings == ProxySettings(
        failure_threshold=3,
        unhealthy_backoff_sec=12.5,
        probe_interval=None,
        probe_timeout=1.0,
        when_all_open="fail_fast",
        trial_lease_sec=9.0,
        backoff_multiplier=2.0,
        max_backoff_sec=300.0,
        probe_concurrency=8,
        stall_after_sec=None,
        trial_probe_interval=7.0,
        redis_url="redis://:pw@cache:6379/2",
        redis_namespace="prod-eu",
        replica_name="pod-7",
        redis_state_ttl_sec=600.0,
        redis_reconcile_sec=2.5,
        max_sdk_breakers=250,
        first_token_timeout=8.0,
        slow_call_detection=False,
    )
    assert len(ENV_VARS) == 19
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "abc"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2.5"),
        ("CIRCUIT_BREAKER_BACKOFF_SEC", "-1"),
        ("CIRCUIT_BREAKER_BACKOFF_SEC", "soon"),
        ("CIRCUIT_BREAKER_PROBE_INTERVAL_SEC", "0"),
        ("CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC", "-3"),
        ("CIRCUIT_BREAKER_WHEN_ALL_OPEN", "maybe"),
        ("CIRCUIT_BREAKER_TRIAL_LEASE_SEC", "0"),
        ("CIRCUIT_BREAKER_BACKOFF_MULTIPLIER", "0.5"),
        ("CIRCUIT_BREAKER_MAX_BACKOFF_SEC", "5"),
        ("CIRCUIT_BREAKER_PROBE_CONCURRENCY", "0"),
        ("CIRCUIT_BREAKER_STALL_AFTER_SEC", "0"),
        ("CIRCUIT_BREAKER_REDIS_URL", "cache:6379"),
        ("CIRCUIT_BREAKER_REDIS_NAMESPACE", "two words"),
        ("CIRCUIT_BREAKER_REDIS_STATE_TTL_SEC", "0"),
        ("CIRCUIT_BREAKER_REDIS_RECONCILE_SEC", "never"),
        ("CIRCUIT_BREAKER_REDIS_FROM_LITELLM", "perhaps"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(variable: str, value: str) -> None:
    """The error a user sees at startup says which variable and what it held."""
    with pytest.raises(ConfigurationError) as info:
        settings_from_env({variable: value})
    assert str(info.value).startswith(f"{variable}={value!r} is invalid")


def test_a_bad_redis_url_is_named_without_its_password() -> None:
    """The variable and the host are in the error; the password never is."""
    with pytest.raises(ConfigurationError) as info:
        settings_from_env({"CIRCUIT_BREAKER_REDIS_URL": "http://u:hunter2@cache:6379/0"})
    assert str(info.value).startswith("CIRCUIT_BREAKER_REDIS_URL='http://cache:6379/0'")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("litellm_env", "url"),
    [
        ({"REDIS_URL": "redis://r:1/3"}, "redis://r:1/3"),
        ({"REDIS_HOST": "cache", "REDIS_PORT": "6380"}, "redis://cache:6380"),
        ({"REDIS_HOST": "cache", "REDIS_PASSWORD": "p@ss"}, "redis://:p%40ss@cache:6379"),
        (
            {"REDIS_HOST": "c", "REDIS_USERNAME": "u", "REDIS_PASSWORD": "p", "REDIS_SSL": "True"},
            "rediss://u:p@c:6379",
        ),
    ],
)
def test_the_redis_litellm_uses_is_reused_when_asked(litellm_env: dict[str, str], url: str) -> None:
    """CIRCUIT_BREAKER_REDIS_FROM_LITELLM=true takes LiteLLM's own REDIS_* variables."""
    assert settings_from_env(litellm_env).redis_url is None  # only when asked
    asked = settings_from_env({**litellm_env, "CIRCUIT_BREAKER_REDIS_FROM_LITELLM": "true"})
    assert asked.redis_url == url


def test_reusing_litellms_redis_needs_one_and_only_one_source() -> None:
    """Asked to reuse LiteLLM's Redis with none configured, or with our own URL too: refused."""
    with pytest.raises(ConfigurationError, match="CIRCUIT_BREAKER_REDIS_FROM_LITELLM"):
        settings_from_env({"CIRCUIT_BREAKER_REDIS_FROM_LITELLM": "true"})
    with pytest.raises(ConfigurationError, match="CIRCUIT_BREAKER_REDIS_FROM_LITELLM"):
        settings_from_env(
            {
                "CIRCUIT_BREAKER_REDIS_FROM_LITELLM": "yes",
                "CIRCUIT_BREAKER_REDIS_URL": "redis://a:1",
                "REDIS_HOST": "b",
            }
        )
    with pytest.raises(ConfigurationError) as info:
        settings_from_env(
            {
                "CIRCUIT_BREAKER_REDIS_FROM_LITELLM": "1",
                "REDIS_URL": "memcached://:secret-pw@b",
            }
        )
    assert info.value.field == "CIRCUIT_BREAKER_REDIS_FROM_LITELLM"
    assert "secret-pw" not in str(info.value)


def test_the_proxy_breaker_only_follows_the_proxy_router() -> None:
    """Deployments requests bring are never learned, so never probed."""
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    assert breaker._learn_from_traffic is False
    assert breaker.refresh_from_router() is False  # no proxy running here


@pytest.mark.asyncio
async def test_all_open_becomes_a_503_with_retry_after() -> None:
    """fail_fast through the proxy: 503, Retry-After rounded up, the group in the body."""
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    answer: Any = await breaker.async_post_call_failure_hook(
        {}, AllDeploymentsOpenError("chat", ["a", "b"], retry_after=12.2), None
    )
    assert isinstance(answer, HTTPException)
    assert answer.status_code == 503
    assert answer.headers == {"Retry-After": "13"}
    assert answer.detail["model_group"] == "chat"
    assert answer.detail["deployments"] == ["a", "b"]
    assert await breaker.async_post_call_failure_hook({}, RuntimeError("x"), None) is None
    assert await breaker.async_post_call_failure_hook({}, CircuitOpenError("a", 3), None) is None


def test_one_breaker_per_process_however_the_module_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Importing proxy.py normally and re-executing it by file path give the same breaker."""
    for variable in ENV_VARS:
        monkeypatch.delenv(variable, raising=False)
    import litellm_circuit_breaker.proxy as imported  # noqa: PLC0415

    path = Path(imported.__file__)
    spec = importlib.util.spec_from_file_location("proxy_copy_beside_config", path)
    assert spec is not None
    assert spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy.breaker is imported.breaker is proxy_breaker()
    assert "proxy_copy_beside_config" not in sys.modules


def test_the_probed_set_follows_the_proxy_router_at_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deployments added to or deleted from the proxy's router are picked up on refresh."""
    import litellm  # noqa: PLC0415

    router = litellm.Router(
        model_list=[
            {
                "model_name": "chat",
                "litellm_params": {"model": "openai/m", "api_base": "http://a.test/v1"},
                "model_info": {"id": "a"},
            }
        ]
    )
    proxy_server = type(sys)("litellm.proxy.proxy_server")
    proxy_server.llm_router = router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm.proxy.proxy_server", proxy_server)
    breaker = ProxyCircuitBreaker(ProxySettings(probe_interval=None))
    assert breaker.refresh_from_router()
    assert set(breaker.deployments) == {"a"}
    add_to_router(
        router,
        {
            "model_name": "chat",
            "litellm_params": {"model": "openai/m", "api_base": "http://b.test/v1"},
            "model_info": {"id": "b"},
        },
    )
    breaker.cache.mark_unhealthy("a", "x")
    breaker.refresh_from_router()
    assert set(breaker.deployments) == {"a", "b"}
    delete_from_router(router, "a")
    breaker.refresh_from_router()
    assert set(breaker.deployments) == {"b"}
    assert breaker.cache.get_state("a") is None  # removed deployments leak no state


def test_reading_the_settings_builds_no_breaker() -> None:
    """Settings are checked as a BreakerConfig: no throwaway breaker (it renamed the replica)."""
    before = int(CircuitBreaker(probe_interval=None).instance_id.rsplit("-", 1)[1])
    settings = settings_from_env({"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "3"})
    after = int(CircuitBreaker(probe_interval=None).instance_id.rsplit("-", 1)[1])
    assert after == before + 1
    assert settings.failure_threshold == 3
    assert settings == BreakerConfig(failure_threshold=3)


def proxy_with_router(monkeypatch: pytest.MonkeyPatch, model_list: list[dict[str, Any]]) -> None:
    """Stand in for the running proxy: its module, holding a real Router."""
    import litellm  # noqa: PLC0415

    proxy_server = type(sys)("litellm.proxy.proxy_server")
    proxy_server.llm_router = litellm.Router(model_list=model_list)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm.proxy.proxy_server", proxy_server)


OPENAI_A = {
    "model_name": "chat",
    "litellm_params": {"model": "openai/m", "api_base": "http://a.test/v1", "api_key": "sk-a"},
    "model_info": {"id": "a"},
}
BEDROCK = {
    "model_name": "claude",
    "litellm_params": {"model": "bedrock/anthropic.claude-v2", "aws_region_name": "us-east-1"},
    "model_info": {"id": "bedrock"},
}


@pytest.mark.asyncio
async def test_the_startup_line_follows_the_router_once_it_is_there(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Logged once the proxy's router is read, counting only deployments with a probe."""
    proxy_with_router(monkeypatch, [OPENAI_A, BEDROCK])
    breaker = ProxyCircuitBreaker(ProxySettings(failure_threshold=3))
    with caplog.at_level(logging.INFO, logger="litellm_circuit_breaker"):
        assert breaker.refresh_from_router()
        assert breaker.refresh_from_router()
        await asyncio.sleep(0)  # the line waits for the breaker to take the router in
        await asyncio.sleep(0)
    lines = [r for r in caplog.records if r.getMessage().startswith("circuit breaker enabled")]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (
            logging.INFO,
            "circuit breaker enabled: probing 1 of 2 deployments every 30s, sharing off; "
            "settings changed from the defaults: failure_threshold=3",
        )
    ]


def test_the_startup_line_says_one_deployment_and_default_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Grammar for one deployment, and no settings list when nothing was changed."""
    proxy_with_router(monkeypatch, [OPENAI_A])
    breaker = ProxyCircuitBreaker(ProxySettings())
    breaker.refresh_from_router()
    assert startup_line(breaker) == (
        "circuit breaker enabled: probing 1 of 1 deployment every 30s, sharing off; "
        "default settings"
    )


def test_the_startup_line_shows_sharing_without_the_redis_password() -> None:
    """Sharing on names the Redis it uses, never its password."""
    settings = ProxySettings(
        probe_interval=None,
        redis_url="redis://:hunter2-secret@cache:6379/0",
        replica_name="eu-1",
    )
    line = startup_line(ProxyCircuitBreaker(settings))
    assert line == (
        "circuit breaker enabled: probes off, sharing on through redis://cache:6379/0; "
        "settings changed from the defaults: probe_interval=off, replica_name=eu-1"
    )
    assert "hunter2" not in line


class Captured(logging.Handler):
    """Keeps what it is handed, formatted by its own marker format."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(f"{marker} %(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def clean_logging(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """Our logger as a fresh proxy process has it."""
    ours = logging.getLogger("litellm_circuit_breaker")
    monkeypatch.setattr(ours, "handlers", [])
    monkeypatch.setattr(ours, "level", logging.NOTSET)
    monkeypatch.setattr(ours, "propagate", True)
    return ours


def no_root_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a fresh proxy; called in the test body, after pytest put its capture there."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def test_lines_go_through_litellms_handlers_even_after_it_swaps_them(
    clean_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No format of our own: LiteLLM's proxy-logger handlers write our lines, as they change."""
    from litellm_circuit_breaker._proxy import LITELLM_PROXY_LOGGER, _show_transitions  # noqa: PLC0415

    no_root_handlers(monkeypatch)
    litellm_proxy = logging.getLogger(LITELLM_PROXY_LOGGER)
    first = Captured("FIRST")
    monkeypatch.setattr(litellm_proxy, "handlers", [first])
    _show_transitions()
    clean_logging.info("deployment a recovered: circuit closed")
    later = Captured("LATER")  # what LiteLLM's turn_on_json does: new handlers
    monkeypatch.setattr(litellm_proxy, "handlers", [later])
    clean_logging.warning("deployment a circuit opened")
    assert first.lines == [
        "FIRST litellm_circuit_breaker INFO deployment a recovered: circuit closed"
    ]
    assert later.lines == ["LATER litellm_circuit_breaker WARNING deployment a circuit opened"]


def test_a_host_handler_on_the_root_gets_each_line_once_and_we_add_none(
    clean_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logging configured by the host (a root handler): no handler of ours, no duplicate."""
    from litellm_circuit_breaker._proxy import LITELLM_PROXY_LOGGER, _show_transitions  # noqa: PLC0415

    litellm_side = Captured("LITELLM")
    monkeypatch.setattr(logging.getLogger(LITELLM_PROXY_LOGGER), "handlers", [litellm_side])
    host = Captured("HOST")
    monkeypatch.setattr(logging.getLogger(), "handlers", [host])
    _show_transitions()
    assert clean_logging.handlers == []
    clean_logging.warning("deployment a circuit opened")
    assert host.lines == ["HOST litellm_circuit_breaker WARNING deployment a circuit opened"]
    assert litellm_side.lines == []


def test_a_root_handler_added_later_is_not_handed_the_line_twice(
    clean_logging: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """turn_on_json puts one handler on the root and LiteLLM's loggers: each line once."""
    from litellm_circuit_breaker._proxy import LITELLM_PROXY_LOGGER, _show_transitions  # noqa: PLC0415

    no_root_handlers(monkeypatch)
    _show_transitions()
    shared = Captured("JSON")
    monkeypatch.setattr(logging.getLogger(LITELLM_PROXY_LOGGER), "handlers", [shared])
    monkeypatch.setattr(logging.getLogger(), "handlers", [shared])
    clean_logging.warning("deployment a circuit opened")
    assert shared.lines == ["JSON litellm_circuit_breaker WARNING deployment a circuit opened"]
