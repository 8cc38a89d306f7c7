"""The package's public face: exactly the names we promise, and typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import litellm_circuit_breaker
import litellm_circuit_breaker.testing
from litellm_circuit_breaker import (
    AllDeploymentsOpenError,
    CircuitBreakerError,
    CircuitOpenError,
    ConfigurationError,
)

PUBLIC = {
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_PROBE_CONCURRENCY",
    "DEFAULT_PROBE_INTERVAL_SEC",
    "DEFAULT_PROBE_TIMEOUT_SEC",
    "DEFAULT_TRIAL_LEASE_SEC",
    "DEFAULT_UNHEALTHY_BACKOFF_SEC",
    "AllDeploymentsOpenError",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerError",
    "CircuitOpenError",
    "Classification",
    "ConfigurationError",
    "DeploymentStatus",
    "FailurePolicy",
    "HealthProbe",
    "ProbeResult",
    "ProviderHealthCache",
    "ProviderState",
    "StateChange",
    "StateListener",
    "Verdict",
}


def test_all_is_exactly_the_public_surface() -> None:
    """__all__ lists the public names, sorted, and each one is importable."""
    exported = litellm_circuit_breaker.__all__
    assert set(exported) == PUBLIC
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert getattr(litellm_circuit_breaker, name) is not None
    public_attrs = {
        n for n in vars(litellm_circuit_breaker) if not n.startswith("_") and n.isidentifier()
    }
    # public submodules, present once something imported them
    assert public_attrs - PUBLIC <= {"testing", "proxy", "metrics", "pytest_plugin"}


def test_testing_helpers_are_exported() -> None:
    """The test tooling is importable by users' own test suites."""
    assert set(litellm_circuit_breaker.testing.__all__) == {
        "Endpoint",
        "FakeClock",
        "FakeProvider",
        "Mode",
        "RecordedCall",
        "free_port",
        "group_alive",
        "restored_litellm_callbacks",
        "stop_process_group",
    }


def test_package_ships_py_typed() -> None:
    """Type checkers see our annotations."""
    assert (Path(litellm_circuit_breaker.__file__).parent / "py.typed").is_file()


def test_errors_form_the_documented_tree() -> None:
    """Configuration errors are ValueErrors; open-circuit errors share a base."""
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(ConfigurationError, CircuitBreakerError)
    assert issubclass(AllDeploymentsOpenError, CircuitOpenError)
    err = AllDeploymentsOpenError("gpt", ["d1", "d2"], retry_after=12.34)
    assert "gpt" in str(err)
    assert "d1" in str(err)
    assert "12.3" in str(err)
    assert err.status_code == 424  # not retryable: the Router goes to a fallback at once
    assert err.num_retries == 0
    single = CircuitOpenError("d1", retry_after=-5)
    assert single.retry_after == 0
    assert "d1" in str(single)


def test_the_core_imports_without_litellm() -> None:
    """Importing the package and using the core never imports LiteLLM."""
    code = (
        "import sys, litellm_circuit_breaker as m\n"
        "m.ProviderHealthCache().mark_unhealthy('a', 'x')\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
        "assert m.CircuitBreaker.__name__ == 'CircuitBreaker'\n"
        "assert 'litellm' in sys.modules\n"
    )
    # The child imports all of LiteLLM: over a minute seen on a loaded machine.
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr
