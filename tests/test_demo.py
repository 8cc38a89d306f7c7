"""examples/demo.py --quick: the whole story through the real proxy and an app Router's
streams, and nothing left behind."""

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
# Streams: the breaker's threshold; LiteLLM alone tries each of the two streams twice.
MOST_STREAM_CALLS_TO_THE_HUNG_PRIMARY = 2
SLOW_STREAMS = 6 + 3


def columns(output: str, name: str) -> tuple[str, str]:
    """The two columns (LiteLLM defaults, with the breaker) of one comparison row."""
    found = re.search(
        rf"^\s+{re.escape(name)}\s+(\S+(?: \S+)*)\s{{2,}}(\S+(?: \S+)*)$", output, re.M
    )
    assert found is not None, f"no row {name!r}:\n{output}"
    return found.group(1), found.group(2)


def test_quick_demo_shows_transitions_and_the_comparison_and_stops_every_proxy() -> None:
    """The demo exits 0, prints transitions and both columns for the proxy and the streams,
    leaks no key, leaves no proxy."""
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

    # Streams: the hung primary's streams reach the fallback, the breaker spares it calls.
    for name in ("hung: first token, stream into the hang", "hung: first token, the next stream"):
        without, with_ = columns(done.stdout, name)
        assert with_.endswith(" fallback"), output
        assert without.endswith(" fallback"), output
    without, with_ = columns(done.stdout, "hung: calls sent to the dead primary")
    assert int(with_) <= MOST_STREAM_CALLS_TO_THE_HUNG_PRIMARY < int(without), output
    assert re.search(r"primary\s+closed -> open\s+.*no first token within \d+s", done.stdout)
    # The primary slow to its first token: every stream answered by it, none cut off,
    # though the later ones ran under the deadline it had earned.
    assert columns(done.stdout, "slow: streams the slow primary answered") == (
        f"{SLOW_STREAMS} of {SLOW_STREAMS}",
        f"{SLOW_STREAMS} of {SLOW_STREAMS}",
    ), output
    assert columns(done.stdout, "slow: streams cut off")[1] == "0", output
    assert int(columns(done.stdout, "slow: streams run under a deadline")[1]) > 0, output
    assert columns(done.stdout, "slow: breaker state at the end")[1] == "closed", output
    assert "Verdict (streams):" in done.stdout

    # Every key the demo made up (providers' and the master key) starts so.
    assert "sk-demo-" not in output

    pids = [int(pid) for pid in re.findall(r"proxy stopped \(pid (\d+)\)", done.stdout)]
    assert len(pids) == 2, output
    for pid in pids:  # each proxy led its own session; nothing of it may remain
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
