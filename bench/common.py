"""Shared helpers for the benchmark suites: environment, statistics, LiteLLM callbacks, output.

Importing this module sets the environment LiteLLM reads at import time, so
every suite imports it before ``litellm``: offline cost map, and LiteLLM's
HTTP calls going through httpx (so respx can stand in for providers).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")

import litellm

from litellm_circuit_breaker.testing import restored_litellm_callbacks

litellm.disable_aiohttp_transport = True
litellm.suppress_debug_info = True

# The plugin logs every breaker transition; keep the progress output readable
# and show only its errors (internal errors are also counted in the results).
_errors_only = logging.StreamHandler(sys.stderr)
_errors_only.setLevel(logging.ERROR)
logging.getLogger("litellm_circuit_breaker").addHandler(_errors_only)

RESULTS = Path(__file__).resolve().parent / "results"


def progress(message: str) -> None:
    """One progress line on stderr, so stdout stays clean for anything piped."""
    print(message, file=sys.stderr, flush=True)


def chat_body() -> dict[str, Any]:
    """A minimal OpenAI chat.completion body, for respx routes standing in for providers."""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@contextmanager
def attached(*callbacks: Any) -> Iterator[None]:
    """Attach LiteLLM callbacks the way app code does; restore every callback list after.

    LiteLLM copies ``litellm.callbacks`` into five other lists as calls run, so
    removing a callback means restoring all six (see LITELLM_NOTES.md).
    """
    with restored_litellm_callbacks():
        litellm.callbacks.extend(callbacks)
        yield


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def machine() -> dict[str, Any]:
    """What the numbers ran on: they mean little without it."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "litellm": metadata.version("litellm"),
        "litellm_circuit_breaker": metadata.version("litellm-circuit-breaker"),
        "httpx": metadata.version("httpx"),
        "loadavg_1m": os.getloadavg()[0],
    }


def write_json(suite: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{suite}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def read_json(suite: str) -> dict[str, Any] | None:
    path = RESULTS / f"{suite}.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a Markdown table; a dash when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; numeric-looking columns are right-aligned."""

    def numeric(column: int) -> bool:
        cells = [row[column] for row in rows if row[column] not in ("-", "")]
        return bool(cells) and all(
            c.replace(",", "").replace(".", "").replace(" x ", "").lstrip("-").isdigit()
            for c in cells
        )

    align = ["---:" if numeric(i) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
