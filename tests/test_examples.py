"""The examples the README points to run as a user would run them, and say what they claim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
