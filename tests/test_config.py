"""BreakerConfig: one frozen, validated value for every setting, from code or the environment."""

from __future__ import annotations

import dataclasses

import pytest

from litellm_circuit_breaker import BreakerConfig, CircuitBreaker, ConfigurationError
from litellm_circuit_breaker.testing import FakeClock


def test_the_defaults_are_the_documented_ones() -> None:
    """2 failures, 60 s open, probes every 30 s with a 3 s timeout, local state."""
    config = BreakerConfig()
    assert (config.failure_threshold, config.unhealthy_backoff_sec) == (2, 60.0)
    assert (config.probe_interval, config.probe_timeout) == (30.0, 3.0)
    assert config.redis_url is None
    assert config.differences() == {}


def test_a_config_is_frozen_and_replace_checks_again() -> None:
    """Settings never change under a running breaker; a changed copy is validated."""
    config = BreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.failure_threshold = 5  # type: ignore[misc]
    assert config.replace(failure_threshold=5).failure_threshold == 5
    with pytest.raises(ConfigurationError, match="failure_threshold"):
        config.replace(failure_threshold=0)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("probe_concurrency", 0),
        ("probe_jitter", -1),
        ("probe_timeout", float("nan")),
        ("max_backoff_sec", 10.0),
        ("stall_after_sec", 0),
        ("trial_probe_interval", -5),
        ("replica_name", "  "),
        ("redis_reconcile_sec", 0),
        ("trial_lease_sec", float("inf")),
    ],
)
def test_each_bad_setting_is_named_by_its_public_name(setting: str, value: object) -> None:
    """Never an inner name (max_concurrency, jitter): the name the user wrote."""
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig(**{setting: value})  # type: ignore[arg-type]
    assert info.value.field == setting


def test_differences_show_what_was_changed_without_secrets() -> None:
    """What a startup line would print: the changed settings, the Redis password masked."""
    config = BreakerConfig(failure_threshold=3, redis_url="redis://:hunter2@cache:6379/0")
    shown = config.differences()
    assert shown["failure_threshold"] == 3
    assert "hunter2" not in str(shown)
    assert "hunter2" not in repr(config)


def test_from_env_reads_the_variables_and_names_a_bad_one() -> None:
    """CIRCUIT_BREAKER_* variables, errors naming the variable and its text."""
    config = BreakerConfig.from_env(
        {"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "4", "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off"}
    )
    assert config == BreakerConfig(failure_threshold=4, probe_interval=None)
    trials_off = BreakerConfig.from_env({"CIRCUIT_BREAKER_TRIAL_PROBE_INTERVAL_SEC": "off"})
    assert trials_off.trial_probe_interval is None
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig.from_env({"CIRCUIT_BREAKER_PROBE_CONCURRENCY": "0"})
    assert info.value.field == "CIRCUIT_BREAKER_PROBE_CONCURRENCY"
    assert info.value.value == "0"


def test_a_breaker_built_from_a_config_has_exactly_its_settings(clock: FakeClock) -> None:
    """CircuitBreaker.from_config(config) and CircuitBreaker(**settings) are the same breaker."""
    config = BreakerConfig(failure_threshold=3, unhealthy_backoff_sec=5, probe_interval=None)
    breaker = CircuitBreaker.from_config(config, clock=clock)
    assert breaker.config == config
    assert breaker.cache.failure_threshold == 3
    assert breaker.probe_interval is None
    with pytest.raises(ConfigurationError, match="config"):
        CircuitBreaker.from_config({"failure_threshold": 3})  # type: ignore[arg-type]


def test_a_redis_url_that_is_not_even_a_url_is_named_not_echoed() -> None:
    """ "http://[::1" makes urlsplit raise: still a ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig(redis_url="redis://:hunter2@[::1:6379")
    assert info.value.field == "redis_url"
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError) as env_info:
        BreakerConfig.from_env({"CIRCUIT_BREAKER_REDIS_URL": "redis://:hunter2@[::1:6379"})
    assert env_info.value.field == "CIRCUIT_BREAKER_REDIS_URL"
    assert "hunter2" not in str(env_info.value)


def test_from_env_overrides_win_and_are_blamed_by_their_own_name() -> None:
    """An override beats the variable; a bad override is not blamed on an unset variable."""
    config = BreakerConfig.from_env({"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "4"}, failure_threshold=5)
    assert config.failure_threshold == 5
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig.from_env({}, probe_timeout=-1)
    assert info.value.field == "probe_timeout"


def test_max_sdk_breakers_defaults_to_1000_and_is_checked() -> None:
    """The bound on direct SDK breakers: an integer >= 1, named with its value when wrong."""
    assert BreakerConfig().max_sdk_breakers == 1000
    assert CircuitBreaker(probe_interval=None).sdk_breakers.limit == 1000
    for bad in (0, -5, 2.5, True, "100"):
        with pytest.raises(ConfigurationError) as info:
            CircuitBreaker(probe_interval=None, max_sdk_breakers=bad)  # type: ignore[arg-type]
        assert info.value.field == "max_sdk_breakers"
        assert str(info.value) == f"max_sdk_breakers={bad!r} is invalid: expected an integer >= 1"


def test_max_sdk_breakers_is_read_from_its_variable() -> None:
    """CIRCUIT_BREAKER_MAX_SDK_BREAKERS, a bad value named by the variable and its text."""
    env = {"CIRCUIT_BREAKER_MAX_SDK_BREAKERS": "250"}
    assert BreakerConfig.from_env(env).max_sdk_breakers == 250
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig.from_env({"CIRCUIT_BREAKER_MAX_SDK_BREAKERS": "lots"})
    assert (info.value.field, info.value.value) == ("CIRCUIT_BREAKER_MAX_SDK_BREAKERS", "lots")
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig.from_env({"CIRCUIT_BREAKER_MAX_SDK_BREAKERS": "0"})
    assert (info.value.field, info.value.value) == ("CIRCUIT_BREAKER_MAX_SDK_BREAKERS", "0")


def test_a_backoff_past_a_year_is_refused_by_its_variable() -> None:
    """CIRCUIT_BREAKER_BACKOFF_SEC=1e12 stops the proxy naming the variable and the value."""
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig.from_env({"CIRCUIT_BREAKER_BACKOFF_SEC": "1e12"})
    assert info.value.field == "CIRCUIT_BREAKER_BACKOFF_SEC"
    assert "1e12" in str(info.value)
    assert "31536000" in str(info.value)
