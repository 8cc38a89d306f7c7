"""Draw one outage as a timeline per configuration: bench/results/outage-<scenario>.png.

Reads ``bench/results/failover.json`` (written by ``make bench``). Each row is one
configuration: the requests and who answered them, every attempt the Router sent to
the broken deployment, and for the plugin the breaker state of that deployment.
Needs matplotlib (the ``bench`` extra); without it, says so and draws nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("primary-hang", "primary-503")
STATE_COLOURS = {"closed": "#2e7d32", "half_open": "#f9a825", "open": "#c62828"}
LABELS = {
    "litellm-defaults": "LiteLLM defaults",
    "litellm-tuned": "LiteLLM tuned",
    "plugin": "LiteLLM + plugin",
}


def _state_spans(
    transitions: list[list[Any]], dead: str, end: float
) -> list[tuple[float, float, str]]:
    spans, since, state = [], 0.0, "closed"
    for at, deployment, new in transitions:
        if deployment != dead:
            continue
        spans.append((since, at, state))
        since, state = at, new
    spans.append((since, end, state))
    return [s for s in spans if s[1] > s[0]]


def draw(result: dict[str, Any], scenario: dict[str, Any], out: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional, only for the picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    scale = result["scale"]
    runs = scenario["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 1.9 * len(runs)), sharex=True)
    dead = scenario["dead"]
    for ax, run in zip(axes, runs, strict=True):
        series = run["series"]
        end = max(r[0] for r in series["requests"]) + 1.0 / scale * 2
        for start, heal in series["outages"]:
            ax.axvspan(start * scale, heal * scale, color="#ffcdd2", zorder=0)
        served = {"dead": [], "other": [], "failed": []}
        for at, by, _latency in series["requests"]:
            key = "failed" if by == "failed" else ("dead" if by == dead else "other")
            served[key].append(at * scale)
        ax.scatter(served["dead"], [2] * len(served["dead"]), s=12, color="#1565c0",
                   label=f"answered by {dead}")  # fmt: skip
        ax.scatter(served["other"], [2] * len(served["other"]), s=12, color="#78909c",
                   label="answered by the fallback or sibling")  # fmt: skip
        ax.scatter(served["failed"], [2] * len(served["failed"]), s=30, marker="x",
                   color="black", label="failed for the client")  # fmt: skip
        outage = series["outages"]
        dead_calls = [
            at * scale
            for at, dep in series["attempts"]
            if dep == dead and any(s <= at < h for s, h in outage)
        ]
        ax.vlines(dead_calls, 0.6, 1.4, color="#c62828", linewidth=1.5,
                  label=f"call sent to the broken {dead}")  # fmt: skip
        if run["config"] == "plugin":
            for start, stop, state in _state_spans(series["transitions"], dead, end):
                ax.broken_barh([(start * scale, (stop - start) * scale)], (-0.3, 0.6),
                               color=STATE_COLOURS.get(state, "grey"))  # fmt: skip
        ax.set_yticks([0, 1, 2], ["breaker", "calls to it", "requests"])
        ax.set_ylim(-0.6, 2.6)
        title = f"{LABELS.get(run['config'], run['config'])}: {len(dead_calls)} calls to {dead}"
        ax.set_title(title, loc="left", fontsize=10)
    axes[-1].set_xlabel("seconds (real scale; the run was time-compressed)")
    handles, _ = axes[-1].get_legend_handles_labels()
    from matplotlib.patches import Patch  # noqa: PLC0415

    handles += [
        Patch(color=c, label=f"breaker {s.replace('_', '-')}") for s, c in STATE_COLOURS.items()
    ]
    handles.append(Patch(color="#ffcdd2", label="outage"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(scenario["title"], fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    source = RESULTS / "failover.json"
    if not source.exists():
        print(f"no {source}: run `make bench` first")
        return 1
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'); no plot drawn")
        return 0
    result = json.loads(source.read_text())
    for scenario in result["scenarios"]:
        if scenario["name"] in SCENARIOS and all("series" in r for r in scenario["runs"]):
            out = RESULTS / f"outage-{scenario['name']}.png"
            draw(result, scenario, out)
            print(f"wrote {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
