"""BreakerMetrics: Prometheus series read from a real breaker on a fake clock."""

from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import litellm
import pytest
import respx
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

import litellm_circuit_breaker.metrics
from litellm_circuit_breaker import (
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    ProbeResult,
)
from litellm_circuit_breaker.metrics import BreakerMetrics
from litellm_circuit_breaker.testing import FakeClock
from tests.llm_helpers import MESSAGES, deployment, ok, open_breaker, router

NS = "litellm_circuit_breaker"
KEY = "sk-metrics-secret-0123456789"


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of this test's own."""
    return CollectorRegistry()


@pytest.fixture
def cb(clock: FakeClock, litellm_callbacks: None) -> CircuitBreaker:
    """A breaker with two deployments in "chat" and one in "embed", probes off."""
    breaker = CircuitBreaker(
        probe_interval=None,
        clock=clock,
        model_list=[
            deployment("chat", "a", "a.test", key=KEY),
            deployment("chat", "b", "b.test", key=KEY),
            deployment("embed", "e", "e.test", key=KEY),
        ],
    )
    litellm.callbacks.append(breaker)
    return breaker


@pytest.fixture
def metrics(cb: CircuitBreaker, registry: CollectorRegistry) -> Iterator[BreakerMetrics]:
    """Metrics for ``cb`` on ``registry``, detached afterwards."""
    m = BreakerMetrics(cb, registry=registry)
    yield m
    m.detach()


def state(registry: CollectorRegistry, dep: str, group: str = "chat") -> float | None:
    return registry.get_sample_value(f"{NS}_state", {"model_id": dep, "model_group": group})


def transitions(registry: CollectorRegistry, dep: str, new: str, group: str = "chat") -> float:
    labels = {"model_id": dep, "model_group": group, "state": new}
    return registry.get_sample_value(f"{NS}_transitions_total", labels) or 0.0


def probes(registry: CollectorRegistry, dep: str, result: str, group: str = "chat") -> float:
    labels = {"model_id": dep, "model_group": group, "result": result}
    return registry.get_sample_value(f"{NS}_probe_results_total", labels) or 0.0


def test_every_known_deployment_has_a_closed_state_before_any_traffic(
    metrics: BreakerMetrics, registry: CollectorRegistry
) -> None:
    """Configured deployments the cache has never seen are exported as closed (0)."""
    assert state(registry, "a") == 0
    assert state(registry, "b") == 0
    assert state(registry, "e", "embed") == 0
    assert transitions(registry, "a", "open") == 0


def test_state_gauge_follows_the_breaker_including_time_driven_half_open(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry, clock: FakeClock
) -> None:
    """Open is 2; when the window ends the scrape itself shows half-open (1) and counts it."""
    open_breaker(cb.cache, "a")
    assert state(registry, "a") == 2
    assert state(registry, "b") == 0
    assert transitions(registry, "a", "open") == 1
    clock.advance(cb.cache.unhealthy_backoff_sec)
    assert state(registry, "a") == 1  # no call touched the breaker: read at scrape time
    assert transitions(registry, "a", "half_open") == 1
    cb.cache.mark_healthy("a")
    assert state(registry, "a") == 0
    assert transitions(registry, "a", "closed") == 1
    assert (transitions(registry, "a", "open"), transitions(registry, "a", "half_open")) == (1, 1)


def test_transitions_are_counted_by_new_state_per_deployment(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """Two openings of one deployment count twice; failures while open count nothing."""
    open_breaker(cb.cache, "a")
    cb.cache.mark_unhealthy("a", "still down")
    cb.cache.mark_healthy("a")
    open_breaker(cb.cache, "a")
    open_breaker(cb.cache, "e")
    assert transitions(registry, "a", "open") == 2
    assert transitions(registry, "a", "closed") == 1
    assert transitions(registry, "e", "open", "embed") == 1
    assert transitions(registry, "b", "open") == 0


@pytest.mark.asyncio
async def test_skipped_and_trial_calls_come_from_real_router_traffic(
    metrics: BreakerMetrics,
    cb: CircuitBreaker,
    registry: CollectorRegistry,
    clock: FakeClock,
    mock: respx.MockRouter,
) -> None:
    """An open deployment skipped by the Router counts; its half-open trial counts once."""
    mock.post("http://a.test/v1/chat/completions").mock(return_value=ok("a"))
    mock.post("http://b.test/v1/chat/completions").mock(return_value=ok("b"))
    r = router(
        deployment("chat", "a", "a.test", key=KEY), deployment("chat", "b", "b.test", key=KEY)
    )
    open_breaker(cb.cache, "a")
    for _ in range(5):
        await r.acompletion(model="chat", messages=MESSAGES)
    skipped = registry.get_sample_value(f"{NS}_calls_skipped_total", {"path": "router"})
    assert skipped is not None
    assert skipped >= 1
    assert registry.get_sample_value(f"{NS}_trial_calls_total") == 0
    clock.advance(cb.cache.unhealthy_backoff_sec)
    for _ in range(5):
        await r.acompletion(model="chat", messages=MESSAGES)
    assert registry.get_sample_value(f"{NS}_trial_calls_total") == 1
    assert cb.cache.breaker_state("a") is BreakerState.CLOSED
    assert state(registry, "a") == 0
    assert transitions(registry, "a", "closed") == 1


def test_decision_counters_map_every_breaker_counter(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """skipped/sdk_refused, trials and the all-open actions are read at scrape time."""
    for name, n in {
        "skipped": 3,
        "sdk_refused": 2,
        "trials": 4,
        "fail_open": 5,
        "fail_fast": 6,
        "fallback": 7,
    }.items():
        setattr(cb.counters, name, n)
    value = registry.get_sample_value
    assert value(f"{NS}_calls_skipped_total", {"path": "router"}) == 3
    assert value(f"{NS}_calls_skipped_total", {"path": "sdk"}) == 2
    assert value(f"{NS}_trial_calls_total") == 4
    assert value(f"{NS}_all_open_total", {"action": "fail_open"}) == 5
    assert value(f"{NS}_all_open_total", {"action": "fail_fast"}) == 6
    assert value(f"{NS}_all_open_total", {"action": "fallback"}) == 7


def test_probe_results_and_latency_by_deployment(
    metrics: BreakerMetrics, registry: CollectorRegistry
) -> None:
    """up, down and no_verdict are counted apart; latencies land in le buckets."""
    metrics.observe_probe(ProbeResult("a", True, None, 0.02))
    metrics.observe_probe(ProbeResult("a", False, "ConnectError", 0.5))
    metrics.observe_probe(ProbeResult("a", None, None, 0.01))
    metrics.observe_probe(ProbeResult("b", True, None, 20.0))
    assert (probes(registry, "a", "up"), probes(registry, "a", "down")) == (1, 1)
    assert probes(registry, "a", "no_verdict") == 1
    assert probes(registry, "b", "up") == 1
    labels = {"model_id": "a", "model_group": "chat"}
    value = registry.get_sample_value
    assert value(f"{NS}_probe_latency_seconds_count", labels) == 3
    assert value(f"{NS}_probe_latency_seconds_sum", labels) == pytest.approx(0.53)
    assert value(f"{NS}_probe_latency_seconds_bucket", {**labels, "le": "0.01"}) == 1
    assert value(f"{NS}_probe_latency_seconds_bucket", {**labels, "le": "0.025"}) == 2
    assert value(f"{NS}_probe_latency_seconds_bucket", {**labels, "le": "0.5"}) == 3
    b_labels = {"model_id": "b", "model_group": "chat"}
    assert value(f"{NS}_probe_latency_seconds_bucket", {**b_labels, "le": "10.0"}) == 0
    assert value(f"{NS}_probe_latency_seconds_bucket", {**b_labels, "le": "+Inf"}) == 1


def test_probe_result_keyed_by_endpoint_counts_for_every_deployment_behind_it(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """The probe loop applies results by endpoint key: each deployment on it is counted."""
    cb.add_deployments([deployment("chat-mini", "a2", "a.test", key=KEY)])
    target = cb.deployments["a"].probe
    assert target is not None
    assert cb.deployments["a2"].probe == target  # one endpoint, one key: one probe
    metrics.observe_probe(ProbeResult(target.key, False, "ConnectError", 0.1))
    assert probes(registry, "a", "down") == 1
    assert probes(registry, "a2", "down", "chat-mini") == 1
    assert probes(registry, "b", "down") == 0
    metrics.observe_probe(ProbeResult("unknown-endpoint", True, None, 0.1))
    assert "unknown-endpoint" not in generate_latest(registry).decode()


@pytest.mark.asyncio
async def test_results_of_a_real_probe_round_are_observed(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry, mock: respx.MockRouter
) -> None:
    """A probe round reaches the metrics through the breaker's probe hook, once each."""
    mock.get("http://a.test/v1/models").mock(return_value=httpx.Response(200, json={"data": []}))
    mock.get("http://b.test/v1/models").mock(side_effect=httpx.ConnectError("refused"))
    mock.get("http://e.test/v1/models").mock(return_value=httpx.Response(200, json={"data": []}))
    await cb.probe_once()
    assert probes(registry, "a", "up") == 1
    assert probes(registry, "b", "down") == 1
    assert probes(registry, "e", "up", "embed") == 1
    count = registry.get_sample_value(
        f"{NS}_probe_latency_seconds_count", {"model_id": "b", "model_group": "chat"}
    )
    assert count == 1


def test_exposition_holds_no_key_url_or_error_text(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """Labels are deployment id and model group (and the model, on the info series) only:
    no api key, host, URL or reason."""
    cb.cache.mark_unhealthy("a", f"ConnectError: http://user:{KEY}@a.test/v1 refused")
    cb.cache.mark_unhealthy("a", "HTTP 503 from a.test")
    target = cb.deployments["a"].probe
    assert target is not None
    metrics.observe_probe(ProbeResult(target.key, False, f"http://a.test/v1?key={KEY}", 0.2))
    # The breaker id of a direct SDK call is built from its URL: never a label.
    cb.cache.mark_unhealthy("http://sdk.test/v1|openai/m", "down")
    cb.cache.mark_unhealthy("http://sdk.test/v1|openai/m", "down")
    text = generate_latest(registry).decode()
    assert 'model_id="a"' in text
    assert f'{NS}_deployment_info{{model="openai/m",model_group="chat",model_id="a"}} 1.0' in text
    for secret in (KEY, "a.test", "sdk.test", "http", "ConnectError", "503"):
        assert secret not in text


def test_forgotten_deployments_lose_their_series(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """A deployment removed from the breaker stops being exported, counters included."""
    open_breaker(cb.cache, "b")
    metrics.observe_probe(ProbeResult("b", False, "down", 0.1))
    assert transitions(registry, "b", "open") == 1
    cb.remove_deployment("b")
    assert state(registry, "b") is None
    assert 'model_id="b"' not in generate_latest(registry).decode()
    assert state(registry, "a") == 0


def test_attach_and_detach_are_idempotent(
    metrics: BreakerMetrics, cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """A second attach adds no second listener; detached, nothing is exported or counted."""
    metrics.attach()
    open_breaker(cb.cache, "a")
    assert transitions(registry, "a", "open") == 1
    metrics.detach()
    metrics.detach()
    assert (metrics.attached, state(registry, "a")) == (False, None)
    cb.cache.mark_healthy("a")
    metrics.attach()
    assert metrics.attached
    assert transitions(registry, "a", "closed") == 0  # it happened while detached
    assert transitions(registry, "a", "open") == 1  # counts survive a detach


def test_attach_joins_the_breakers_probe_listeners_once(
    cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """observe_probe joins ``breaker.probe_listeners`` once, and leaves it on detach."""
    m = BreakerMetrics(cb, registry=registry)
    m.attach()
    assert cb.probe_listeners.count(m.observe_probe) == 1
    m.detach()
    assert m.observe_probe not in cb.probe_listeners


def test_a_failing_metric_update_never_reaches_the_breaker_or_the_scrape(
    metrics: BreakerMetrics,
    cb: CircuitBreaker,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Listener, probe hook and scrape swallow the error, log it once and count it."""

    def broken(self: CircuitBreaker) -> object:
        raise RuntimeError("boom")

    open_breaker(cb.cache, "b")
    assert state(registry, "b") == 2  # one good scrape first
    monkeypatch.setattr(CircuitBreaker, "deployments", property(broken))
    open_breaker(cb.cache, "a")
    metrics.observe_probe(ProbeResult("a", True, None, 0.1))
    text = generate_latest(registry).decode()
    # The scrape still answers, with the last values read: an open breaker stays on it.
    assert f'{NS}_state{{model_group="chat",model_id="b"}} 2.0' in text
    assert metrics.errors == 3
    assert cb.cache.listener_errors == 0  # isolated by BreakerMetrics itself
    assert cb.cache.breaker_state("a") is BreakerState.OPEN
    assert sum("metrics" in r.getMessage() for r in caplog.records) == 1


def test_two_breakers_on_two_registries_do_not_clash(clock: FakeClock) -> None:
    """Each registry exports its own breaker's values under the same names."""
    one = CircuitBreaker(probe_interval=None, clock=clock, model_list=[deployment("g", "x", "x")])
    two = CircuitBreaker(probe_interval=None, clock=clock, model_list=[deployment("g", "x", "x")])
    r1, r2 = CollectorRegistry(), CollectorRegistry()
    m1, m2 = BreakerMetrics(one, registry=r1), BreakerMetrics(two, registry=r2)
    open_breaker(one.cache, "x")
    assert state(r1, "x", "g") == 2
    assert state(r2, "x", "g") == 0
    assert transitions(r2, "x", "open", "g") == 0
    m1.detach()
    m2.detach()


def test_one_registry_needs_distinct_namespaces(
    cb: CircuitBreaker, registry: CollectorRegistry
) -> None:
    """The same names twice on one registry are refused; another namespace is fine."""
    first = BreakerMetrics(cb, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        BreakerMetrics(cb, registry=registry)
    second = BreakerMetrics(cb, registry=registry, namespace="replica_b")
    labels = {"model_id": "a", "model_group": "chat"}
    assert registry.get_sample_value("replica_b_state", labels) == 0
    assert state(registry, "a") == 0
    second.detach()
    first.detach()


def test_default_registry_is_the_process_registry(cb: CircuitBreaker) -> None:
    """Without ``registry=`` the metrics join the registry LiteLLM's /metrics serves."""
    m = BreakerMetrics(cb)
    try:
        assert m.registry is REGISTRY
        assert state(REGISTRY, "a") == 0
    finally:
        m.detach()
    assert state(REGISTRY, "a") is None


@pytest.mark.parametrize("namespace", ["", "has-dash", "9lives", "a b"])
def test_invalid_namespace_is_refused(
    cb: CircuitBreaker, registry: CollectorRegistry, namespace: str
) -> None:
    """A namespace that is no metric name prefix raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="namespace="):
        BreakerMetrics(cb, registry=registry, namespace=namespace)


def test_without_prometheus_the_module_imports_and_the_error_says_what_to_install(
    cb: CircuitBreaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package works without the extra; BreakerMetrics names the pip command."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setattr(litellm_circuit_breaker, "metrics", litellm_circuit_breaker.metrics)
    monkeypatch.delitem(sys.modules, "litellm_circuit_breaker.metrics")
    fresh = importlib.import_module("litellm_circuit_breaker.metrics")
    with pytest.raises(
        ImportError, match=r"pip install 'litellm-circuit-breaker\[prometheus\]'"
    ) as info:
        fresh.BreakerMetrics(cb, registry=None)
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.asyncio
async def test_sdk_breakers_are_counted_and_their_evictions_exposed(
    clock: FakeClock, litellm_callbacks: None, registry: CollectorRegistry
) -> None:
    """300 SDK models under a bound of 50: the gauge says 50, the counter 250 evicted."""
    sdk = CircuitBreaker(probe_interval=None, clock=clock, max_sdk_breakers=50)
    litellm.callbacks.append(sdk)
    metrics = BreakerMetrics(sdk, registry=registry)
    try:
        with respx.mock() as mock:
            mock.post("http://sdk.test/v1/chat/completions").mock(return_value=ok())
            for n in range(300):
                await litellm.acompletion(
                    model=f"openai/m{n}",
                    api_base="http://sdk.test/v1",
                    api_key=KEY,
                    messages=MESSAGES,
                    max_retries=0,
                )
        assert registry.get_sample_value(f"{NS}_sdk_breakers") == 50
        dropped = f"{NS}_sdk_breakers_dropped_total"
        assert registry.get_sample_value(dropped, {"reason": "evicted"}) == 250
        assert registry.get_sample_value(dropped, {"reason": "untracked"}) == 0
        assert "sdk.test" not in generate_latest(registry).decode()
    finally:
        metrics.detach()


WORKER_PID = "4242"


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """prometheus-client's multiprocess mode, as a LiteLLM worker has it, in a fresh directory."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # prometheus-client picks its value class at import: swap it as its own tests do
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: int(WORKER_PID)))
    yield tmp_path
    values.close_all_multiprocess_files()


def scrape_dir(path: Path) -> CollectorRegistry:
    """What LiteLLM's /metrics (or its metrics server) reads in multiprocess mode."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def test_in_multiprocess_mode_the_series_are_in_the_workers_files(
    multiproc_dir: Path, cb: CircuitBreaker, registry: CollectorRegistry, clock: FakeClock
) -> None:
    """Same names and labels, read back by MultiProcessCollector; state per worker pid."""
    m = BreakerMetrics(cb, registry=registry, refresh_interval=3600)
    try:
        assert m.multiprocess
        assert f"{NS}_state" not in generate_latest(registry).decode()  # nothing registered
        worker = {"model_id": "a", "model_group": "chat", "pid": WORKER_PID}
        assert scrape_dir(multiproc_dir).get_sample_value(f"{NS}_state", worker) == 0
        open_breaker(cb.cache, "a")  # an event: in the files at once, no refresh needed
        files = scrape_dir(multiproc_dir)
        assert files.get_sample_value(f"{NS}_state", worker) == 2
        opened = {"model_id": "a", "model_group": "chat", "state": "open"}
        assert files.get_sample_value(f"{NS}_transitions_total", opened) == 1
        m.observe_probe(ProbeResult("a", False, "down", 0.02))
        cb.counters.skipped = 3
        clock.advance(cb.cache.unhealthy_backoff_sec)
        m.refresh()  # what the instance's thread does every refresh_interval
        files = scrape_dir(multiproc_dir)
        assert files.get_sample_value(f"{NS}_state", worker) == 1
        assert files.get_sample_value(f"{NS}_calls_skipped_total", {"path": "router"}) == 3
        probe = {"model_id": "a", "model_group": "chat"}
        assert files.get_sample_value(f"{NS}_probe_latency_seconds_count", probe) == 1
        assert files.get_sample_value(f"{NS}_probe_results_total", {**probe, "result": "down"})
        m.refresh()  # a counter is advanced by what it grew, never counted twice
        skipped = scrape_dir(multiproc_dir).get_sample_value(
            f"{NS}_calls_skipped_total", {"path": "router"}
        )
        assert skipped == 3
    finally:
        m.detach()
    assert not m.attached


def test_in_multiprocess_mode_a_removed_or_renamed_deployment_stops_reading_as_it_was(
    multiproc_dir: Path, cb: CircuitBreaker
) -> None:
    """Files keep every series: a removed deployment reads closed, not open for good, and
    a renamed model's old info series reads 0, so the dashboard's join on
    ``deployment_info == 1`` finds one name per id."""
    m = BreakerMetrics(cb, multiprocess=True, refresh_interval=3600)
    try:
        open_breaker(cb.cache, "a")
        worker = {"model_id": "a", "model_group": "chat", "pid": WORKER_PID}
        assert scrape_dir(multiproc_dir).get_sample_value(f"{NS}_state", worker) == 2
        renamed = deployment("chat", "b", "b.test", key=KEY)
        renamed["litellm_params"]["model"] = "openai/m-v2"
        cb.sync_deployments([renamed, deployment("embed", "e", "e.test", key=KEY)])
        m.refresh()
        files = scrape_dir(multiproc_dir)
        assert files.get_sample_value(f"{NS}_state", worker) == 0
        info = {"model_id": "b", "model_group": "chat", "pid": WORKER_PID}
        name = f"{NS}_deployment_info"
        assert files.get_sample_value(name, {**info, "model": "openai/m"}) == 0
        assert files.get_sample_value(name, {**info, "model": "openai/m-v2"}) == 1
    finally:
        m.detach()


def test_a_dead_workers_state_leaves_and_its_counts_stay(
    multiproc_dir: Path, cb: CircuitBreaker
) -> None:
    """mark_process_dead (LiteLLM calls it as a worker exits) drops its live gauges only."""
    m = BreakerMetrics(cb, multiprocess=True, refresh_interval=3600)
    open_breaker(cb.cache, "a")
    m.detach()
    mark_process_dead(int(WORKER_PID), path=str(multiproc_dir))
    files = scrape_dir(multiproc_dir)
    assert files.get_sample_value(f"{NS}_state", {"model_id": "a", "model_group": "chat"}) is None
    assert f"{NS}_state{{" not in generate_latest(files).decode()
    opened = {"model_id": "a", "model_group": "chat", "state": "open"}
    assert files.get_sample_value(f"{NS}_transitions_total", opened) == 1


def test_in_multiprocess_mode_a_thread_of_its_own_refreshes_the_counts(
    multiproc_dir: Path, cb: CircuitBreaker
) -> None:
    """No scrape reaches a worker: decision counts arrive within refresh_interval anyway."""
    m = BreakerMetrics(cb, refresh_interval=0.01)
    try:
        cb.counters.trials = 2
        deadline = time.monotonic() + 30
        while scrape_dir(multiproc_dir).get_sample_value(f"{NS}_trial_calls_total") != 2:
            assert time.monotonic() < deadline, "the refresh thread never ran"
            time.sleep(0.01)
    finally:
        m.detach()
    assert not [t for t in threading.enumerate() if t.name == "litellm-circuit-breaker-metrics"]


@pytest.mark.parametrize("interval", [0, -1, math.inf, math.nan, True, "5"])
def test_invalid_refresh_interval_is_refused(
    cb: CircuitBreaker, registry: CollectorRegistry, interval: object
) -> None:
    """refresh_interval must be finite seconds > 0; the error names it."""
    with pytest.raises(ConfigurationError, match="refresh_interval="):
        BreakerMetrics(cb, registry=registry, refresh_interval=interval)  # type: ignore[arg-type]


def test_a_deployment_source_is_read_so_unreached_deployments_have_series(
    clock: FakeClock, registry: CollectorRegistry
) -> None:
    """As the proxy's router is, with probes off: its deployments are exported at once."""
    source = [deployment("chat", "a", "a.test", key=KEY)]
    cb = CircuitBreaker(probe_interval=None, clock=clock, deployment_source=lambda: source)
    m = BreakerMetrics(cb, registry=registry)
    try:
        assert state(registry, "a") == 0
        source = [deployment("chat", "b", "b.test", key=KEY)]
        assert (state(registry, "a"), state(registry, "b")) == (None, 0)
    finally:
        m.detach()


@pytest.mark.asyncio
async def test_litellms_separate_metrics_server_serves_the_workers_series(
    multiproc_dir: Path, cb: CircuitBreaker
) -> None:
    """--prometheus_metrics_port: LiteLLM's own metrics app, on the directory, shows them."""
    from litellm.proxy.prometheus_metrics_server import build_metrics_app  # noqa: PLC0415

    m = BreakerMetrics(cb, refresh_interval=3600)
    try:
        open_breaker(cb.cache, "a")
        transport = httpx.ASGITransport(app=build_metrics_app(str(multiproc_dir)))
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            response = await client.get("/metrics/")
    finally:
        m.detach()
    assert response.status_code == 200
    assert f'{NS}_state{{model_group="chat",model_id="a",pid="{WORKER_PID}"}} 2.0' in response.text
