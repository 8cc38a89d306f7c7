"""The examples the README points to run as a user would run them, and say what they claim."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

from litellm_circuit_breaker import CircuitBreaker, ProbeResult
from litellm_circuit_breaker.metrics import BreakerMetrics
from tests.llm_helpers import deployment, open_breaker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(  # noqa: S603 - our own example, with our own interpreter
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_app_example_keeps_traffic_off_the_dead_provider_and_returns_after_heal() -> None:
    """examples/app_router.py: at most two calls reach the dead primary, then recovery."""
    done = run("app_router.py")
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"calls the dead primary received: (\d+)", done.stdout)
    assert found is not None, done.stdout
    # 2 chat calls, or fewer when a background probe caught the outage first
    assert 1 <= int(found.group(1)) <= 2
    assert "'from backup', 'from backup'" in done.stdout
    assert "after the heal: ['from primary', 'from primary']" in done.stdout
    assert "sk-example" not in done.stdout + done.stderr


DASHBOARD = EXAMPLES / "grafana" / "litellm-circuit-breaker.json"
PREFIX = "litellm_circuit_breaker_"
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
# a whole identifier that is not a function or aggregation (those are followed by "(")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, functions, ranges left out)."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING, _VARIABLES):
        expr = pattern.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(expr) if name.lower() not in _KEYWORDS}


def dashboard_queries() -> list[tuple[str, set[str]]]:
    """Every panel query and query variable of the dashboard, with the names it selects."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (target["expr"], promql_metric_names(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = _LABEL_VALUES.fullmatch(text.strip())
            assert found is not None, f"variable {variable['name']}: {text}"
            queries.append((text, {found.group(1)}))
    return queries


def exported_samples() -> list[Sample]:
    """A real scrape of BreakerMetrics after a transition and a probe (histograms filled)."""
    breaker = CircuitBreaker(probe_interval=None, model_list=[deployment("chat", "a", "a.test")])
    registry = CollectorRegistry()
    metrics = BreakerMetrics(breaker, registry=registry)
    try:
        open_breaker(breaker.cache, "a")
        metrics.observe_probe(ProbeResult("a", False, "down", 0.2))
        return [s for family in registry.collect() for s in family.samples]
    finally:
        metrics.detach()


def test_promql_metric_names_finds_series_not_functions_labels_or_variables() -> None:
    """The parser the dashboard test relies on, on the shapes the dashboard uses."""
    expr = (
        'histogram_quantile(0.95, sum by (model_id, le) (rate(x_bucket{model_group=~"$g"}'
        "[$__rate_interval]))) / on (model_id) group_left y or vector(0)"
    )
    assert promql_metric_names(expr) == {"x_bucket", "y"}


def test_every_grafana_query_names_a_series_the_plugin_exports() -> None:
    """examples/grafana: each query selects our series only, by names a real scrape has."""
    samples = exported_samples()
    exported = {s.name for s in samples}
    queries = dashboard_queries()
    assert queries
    for expr, names in queries:
        assert names, f"no series in: {expr}"
        assert names <= exported, f"not exported: {sorted(names - exported)} in: {expr}"
    used = set().union(*(names for _, names in queries))
    # and the dashboard shows every series we export (suffixes aside)
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported}
    shown = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"
    state = [s for s in samples if s.name == f"{PREFIX}state"]
    assert state
    assert set(state[0].labels) == {"model_id", "model_group"}  # LiteLLM's label names
    matchers = [m for expr, _ in queries for m in re.findall(r"\{([^}]*)\}", expr)]
    assert matchers
    assert all(m.split("=")[0].strip() in {"model_id", "model_group"} for m in matchers)
