"""Streams: a hung stream and a slow first token, LiteLLM alone and with the plugin.

Two scenarios against FakeProviders on loopback, each run once per setup, one
setup after the other (never concurrently):

* ``litellm-defaults``: a Router with a fallback group, ``timeout=10`` and
  ``num_retries=1`` (shortened from the usual 30 s and 2 so a run fits; LiteLLM's
  cooldowns on, as they come);
* ``plugin``: the same Router plus this package's ``CircuitBreaker``, its
  first-token deadline at the default ``auto``.

``hung-stream``: after a healthy streaming history the primary sends headers
and then nothing (``stall_stream``) for 30 s, then heals. ``slow-first-token``:
the primary takes 1.5 s to its first token on every stream from the first one.

Nothing here is compressed: the first-token deadline is the attempt's real
read timeout (httpx), so the Router timeout and the deadline run on real time.
Only the plugin's recovery timers are shortened (``probe_interval`` 5 s,
``unhealthy_backoff_sec`` 10 s instead of 30 s and 60 s), and the recovery
figure says so.

Last, the CPU cost of the plugin per streamed request: process CPU time of
streams of 100 chunks each against providers served from another process
(so only the client side counts), in alternating blocks with and without the
plugin attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import common
import litellm
from common import attached, fmt, median, percentile, progress, table
from failover import AttemptRecorder
from hot_path import TimedBreaker
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import CircuitBreaker
from litellm_circuit_breaker.testing import FakeProvider

MESSAGES = [{"role": "user", "content": "hi"}]
SETUPS = ("litellm-defaults", "plugin")
ROUTER = {"timeout": 10.0, "num_retries": 1}
"""The Router settings of both setups (LiteLLM's own cooldowns left on)."""
PLUGIN_RECOVERY: dict[str, Any] = {
    "probe_interval": 5.0,
    "unhealthy_backoff_sec": 10.0,
    "first_token_timeout": "auto",
}
"""The plugin's recovery timers, shortened 6x from 30 s and 60 s so a run fits, and its
first-token deadline (opt-in) on."""
SLOW_FIRST_TOKEN_SEC = 1.5
CPU_CHUNKS = 100
"""Content chunks per stream in the CPU measurement."""


@dataclass
class Stream:
    index: int
    sent: float
    """Monotonic time the request was sent."""
    first_token: float | None = None
    """Seconds from the request to the first chunk with content."""
    total: float = float("nan")
    served_by: str | None = None
    error: str | None = None


@dataclass
class Phases:
    """A scenario's timetable in seconds from the start: when to send, when to switch."""

    send_at: list[float]
    switches: list[tuple[float, str]]
    ends_at: float


@dataclass
class RunResult:
    setup: str
    started: float
    streams: list[Stream] = field(default_factory=list)
    attempts: list[tuple[float, str, int | None]] = field(default_factory=list)
    outage: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def hung_phases(quick: bool) -> Phases:
    # Streams every 0.5 s for the history, then one a second in the outage's first
    # part and none in its last 22 s: every stream LiteLLM alone sends into the outage
    # has then waited out its two timeouts before the heal, so none is cut short by it.
    history = [0.5 * i for i in range(10)]
    outage_at, heal_at = 5.0, 35.0
    busy = 4 if quick else 8
    during = [outage_at + i for i in range(busy)]
    after = [heal_at + i for i in range(6 if quick else 10)]
    return Phases(
        send_at=history + during + after,
        switches=[(outage_at, "stall_stream"), (heal_at, "healthy")],
        ends_at=after[-1] + 1.0,
    )


def slow_phases(quick: bool) -> Phases:
    send_at = [0.5 * i for i in range(8 if quick else 12)]
    return Phases(send_at=send_at, switches=[], ends_at=send_at[-1])


def _model_list(providers: dict[str, FakeProvider | str]) -> list[dict[str, Any]]:
    return [
        {
            "model_name": dep_id,
            "litellm_params": {
                "model": "openai/fake-model",
                "api_base": p if isinstance(p, str) else p.base_url,
                "api_key": f"sk-bench-{dep_id}",
            },
            "model_info": {"id": dep_id},
        }
        for dep_id, p in providers.items()
    ]


def _router(models: list[dict[str, Any]]) -> litellm.Router:
    return litellm.Router(model_list=models, fallbacks=[{"primary": ["backup"]}], **ROUTER)


async def _stream(router: litellm.Router, stream: Stream) -> None:
    t0 = time.perf_counter()
    try:
        response = await router.acompletion(
            model="primary",
            messages=MESSAGES,
            stream=True,
            metadata={"bench_request": stream.index},
        )
        text = ""
        async for chunk in response:
            piece = (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if piece and stream.first_token is None:
                stream.first_token = time.perf_counter() - t0
            text += piece
        stream.served_by = text
    except Exception as exc:
        stream.error = type(exc).__name__
    stream.total = time.perf_counter() - t0


def _switch(provider: FakeProvider, mode: str) -> None:
    if mode == "slow_first_token":
        provider.slow_first_token(SLOW_FIRST_TOKEN_SEC)
    else:
        getattr(provider, mode)()


async def _run_once(name: str, phases: Phases, setup: str, first_mode: str) -> RunResult:
    async with contextlib.AsyncExitStack() as stack:
        providers = {
            dep_id: await stack.enter_async_context(FakeProvider(reply=dep_id, record=True))
            for dep_id in ("primary", "backup")
        }
        models = _model_list(dict(providers))
        router = _router(models)
        recorder = AttemptRecorder()
        callbacks: list[Any] = [recorder]
        breaker: CircuitBreaker | None = None
        transitions: list[tuple[float, str, str]] = []
        if setup == "plugin":
            breaker = CircuitBreaker(model_list=models, **PLUGIN_RECOVERY)
            callbacks.append(breaker)
        with attached(*callbacks):
            # Warm-up outside the record: HTTP clients made, each group answered once.
            for group in ("primary", "backup"):
                await router.acompletion(model=group, messages=MESSAGES)
            if breaker is not None:
                await stack.enter_async_context(breaker)
                breaker.cache.add_listener(
                    lambda e: transitions.append((time.monotonic(), e.deployment, e.new.value))
                )
            for provider in providers.values():
                provider.reset_counts()
            recorder.attempts.clear()
            _switch(providers["primary"], first_mode)
            result = await _drive(phases, setup, router, providers["primary"])
            result.attempts = list(recorder.attempts)
            if breaker is not None:
                await GLOBAL_LOGGING_WORKER.flush()
                deadlines = breaker._first_token  # the figure we report
                learned = deadlines.deadline("primary") if deadlines is not None else None
                result.extra["learned_deadline_s"] = learned
                result.extra["plugin_counters"] = dict(breaker.counters)
                result.extra["internal_errors"] = dict(breaker.internal_errors)
                result.extra["final_state"] = breaker.cache.breaker_state("primary").value
                await breaker.aclose()
        result.extra["transitions"] = [
            [round(t - result.started, 3), dep, state] for t, dep, state in transitions
        ]
        result.extra["provider_chat_calls"] = {k: p.calls("chat") for k, p in providers.items()}
        providers["primary"].healthy()  # release anything still held before closing
    progress(f"    {name} / {setup}: {len(result.streams)} streams")
    return result


async def _drive(phases: Phases, setup: str, router: Any, primary: FakeProvider) -> RunResult:
    started = time.monotonic()
    result = RunResult(setup, started)
    if len(phases.switches) == 2:
        result.outage = (started + phases.switches[0][0], started + phases.switches[1][0])

    async def script() -> None:
        for at, mode in phases.switches:
            await _sleep_until(started + at)
            _switch(primary, mode)

    scripter = asyncio.create_task(script())
    tasks = []
    for index, at in enumerate(phases.send_at):
        await _sleep_until(started + at)
        stream = Stream(index, time.monotonic())
        result.streams.append(stream)
        tasks.append(asyncio.create_task(_stream(router, stream)))
    await scripter
    await _sleep_until(started + phases.ends_at)
    _, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.extra["cancelled_at_end"] = len(pending)
    return result


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _ttfts(streams: list[Stream]) -> list[float]:
    return [s.first_token for s in streams if s.first_token is not None]


def _summarise_hung(run: RunResult) -> dict[str, Any]:
    assert run.outage is not None
    start, heal = run.outage
    before = [s for s in run.streams if s.sent < start]
    during = [s for s in run.streams if start <= s.sent < heal]
    after = [s for s in run.streams if s.sent >= heal]
    base = median(_ttfts([s for s in before if s.served_by == "primary"]))
    added = [t - base for t in _ttfts(during)]
    dead = [a for a in run.attempts if a[1] == "primary" and start <= a[0] < heal]
    back = [
        at - heal
        for s in run.streams
        if s.served_by == "primary"
        and s.first_token is not None
        and (at := s.sent + s.first_token) >= heal
    ]
    return {
        "setup": run.setup,
        "streams": len(run.streams),
        "streams_in_outage": len(during),
        "baseline_ttft_ms": 1e3 * base,
        "added_ttft_ms": {"p50": 1e3 * percentile(added, 50), "p95": 1e3 * percentile(added, 95)},
        "outage_ttft_s": [round(t, 3) for t in _ttfts(during)],
        "outage_served_by": [s.served_by or s.error for s in during],
        "dead_calls": len(dead),
        "client_failures": sum(1 for s in run.streams if s.error is not None),
        "recovery_s": min(back) if back else None,
        "after_heal_served_by": [s.served_by or s.error for s in after],
        **run.extra,
    }


def _summarise_slow(run: RunResult) -> dict[str, Any]:
    ttfts = _ttfts(run.streams)
    counters = run.extra.get("plugin_counters", {})
    return {
        "setup": run.setup,
        "streams": len(run.streams),
        "served_by_primary": sum(1 for s in run.streams if s.served_by == "primary"),
        "client_failures": sum(1 for s in run.streams if s.error is not None),
        "ttft_ms": {"p50": 1e3 * percentile(ttfts, 50), "p95": 1e3 * percentile(ttfts, 95)},
        "calls_to_primary": sum(1 for a in run.attempts if a[1] == "primary"),
        "under_deadline": counters.get("first_token_deadlines"),
        "cut_off": counters.get("first_token_timeouts"),
        **run.extra,
    }


# -- CPU per stream -------------------------------------------------------------------

_SERVE = """
import sys, time
from litellm_circuit_breaker.testing import FakeProvider
reply = " ".join(["tok"] * int(sys.argv[1]))
providers = [FakeProvider(reply=reply).start_in_thread() for _ in range(2)]
print(" ".join(p.base_url for p in providers), flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def _providers_elsewhere(chunks: int) -> Iterator[list[str]]:
    """Two healthy FakeProviders in a process of their own: their CPU is not ours.

    Started before any stream runs, so blocking on its first line costs nothing.
    """
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SERVE, str(chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.split()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


async def _block(router: litellm.Router, n: int) -> tuple[float, float]:
    """CPU and wall seconds for ``n`` streams one after another, their log events included."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        stream = Stream(i, time.monotonic())
        await _stream(router, stream)
        if stream.served_by is None:
            raise RuntimeError(f"a CPU-measurement stream failed: {stream.error}")
    await GLOBAL_LOGGING_WORKER.flush()
    return time.process_time() - cpu, time.perf_counter() - wall


async def _cpu(quick: bool) -> dict[str, Any]:
    rounds, per_block = (4, 20) if quick else (10, 25)
    with _providers_elsewhere(CPU_CHUNKS) as urls:
        models = _model_list({"primary": urls[0], "backup": urls[1]})
        router = _router(models)
        breaker = CircuitBreaker(model_list=models, first_token_timeout="auto")  # noqa: S106
        samples: dict[str, list[float]] = {"without": [], "plugin": []}
        walls: dict[str, list[float]] = {"without": [], "plugin": []}
        async with breaker:
            # Warm-up: HTTP clients, and enough streams for the plugin to learn a deadline.
            with attached(breaker):
                await _block(router, 10)
            with attached():
                await _block(router, 5)
            for number in range(rounds):
                order = ("without", "plugin") if number % 2 == 0 else ("plugin", "without")
                for setup in order:
                    with attached(*([breaker] if setup == "plugin" else [])):
                        cpu, wall = await _block(router, per_block)
                    samples[setup].append(cpu / per_block)
                    walls[setup].append(wall / per_block)
            counters = dict(breaker.counters)
            timed = await _instrumented(router, models, 4 * per_block)
    ratios = [p / w for p, w in zip(samples["plugin"], samples["without"], strict=True)]
    return {
        "chunks_per_stream": CPU_CHUNKS + 2,
        "rounds": rounds,
        "streams_per_block": per_block,
        "cpu_ms_per_stream": {k: [round(1e3 * v, 3) for v in s] for k, s in samples.items()},
        "median_cpu_ms": {k: 1e3 * median(s) for k, s in samples.items()},
        "median_wall_ms": {k: 1e3 * median(s) for k, s in walls.items()},
        "ratio_per_round": [round(r, 4) for r in ratios],
        "ratio_median": median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "under_deadline": counters.get("first_token_deadlines"),
        "instrumented": timed,
        "implied_ratio": 1 + timed["us_per_stream"] / (1e6 * median(samples["without"])),
    }


async def _instrumented(
    router: litellm.Router, models: list[dict[str, Any]], n: int
) -> dict[str, Any]:
    """The plugin's own time per stream: a stopwatch around every hook a stream reaches.

    The hooks never suspend, so their span is their CPU time; the A/B blocks above
    cannot resolve a cost this small against LiteLLM's own scatter.
    """
    breaker = TimedBreaker(model_list=models)
    async with breaker:
        with attached(breaker):
            await _block(router, 10)  # its own history, so the deadline applies
            breaker.spans.clear()
            await _block(router, n)
    hooks = {
        hook: {
            "calls_per_stream": len(spans) / n,
            "median_us": 1e6 * median(spans),
            "mean_us": 1e6 * sum(spans) / len(spans),
        }
        for hook, spans in breaker.spans.items()
    }
    return {
        "streams": n,
        "hooks": hooks,
        "us_per_stream": sum(h["median_us"] * h["calls_per_stream"] for h in hooks.values()),
        "mean_us_per_stream": sum(h["mean_us"] * h["calls_per_stream"] for h in hooks.values()),
        "under_deadline": breaker.counters["first_token_deadlines"],
    }


async def _main(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    scenarios: list[tuple[str, Phases, str, Callable[[RunResult], dict[str, Any]]]] = [
        ("hung-stream", hung_phases(quick), "healthy", _summarise_hung),
        ("slow-first-token", slow_phases(quick), "slow_first_token", _summarise_slow),
    ]
    for name, phases, first_mode, summarise in scenarios:
        runs = []
        for setup in SETUPS:
            progress(f"  streams: {name} / {setup} ({phases.ends_at:.0f} s)")
            runs.append(summarise(await _run_once(name, phases, setup, first_mode)))
            await asyncio.sleep(0.2)
        out[name] = {"phases": phases.__dict__, "runs": runs}
    progress("  streams: CPU per stream, with and without the plugin")
    out["cpu"] = await _cpu(quick)
    return out


def run(*, quick: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    result = asyncio.run(_main(quick))
    return {
        "suite": "streams",
        "router": ROUTER,
        "plugin_recovery_settings_s": PLUGIN_RECOVERY,
        "slow_first_token_s": SLOW_FIRST_TOKEN_SEC,
        **result,
        "machine": common.machine(),
        "quick": quick,
        "wall_s": time.perf_counter() - started,
    }


def _s(ms: float) -> str:
    return fmt(ms / 1e3, 1)


def markdown(result: dict[str, Any]) -> str:
    hung = result["hung-stream"]
    slow = result["slow-first-token"]
    cpu = result["cpu"]
    router = result["router"]
    recovery = result["plugin_recovery_settings_s"]
    parts = [
        "## Streams: a hung stream and a slow first token",
        "Real time (the first-token deadline is the attempt's read timeout): a Router with a "
        f"fallback group, `timeout` {router['timeout']:g} s, `num_retries` "
        f"{router['num_retries']}, LiteLLM's cooldowns on, in both setups; the plugin at its "
        "defaults except `first_token_timeout` auto (opt-in), `probe_interval` "
        f"{recovery['probe_interval']:g} s and `unhealthy_backoff_sec` "
        f"{recovery['unhealthy_backoff_sec']:g} s (30 s and 60 s by default), so recovery fits "
        "the run. Setups ran one after the other.",
        "### hung-stream: after 10 healthy streams, the primary sends headers and then "
        "nothing for 30 s",
        "*Added TTFT*: time to first token of the streams sent during the outage minus the "
        "median before it. *Dead calls*: attempts the Router sent the primary during the "
        "outage. *Recovery*: heal to the first token a user got from the primary again.",
    ]
    rows = [
        [
            r["setup"],
            str(r["streams_in_outage"]),
            fmt(r["baseline_ttft_ms"], 0),
            _s(r["added_ttft_ms"]["p50"]),
            _s(r["added_ttft_ms"]["p95"]),
            str(r["dead_calls"]),
            str(r["client_failures"]),
            "never" if r["recovery_s"] is None else fmt(r["recovery_s"], 1),
        ]
        for r in hung["runs"]
    ]
    parts.append(
        table(
            [
                "setup",
                "streams in outage",
                "TTFT before (ms)",
                "added TTFT p50 (s)",
                "added TTFT p95 (s)",
                "dead calls",
                "failed",
                "recovery (s)",
            ],
            rows,
        )
    )
    parts.append(
        f"### slow-first-token: the primary takes {result['slow_first_token_s']:g} s to its "
        "first token on every stream, from the first one"
    )
    rows = [
        [
            r["setup"],
            str(r["streams"]),
            str(r["served_by_primary"]),
            str(r["client_failures"]),
            _s(r["ttft_ms"]["p50"]),
            _s(r["ttft_ms"]["p95"]),
            "-" if r["under_deadline"] is None else str(r["under_deadline"]),
            "-" if r["cut_off"] is None else str(r["cut_off"]),
            fmt(r.get("learned_deadline_s"), 0) if r["setup"] == "plugin" else "-",
        ]
        for r in slow["runs"]
    ]
    parts.append(
        table(
            [
                "setup",
                "streams",
                "served by it",
                "failed",
                "TTFT p50 (s)",
                "TTFT p95 (s)",
                "under a deadline",
                "cut off",
                "learned deadline (s)",
            ],
            rows,
        )
    )
    parts.append(
        "### CPU per streamed request\n\n"
        f"Process CPU time of this process per stream of {cpu['chunks_per_stream']} chunks "
        "(providers served from another process), healthy deployments, "
        f"{cpu['rounds']} rounds of two alternating blocks of {cpu['streams_per_block']} "
        "streams, the plugin with `first_token_timeout` auto (started, deadline learned: "
        f"{cpu['under_deadline']} streams ran under one)."
    )
    timed = cpu["instrumented"]
    hooks = ", ".join(
        f"`{name}` {h['median_us']:.0f} µs x {h['calls_per_stream']:g}"
        for name, h in sorted(timed["hooks"].items())
    )
    low, high = cpu["ratio_range"]
    parts.append(
        table(
            ["", "LiteLLM alone", "with the plugin", "ratio (median of rounds)", "ratio range"],
            [
                [
                    "CPU ms per stream",
                    fmt(cpu["median_cpu_ms"]["without"], 2),
                    fmt(cpu["median_cpu_ms"]["plugin"], 2),
                    fmt(cpu["ratio_median"], 3),
                    f"{low:.3f} to {high:.3f}",
                ],
                [
                    "wall ms per stream",
                    fmt(cpu["median_wall_ms"]["without"], 2),
                    fmt(cpu["median_wall_ms"]["plugin"], 2),
                    "",
                    "",
                ],
            ],
        )
    )
    parts.append(
        "The A/B ratio is LiteLLM's own scatter, far wider than what it looks for. Timed "
        f"directly (a stopwatch around every plugin hook a stream reaches, {timed['streams']} "
        f"streams, {timed['under_deadline']} under a deadline): **{timed['us_per_stream']:.0f} "
        f"µs per stream** (median per call; mean {timed['mean_us_per_stream']:.0f} µs): "
        f"{hooks}. Against LiteLLM alone's CPU per stream that is a ratio of "
        f"**{cpu['implied_ratio']:.4f}**. The plugin has no hook per chunk: a stream costs it "
        "the same whatever its length."
    )
    return "\n\n".join(parts)
