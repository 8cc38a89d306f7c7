"""examples/demo.py --quick: the whole story through the real proxy, and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
# Breaker threshold plus requests already in flight when it opens, as the demo allows.
MOST_CALLS_TO_THE_DEAD_PRIMARY = 2 + 2


def test_quick_demo_shows_transitions_and_the_comparison_and_stops_every_proxy() -> None:
    """The demo exits 0, prints transitions and both columns, leaks no key, leaves no proxy."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CIRCUIT_BREAKER_", "LITELLM_"))
    }
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    done = subprocess.run(  # noqa: S603 - our own example, with our own interpreter
        [sys.executable, str(DEMO), "--quick"],
        capture_output=True,
        text=True,
        # Two proxy start-ups (up to 120 s each in the demo) and the story: generous,
        # since a loaded machine slows every one of them; a deadline, not a bar.
        timeout=900,
        env=env,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output

    assert re.search(r"primary\s+closed -> open\s+circuit opened", done.stdout), output
    assert re.search(r"primary\s+half_open -> closed\s+recovered", done.stdout), output
    assert re.search(r"^\s+LiteLLM defaults\s+with the breaker$", done.stdout, re.M), output
    dead = re.search(r"calls sent to the dead primary\s+(\d+)\s+(\d+)$", done.stdout, re.M)
    assert dead is not None, output
    assert int(dead.group(2)) <= MOST_CALLS_TO_THE_DEAD_PRIMARY
    for row in ("errors the client saw", "p50 latency", "p95 latency", "healed primary served"):
        assert re.search(rf"{row}.*\S+\s{{2,}}\S+", done.stdout), f"no row {row!r}:\n{output}"
    assert "Verdict:" in done.stdout

    # Every key the demo made up (providers' and the master key) starts so.
    assert "sk-demo-" not in output

    pids = [int(pid) for pid in re.findall(r"proxy stopped \(pid (\d+)\)", done.stdout)]
    assert len(pids) == 2, output
    for pid in pids:  # each proxy led its own session; nothing of it may remain
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
