"""The real LiteLLM proxy, enabled with the one-line config, against embedded fake providers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from litellm_circuit_breaker.testing import FakeProvider, group_alive
from tests.proxy_harness import (
    MASTER_KEY,
    STARTUP_TIMEOUT_SEC,
    Proxy,
    breaker_lines,
    litellm_command,
    proxy_env,
    running_proxy,
    wait_for,
)

NAMES = ("a", "b", "solo", "p", "fb", "t")
KEYS = {name: f"sk-e2e-{name}-{'x' * 12}-secret" for name in NAMES}


@dataclass
class Fleet:
    proxy: Proxy
    providers: dict[str, FakeProvider]


def deployment(group: str, name: str, provider: FakeProvider) -> str:
    return f"""
  - model_name: {group}
    litellm_params:
      model: openai/fake-model
      api_base: "{provider.base_url}"
      api_key: {KEYS[name]}
    model_info: {{id: {name}}}"""


def two_deployment_config(dead: FakeProvider, live: FakeProvider) -> str:
    """Group "chat": deployment "a" (to be killed) and its sibling "b"; the one-line plugin."""
    return (
        "model_list:"
        + deployment("chat", "a", dead)
        + deployment("chat", "b", live)
        + """
litellm_settings:
  callbacks: ["litellm_circuit_breaker.proxy.breaker"]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One proxy with the plugin enabled by one line, over six fake providers."""
    providers = {name: FakeProvider(record=True).start_in_thread() for name in NAMES}
    try:
        config = (
            "model_list:"
            + deployment("chat", "a", providers["a"])
            + deployment("chat", "b", providers["b"])
            + deployment("solo", "solo", providers["solo"])
            + deployment("primary", "p", providers["p"])
            + deployment("backup", "fb", providers["fb"])
            + deployment("timeouts", "t", providers["t"])
            + """
litellm_settings:
  callbacks: ["prometheus", "litellm_circuit_breaker.proxy.breaker"]
router_settings:
  fallbacks: [{"primary": ["backup"]}]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""
        )
        env = {
            "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "0.5",
            # Margin: a loaded machine can keep a healthy loopback probe waiting for
            # seconds, which would open a breaker before the test's outage begins.
            "CIRCUIT_BREAKER_PROBE_TIMEOUT_SEC": "10",
            "CIRCUIT_BREAKER_WHEN_ALL_OPEN": "fail_fast",
        }
        with running_proxy(config, tmp_path_factory.mktemp("proxy"), env) as proxy:
            yield Fleet(proxy, providers)
            output = proxy.output()
        assert not group_alive(proxy.process.pid)
    finally:
        for provider in providers.values():
            provider.stop()
    leaked = [name for name, key in KEYS.items() if key in output]
    assert not leaked, f"keys of {leaked} appeared in the proxy's output"


def failed_chat_calls(provider: FakeProvider) -> int:
    return sum(1 for c in provider.recorded() if "chat" in c.path and c.status != 200)


def served_chat_calls(provider: FakeProvider) -> int:
    return sum(1 for c in provider.recorded() if "chat" in c.path and c.status == 200)


def test_proxy_keeps_traffic_off_a_dead_provider_and_returns_after_heal(fleet: Fleet) -> None:
    """The dead one gets at most 2 calls, probes watch it, and it serves again after healing."""
    a, b = fleet.providers["a"], fleet.providers["b"]
    assert [fleet.proxy.chat("chat").status_code for _ in range(4)] == [200] * 4
    a.error(503)
    answers = [fleet.proxy.chat("chat").status_code for _ in range(20)]
    assert answers == [200] * 20, "the sibling should have served every request"
    # at most the threshold; none when a 0.5 s probe caught the outage first
    assert failed_chat_calls(a) <= 2
    dead_chat_calls = a.calls("chat")
    models_before = a.calls("models")
    wait_for(lambda: a.calls("models") >= models_before + 3, 30, "probes stopped watching a")
    assert a.calls("chat") == dead_chat_calls, "chat calls reached an open deployment"
    assert served_chat_calls(b) >= 20
    served_before = served_chat_calls(a)
    a.healthy()

    def a_serves_again() -> bool:
        assert fleet.proxy.chat("chat").status_code == 200
        return served_chat_calls(a) > served_before

    wait_for(a_serves_again, 30, "the healed provider never got traffic back")
    output = fleet.proxy.output()
    # every transition is in the proxy's log, named by id, group, model and host
    host = a.base_url.removeprefix("http://").removesuffix("/v1")
    assert f"deployment a (chat: openai/fake-model at {host}) circuit opened" in output
    # The ping after the heal half-opens it; the next real call closes it.

    def recovered() -> bool:
        assert fleet.proxy.chat("chat").status_code == 200
        return bool(breaker_lines(fleet.proxy.output(), "a", "recovered"))

    wait_for(recovered, 30, "no recovery line", lambda: fleet.proxy.output()[-4000:])


STARTUP_LINE = "circuit breaker enabled:"


def test_one_info_line_at_startup_says_the_breaker_is_on_and_how(fleet: Fleet) -> None:
    """Enabled, the deployments probed, sharing off, the settings changed: once, at INFO."""
    wait_for(lambda: STARTUP_LINE in fleet.proxy.output(), 60, "no startup line")
    lines = [line for line in fleet.proxy.output().splitlines() if STARTUP_LINE in line]
    assert len(lines) == 1, lines
    assert "INFO" in lines[0]
    assert lines[0].endswith(
        "circuit breaker enabled: probing 6 of 6 deployments every 0.5s, sharing off; "
        "settings changed from the defaults: probe_interval=0.5, probe_timeout=10, "
        "when_all_open=fail_fast"
    )


def test_breaker_metrics_are_on_the_proxys_metrics_endpoint(fleet: Fleet) -> None:
    """With LiteLLM's Prometheus on, /metrics carries every deployment's breaker, no secrets."""
    assert fleet.proxy.chat("chat").status_code == 200
    response = httpx.get(
        f"{fleet.proxy.url}/metrics/",
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200
    states = {
        (s.labels["model_id"], s.labels["model_group"])
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "litellm_circuit_breaker_state"
    }
    assert {("a", "chat"), ("b", "chat"), ("solo", "solo"), ("p", "primary")} <= states
    assert "litellm_proxy_total_requests" in response.text  # LiteLLM's own, same endpoint
    assert not [key for key in KEYS.values() if key in response.text]
    ours = "\n".join(
        line for line in response.text.splitlines() if "litellm_circuit_breaker_" in line
    )
    assert "litellm_circuit_breaker_transitions_total" in ours
    # LiteLLM labels its own series with the api_base; ours carry no URL at all.
    assert not [p.base_url for p in fleet.providers.values() if p.base_url in ours]
    assert "127.0.0.1" not in ours


def test_proxy_fail_fast_answers_503_with_retry_after_naming_the_group(fleet: Fleet) -> None:
    """A single-deployment group, dead, no fallback, fail_fast: 503 + Retry-After at once."""
    solo = fleet.providers["solo"]
    solo.error(503)
    for _ in range(2):
        fleet.proxy.chat("solo")
    calls = solo.calls("chat")
    assert calls <= 2 * 3  # the proxy's own retries of the first two requests at most
    response = fleet.proxy.chat("solo")
    assert response.status_code == 503
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert "solo" in response.text
    assert "circuit" in response.text
    assert solo.calls("chat") == calls


def test_what_litellm_still_reports_for_a_fail_fast_refusal(fleet: Fleet) -> None:
    """Per refusal: LiteLLM's two ERROR records, no traceback; its Prometheus says 424.

    None of it is the breaker's to change (README, the fail_fast bullet): the proxy
    logs every failed request at ERROR before any callback may replace the error; the
    Router logs one more, of three lines, whenever a fallbacks list is configured (this
    proxy has one, for another group); LiteLLM's Prometheus reads the Router's error,
    not the 503 the client gets.
    """
    solo = fleet.providers["solo"]
    solo.error(503)
    for _ in range(10):
        if "circuit" in fleet.proxy.chat("solo").text:
            break
    before = len(fleet.proxy.output().splitlines())
    assert [fleet.proxy.chat("solo").status_code for _ in range(3)] == [503] * 3

    def logged() -> bool:
        lines = fleet.proxy.output().splitlines()[before:]
        return sum('/v1/chat/completions HTTP/1.1" 503' in line for line in lines) >= 3

    wait_for(logged, 30, "the proxy never logged the three requests")
    new = fleet.proxy.output().splitlines()[before:]
    proxy_errors = [line for line in new if "LiteLLM Proxy:ERROR" in line]
    router_errors = [line for line in new if "LiteLLM Router:ERROR" in line]
    assert len(proxy_errors) == len(router_errors) == 3, new
    assert all("model group 'solo' are circuit-open" in line for line in proxy_errors)
    assert all("Error occurred while trying to do fallbacks" in line for line in router_errors)
    assert not [line for line in new if "Traceback" in line]
    metrics = httpx.get(
        f"{fleet.proxy.url}/metrics/", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    ).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("litellm_proxy_failed_requests_metric_total")
        and 'exception_class="AllDeploymentsOpenError"' in line
    ]
    assert counted
    assert all('exception_status="424"' in line for line in counted)
    # the breaker's own series call it what it is
    assert 'litellm_circuit_breaker_all_open_total{action="fail_fast"}' in metrics


def test_a_clients_own_short_timeout_never_opens_a_healthy_deployment(fleet: Fleet) -> None:
    """A body "timeout" of 0.05 s on a 300 ms deployment: the client's timeout, not its fault."""
    slow = fleet.providers["t"]
    slow.slow(0.3)
    try:
        assert fleet.proxy.chat("timeouts").status_code == 200  # it answers, in 0.3 s
        short = {"timeout": 0.05}
        statuses = [fleet.proxy.chat("timeouts", body=short).status_code for _ in range(3)]
        assert all(code >= 400 for code in statuses), statuses
        # fail_fast is on: had those opened the breaker, these would be 503s.
        assert [fleet.proxy.chat("timeouts").status_code for _ in range(3)] == [200] * 3
        # Probes every 0.5 s would soon close a wrongly opened breaker: read the log too.
        assert not breaker_lines(fleet.proxy.output(), "t", "circuit opened")
    finally:
        slow.healthy()


def test_proxy_sends_an_all_open_group_to_its_fallback_at_once(fleet: Fleet) -> None:
    """With a fallback configured the open primary is skipped: no calls, no errors."""
    primary, backup = fleet.providers["p"], fleet.providers["fb"]
    primary.error(503)
    statuses = [fleet.proxy.chat("primary").status_code for _ in range(8)]
    assert statuses == [200] * 8
    assert 1 <= failed_chat_calls(primary) <= 2
    assert served_chat_calls(backup) == 8


def test_a_bad_setting_stops_the_proxy_at_startup_naming_it(tmp_path: Path) -> None:
    """CIRCUIT_BREAKER_FAILURE_THRESHOLD=abc: the proxy refuses to start and says why."""
    config = tmp_path / "config.yaml"
    config.write_text(
        """model_list:
  - model_name: chat
    litellm_params: {model: openai/fake-model, api_base: "http://127.0.0.1:9/v1", api_key: k}
litellm_settings:
  callbacks: ["litellm_circuit_breaker.proxy.breaker"]
"""
    )
    done = subprocess.run(  # noqa: S603 - our own venv's litellm, fixed arguments
        [litellm_command(), "--config", str(config), "--host", "127.0.0.1", "--port", "9"],
        env=proxy_env({"CIRCUIT_BREAKER_FAILURE_THRESHOLD": "abc"}),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SEC,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "CIRCUIT_BREAKER_FAILURE_THRESHOLD='abc' is invalid" in output


def test_the_proxys_own_health_checks_are_never_counted(tmp_path: Path) -> None:
    """background_health_checks hit a failing deployment again and again: it stays closed."""
    with FakeProvider(models_follow_mode=False).start_in_thread() as sick:
        sick.error(503)  # completions fail; /models stays healthy, so probes pass
        config = (
            "model_list:"
            + deployment("chat", "a", sick)
            + """
litellm_settings:
  callbacks: ["litellm_circuit_breaker.proxy.breaker"]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  background_health_checks: true
  health_check_interval: 1
"""
        )
        env = {
            "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "0.5",
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2",
        }
        with running_proxy(config, tmp_path, env) as proxy:
            wait_for(lambda: sick.calls("chat") >= 4, 60, "health checks stopped or never ran")
            assert "circuit opened" not in proxy.output()
            # real traffic still counts: two user requests open it
            for _ in range(2):
                proxy.chat("chat")
            wait_for(
                lambda: bool(breaker_lines(proxy.output(), "a", "circuit opened")),
                30,
                "user traffic should still open the breaker",
            )


def test_each_worker_has_its_own_breaker_with_num_workers(tmp_path: Path) -> None:
    """--num_workers 2: traffic keeps flowing, the dead one sees at most threshold per worker."""
    with FakeProvider().start_in_thread() as dead, FakeProvider().start_in_thread() as live:
        config = two_deployment_config(dead, live)
        env = {"CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off"}
        # a worker still importing LiteLLM on a loaded machine misses uvicorn's 5 s
        # health check and is killed in a loop; give it the startup deadline instead
        args = ("--num_workers", "2", "--timeout_worker_healthcheck", str(int(STARTUP_TIMEOUT_SEC)))
        with running_proxy(config, tmp_path, env, args=args) as proxy:
            # liveliness answers once the first worker is up; wait for both
            wait_for(
                lambda: proxy.output().count("Application startup complete") == 2,
                STARTUP_TIMEOUT_SEC,
                "the second worker never started",
                lambda: "the proxy's output, last 4,000 characters:\n" + proxy.output()[-4000:],
            )
            dead.error(503)
            statuses = [proxy.chat("chat").status_code for _ in range(30)]
            assert statuses == [200] * 30
            assert dead.calls("chat") <= 2 * 2
            assert len(breaker_lines(proxy.output(), "a", "circuit opened")) <= 2
            # one startup line per worker: each has its own breaker
            assert (
                proxy.output().count(
                    "circuit breaker enabled: probes off, sharing off; "
                    "settings changed from the defaults: probe_interval=off"
                )
                == 2
            )


def samples(proxy: Proxy, path: str = "/metrics/") -> list[Sample]:
    """Every sample the proxy's Prometheus endpoint serves now."""
    response = httpx.get(
        f"{proxy.url}{path}", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    assert response.status_code == 200, response.text[:500]
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def test_with_num_workers_every_workers_breaker_is_on_metrics(tmp_path: Path) -> None:
    """--num_workers 2, LiteLLM's Prometheus on: each worker's state, by model_id, on /metrics."""
    with FakeProvider().start_in_thread() as dead, FakeProvider().start_in_thread() as live:
        config = two_deployment_config(dead, live).replace(
            'callbacks: ["litellm_circuit_breaker.proxy.breaker"]',
            'callbacks: ["prometheus", "litellm_circuit_breaker.proxy.breaker"]',
        )
        # a directory of this test's own (LiteLLM wipes the one it uses at startup),
        # made first: prometheus-client writes to it as soon as LiteLLM is imported
        multiproc_dir = tmp_path / "prometheus"
        multiproc_dir.mkdir()
        env = {
            "CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "off",
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        }
        args = ("--num_workers", "2", "--timeout_worker_healthcheck", str(int(STARTUP_TIMEOUT_SEC)))
        with running_proxy(config, tmp_path, env, args=args) as proxy:

            def states() -> dict[tuple[str, str, str], float]:
                return {
                    (s.labels["model_id"], s.labels["model_group"], s.labels["pid"]): s.value
                    for s in samples(proxy)
                    if s.name == "litellm_circuit_breaker_state"
                }

            def detail() -> str:
                return f"states: {states()}\nthe proxy's output:\n{proxy.output()[-4000:]}"

            # each worker refreshes every 5 s, so both appear once they know the router
            wait_for(
                lambda: len({pid for _, _, pid in states()}) == 2,
                STARTUP_TIMEOUT_SEC,
                "the two workers' breakers never both reached /metrics",
                detail,
            )
            assert {(d, g) for d, g, _ in states()} == {("a", "chat"), ("b", "chat")}
            assert set(states().values()) == {0.0}
            dead.error(503)

            def a_opened() -> bool:
                assert proxy.chat("chat").status_code == 200  # the sibling answers
                return any(v == 2 for (d, _, _), v in states().items() if d == "a")

            wait_for(a_opened, 120, "no worker's breaker for a ever showed open", detail)
            assert all(v == 0 for (d, _, _), v in states().items() if d == "b")
            found = samples(proxy)
            opened = [
                s
                for s in found
                if s.name == "litellm_circuit_breaker_transitions_total"
                and s.labels == {"model_id": "a", "model_group": "chat", "state": "open"}
            ]
            assert opened
            assert opened[0].value >= 1
            # LiteLLM's own series name the deployment by the same label: they join ours
            theirs = {
                s.name
                for s in found
                if not s.name.startswith("litellm_circuit_breaker_")
                and s.labels.get("model_id") == "a"
            }
            assert theirs, sorted({s.name for s in found})
            ours = [s for s in found if s.name.startswith("litellm_circuit_breaker_")]
            shown = repr(ours)
            assert dead.base_url not in shown
            assert "127.0.0.1" not in shown
            assert not [key for key in KEYS.values() if key in shown]


@pytest.mark.parametrize("switch", ["JSON_LOGS=True", "litellm_settings.json_logs"])
def test_with_json_logs_the_breakers_lines_are_json_like_litellms(
    tmp_path: Path, switch: str
) -> None:
    """Parsed line by line: ours are LiteLLM's JSON records, however JSON logs are turned on."""
    with FakeProvider().start_in_thread() as provider:
        json_setting = "\n  json_logs: true" if switch == "litellm_settings.json_logs" else ""
        config = (
            "model_list:"
            + deployment("chat", "a", provider)
            + f"""
litellm_settings:
  callbacks: ["litellm_circuit_breaker.proxy.breaker"]{json_setting}
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""
        )
        env = {"CIRCUIT_BREAKER_PROBE_INTERVAL_SEC": "0.5"}
        if switch == "JSON_LOGS=True":
            env["JSON_LOGS"] = "True"
        with running_proxy(config, tmp_path, env) as proxy:
            assert proxy.chat("chat").status_code == 200
            provider.error(503)
            wait_for(lambda: "circuit opened" in proxy.output(), 30, "the breaker never opened")
            output = proxy.output()
    records, plain = [], []
    for line in output.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            plain.append(line)
    # LiteLLM 1.108 prints its banner as plain text even so: none of those lines is ours.
    assert not [line for line in plain if "circuit" in line or "deployment a" in line], plain
    ours = [r for r in records if r.get("component") == "litellm_circuit_breaker"]
    assert [r["level"] for r in ours] == ["INFO", "WARNING"], ours
    assert ours[0]["message"].startswith("circuit breaker enabled: probing 1 of 1 deployment")
    assert breaker_lines(ours[1]["message"], "a", "circuit opened"), ours[1]["message"]
    assert KEYS["a"] not in output
