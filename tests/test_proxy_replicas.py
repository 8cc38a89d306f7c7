"""Two real proxy replicas sharing breaker state through one real Redis."""

from __future__ import annotations

from pathlib import Path

from litellm_circuit_breaker.testing import FakeProvider
from tests.proxy_harness import breaker_lines, chat_until, running_proxy, wait_for
from tests.test_proxy_e2e import KEYS, two_deployment_config


def test_the_second_replica_skips_a_dead_provider_it_never_called(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """Replica A trips on the dead provider; B, sharing A's Redis, never sends it a call."""
    with FakeProvider().start_in_thread() as dead, FakeProvider().start_in_thread() as live:
        config = two_deployment_config(dead, live)
        shared = {
            "CIRCUIT_BREAKER_REDIS_URL": redis_url,
            "CIRCUIT_BREAKER_REDIS_NAMESPACE": namespace,
            # No probes: B can only learn of the outage from A, through Redis.
            "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off",
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            running_proxy(
                config, tmp_path / "a", {**shared, "CIRCUIT_BREAKER_REPLICA_NAME": "replica-a"}
            ) as replica_a,
            running_proxy(
                config, tmp_path / "b", {**shared, "CIRCUIT_BREAKER_REPLICA_NAME": "replica-b"}
            ) as replica_b,
        ):
            dead.error(503)
            from_a = chat_until(
                replica_a,
                "chat",
                lambda: bool(breaker_lines(replica_a.output(), "a", "circuit opened")),
            )
            assert set(from_a) == {200}, "A's sibling should have served every request"
            calls_from_a = dead.calls("chat")
            assert 1 <= calls_from_a <= 2
            wait_for(
                lambda: bool(
                    breaker_lines(
                        replica_b.output(), "a", "circuit open, shared by replica replica-a"
                    )
                ),
                30,
                "B never heard of A's opening",
            )
            statuses = [replica_b.chat("chat").status_code for _ in range(20)]
            assert statuses == [200] * 20
            assert dead.calls("chat") == calls_from_a, "B sent a call to the dead provider"
            assert live.calls("chat") >= len(from_a) + 18
            output = replica_a.output() + replica_b.output()
    assert breaker_lines(output, "a", "circuit")
    assert not [name for name, key in KEYS.items() if key in output]
