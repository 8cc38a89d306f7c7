"""Shared state at scale: one transition and one reconcile with 1,000 and 10,000 breakers in Redis.

A real ``redis-server`` on loopback, started here with the tests' harness, holds
one namespace per size, filled by the plugin's own transition script (every
record opened once, one in ten still open, the rest closed again, as after a
fleet's recovered outages). Against it, one replica (a ``CircuitBreaker`` with
``redis_url``, its sharing adapter driven by hand so each operation can be
timed alone):

* **one transition push**, open then close, through the adapter's writer
  (``_push_dirty``: the Lua script, its answer parsed), timed side by side
  with a plain ``GET`` and a ``PING`` on the same client, interleaved;
* **one reconcile** (``_reconcile``: the snapshot script reads every record,
  each is parsed and taken): a new replica's first (adopting everything) and a
  steady one (nothing new), with the longest event-loop stall during it, the
  snapshot's time inside Redis (``INFO commandstats``: Redis runs nothing else
  meanwhile), its reply size, and the memory the replica allocates (tracemalloc,
  a separate pass);
* **Redis memory** of the namespace per record (``INFO memory`` before and after
  filling it, ``MEMORY USAGE`` of the records and the index);
* **the hot path with sharing on and off**: a ``Router`` with 1,000 deployments
  whose 1,000 breakers are shared records, requests with every plugin hook
  timed (as in ``hot_path.py``), Redis commands counted meanwhile, and the
  failure hook that opens a breaker run without an event loop, which raises if
  it ever suspends (so a hook that waited on Redis could not pass unnoticed).

The push and the reconcile are repeated on a local Redis Cluster (three
primaries with a replica each) when ``redis-cli`` is installed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# The tests' redis harness (tests/redis_harness.py), looked up after bench/ itself.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import common
import httpx
import litellm
import respx
from common import attached, chat_body, fmt, median, percentile, progress, table
from hot_path import TimedBreaker, _drive, _per_hook, _settle
from redis.asyncio import RedisCluster as ClusterClient
from tests.redis_harness import RedisCluster, RedisServer

from litellm_circuit_breaker import BreakerState, CircuitBreaker
from litellm_circuit_breaker._config import DEFAULT_RECONCILE_SEC
from litellm_circuit_breaker._records import SharedKeys
from litellm_circuit_breaker._redis_scripts import TRANSITION_LUA
from litellm_circuit_breaker._shared import close_client, cluster_nodes, open_client, scan_pages

SIZES = (1000, 10_000)
OPEN_EVERY = 10
"""One record in ten is open (a one-hour window), the others closed after an opening."""
WINDOW_MS = 3_600_000
TTL_MS = 86_400_000
REASON = "ServiceUnavailableError (503): upstream down, retry later"
HOT_SIZE = 1000
HOT_GROUPS = 50
GROUP = "group-0"
MESSAGES = [{"role": "user", "content": "hi"}]
TICK_SEC = 0.001
"""The loop watcher's sleep: a stall is a gap between two of its wake-ups, minus this."""


def _namespace(kind: str, size: int) -> str:
    return f"bench_{kind}_{size}"


# -- filling a namespace -------------------------------------------------------


async def _fill(client: Any, keys: SharedKeys, size: int, *, open_every: int) -> None:
    """``size`` records ``d0``.. written by the plugin's own transition script.

    Each is opened; all but every ``open_every``-th (0: none) are closed again, as
    the replica that saw it recover would (its base version is past any version).
    """
    sha = await client.script_load(TRANSITION_LUA)
    batch = 500
    for start in range(0, size, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(size, start + batch)):
            deployment = f"d{i}"
            common_args = (keys.channel, f"group-{i % HOT_GROUPS}", "bench-writer-token")
            record = (keys.record(deployment), keys.index, deployment)
            pipe.evalsha(sha, 2, *record, "open", WINDOW_MS, 2, REASON, "bench-writer", 0,
                         TTL_MS, *common_args)  # fmt: skip
            if not (open_every and i % open_every == 0):
                pipe.evalsha(sha, 2, *record, "closed", 0, 0, "", "bench-writer", 10**15,
                             TTL_MS, *common_args)  # fmt: skip
        await pipe.execute()
    held = await client.zcard(keys.index)
    if held != size:
        raise RuntimeError(f"namespace {keys.namespace} holds {held} records, not {size}")


def _replica(url: str, namespace: str, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("probe_interval", None)
    return CircuitBreaker(
        redis_url=url, redis_namespace=namespace, replica_name="bench-reader", **kwargs
    )


def _share(cb: CircuitBreaker) -> Any:
    share = cb.shared
    assert share is not None
    return share


class LoopWatch:
    """The longest time the event loop went without running a 1 ms sleeper, while inside.

    On the way out it waits for one more wake-up of the sleeper, so a stall after the
    watched code's last ``await`` (parsing a reply, say) is counted too.
    """

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last_tick: asyncio.Future[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_SEC)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - TICK_SEC)
            last = now
            if self._last_tick is not None:
                self._last_tick.set_result(None)
                return

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)  # the watcher has started before the timed work
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._last_tick = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._last_tick), timeout=5.0)
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def stall_ms(self) -> float:
        return max(0.0, 1e3 * self.worst)


async def _commandstats(stats: Any, command: str) -> dict[str, float]:
    """Redis's own count and microseconds of ``command`` since the last ``CONFIG RESETSTAT``."""
    entry = (await stats.info("commandstats")).get(f"cmdstat_{command}", {})
    return {"calls": entry.get("calls", 0), "usec_per_call": entry.get("usec_per_call", 0.0)}


# -- one transition push ---------------------------------------------------------


async def _pushes(url: str, namespace: str, iterations: int, stats_url: str) -> dict[str, Any]:
    """Open then close one breaker, pushed through the writer, beside GET and PING.

    ``stats_url`` is the server holding the namespace (on a cluster, the slot's primary),
    read for Redis's own time per script.
    """
    cb = _replica(url, namespace)
    share = _share(cb)
    keys = share.keys
    client: Any = await open_client(url)
    nodes = cluster_nodes(client)
    stats = _plain(stats_url)
    cluster = isinstance(client, ClusterClient)
    try:
        await share._reconcile(client, after_connect=True)  # a replica in the fleet's state
        baseline_key = f"{keys.tag}:bench-baseline"  # in the namespace's slot
        await client.set(baseline_key, "x")
        times: dict[str, list[float]] = defaultdict(list)
        deployment = "bench-push"
        pushed = share.counters.pushed

        async def timed(name: str, operation: Callable[[], Awaitable[object]]) -> None:
            started = time.perf_counter()
            await operation()
            times[name].append(time.perf_counter() - started)

        for _ in range(5):  # connections made, the script cached
            await client.get(baseline_key)
            _trip(cb, deployment)
            await share._push_dirty(client)
            cb.cache.force_close(deployment)
            await share._push_dirty(client)
        pushed = share.counters.pushed
        await stats.config_resetstat()
        for _ in range(iterations):
            if not cluster:  # a cluster client sends PING to every primary
                await timed("ping", client.ping)
            await timed("get", lambda: client.get(baseline_key))
            _trip(cb, deployment)  # local and synchronous: marks it dirty for the writer
            await timed("open", lambda: share._push_dirty(client))
            cb.cache.force_close(deployment)
            await timed("close", lambda: share._push_dirty(client))
        script = await _commandstats(stats, "eval")
        pushes = share.counters.pushed - pushed
        await client.delete(baseline_key, keys.record(deployment))
        await client.zrem(keys.index, deployment)
    finally:
        await stats.aclose()
        await close_client(client, nodes)

    def us(name: str) -> float | None:
        return 1e6 * median(times[name]) if times[name] else None

    get_us = us("get")
    assert get_us is not None
    return {
        "iterations": iterations,
        "pushes_written": pushes,
        "ping_us": us("ping"),
        "get_us": get_us,
        "open_us": us("open"),
        "close_us": us("close"),
        "open_p99_us": 1e6 * percentile(times["open"], 99),
        "close_p99_us": 1e6 * percentile(times["close"], 99),
        "open_vs_get": (us("open") or 0) / get_us,
        "close_vs_get": (us("close") or 0) / get_us,
        "script_in_redis_us": script["usec_per_call"],
        "script_calls": script["calls"],
        "script_bytes_sent": len(TRANSITION_LUA.encode()),
    }


def _trip(cb: CircuitBreaker, deployment: str) -> None:
    for _ in range(cb.cache.failure_threshold):
        cb.cache.mark_unhealthy(deployment, REASON)


# -- one reconcile -------------------------------------------------------------


async def _reconciles(
    url: str, namespace: str, size: int, repeats: int, stats_url: str
) -> dict[str, Any]:
    """A new replica's first reconcile, then steady ones; the snapshot script alone."""
    cb = _replica(url, namespace)
    share = _share(cb)
    client: Any = await open_client(url)
    nodes = cluster_nodes(client)
    stats = _plain(stats_url)
    try:
        gc.collect()
        async with LoopWatch() as watch:
            cpu = time.process_time()
            started = time.perf_counter()
            await share._reconcile(client, after_connect=True)
            first_s = time.perf_counter() - started
            first_cpu = time.process_time() - cpu
        first_stall = watch.stall_ms
        adopted = share.counters.adopted
        open_here = len(cb.cache.unhealthy_ids())
        steady_s, steady_cpu, steady_stall = [], [], []
        for _ in range(repeats):
            gc.collect()
            async with LoopWatch() as watch:
                cpu = time.process_time()
                started = time.perf_counter()
                await share._reconcile(client)
                steady_s.append(time.perf_counter() - started)
                steady_cpu.append(time.process_time() - cpu)
            steady_stall.append(watch.stall_ms)
        await stats.config_resetstat()
        round_trips, reply_bytes = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            raw = [item async for page in scan_pages(client, share.keys) for item in page]
            round_trips.append(time.perf_counter() - started)
            reply_bytes = sum(len(item.encode()) for item in raw)
        script = await _commandstats(stats, "eval")
    finally:
        await stats.aclose()
        await close_client(client, nodes)
    return {
        "records": size,
        "adopted": adopted,
        "open_after": open_here,
        "first_ms": 1e3 * first_s,
        "first_cpu_ms": 1e3 * first_cpu,
        "first_stall_ms": first_stall,
        "steady_ms": 1e3 * median(steady_s),
        "steady_cpu_ms": 1e3 * median(steady_cpu),
        "steady_stall_ms": median(steady_stall),
        "steady_stall_all_ms": steady_stall,
        "snapshot_round_trip_ms": 1e3 * median(round_trips),
        # Paged: every script call of one snapshot, summed.
        "snapshot_in_redis_ms": script["calls"] * script["usec_per_call"] / repeats / 1e3,
        "snapshot_reply_bytes": reply_bytes,
    }


async def _reconcile_memory(url: str, namespace: str, size: int) -> dict[str, Any]:
    """What a new replica allocates in its first reconcile and in a steady one (tracemalloc)."""
    cb = _replica(url, namespace)
    share = _share(cb)
    client: Any = await open_client(url)
    try:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            await share._reconcile(client, after_connect=True)
            gc.collect()
            retained, first_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            await share._reconcile(client)
            gc.collect()
            after, steady_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await close_client(client)
    return {
        "first_peak_kib": (first_peak - base) / 1024,
        "retained_bytes_per_record": (retained - base) / size,
        "steady_peak_kib": (steady_peak - before) / 1024,
        "steady_retained_bytes": after - before,
    }


# -- Redis memory --------------------------------------------------------------


async def _redis_memory(
    client: Any, keys: SharedKeys, size: int, used_before: int
) -> dict[str, Any]:
    used_after = (await client.info("memory"))["used_memory"]
    sample = [keys.record(f"d{i}") for i in range(0, size, max(1, size // 200))]
    usages = [await client.memory_usage(key, samples=0) for key in sample]
    index = await client.memory_usage(keys.index, samples=0)
    return {
        "used_memory_bytes_per_record": (used_after - used_before) / size,
        "record_memory_usage_bytes": sum(usages) / len(usages),
        "index_bytes_per_record": index / size,
    }


# -- the hot path with sharing on and off -------------------------------------


def _hot_model_list() -> list[dict[str, Any]]:
    return [
        {
            "model_name": f"group-{i % HOT_GROUPS}",
            "litellm_params": {
                "model": "openai/m",
                "api_base": f"http://d{i}.bench/v1",
                "api_key": "sk-bench-key-0000",
            },
            "model_info": {"id": f"d{i}"},
        }
        for i in range(HOT_SIZE)
    ]


async def _block(router: litellm.Router, n: int) -> list[float]:
    """Wall time of each of ``n`` sequential requests to one group."""
    wall = []
    for _ in range(n):
        started = time.perf_counter()
        await router.acompletion(model=GROUP, messages=MESSAGES)
        wall.append(time.perf_counter() - started)
    return wall


async def _redis_commands(client: Any) -> int:
    """Commands Redis processed since the last reset, INFO itself left out."""
    stats = await client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


async def _hot(url: str, rounds: int, block: int) -> dict[str, Any]:
    """Every plugin hook timed, sharing off and on, 1,000 breakers; Redis commands meanwhile."""
    namespace = _namespace("hot", HOT_SIZE)
    admin = _plain(url)
    try:
        await _fill(admin, SharedKeys(namespace), HOT_SIZE, open_every=0)  # all closed
        router = litellm.Router(model_list=_hot_model_list(), num_retries=0)
        off = TimedBreaker(probe_interval=None, replica_name="bench-off")
        for i in range(HOT_SIZE):  # the same 1,000 closed breakers, held locally
            off.cache.adopt(f"d{i}", BreakerState.CLOSED, replica="seeded")
        on = TimedBreaker(
            probe_interval=None,
            redis_url=url,
            redis_namespace=namespace,
            replica_name="bench-on",
            redis_reconcile_sec=3600.0,  # reconciles are measured on their own above
        )
        await on.start()
        share = _share(on)
        if not share.connected or len(on.cache) < HOT_SIZE:
            raise RuntimeError(f"sharing not synced: {len(on.cache)} breakers")
        arms = {"off": off, "on": on}
        wall: dict[str, list[float]] = defaultdict(list)
        captured: dict[str, Any] = {}
        original = on.async_post_call_success_deployment_hook

        async def capture(request_data: Any, response: Any, call_type: Any) -> Any:
            captured.setdefault("request_data", request_data)
            return await original(request_data, response, call_type)

        on.async_post_call_success_deployment_hook = capture  # type: ignore[method-assign]
        for cb in arms.values():
            with attached(cb):
                await _block(router, 5)  # the Router's clients made, the group learned
            cb.spans.clear()
        await admin.config_resetstat()
        commands_on = 0
        for index in range(rounds):
            for name in ("off", "on") if index % 2 else ("on", "off"):
                await _settle()
                before = await _redis_commands(admin)
                with attached(arms[name]):
                    got = await _block(router, block)
                await _settle()  # the queued success events land in this arm too
                if name == "on":
                    commands_on += await _redis_commands(admin) - before
                wall[name] += got
        requests = rounds * block
        hooks = {name: _per_hook(cb.spans, requests) for name, cb in arms.items()}
        openings = await _openings(arms, captured["request_data"])
        pushed_before = share.counters.pushed
        await asyncio.sleep(0.2)  # the writer runs as soon as the loop is free
        openings["on"]["shared_afterwards"] = share.counters.pushed - pushed_before
        await on.aclose()
    finally:
        await admin.aclose()
    return {
        "breakers": HOT_SIZE,
        "requests_per_arm": requests,
        "request_median_ms": {n: 1e3 * median(wall[n]) for n in arms},
        "hooks": hooks,
        "hooks_us_per_request": {
            n: sum(h["us_per_request"] for h in hooks[n].values()) for n in arms
        },
        "redis_commands_during_requests": commands_on,
        "openings": openings,
    }


async def _openings(
    arms: dict[str, CircuitBreaker], request_data: dict[str, Any]
) -> dict[str, Any]:
    """The failure hook that opens a breaker, driven without a loop: it raises if it suspends."""
    failure = litellm.ServiceUnavailableError(
        message="bench: 503", llm_provider="openai", model="m", response=None
    )
    out = {}
    for offset, (name, cb) in enumerate(arms.items(), start=1):
        spans = []
        opened = 0
        # Deployments of other groups than the requests': a distinct set per arm.
        for i in range(offset, HOT_SIZE, HOT_GROUPS)[:15]:
            dead = {**request_data, "model_info": {"id": f"d{i}"}}
            started = time.perf_counter()
            for _ in range(cb.cache.failure_threshold):
                _drive(cb.async_post_call_failure_deployment_hook(dead, failure, "acompletion"))
            spans.append(time.perf_counter() - started)
            opened += cb.cache.breaker_state(f"d{i}") is BreakerState.OPEN
        out[name] = {
            "openings": len(spans),
            "opened": opened,
            "suspended": 0,  # _drive raised otherwise
            "us_per_opening": 1e6 * median(spans),
        }
    return out


def _plain(url: str) -> Any:
    import redis.asyncio as aioredis  # noqa: PLC0415 - optional extra

    return aioredis.Redis.from_url(url, decode_responses=True)


# -- the suite -----------------------------------------------------------------


async def _single(quick: bool) -> dict[str, Any]:
    iterations, repeats = (100, 3) if quick else (300, 5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        admin = _plain(server.url)
        try:
            version = (await admin.info("server"))["redis_version"]
            # Scripts cached and a namespace touched before the first memory reading.
            await _fill(admin, SharedKeys(_namespace("warm", 10)), 10, open_every=OPEN_EVERY)
            for size in SIZES:
                keys = SharedKeys(_namespace("scale", size))
                gc.collect()
                used_before = (await admin.info("memory"))["used_memory"]
                started = time.perf_counter()
                await _fill(admin, keys, size, open_every=OPEN_EVERY)
                fill_s = time.perf_counter() - started
                row: dict[str, Any] = {"records": size, "fill_s": fill_s}
                row["memory"] = await _redis_memory(admin, keys, size, used_before)
                progress(f"  shared: {size:,} records in Redis ({fill_s:.1f} s to write)")
                url = server.url
                row["push"] = await _pushes(url, keys.namespace, iterations, url)
                row["reconcile"] = await _reconciles(url, keys.namespace, size, repeats, url)
                row["reconcile"].update(await _reconcile_memory(server.url, keys.namespace, size))
                push, rec = row["push"], row["reconcile"]
                progress(
                    f"    push open/close {push['open_us']:.0f}/{push['close_us']:.0f} us "
                    f"(GET {push['get_us']:.0f} us); reconcile first {rec['first_ms']:.0f} ms, "
                    f"steady {rec['steady_ms']:.0f} ms (loop stall {rec['steady_stall_ms']:.0f} "
                    f"ms, in Redis {rec['snapshot_in_redis_ms']:.1f} ms)"
                )
                rows.append(row)
            progress(f"  shared: the hot path with {HOT_SIZE:,} shared breakers, sharing off/on")
            hot = await _hot(server.url, *((6, 5) if quick else (12, 5)))
            progress(
                "    hooks off/on "
                + " / ".join(f"{v:.0f}" for v in hot["hooks_us_per_request"].values())
                + " us per request; Redis commands during them "
                + str(hot["redis_commands_during_requests"])
            )
        finally:
            await admin.aclose()
            server.stop()
    return {"redis_version": version, "sizes": rows, "hot": hot}


async def _cluster(quick: bool) -> dict[str, Any]:
    """The push and the reconcile on a local Redis Cluster (timings only)."""
    if shutil.which("redis-cli") is None:
        return {"skipped": "redis-cli is not installed"}
    iterations, repeats = (100, 3) if quick else (200, 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        cluster = RedisCluster(Path(workdir))
        started = time.perf_counter()
        try:
            await asyncio.to_thread(cluster.start)
            made_s = time.perf_counter() - started
            for size in SIZES:
                keys = SharedKeys(_namespace("cluster", size))
                holder = cluster.primary_of(keys.index)
                # The URL names another node, as a configuration endpoint would.
                url = next(n for n in cluster.nodes if n is not holder).url
                direct = _plain(holder.url)  # the slot's primary runs the pipelined fill
                try:
                    await _fill(direct, keys, size, open_every=OPEN_EVERY)
                finally:
                    await direct.aclose()
                progress(f"  shared on a Redis Cluster: {size:,} records")
                rows.append(
                    {
                        "records": size,
                        "push": await _pushes(url, keys.namespace, iterations, holder.url),
                        "reconcile": await _reconciles(
                            url, keys.namespace, size, repeats, holder.url
                        ),
                    }
                )
        finally:
            cluster.stop()
    return {"nodes": len(cluster.nodes), "made_s": made_s, "sizes": rows}


def run(*, quick: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    if shutil.which("redis-server") is None:
        result: dict[str, Any] = {"skipped": "redis-server is not installed"}
    else:
        with respx.mock(assert_all_called=False) as mock:
            mock.post(url__regex=r"^http://d\d+\.bench/v1/chat/completions$").mock(
                return_value=httpx.Response(200, json=chat_body())
            )
            result = asyncio.run(_single(quick))
        progress("  shared: a local Redis Cluster")
        try:
            result["cluster"] = asyncio.run(_cluster(quick))
        except Exception as exc:  # the single-server figures stand without it
            result["cluster"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    result.update(
        {
            "suite": "shared",
            "reconcile_sec": DEFAULT_RECONCILE_SEC,
            "machine": common.machine(),
            "quick": quick,
            "wall_s": time.perf_counter() - started,
        }
    )
    return result


# -- the report ----------------------------------------------------------------


def _push_rows(label: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            label,
            f"{r['records']:,}",
            fmt(r["push"]["ping_us"], 0),
            fmt(r["push"]["get_us"], 0),
            fmt(r["push"]["open_us"], 0),
            fmt(r["push"]["close_us"], 0),
            f"{r['push']['open_vs_get']:.1f} x / {r['push']['close_vs_get']:.1f} x",
            f"{fmt(r['push']['open_p99_us'], 0)} / {fmt(r['push']['close_p99_us'], 0)}",
            fmt(r["push"]["script_in_redis_us"], 0),
        ]
        for r in rows
    ]


def _reconcile_rows(label: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            label,
            f"{r['records']:,}",
            fmt(r["reconcile"]["first_ms"], 0),
            fmt(r["reconcile"]["steady_ms"], 0),
            fmt(r["reconcile"]["steady_cpu_ms"], 0),
            f"{fmt(r['reconcile']['first_stall_ms'], 0)} / "
            f"{fmt(r['reconcile']['steady_stall_ms'], 0)}",
            fmt(r["reconcile"]["snapshot_in_redis_ms"], 1),
            fmt(r["reconcile"]["snapshot_round_trip_ms"], 1),
            fmt(r["reconcile"]["snapshot_reply_bytes"] / 1024, 0),
            fmt(r["reconcile"].get("first_peak_kib"), 0),
            fmt(r["reconcile"].get("steady_peak_kib"), 0),
            fmt(r["reconcile"].get("retained_bytes_per_record"), 0),
        ]
        for r in rows
    ]


def markdown(result: dict[str, Any]) -> str:
    title = f"## 4. Shared state at scale on litellm {result['machine']['litellm']}"
    if "skipped" in result:
        return f"{title}\n\nSkipped: {result['skipped']}."
    cluster = result["cluster"]
    single = f"redis-server {result['redis_version']}"
    push_rows = _push_rows(single, result["sizes"])
    reconcile_rows = _reconcile_rows(single, result["sizes"])
    if "skipped" not in cluster:
        label = f"Redis Cluster ({cluster['nodes']} nodes)"
        push_rows += _push_rows(label, cluster["sizes"])
        reconcile_rows += _reconcile_rows(label, cluster["sizes"])
        cluster_note = (
            f"The cluster rows: {cluster['nodes']} nodes on loopback (three primaries with a "
            "replica each), the replica's URL naming a node that does not hold the namespace's "
            f"slot; made in {cluster['made_s']:.0f} s."
        )
    else:
        cluster_note = f"No Redis Cluster rows: {cluster['skipped']}."
    memory_rows = [
        [
            f"{r['records']:,}",
            fmt(r["memory"]["used_memory_bytes_per_record"], 0),
            fmt(r["memory"]["record_memory_usage_bytes"], 0),
            fmt(r["memory"]["index_bytes_per_record"], 0),
        ]
        for r in result["sizes"]
    ]
    hot = result["hot"]
    hot_rows = [
        [
            name,
            fmt(hot["request_median_ms"][name], 2),
            fmt(hot["hooks_us_per_request"][name], 1),
            fmt(hot["openings"][name]["us_per_opening"], 1),
            f"{hot['openings'][name]['opened']}/{hot['openings'][name]['openings']}",
        ]
        for name in ("off", "on")
    ]
    return "\n\n".join(
        [
            title,
            "A real `redis-server` on loopback, started by the bench, one namespace per size "
            "filled by the plugin's own transition script (one record in ten open for an hour, "
            "the others closed after an opening). One replica's sharing adapter is driven by "
            "hand so each operation is timed alone. *Push*: one local transition written through "
            "the adapter's writer (the Lua script and its answer parsed), open then close, "
            "interleaved with a `GET` and a `PING` on the same client; medians of "
            f"{result['sizes'][0]['push']['iterations']} each, the ratio against `GET`; *in "
            "Redis* is the script's own time (`INFO commandstats`). The plugin sends the script "
            f"text ({result['sizes'][0]['push']['script_bytes_sent']:,} bytes) with every `EVAL`.",
            table(
                [
                    "Redis",
                    "records",
                    "PING (µs)",
                    "GET (µs)",
                    "push open (µs)",
                    "push close (µs)",
                    "open / close vs GET",
                    "p99 open / close (µs)",
                    "script in Redis (µs)",
                ],
                push_rows,
            ),
            "*Reconcile*: `_reconcile`, what every replica runs every `redis_reconcile_sec` "
            f"({result['reconcile_sec']:g} s by default) and after each reconnect: the "
            "snapshot script reads every record, "
            "each is parsed and taken. *First* is a new replica adopting them all; *steady* one "
            "with nothing new (medians). *Loop stall*: the longest the event loop went without "
            "running a 1 ms sleeper during it (requests in that loop wait that long; steady: "
            "the median over the repeats). *Snapshot "
            "in Redis*: the script's own time, during which Redis serves nobody else. Memory is "
            "tracemalloc in a separate pass (single server only): the peak the reconcile "
            "allocates, and what the first one leaves behind per record (the adopted breakers).",
            cluster_note,
            table(
                [
                    "Redis",
                    "records",
                    "first (ms)",
                    "steady (ms)",
                    "steady CPU (ms)",
                    "loop stall first / steady (ms)",
                    "snapshot in Redis (ms)",
                    "snapshot round trip (ms)",
                    "reply (KiB)",
                    "peak first (KiB)",
                    "peak steady (KiB)",
                    "retained (bytes/record)",
                ],
                reconcile_rows,
            ),
            "Redis memory of a namespace: `used_memory` before and after filling it, per record; "
            "`MEMORY USAGE` of a sample of records and of the index sorted set.",
            table(
                [
                    "records",
                    "used_memory (bytes/record)",
                    "MEMORY USAGE record (bytes)",
                    "index (bytes/record)",
                ],
                memory_rows,
            ),
            f"The hot path with sharing off and on: one `Router` with {hot['breakers']:,} "
            f"deployments in {HOT_GROUPS} groups, requests to one group (respx in place of the "
            f"providers), {hot['requests_per_arm']} per arm in alternating blocks; both "
            f"breakers hold the same {hot['breakers']:,} closed breakers (*on*: adopted from "
            "the namespace, its sharing task running and connected). Plugin hooks timed as in "
            "section 1. Redis commands processed while the *on* arm served its requests: "
            f"**{hot['redis_commands_during_requests']}**. *Opening*: the failure hook called "
            "until it opens a breaker, driven without an event loop (it would raise had it "
            "suspended, e.g. to wait on Redis); with sharing on, "
            f"{hot['openings']['on'].get('shared_afterwards', 0)} of those openings were then "
            "pushed by the background writer once the loop was free.",
            table(
                [
                    "sharing",
                    "request median (ms)",
                    "plugin hooks (µs/request)",
                    "opening (µs)",
                    "opened without suspending",
                ],
                hot_rows,
            ),
        ]
    )


if __name__ == "__main__":  # handy on its own: python bench/shared_scale.py [--quick]
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
