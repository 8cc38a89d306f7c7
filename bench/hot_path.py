"""Hot-path overhead: what the plugin adds to each request inside a real LiteLLM Router.

One Router per group size (10, 200, 2,000 deployments in one group), providers
stood in by respx so no socket adds noise. The same requests run in rounds of
alternating blocks: without callbacks, with a no-op callback (LiteLLM's own
cost of dispatching hooks to any callback), and with the plugin; the order
rotates and reverses every round so drift in the machine falls on all arms
alike. We report median and p99 per request and the ratios, with 95 %
intervals from resampling rounds. LiteLLM's own cost per request is
milliseconds and scatters more than the plugin costs, so a second,
instrumented pass times the plugin's hooks themselves: their sum per request
is the plugin's direct cost, and (request + hooks) / request the ratio it
implies. Finally ``timeit`` gives the raw cost of one filter decision and one
event.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
import timeit
from collections import defaultdict
from typing import Any

import common
import httpx
import litellm
import respx
from common import attached, chat_body, fmt, median, percentile, progress, table
from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from litellm_circuit_breaker import CircuitBreaker, _routers

GROUP = "chat"
MESSAGES = [{"role": "user", "content": "hi"}]
SIZES = (10, 200, 2000)
BLOCK = 5
"""Requests per block: short blocks keep a round's arms close in time, so drift cancels out."""


def model_list(size: int) -> list[dict[str, Any]]:
    return [
        {
            "model_name": GROUP,
            "litellm_params": {
                "model": "openai/m",
                "api_base": f"http://d{i}.bench/v1",
                "api_key": "sk-bench-key-0000",
            },
            "model_info": {"id": f"d{i}"},
        }
        for i in range(size)
    ]


class _Timed:
    """A stopwatch around every hook a Router request reaches, for the instrumented pass.

    Each hook is a coroutine that never suspends, so the time between entering
    and leaving it is the callback's own CPU time (plus any garbage collection
    or preemption landing inside it: hence medians per call).
    """

    spans: defaultdict[str, list[float]]

    def _note(self, hook: str, started: float) -> None:
        self.spans[hook].append(time.perf_counter() - started)

    async def async_pre_call_deployment_hook(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().async_pre_call_deployment_hook(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._note("pre_call", started)

    async def async_post_call_success_deployment_hook(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().async_post_call_success_deployment_hook(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._note("success_inline", started)

    async def async_log_success_event(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            await super().async_log_success_event(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._note("success_logged", started)


async def _settle() -> None:
    """Let LiteLLM's queued log events of the previous block finish, then collect garbage.

    So a block never pays for the callbacks of the block before it.
    """
    for _ in range(100):
        await asyncio.sleep(0.002)
        # Private, and rebound per event loop: read it afresh, and cope if it goes away.
        queue = getattr(GLOBAL_LOGGING_WORKER, "_queue", None)
        if queue is None or queue.empty():
            break
    await asyncio.sleep(0.005)
    gc.collect()


async def _block(router: litellm.Router, n: int) -> tuple[list[float], list[float]]:
    """Wall time and process CPU time of each of ``n`` sequential requests."""
    wall, cpu = [], []
    for _ in range(n):
        cpu_started = time.process_time()
        started = time.perf_counter()
        await router.acompletion(model=GROUP, messages=MESSAGES)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return wall, cpu


Rounds = list[dict[str, list[float]]]
"""One dict per round of blocks: arm name -> the per-request times of its block."""


def _paired_ratio(rounds: Rounds, arm: str, base: str, seed: int = 7) -> dict[str, Any]:
    """Median over rounds of median(arm block) / median(base block), with a 95 % interval.

    Each round's blocks run back to back, so a ratio taken within a round
    cancels the slow drift of a shared machine; the interval resamples rounds.
    """
    ratios = [median(r[arm]) / median(r[base]) for r in rounds]
    rng = random.Random(seed)
    resampled = [median([ratios[rng.randrange(len(ratios))] for _ in ratios]) for _ in range(1000)]
    return {
        "ratio": median(ratios),
        "ci95": [percentile(resampled, 2.5), percentile(resampled, 97.5)],
    }


def _drive(coro: Any) -> Any:
    """Run a coroutine that never suspends, without an event loop's overhead in the timing."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the hook suspended; time it inside an event loop instead")


def _timeit_us(fn: Any, *, budget: float = 0.4) -> float:
    """Best-of-5 microseconds per call, each repeat sized to about ``budget`` / 5 seconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    per_repeat = max(1, int(number * (budget / 5) / 0.2))
    best = min(timer.repeat(repeat=5, number=per_repeat)) / per_repeat
    return best * 1e6


class NoOpCallback(CustomLogger):
    """A callback with the same hooks as the plugin, doing nothing in them.

    The middle arm of the comparison: what LiteLLM itself spends on
    dispatching hooks to *any* callback, which no plugin can avoid.
    """

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> None:
        return None

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> None:
        return None

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        return None


ARMS = ("without", "no-op callback", "plugin", "plugin, filter engaged")
"""The last arm holds one breaker open in another group, so the plugin's filter is in
``litellm.callbacks`` and LiteLLM runs it on every attempt, as during an outage."""


class TimedBreaker(_Timed, CircuitBreaker):
    """The plugin, timed; only in the instrumented pass (the rounds run the real class)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spans = defaultdict(list)


class TimedNoOp(_Timed, NoOpCallback):
    """The no-op callback, timed: the floor of what this stopwatch can see."""

    def __init__(self) -> None:
        super().__init__()
        self.spans = defaultdict(list)


def _summary(rounds: Rounds) -> dict[str, Any]:
    def pooled(arm: str) -> list[float]:
        return [t for r in rounds for t in r[arm]]

    return {
        "median_ms": {arm: 1e3 * median(pooled(arm)) for arm in ARMS},
        "p99_ms": {arm: 1e3 * percentile(pooled(arm), 99) for arm in ARMS},
        "plugin_vs_without": _paired_ratio(rounds, "plugin", "without"),
        "plugin_vs_noop": _paired_ratio(rounds, "plugin", "no-op callback"),
        "engaged_vs_without": _paired_ratio(rounds, "plugin, filter engaged", "without"),
        "noop_vs_without": _paired_ratio(rounds, "no-op callback", "without"),
        "ratio_p99": percentile(pooled("plugin"), 99) / percentile(pooled("without"), 99),
        "block_medians_ms": [{arm: 1e3 * median(r[arm]) for arm in ARMS} for r in rounds],
    }


async def _rounds(
    router: litellm.Router, callbacks: dict[str, tuple[Any, ...]], n: int
) -> dict[str, Rounds]:
    """``n`` rounds of one block per arm; the order rotates and reverses from round to round."""
    wall: Rounds = []
    cpu: Rounds = []
    for index in range(n):
        order = ARMS[index % len(ARMS) :] + ARMS[: index % len(ARMS)]
        if index % 2:
            order = order[::-1]
        got_wall: dict[str, list[float]] = {}
        got_cpu: dict[str, list[float]] = {}
        for arm in order:
            await _settle()
            with attached(*callbacks[arm]):
                got_wall[arm], got_cpu[arm] = await _block(router, BLOCK)
        wall.append(got_wall)
        cpu.append(got_cpu)
    return {"wall": wall, "cpu": cpu}


def _per_hook(spans: dict[str, list[float]], n: int) -> dict[str, Any]:
    return {
        hook: {
            "calls_per_request": len(times) / n,
            "median_us": 1e6 * median(times),
            "mean_us": 1e6 * sum(times) / len(times),
            "us_per_request": 1e6 * median(times) * len(times) / n,
        }
        for hook, times in sorted(spans.items())
    }


async def _instrumented(router: litellm.Router, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plugin's own time per request, by hook; and one real request_data to replay.

    The same stopwatch around the no-op callback's hooks gives the floor: what
    calling any hook costs when the callback does nothing.
    """
    timed = TimedBreaker(probe_interval=None)
    # The defaults: probes on (answered by the respx /models route), so the hang
    # watch times every call too; probes only from its bound Router.
    defaults = TimedBreaker(probe_interval=30, routers=[router])
    floor = TimedNoOp()
    captured: dict[str, Any] = {}
    original = timed.async_post_call_success_deployment_hook

    async def capture(request_data: Any, response: Any, call_type: Any) -> Any:
        captured.setdefault("request_data", request_data)
        return await original(request_data, response, call_type)

    timed.async_post_call_success_deployment_hook = capture  # type: ignore[method-assign]
    spans = {}
    for name, callback in (("plugin", timed), ("defaults", defaults), ("floor", floor)):
        with attached(callback):
            await _block(router, 5)  # the plugin learns the group outside the measurement
            callback.spans.clear()
            await _settle()
            await _block(router, n)
            await _settle()  # the queued success events land in the totals too
        spans[name] = _per_hook(callback.spans, n)
    await defaults.aclose()  # its probe task and hang watch end with its pass
    hooks = spans["plugin"]
    return (
        {
            "requests": n,
            "hooks": hooks,
            "total_us_per_request": sum(h["us_per_request"] for h in hooks.values()),
            "floor_hooks": spans["floor"],
            "floor_us_per_request": sum(h["us_per_request"] for h in spans["floor"].values()),
            "defaults_hooks": spans["defaults"],
            "defaults_us_per_request": sum(h["us_per_request"] for h in spans["defaults"].values()),
        },
        captured,
    )


def _raw_costs(deployments: list[Any], request_data: dict[str, Any]) -> dict[str, Any]:
    """timeit of one filter decision (all closed, a few open) and one event, on real inputs."""
    breaker = CircuitBreaker(probe_interval=None)
    closed = _timeit_us(lambda: breaker._filter(GROUP, deployments, {}))
    few = min(3, len(deployments) - 1)
    for deployment in deployments[-few:]:
        for _ in range(breaker.cache.failure_threshold):
            breaker.cache.mark_unhealthy(deployment["model_info"]["id"], "bench: HTTP 503")
    some_open = _timeit_us(lambda: breaker._filter(GROUP, deployments, {}))
    failure = litellm.ServiceUnavailableError(
        message="bench: 503", llm_provider="openai", model="m", response=None
    )
    dead = {**request_data, "model_info": {"id": deployments[-1]["model_info"]["id"]}}
    failure_event = _timeit_us(
        lambda: _drive(
            breaker.async_post_call_failure_deployment_hook(dead, failure, "acompletion")
        )
    )
    success_event = _timeit_us(
        lambda: _drive(
            breaker.async_post_call_success_deployment_hook(request_data, None, "acompletion")
        )
    )
    return {
        "open": few,
        "filter_all_closed_us": closed,
        "filter_some_open_us": some_open,
        "failure_event_us": failure_event,
        "success_event_us": success_event,
    }


async def _one_size(size: int, rounds: int) -> dict[str, Any]:
    built = time.perf_counter()
    router = litellm.Router(model_list=model_list(size), num_retries=0)
    build_s = time.perf_counter() - built
    engaged = CircuitBreaker(probe_interval=None)
    callbacks: dict[str, tuple[Any, ...]] = {
        "without": (),
        "no-op callback": (NoOpCallback(),),
        "plugin": (CircuitBreaker(probe_interval=None),),
        "plugin, filter engaged": (engaged, engaged._open_filter),
    }
    for _ in range(engaged.cache.failure_threshold):
        engaged.cache.mark_unhealthy("elsewhere", "bench: HTTP 503")
    # Warm every arm: HTTP client creation, the plugin learning the group.
    for arm in ARMS:
        with attached(*callbacks[arm]):
            await _block(router, 5)
    gc.collect()
    gc.freeze()  # the model list and the Router's indexes never need scanning again
    try:
        started = time.perf_counter()
        measured = await _rounds(router, callbacks, rounds)
        ab_seconds = time.perf_counter() - started
        instrumented, captured = await _instrumented(router, max(40, rounds))
        raw = _raw_costs(_routers.router_entries(router), captured["request_data"])
    finally:
        gc.unfreeze()
    wall = _summary(measured["wall"])
    instrumented["implied_ratio"] = 1 + instrumented["total_us_per_request"] / (
        1e3 * wall["median_ms"]["without"]
    )
    return {
        "deployments": size,
        "router_build_s": build_s,
        "requests_per_arm": rounds * BLOCK,
        "block": BLOCK,
        "ab_seconds": ab_seconds,
        "wall": wall,
        "cpu": _summary(measured["cpu"]),
        "instrumented": instrumented,
        "timeit": raw,
    }


async def _warm_up() -> None:
    """Lazy imports and first-call set-up inside LiteLLM land here, not on the first size."""
    router = litellm.Router(model_list=model_list(10), num_retries=0)
    for arm in (NoOpCallback(), CircuitBreaker(probe_interval=None)):
        with attached(arm):
            await _block(router, 20)
    await _block(router, 20)


async def _main(quick: bool) -> dict[str, Any]:
    # Rounds of blocks per size: LiteLLM's own per-request cost grows with the
    # group, so the big groups get fewer requests to keep the suite near 2 min.
    rounds = {10: 30, 200: 30, 2000: 12} if quick else {10: 80, 200: 80, 2000: 32}
    rows = []
    with respx.mock(assert_all_called=False) as mock:
        mock.post(url__regex=r"^http://d\d+\.bench/v1/chat/completions$").mock(
            return_value=httpx.Response(200, json=chat_body())
        )
        mock.get(url__regex=r"^http://d\d+\.bench/v1/models$").mock(
            return_value=httpx.Response(200, json={"data": []})
        )
        await _warm_up()
        for size in SIZES:
            progress(f"  hot path: {size} deployments, {rounds[size]} rounds of 3 x {BLOCK}")
            row = await _one_size(size, rounds[size])
            wall, cpu = row["wall"], row["cpu"]
            medians = " / ".join(f"{m:.2f}" for m in wall["median_ms"].values())
            progress(
                f"    median {medians} ms (x{wall['plugin_vs_without']['ratio']:.3f}; cpu"
                f" x{cpu['plugin_vs_without']['ratio']:.3f}); plugin hooks"
                f" {row['instrumented']['total_us_per_request']:.1f} us/request"
            )
            rows.append(row)
    return {"suite": "hot", "sizes": rows}


def run(*, quick: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    result = asyncio.run(_main(quick))
    result["machine"] = common.machine()
    result["quick"] = quick
    result["wall_s"] = time.perf_counter() - started
    return result


def _ratio(summary: dict[str, Any], key: str = "plugin_vs_without") -> str:
    low, high = summary[key]["ci95"]
    return f"{summary[key]['ratio']:.3f} ({low:.3f} to {high:.3f})"


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["sizes"]:
        wall, cpu, hooks = r["wall"], r["cpu"], r["instrumented"]
        rows.append(
            [
                f"{r['deployments']:,}",
                str(r["requests_per_arm"]),
                " / ".join(fmt(wall["median_ms"][arm], 2) for arm in ARMS),
                _ratio(wall),
                _ratio(wall, "plugin_vs_noop"),
                _ratio(wall, "engaged_vs_without"),
                _ratio(cpu),
                " / ".join(fmt(wall["p99_ms"][arm], 1) for arm in ("without", "plugin")),
                fmt(hooks["total_us_per_request"], 0),
                f"{hooks['implied_ratio']:.4f}",
            ]
        )
    overhead = table(
        [
            "deployments",
            "requests per arm",
            "median ms: " + " / ".join(ARMS),
            "plugin / without (95 % CI)",
            "plugin / no-op callback (95 % CI)",
            "filter engaged / without (95 % CI)",
            "CPU time: plugin / without (95 % CI)",
            "p99 ms: without / plugin",
            "plugin hooks (µs/request)",
            "implied ratio",
        ],
        rows,
    )
    names = sorted({h for r in result["sizes"] for h in r["instrumented"]["hooks"]})
    hook_rows = []
    for r in result["sizes"]:
        hooks = r["instrumented"]["hooks"]
        cells = [
            f"{fmt(hooks[h]['median_us'], 1)} x {hooks[h]['calls_per_request']:.2f}"
            if h in hooks
            else "-"
            for h in names
        ]
        total = fmt(r["instrumented"]["total_us_per_request"], 1)
        floor = fmt(r["instrumented"]["floor_us_per_request"], 1)
        defaults = fmt(r["instrumented"].get("defaults_us_per_request", math.nan), 1)
        hook_rows.append([f"{r['deployments']:,}", *cells, total, defaults, floor])
    hook_table = table(
        [
            "deployments",
            *(f"{h} (µs x calls/request)" for h in names),
            "total (µs/request)",
            "total with probes and hang watch on, the defaults (µs/request)",
            "same stopwatch, no-op callback (µs/request)",
        ],
        hook_rows,
    )
    raw_rows = [
        [
            f"{r['deployments']:,}",
            fmt(r["timeit"]["filter_all_closed_us"], 2),
            fmt(r["timeit"]["filter_some_open_us"], 2),
            str(r["timeit"]["open"]),
            fmt(r["timeit"]["failure_event_us"], 2),
            fmt(r["timeit"]["success_event_us"], 2),
        ]
        for r in result["sizes"]
    ]
    raw = table(
        [
            "deployments",
            "filter, all closed (µs)",
            "filter, some open (µs)",
            "open",
            "failure event (µs)",
            "success event (µs)",
        ],
        raw_rows,
    )
    block = result["sizes"][0]["block"]
    return "\n\n".join(
        [
            f"## 1. Hot-path overhead on litellm {result['machine']['litellm']}",
            "One `Router` per size, all deployments in one group, providers stood in by respx "
            f"(no sockets). Rounds of three alternating blocks of {block} sequential requests: "
            "without callbacks, with a *no-op callback* (the same hooks, doing nothing: LiteLLM's "
            "own cost of dispatching to any callback), with the plugin (every breaker closed: its "
            "filter is not in `litellm.callbacks`), and with the plugin's filter engaged (one "
            "breaker open in another group, as during an outage); the order rotates and "
            "reverses every round. Wall time per request with `perf_counter`; also the process's "
            "CPU time per request. Ratios are the median over rounds of the ratio of block medians "
            "within a round (arms of a round run back to back, so the slow drift of a shared "
            "machine cancels); the 95 % intervals resample rounds. The ms columns pool all "
            "requests. *Plugin hooks* comes from a separate pass that times "
            "every plugin hook a request reaches, the queued success event included (median per "
            "call x calls per request); *implied ratio* = (median without + plugin hooks) / "
            "median without: the plugin's direct cost, without the scatter of LiteLLM's own.",
            overhead,
            "Plugin time per request, by hook (median µs per call x calls per request). In a "
            "real request each hook runs with cold CPU caches, after LiteLLM's own code: the "
            "same calls replayed in a tight loop (`timeit`, below) cost several times less. "
            "The hook columns and *total* are the plugin with probes off, as in the rounds "
            "above; *with probes and hang watch on* is a breaker with the default settings "
            "(its hang watch times every call). The last column is the floor: the same "
            "stopwatch around the no-op callback's hooks.",
            hook_table,
            "Raw cost of one decision and one event (`timeit`, best of 5, on the group's real "
            "deployment list and a request_data captured from the Router; *some open* opens the "
            "last few deployments of the group; events are the inline deployment hooks, the "
            "failure landing on an open deployment (re-arming its window), the success on a "
            "closed one):",
            raw,
        ]
    )
