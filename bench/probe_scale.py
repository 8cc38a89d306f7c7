"""Probe scale: one probe round over 1,000 and 10,000 endpoints on loopback.

Every deployment gets its own endpoint (``http://127.0.0.1:PORT/e{i}/v1``),
served by ``endpoint_server.py`` in a separate process so the sockets and
memory counted here are the prober's alone. For each size: the wall time of
``await breaker.probe_once()`` (the same round the background loop runs each
``probe_interval``), the sockets this process held open at the peak of the
round, and the memory retained per tracked deployment (tracemalloc, in a
separate pass because tracing slows the round down).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import common
import httpx
from common import fmt, percentile, progress, table

from litellm_circuit_breaker import DEFAULT_PROBE_CONCURRENCY as DEFAULT
from litellm_circuit_breaker import CircuitBreaker

TRACED_ROUND_MAX = 1000
SERVER = Path(__file__).resolve().parent / "endpoint_server.py"

try:  # psutil is not a dependency; /proc/self/fd does the same job on Linux
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None


def model_list(port: int, size: int) -> list[dict[str, Any]]:
    return [
        {
            "model_name": f"group-{i % 50}",
            "litellm_params": {
                "model": "openai/fake-model",
                "api_base": f"http://127.0.0.1:{port}/e{i}/v1",
                "api_key": "sk-bench-probe",
            },
            "model_info": {"id": f"e{i}"},
        }
        for i in range(size)
    ]


def open_sockets() -> int:
    """Sockets this process holds right now."""
    if psutil is not None:
        return len(psutil.Process().net_connections(kind="inet"))
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue  # closed between listing and reading
    return count


class SocketSampler:
    """Samples this process's open sockets from a thread, keeping the peak."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, open_sockets())
            self._stop.wait(self.every)

    def __enter__(self) -> SocketSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _server_stats(port: int) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/__stats")
        stats: dict[str, int] = response.json()
        return stats


async def _timed_round(port: int, size: int, rounds: int, concurrency: int) -> dict[str, Any]:
    models = model_list(port, size)
    built = time.perf_counter()
    breaker = CircuitBreaker(model_list=models, probe_interval=None, probe_concurrency=concurrency)
    build_s = time.perf_counter() - built
    before = open_sockets()
    stats_before = await _server_stats(port)
    walls, cpus, peaks, oks, latencies = [], [], [], [], []
    failures: dict[str, int] = {}
    for _ in range(rounds):
        gc.collect()
        with SocketSampler() as sampler:
            cpu = time.process_time()
            started = time.perf_counter()
            results = await breaker.probe_once()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        peaks.append(sampler.peak - before)
        oks.append(sum(1 for r in results.values() if r.ok))
        latencies += [r.latency for r in results.values()]
        for r in results.values():
            if not r.ok:
                failures[r.reason or "no verdict"] = failures.get(r.reason or "no verdict", 0) + 1
    stats_after = await _server_stats(port)
    return {
        "build_s": build_s,
        "tick_s": walls,
        "tick_cpu_s": cpus,
        "peak_sockets": peaks,
        "probes_ok": oks,
        "probe_failures": failures,
        "probe_latency_ms": {
            "p50": 1e3 * percentile(latencies, 50),
            "p99": 1e3 * percentile(latencies, 99),
            "max": 1e3 * max(latencies),
        },
        "probe_concurrency": breaker.config.probe_concurrency,
        "server_requests": stats_after["requests"] - stats_before["requests"] - 1,
        "server_connections": stats_after["connections"] - stats_before["connections"] - 1,
        "server_peak_open": stats_after["peak_open"],
    }


async def _memory(port: int, size: int, *, with_round: bool) -> dict[str, Any]:
    """Bytes the breaker retains per deployment: configured, and after a traced round."""
    models = model_list(port, size)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        breaker = CircuitBreaker(model_list=models, probe_interval=None)
        gc.collect()
        built = tracemalloc.get_traced_memory()[0]
        ticked = None
        if with_round:
            results = await breaker.probe_once()
            del results
            gc.collect()
            ticked = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_deployment_configured": (built - base) / size,
        "bytes_per_deployment_after_tick": None if ticked is None else (ticked - base) / size,
        "tracked": len(breaker.deployments),
        "breakers": len(breaker.cache.snapshot()),
    }


async def _main(plan: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Probe (size, probe_concurrency, rounds) in turn; memory traced once per size."""
    # Started before any probing and read once: a blocking call here costs nothing.
    server = subprocess.Popen(  # noqa: S603, ASYNC220 - our own script, our own interpreter
        [sys.executable, str(SERVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        rows = []
        memory: dict[int, dict[str, Any]] = {}
        for size, concurrency, rounds in plan:
            progress(
                f"  probe scale: {size:,} endpoints, probe_concurrency {concurrency}, "
                f"{rounds} round(s)"
            )
            row = {
                "endpoints": size,
                **await _timed_round(port, size, rounds, concurrency),
            }
            progress(
                f"    round {', '.join(f'{w:.2f}' for w in row['tick_s'])} s, peak sockets "
                f"{max(row['peak_sockets'])}"
            )
            if size not in memory:
                # Tracing slows a round down about twofold: at 10,000 endpoints only the
                # configured state is traced, to keep the suite near one minute.
                memory[size] = await _memory(port, size, with_round=size <= TRACED_ROUND_MAX)
            row.update(memory[size])
            rows.append(row)
        return rows
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run(*, quick: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    # (endpoints, probe_concurrency, rounds): the default concurrency first, then
    # lower ones, because the round's cost depends on it far more than on anything else.
    plan = (
        [(1000, DEFAULT, 1), (1000, 64, 1), (1000, 4, 1)]
        if quick
        else [
            (1000, DEFAULT, 2),
            (1000, 64, 1),
            (1000, 4, 1),
            (10000, DEFAULT, 1),
            (10000, 64, 1),
        ]
    )
    rows = asyncio.run(_main(plan))
    return {
        "suite": "probe",
        "socket_counter": "psutil" if psutil is not None else "/proc/self/fd",
        "sizes": rows,
        "machine": common.machine(),
        "quick": quick,
        "wall_s": time.perf_counter() - started,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        [
            f"{r['endpoints']:,}",
            str(r["probe_concurrency"]),
            ", ".join(f"{w:.2f}" for w in r["tick_s"]),
            ", ".join(f"{c:.2f}" for c in r["tick_cpu_s"]),
            fmt(1e3 * min(r["tick_s"]) / r["endpoints"], 2),
            fmt(r["probe_latency_ms"]["p50"], 0),
            fmt(r["probe_latency_ms"]["p99"], 0),
            f"{r['endpoints'] - min(r['probes_ok']):,}",
            str(max(r["peak_sockets"])),
            f"{r['server_connections']:,}",
            fmt(r["bytes_per_deployment_configured"] / 1024, 2),
            fmt(
                None
                if r["bytes_per_deployment_after_tick"] is None
                else r["bytes_per_deployment_after_tick"] / 1024,
                2,
            ),
            fmt(r["build_s"], 2),
        ]
        for r in result["sizes"]
    ]
    return "\n\n".join(
        [
            "## 3. Probe scale",
            "Distinct endpoints `http://127.0.0.1:PORT/e{i}/v1`, one per deployment, served by "
            "one small server in another process (so every probe goes to the same origin and "
            "reuses pooled keep-alive connections). `CircuitBreaker(model_list=..., "
            "probe_interval=None)` then `await breaker.probe_once()` per round, which opens its "
            "own HTTP client; `probe_timeout` 3 s; "
            f"`probe_concurrency` {DEFAULT} is the default, the "
            "lower values show what the round's cost depends on. Sockets are this process's, "
            "counted with "
            f"{result['socket_counter']} every 5 ms; memory is what the breaker retains per "
            "deployment (tracemalloc, separate pass), after construction and after one round "
            "(the round is traced at 1,000 endpoints only). *Failed* probes are healthy "
            "endpoints whose probe did not pass within the timeout.",
            table(
                [
                    "endpoints",
                    "probe_concurrency",
                    "round wall (s)",
                    "round CPU (s)",
                    "ms per endpoint",
                    "probe p50 (ms)",
                    "probe p99 (ms)",
                    "failed probes",
                    "peak sockets",
                    "connections opened",
                    "KiB/deployment configured",
                    "KiB/deployment after a round",
                    "construction (s)",
                ],
                rows,
            ),
        ]
    )


if __name__ == "__main__":  # handy on its own: python bench/probe_scale.py
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
