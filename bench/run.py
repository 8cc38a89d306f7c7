"""Run the benchmarks: hot-path overhead, failover quality, probe scale, shared state, streams.

    .venv/bin/python bench/run.py                 # all five, about 17 minutes on 2 cores
    .venv/bin/python bench/run.py --only failover # one suite: hot, failover, probe, shared, streams
    .venv/bin/python bench/run.py --quick         # smaller and more compressed: a smoke run
    .venv/bin/python bench/run.py --floor-python .venv-floor/bin/python
                                                  # hot path and shared state again on the floor

Each suite writes ``bench/results/<suite>.json`` (with the machine, Python and
litellm version it ran on); ``bench/results/RESULTS.md`` is then rebuilt from
every JSON file present, so running one suite keeps the others' last tables.
Nothing here asserts on a timing: the numbers are reported, never judged.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import failover
import hot_path
import probe_scale
import shared_scale
import streams
from common import RESULTS, fmt, progress, read_json, write_json

from litellm_circuit_breaker import DEFAULT_PROBE_CONCURRENCY

SUITES = {
    "hot": hot_path,
    "failover": failover,
    "probe": probe_scale,
    "shared": shared_scale,
    "streams": streams,
}
FLOOR = "-floor"
"""Suffix of a suite measured again in the floor LiteLLM's environment (``--floor-python``)."""
ON_FLOOR = ("hot", "shared")
"""The suites whose figures depend on the LiteLLM version: run again with ``--floor-python``."""
FLOOR_HOT = "hot" + FLOOR


def _header(results: dict[str, dict[str, Any]], total_s: float | None) -> str:
    newest = max(results.values(), key=lambda r: r["machine"]["date"])["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {newest['cpu_count']} CPUs ({newest['cpu_model']}), {newest['platform']}; "
        f"Python {newest['python']}; litellm {newest['litellm']}; "
        f"litellm-circuit-breaker {newest['litellm_circuit_breaker']}; httpx {newest['httpx']}.",
        "",
        "Reproduce: `make bench` (or `.venv/bin/python bench/run.py`; "
        "`--only hot|failover|probe|shared|streams`, `--quick`). Raw figures: "
        "`bench/results/<suite>.json`.",
        "",
    ]
    suite_lines = []
    for name, result in results.items():
        m = result["machine"]
        load = result.get("load_before")
        load_text = (
            f", load average {load:.2f} before / {m['loadavg_1m']:.2f} after" if load else ""
        )
        quick = ", **--quick**" if result.get("quick") else ""
        suite_lines.append(f"- `{name}`: {m['date']}, {result['wall_s']:.0f} s{quick}{load_text}")
    lines += ["Runs (date, wall time, 1-minute load average of the machine):", "", *suite_lines]
    if total_s is not None:
        lines += ["", f"Whole run: {total_s:.0f} s."]
    return "\n".join(lines)


def _hot_targets(hot: dict[str, Any]) -> list[str]:
    lines = []
    for row in hot["sizes"]:
        if row["deployments"] != 200:
            continue
        direct, implied = row["wall"]["plugin_vs_without"], row["instrumented"]["implied_ratio"]
        low, high = direct["ci95"]
        verdict = (
            "too scattered to confirm or refute 1 %"
            if low <= 1.01 <= high
            else ("below" if high < 1.01 else "above") + " 1.01 with 95 % confidence"
        )
        lines.append(
            f"- Ratio <= 1.01 at 200 deployments: plugin hooks imply **{implied:.4f}**; the "
            f"direct comparison reads {direct['ratio']:.3f} (95 % CI {low:.3f} to {high:.3f}), "
            f"{verdict}."
        )
    per = [
        f"{r['deployments']:,}: {1e3 * r['timeit']['filter_some_open_us'] / r['deployments']:.0f}"
        for r in hot["sizes"]
    ]
    lines.append(
        "- Growth no worse than linear: with all breakers closed the filter is flat in the "
        "group size; with a few open it walks the whole list, ns per deployment "
        f"({'; '.join(per)})."
    )
    return lines


def _failover_targets(failover_result: dict[str, Any]) -> list[str]:
    threshold = failover_result["failure_threshold"]
    interval = failover_result["scaled_settings_s"]["probe_interval"]
    dead, failed, slow = [], [], []
    for sc in failover_result["scenarios"]:
        run = next(r for r in sc["runs"] if r["config"] == "plugin")
        worst = max(run["dead_calls_per_outage"])
        if worst > (sc.get("max_dead_calls") or threshold):
            dead.append(f"{sc['name']} ({worst})")
        if run["client_failures"]:
            failed.append(f"{sc['name']} ({run['client_failures']})")
        bound = interval
        if sc.get("max_recovery_real_s"):
            bound = sc["max_recovery_real_s"] / failover_result["scale"]
        late = [r for r in run["recovery_s"] if r is None or r > bound]
        if late:
            slow.append(sc["name"])
    total = len(failover_result["scenarios"])
    return [
        f"- At most `failure_threshold` ({threshold}) calls to a dead deployment per outage "
        "(3 in the blind-probe scenarios, one trial per window): "
        + (
            f"met in {total - len(dead)}/{total}; missed in {', '.join(dead)}."
            if dead
            else f"met in all {total} scenarios."
        ),
        "- Zero client-visible failures with a fallback or sibling: "
        + (f"missed in {', '.join(failed)}." if failed else f"met in all {total} scenarios."),
        f"- Recovery within one probe interval ({interval:g} s scaled) of the heal "
        "(40 s real in the blind-probe scenarios): "
        + (f"missed in {', '.join(slow)}." if slow else f"met in all {total} scenarios."),
    ]


def _probe_targets(probe: dict[str, Any]) -> list[str]:
    return [
        f"- {row['endpoints']:,} endpoints at the default `probe_concurrency`: a round takes "
        f"{min(row['tick_s']):.1f} s (default `probe_interval` 30 s); "
        f"{row['endpoints'] - min(row['probes_ok'])} healthy endpoints failed their probe."
        for row in probe["sizes"]
        if row["probe_concurrency"] == DEFAULT_PROBE_CONCURRENCY
    ]


def _shared_targets(shared: dict[str, Any]) -> list[str]:
    if "skipped" in shared:
        return [f"- Shared state: skipped ({shared['skipped']})."]
    lines = []
    for row in shared["sizes"]:
        push, rec = row["push"], row["reconcile"]
        lines.append(
            f"- {row['records']:,} shared breakers: one transition push "
            f"{fmt(push['open_us'], 0)} µs to open, {fmt(push['close_us'], 0)} µs to close "
            f"({push['open_vs_get']:.1f} x and {push['close_vs_get']:.1f} x a GET of "
            f"{fmt(push['get_us'], 0)} µs); a reconcile {fmt(rec['steady_ms'], 0)} ms, "
            f"{fmt(rec['steady_cpu_ms'], 0)} ms of CPU (a new replica's first "
            f"{fmt(rec['first_ms'], 0)} ms), stalling the event loop "
            f"up to {fmt(max(rec['first_stall_ms'], rec['steady_stall_ms']), 0)} ms and Redis "
            f"{fmt(rec['snapshot_in_redis_ms'], 0)} ms, every {shared['reconcile_sec']:g} s per "
            f"replica; {fmt(row['memory']['used_memory_bytes_per_record'], 0)} bytes of Redis "
            "memory per breaker."
        )
    hot = shared["hot"]
    commands = hot["redis_commands_during_requests"]
    lines.append(
        f"- {'No' if commands == 0 else commands} Redis "
        f"command{'' if commands == 1 else 's'} during {hot['requests_per_arm']} requests "
        "with sharing on; plugin hooks "
        + " / ".join(f"{hot['hooks_us_per_request'][n]:.0f}" for n in ("off", "on"))
        + " µs per request with sharing off / on at "
        f"{hot['breakers']:,} breakers; the hook that opens a breaker never suspended."
    )
    return lines


def _targets(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "## Against the targets of issues 6 and 12",
        "",
        "Read from the tables above; reported, never asserted.",
        "",
    ]
    for name in ("hot", FLOOR_HOT):
        if name in results:
            lines.append(f"- litellm {results[name]['machine']['litellm']}:")
            lines += ["  " + line for line in _hot_targets(results[name])]
    if "failover" in results:
        lines += _failover_targets(results["failover"])
    if "probe" in results:
        lines += _probe_targets(results["probe"])
    for name in ("shared", "shared" + FLOOR):
        if name in results:
            lines.append(f"- Shared state, litellm {results[name]['machine']['litellm']}:")
            lines += ["  " + line for line in _shared_targets(results[name])]
    return "\n".join(lines)


def write_markdown(total_s: float | None) -> None:
    names = [n for suite in SUITES for n in (suite, suite + FLOOR)]
    results = {name: r for name in names if (r := read_json(name)) is not None}
    if not results:
        return
    parts = [_header(results, total_s), _targets(results)]
    parts += [SUITES[name.removesuffix(FLOOR)].markdown(result) for name, result in results.items()]
    (RESULTS / "RESULTS.md").write_text("\n\n".join(parts) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SUITES),
        help="run only this suite (repeatable); default: all four",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests, 20x time compression, 1,000 probes"
    )
    parser.add_argument(
        "--floor-python",
        help="a Python whose environment has the floor LiteLLM: runs the hot path and the "
        "shared-state suite there too",
    )
    parser.add_argument("--as-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chosen = [name for name in SUITES if not args.only or name in args.only]
    started = time.perf_counter()
    for name in chosen:
        progress(f"{name}: running{' (quick)' if args.quick else ''}")
        load_before = os.getloadavg()[0]
        result = SUITES[name].run(quick=args.quick)
        result["load_before"] = load_before
        path = write_json(name + FLOOR if args.as_floor else name, result)
        progress(f"{name}: {result['wall_s']:.0f} s, wrote {path.relative_to(RESULTS.parent)}")
        if name in ON_FLOOR and args.floor_python:
            progress(f"{name}: again on the floor LiteLLM")
            floor = [args.floor_python, __file__, "--only", name, "--as-floor"]
            subprocess.run([*floor, *(["--quick"] if args.quick else [])], check=True)  # noqa: S603
    total = time.perf_counter() - started
    write_markdown(total if len(chosen) == len(SUITES) else None)
    progress(f"done in {total:.0f} s; tables in {RESULTS / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
