"""Failover quality: scripted outages against fake providers, three ways.

Each scenario runs against FakeProviders on loopback, once per configuration,
one configuration after another (never concurrently):

* ``litellm-defaults``: a LiteLLM Router as it comes (only the time scale applied);
* ``litellm-tuned``: the same Router with ``allowed_fails=1, cooldown_time=30``;
* ``plugin``: the defaults Router plus this package's ``CircuitBreaker``, probes on.

Real-world timings (one request every 2 s, 60 s outages, 30 s probe interval...)
are divided by one scale factor so the suite fits its budget; every setting
that is a duration is scaled the same way, and the results are shown in
scaled seconds and converted back. LiteLLM's own retry back-off (0.5 s
doubling, up to 8 s, or the provider's Retry-After) is a constant inside
LiteLLM and is *not* scaled: it weighs ``scale`` times more against the
compressed outages than it would in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import common
import litellm
from common import attached, fmt, median, percentile, progress, table
from litellm.integrations.custom_logger import CustomLogger

from litellm_circuit_breaker import CircuitBreaker
from litellm_circuit_breaker.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]
CONFIGS = ("litellm-defaults", "litellm-tuned", "plugin")

# Real-scale settings, in seconds; everything here is divided by the scale factor.
REAL = {
    "request_every": 2.0,
    "healthy_before": 20.0,
    "outage": 60.0,
    "observe_after_heal": 50.0,
    "flap": 30.0,
    "request_timeout": 10.0,
    "retry_after": 20.0,
    "cooldown_default": 5.0,  # LiteLLM's DEFAULT_COOLDOWN_TIME_SECONDS
    "cooldown_tuned": 30.0,
    "plugin_backoff": 60.0,  # the plugin's defaults
    "probe_interval": 30.0,
    "probe_timeout": 3.0,
    "trial_lease": 30.0,
    "stall_after": 0.5,
    "trial_probe_interval": 5.0,
}


class AttemptRecorder(CustomLogger):
    """Records every attempt the Router sends to a deployment, before any network I/O.

    Attached in all three configurations alike. Counting here rather than at
    the provider also sees attempts at a deployment that refuses connections.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[tuple[float, str, int | None]] = []

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        model_info = kwargs.get("model_info") or {}
        metadata = kwargs.get("metadata") or {}
        self.attempts.append(
            (time.monotonic(), str(model_info.get("id")), metadata.get("bench_request"))
        )
        return None


@dataclass
class Scenario:
    name: str
    title: str
    group: str
    """The group every request asks for."""
    dead: str
    """The deployment the script breaks."""
    fallback: bool
    """A fallback group exists (otherwise a sibling in the same group)."""
    phases: list[tuple[float, str]]
    """(real-scale second, mode) switches of the dead deployment; the last entry ends the run."""
    notes: str = ""
    blind_probe: bool = False
    """The dead deployment's /models keeps answering 200 whatever its chat does."""
    request_every: float | None = None
    """Real seconds between requests, when not ``REAL["request_every"]``."""
    max_dead_calls: int | None = None
    """The target for calls to the dead deployment per outage (None: ``failure_threshold``)."""
    max_recovery_real_s: float | None = None
    """The recovery target in real seconds (None: one probe interval)."""


def scenarios() -> list[Scenario]:
    before, outage, after, flap = (
        REAL["healthy_before"],
        REAL["outage"],
        REAL["observe_after_heal"],
        REAL["flap"],
    )
    heal = before + outage
    return [
        Scenario(
            "primary-503",
            "Primary answers 503 for 60 s, then heals; fallback group",
            "primary",
            "primary",
            fallback=True,
            phases=[(0, "healthy"), (before, "error"), (heal, "healthy"), (heal + after, "end")],
        ),
        Scenario(
            "primary-hang",
            "Primary accepts and never answers for 60 s (request timeout 10 s); fallback group",
            "primary",
            "primary",
            fallback=True,
            phases=[(0, "healthy"), (before, "hang"), (heal, "healthy"), (heal + after, "end")],
        ),
        Scenario(
            "primary-flap",
            "Primary flaps: 30 s of 503 / 30 s good, twice; fallback group",
            "primary",
            "primary",
            fallback=True,
            phases=[
                (0, "healthy"),
                (before, "error"),
                (before + flap, "healthy"),
                (before + 2 * flap, "error"),
                (before + 3 * flap, "healthy"),
                (before + 4 * flap, "end"),
            ],
        ),
        Scenario(
            "primary-429",
            "429 storm for 60 s with Retry-After: 20 s; fallback group",
            "primary",
            "primary",
            fallback=True,
            phases=[
                (0, "healthy"),
                (before, "rate_limit"),
                (heal, "healthy"),
                (heal + after, "end"),
            ],
        ),
        Scenario(
            "sibling-dies",
            "Two deployments in one group; one refuses connections for 60 s; no fallback",
            "chat",
            "chat-a",
            fallback=False,
            phases=[(0, "healthy"), (before, "refuse"), (heal, "healthy"), (heal + after, "end")],
        ),
        *(_blind_probe(offset) for offset in BLIND_PROBE_OFFSETS),
    ]


# The issue-11 outage: /models answers 200 while chat answers 503, a request every
# 4 s, probes every 30 s. The outage starts this many seconds later than in the other
# scenarios, which moves it against the probe rounds (the first of them at the run's
# start): the first probe after it starts comes 10, 2.5, 25 and 17.5 s into it.
BLIND_PROBE_OFFSETS = (0.0, 7.5, 15.0, 22.5)


def _blind_probe(offset: float) -> Scenario:
    before = REAL["healthy_before"] + offset
    heal = before + REAL["outage"]
    first_probe = (30.0 - before % 30.0) % 30.0
    return Scenario(
        f"blind-probe-{first_probe:g}s",
        "Primary answers 503 for 60 s while its /models answers 200; a request every 4 s, "
        f"the first probe {first_probe:g} s into the outage; fallback group",
        "primary",
        "primary",
        fallback=True,
        phases=[
            (0, "healthy"),
            (before, "error"),
            (heal, "healthy"),
            (heal + REAL["observe_after_heal"], "end"),
        ],
        blind_probe=True,
        request_every=4.0,
        max_dead_calls=3,
        max_recovery_real_s=40.0,
    )


@dataclass
class Request:
    index: int
    sent: float
    """Monotonic time the request was sent."""
    latency: float = float("nan")
    served_by: str | None = None
    error: str | None = None


@dataclass
class RunResult:
    config: str
    started: float
    requests: list[Request] = field(default_factory=list)
    outages: list[tuple[float, float]] = field(default_factory=list)
    """(start, heal) in monotonic time."""
    attempts: list[tuple[float, str, int | None]] = field(default_factory=list)
    dead_chat_arrivals: list[tuple[float, int | None]] = field(default_factory=list)
    """(arrival, status) of chat calls at the dead deployment's provider."""
    transitions: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, deployment, new state) of the plugin's breakers during the run."""
    extra: dict[str, Any] = field(default_factory=dict)


def _model_list(scenario: Scenario, providers: dict[str, FakeProvider]) -> list[dict[str, Any]]:
    if scenario.fallback:
        layout = [("primary", "primary"), ("backup", "backup")]
    else:
        layout = [("chat", "chat-a"), ("chat", "chat-b")]
    return [
        {
            "model_name": group,
            "litellm_params": {
                "model": "openai/fake-model",
                "api_base": providers[dep_id].base_url,
                "api_key": f"sk-bench-{dep_id}",
            },
            "model_info": {"id": dep_id},
        }
        for group, dep_id in layout
    ]


def _router(scenario: Scenario, config: str, models: list[dict[str, Any]], scale: float) -> Any:
    kwargs: dict[str, Any] = {
        "model_list": models,
        "timeout": REAL["request_timeout"] / scale,
        "cooldown_time": REAL["cooldown_default"] / scale,
    }
    if scenario.fallback:
        kwargs["fallbacks"] = [{"primary": ["backup"]}]
    if config == "litellm-tuned":
        kwargs["allowed_fails"] = 1
        kwargs["cooldown_time"] = REAL["cooldown_tuned"] / scale
    return litellm.Router(**kwargs)


def _switch(provider: FakeProvider, mode: str, scale: float) -> None:
    if mode == "rate_limit":
        provider.rate_limit(retry_after=REAL["retry_after"] / scale)
    else:
        getattr(provider, mode)()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _run_once(scenario: Scenario, config: str, scale: float) -> RunResult:
    ids = ["primary", "backup"] if scenario.fallback else ["chat-a", "chat-b"]
    async with contextlib.AsyncExitStack() as stack:
        providers = {
            dep_id: await stack.enter_async_context(
                FakeProvider(
                    reply=dep_id,
                    record=True,
                    models_follow_mode=not (scenario.blind_probe and dep_id == scenario.dead),
                )
            )
            for dep_id in ids
        }
        models = _model_list(scenario, providers)
        router = _router(scenario, config, models, scale)
        recorder = AttemptRecorder()
        callbacks: list[Any] = [recorder]
        breaker: CircuitBreaker | None = None
        transitions: list[tuple[float, str, str]] = []
        if config == "plugin":
            breaker = CircuitBreaker(
                model_list=models,
                unhealthy_backoff_sec=REAL["plugin_backoff"] / scale,
                probe_interval=REAL["probe_interval"] / scale,
                probe_timeout=REAL["probe_timeout"] / scale,
                trial_lease_sec=REAL["trial_lease"] / scale,
                stall_after_sec=REAL["stall_after"] / scale,
                trial_probe_interval=REAL["trial_probe_interval"] / scale,
            )
            callbacks.append(breaker)
        with attached(*callbacks):
            # Warm-up outside the record: HTTP clients created, every group answered once.
            for group in {m["model_name"] for m in models}:
                for _ in range(2):
                    await router.acompletion(model=group, messages=MESSAGES)
            if breaker is not None:
                await stack.enter_async_context(breaker)
                breaker.cache.add_listener(
                    lambda e: transitions.append((time.monotonic(), e.deployment, e.new.value))
                )
            for provider in providers.values():
                provider.reset_counts()
            recorder.attempts.clear()
            result = await _drive(scenario, config, scale, router, providers[scenario.dead])
            result.attempts = list(recorder.attempts)
            result.transitions = [t for t in transitions if t[0] >= result.started]
            if breaker is not None:
                result.extra["plugin_counters"] = dict(breaker.counters)
                result.extra["internal_errors"] = dict(breaker.internal_errors)
                await breaker.aclose()
        result.dead_chat_arrivals = [
            (call.at, call.status)
            for call in providers[scenario.dead].recorded()
            if call.path.endswith("/chat/completions")
        ]
        result.extra["probe_calls_to_dead"] = providers[scenario.dead].calls("models")
        result.extra["server_chat_calls"] = {k: p.calls("chat") for k, p in providers.items()}
        providers[scenario.dead].healthy()  # release anything still hung before closing
    return result


async def _drive(
    scenario: Scenario,
    config: str,
    scale: float,
    router: Any,
    dead: FakeProvider,
) -> RunResult:
    started = time.monotonic()
    result = RunResult(config, started)
    phases = [(started + at / scale, mode) for at, mode in scenario.phases]
    end = phases[-1][0]
    outage_start: float | None = None
    for at, mode in phases[:-1]:
        if mode != "healthy":
            outage_start = at
        elif outage_start is not None:
            result.outages.append((outage_start, at))
            outage_start = None

    async def script() -> None:
        for at, mode in phases[:-1]:
            await _sleep_until(at)
            _switch(dead, mode, scale)

    async def one(request: Request) -> None:
        t0 = time.perf_counter()
        try:
            response = await router.acompletion(
                model=scenario.group,
                messages=MESSAGES,
                metadata={"bench_request": request.index},
            )
            request.served_by = str(response.choices[0].message.content)
        except Exception as exc:
            request.error = type(exc).__name__
        request.latency = time.perf_counter() - t0

    scripter = asyncio.create_task(script())
    tasks: list[asyncio.Task[None]] = []
    every = (scenario.request_every or REAL["request_every"]) / scale
    index = 0
    while (at := started + index * every) < end:
        await _sleep_until(at)
        request = Request(index, time.monotonic())
        result.requests.append(request)
        tasks.append(asyncio.create_task(one(request)))
        index += 1
    await scripter
    # Requests still in LiteLLM's retry back-off finish against a healed provider.
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.extra["cancelled_at_end"] = len(pending)
    return result


def _summarise(scenario: Scenario, run: RunResult, scale: float) -> dict[str, Any]:
    """The per-run figures the tables show; all times in scaled seconds unless named _real."""
    first_outage = run.outages[0][0]
    baseline = [r.latency for r in run.requests if r.sent < first_outage and r.error is None]
    base = median(baseline)
    per_outage = []
    added: list[float] = []
    for number, (start, heal) in enumerate(run.outages):
        next_start = run.outages[number + 1][0] if number + 1 < len(run.outages) else None
        attempts = [a for a in run.attempts if a[1] == scenario.dead and start <= a[0] < heal]
        arrivals = [a for a in run.dead_chat_arrivals if start <= a[0] < heal]
        issued = [r for r in run.requests if start <= r.sent < heal]
        added += [r.latency - base for r in issued]
        # A client request answered by the healed deployment (a trial completion the
        # plugin sends it is no recovery until traffic follows).
        healed_ok = [
            at
            for r in run.requests
            if r.served_by == scenario.dead
            and (at := r.sent + r.latency) >= heal
            and (next_start is None or at < next_start)
        ]
        recovery = min(healed_ok) - heal if healed_ok else None
        per_outage.append(
            {
                "start_s": start - run.started,
                "heal_s": heal - run.started,
                "requests": len(issued),
                "dead_attempts": len(attempts),
                "dead_chat_arrivals": len(arrivals),
                "client_failures": sum(1 for r in issued if r.error is not None),
                "recovery_s": recovery,
            }
        )
    recoveries = [o["recovery_s"] for o in per_outage]
    observed_after = [
        (run.outages[i + 1][0] if i + 1 < len(run.outages) else run.started + _end(scenario, scale))
        - heal
        for i, (_, heal) in enumerate(run.outages)
    ]
    errors: dict[str, int] = {}
    for r in run.requests:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "config": run.config,
        "requests": len(run.requests),
        "client_failures": sum(errors.values()),
        "errors": errors,
        "baseline_latency_ms": 1e3 * base,
        "dead_calls": sum(o["dead_attempts"] for o in per_outage),
        "dead_calls_per_outage": [o["dead_attempts"] for o in per_outage],
        "added_latency_ms": {
            "p50": 1e3 * percentile(added, 50),
            "p95": 1e3 * percentile(added, 95),
        },
        "recovery_s": recoveries,
        "recovery_real_s": [None if r is None else r * scale for r in recoveries],
        "observed_after_heal_s": observed_after,
        "outages": per_outage,
        "timeline": _timeline(scenario, run),
        "series": _series(run),
        **run.extra,
    }


def _series(run: RunResult) -> dict[str, Any]:
    """The raw run in scaled seconds from its start, for plots (bench/plot.py)."""

    def at(t: float) -> float:
        return round(t - run.started, 4)

    return {
        "outages": [[at(start), at(heal)] for start, heal in run.outages],
        "requests": [
            [at(r.sent), "failed" if r.error is not None else r.served_by, round(r.latency, 4)]
            for r in run.requests
        ],
        "attempts": [[at(t), dep] for t, dep, _ in run.attempts if t >= run.started],
        "transitions": [[at(t), dep, state] for t, dep, state in run.transitions],
    }


def _end(scenario: Scenario, scale: float) -> float:
    return scenario.phases[-1][0] / scale


def _timeline(scenario: Scenario, run: RunResult) -> dict[str, str]:
    """One character per request: who served it, and how many attempts hit the dead one."""
    dead_attempts: dict[int, int] = {}
    for at, dep_id, index in run.attempts:
        broken = any(start <= at < heal for start, heal in run.outages)
        if broken and dep_id == scenario.dead and index is not None:
            dead_attempts[index] = dead_attempts.get(index, 0) + 1
    state, served, dead = [], [], []
    for r in run.requests:
        down = any(start <= r.sent < heal for start, heal in run.outages)
        state.append("#" if down else "_")
        if r.error is not None:
            served.append("X")
        elif r.served_by == scenario.dead:
            served.append("P")
        else:
            served.append("f")
        n = dead_attempts.get(r.index, 0)
        dead.append("." if n == 0 else str(min(n, 9)))
    return {"state": "".join(state), "served": "".join(served), "dead": "".join(dead)}


async def _main(scale: float, only: set[str] | None) -> dict[str, Any]:
    out = []
    for scenario in scenarios():
        if only and scenario.name not in only:
            continue
        runs = []
        for config in CONFIGS:
            progress(f"  failover: {scenario.name} / {config} ({_end(scenario, scale):.0f} s)")
            run = await _run_once(scenario, config, scale)
            summary = _summarise(scenario, run, scale)
            recovery, _ = _seconds(summary["recovery_s"], scale)
            progress(
                f"    dead calls {summary['dead_calls']}, client failures "
                f"{summary['client_failures']}, recovery {recovery} s (scaled)"
            )
            runs.append(summary)
            await asyncio.sleep(0.2)  # let the previous run's sockets and log events settle
        out.append(
            {
                "name": scenario.name,
                "title": scenario.title,
                "dead": scenario.dead,
                "fallback": scenario.fallback,
                "phases_real_s": scenario.phases,
                "max_dead_calls": scenario.max_dead_calls,
                "max_recovery_real_s": scenario.max_recovery_real_s,
                "runs": runs,
            }
        )
    return {"scenarios": out}


def run(*, quick: bool = False, only: set[str] | None = None) -> dict[str, Any]:
    scale = 20.0 if quick else 10.0
    started = time.perf_counter()
    result = asyncio.run(_main(scale, only))
    settings = {name: value / scale for name, value in REAL.items()}
    return {
        "suite": "failover",
        "scale": scale,
        "real_settings_s": REAL,
        "scaled_settings_s": settings,
        "failure_threshold": CircuitBreaker(probe_interval=None).cache.failure_threshold,
        **result,
        "machine": common.machine(),
        "quick": quick,
        "wall_s": time.perf_counter() - started,
    }


def _seconds(values: list[float | None], scale: float) -> tuple[str, str]:
    scaled = ", ".join("never" if v is None else f"{v:.2f}" for v in values)
    real = ", ".join("never" if v is None else f"{v * scale:.0f}" for v in values)
    return scaled, real


def markdown(result: dict[str, Any]) -> str:
    scale = result["scale"]
    s = result["scaled_settings_s"]
    parts = [
        "## 2. Failover quality",
        f"Scripted outages against fake providers on loopback, time compressed **{scale:g}x**: "
        f"one request every {s['request_every']:g} s (2 s real), outages of {s['outage']:g} s "
        f"(60 s real), Router `timeout` {s['request_timeout']:g} s (10 s real), LiteLLM "
        f"`cooldown_time` {s['cooldown_default']:g} s by default and {s['cooldown_tuned']:g} s "
        f"tuned (5 s / 30 s real); the plugin at its defaults scaled the same way: "
        f"`unhealthy_backoff_sec` {s['plugin_backoff']:g}, `probe_interval` "
        f"{s['probe_interval']:g}, `probe_timeout` {s['probe_timeout']:g}, `trial_lease_sec` "
        f"{s['trial_lease']:g}, `stall_after_sec` {s['stall_after']:g} "
        f"(60 / 30 / 3 / 30 / 0.5 s real), `failure_threshold` "
        f"{result['failure_threshold']}. The plugin runs on the *defaults* Router, as the README "
        "shows it. LiteLLM's own retry back-off (0.5 s doubling to 8 s, or Retry-After; "
        "`num_retries` 2) is not scaled. Configurations ran one after another.",
        "*Dead calls*: attempts the Router sent to the broken deployment during the outage "
        "(per outage for the flapping one). *Failed*: requests that raised to the client, over "
        "the whole run. *Added latency*: latency of the requests sent during the outage minus "
        "the median before it, in ms as measured (not converted: it is mostly LiteLLM's "
        "back-off, which is not scaled, and the scaled timeout). *Recovery*: heal to the first "
        "client request answered by the healed deployment, in scaled seconds and converted "
        "to real seconds; *never* = none before the next outage or the end of the run. The "
        "plugin's trial completions (one-token pings to an open deployment whose free probe "
        "proved blind) are not dead calls: they are counted apart, as *trial pings*.",
    ]
    for sc in result["scenarios"]:
        rows = []
        for r in sc["runs"]:
            scaled, real = _seconds(r["recovery_s"], scale)
            dead = "+".join(str(n) for n in r["dead_calls_per_outage"])
            rows.append(
                [
                    r["config"],
                    str(r["requests"]),
                    dead,
                    str(r["client_failures"]),
                    fmt(r["added_latency_ms"]["p50"], 0),
                    fmt(r["added_latency_ms"]["p95"], 0),
                    scaled,
                    real,
                    str(r.get("plugin_counters", {}).get("trial_probes", "")),
                ]
            )
        parts.append(f"### {sc['name']}: {sc['title']}")
        parts.append(
            table(
                [
                    "configuration",
                    "requests",
                    "dead calls",
                    "failed",
                    "added p50 (ms)",
                    "added p95 (ms)",
                    "recovery (scaled s)",
                    "recovery (real s)",
                    "trial pings",
                ],
                rows,
            )
        )
        width = max(len(r["config"]) for r in sc["runs"])
        lines = [f"{'outage':<{width}}  {sc['runs'][0]['timeline']['state']}"]
        for r in sc["runs"]:
            lines.append(f"{r['config']:<{width}}  {r['timeline']['served']}")
            lines.append(f"{'':<{width}}  {r['timeline']['dead']}")
        parts.append(
            "Timeline, one column per request: `#` outage; `P` answered by the broken "
            "deployment, `f` by the fallback or sibling, `X` failed; below, the attempts it made "
            "on the deployment while broken (`.` none).\n\n```\n" + "\n".join(lines) + "\n```"
        )
    return "\n\n".join(parts)
