"""``litellm-circuit-breaker status``: the fleet's shared breakers as Redis holds them."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import replace

from ._records import BadRecord, SharedRecord
from ._redact import Redactor, public_url
from ._state import BreakerState
from ._table import TABLE_WIDTH, columns, short_id

__all__ = ["format_status_json", "format_status_table", "read_status"]

ERROR_CHARS = 120
_WIDE_HEADERS = (
    "DEPLOYMENT",
    "MODEL GROUP",
    "MODEL",
    "HOST",
    "STATE",
    "FAILURES",
    "TRIAL IN",
    "CHANGED BY",
    "CHANGED",
    "LAST ERROR",
)
_WIDE_RIGHT_ALIGNED = frozenset({5, 6, 8})
_CHANGED = 8
"""The column the narrow table leaves out (``--wide`` and ``--json`` have it)."""
_HEADERS = ("DEPLOYMENT", "GROUP", "MODEL", "HOST", "STATE", "FAILS", "TRIAL", "BY", "LAST ERROR")
_RIGHT_ALIGNED = frozenset({5, 6})
_SHRINK = (
    *((8, 30), (2, 20), (3, 20), (7, 12), (1, 10), (0, 24)),
    *((8, 16), (2, 10), (3, 10), (7, 8), (0, 12), (8, 10)),
)
"""Cut to fit, in this order (column, narrowest): the error to 30, model and host to 20,
replica, group, then each further."""


UNREADABLE = "unreadable"
"""The state column of a record this version cannot read."""


def read_status(url: str, namespace: str) -> tuple[list[SharedRecord], list[BadRecord]]:
    """Every live record and every unreadable one; raises the Redis client's error when
    Redis does not answer."""
    from ._shared import fetch_snapshot  # noqa: PLC0415 - the Redis adapter, only when reading

    snapshot = asyncio.run(fetch_snapshot(url, namespace))
    # Any client of this Redis may have written them: shown as replicas adopt them,
    # one line each, redacted (a key in a reason or a replica name is masked).
    redact = Redactor()
    records = [
        replace(
            r,
            last_error=redact(r.last_error) or None,
            replica=redact(r.replica),
        )
        for r in snapshot.records
    ]
    bad = [replace(b, problem=redact(b.problem)) for b in snapshot.bad]
    return records, bad


def _trial_in(record: SharedRecord) -> str:
    if record.state is not BreakerState.OPEN:
        return "-"
    return "held" if math.isinf(record.retry_in) else f"{record.retry_in:.0f}s"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _short(text: str | None) -> str:
    if not text:
        return ""
    line = text.splitlines()[0]
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


def format_status_table(
    records: Sequence[SharedRecord],
    url: str,
    namespace: str,
    bad: Sequence[BadRecord] = (),
    *,
    wide: bool = False,
) -> str:
    """Aligned columns and a one-line summary; the URL is shown without its password.

    Records this version cannot read are rows of their own, their problem in the
    error column. Within :data:`TABLE_WIDTH` columns, generated ids shortened,
    unless ``wide``."""
    where = f"{public_url(url)}, namespace {namespace}"
    if not records and not bad:
        return f"no shared breakers at {where}"
    shown = (lambda d: d) if wide else short_id
    cut: set[int] = set()
    cells = [
        (
            shown(r.deployment),
            r.model_group or "-",
            r.model or "-",
            r.host or "-",
            r.state.value,
            str(r.consecutive_failures),
            _trial_in(r),
            r.replica,
            _ago(r.changed_ago),
            _short(r.last_error),
        )
        for r in records
    ]
    cells += [
        (shown(b.deployment), "-", "-", "-", UNREADABLE, "-", "-", "-", "-", _short(b.problem))
        for b in bad
    ]
    if wide:
        lines = columns(_WIDE_HEADERS, cells, right=_WIDE_RIGHT_ALIGNED)
    else:
        narrow = [row[:_CHANGED] + row[_CHANGED + 1 :] for row in cells]
        lines = columns(
            _HEADERS, narrow, right=_RIGHT_ALIGNED, max_width=TABLE_WIDTH, shrink=_SHRINK, cut=cut
        )
    counts = {s: sum(r.state is s for r in records) for s in BreakerState}
    tally = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "none readable"
    if bad:
        tally += f"; {len(bad)} {UNREADABLE} (skipped by every replica)"
    noun = "shared breaker" if len(records) == 1 else "shared breakers"
    lines.extend(("", f"{len(records)} {noun} at {where}: {tally}"))
    ids = [r.deployment for r in records] + [b.deployment for b in bad]
    if not wide and (0 in cut or any(short_id(i) != i for i in ids)):
        lines.append("ids shortened: --wide shows them whole")
    return "\n".join(lines)


def format_status_json(records: Sequence[SharedRecord], bad: Sequence[BadRecord] = ()) -> str:
    """One object per deployment; ``retry_in`` is null while an operator holds it open.

    An unreadable record has state ``"unreadable"``, its ``problem`` said, the rest null."""
    unreadable = [
        {
            "deployment": b.deployment,
            "model_group": None,
            "model": None,
            "host": None,
            "state": UNREADABLE,
            "consecutive_failures": None,
            "retry_in": None,
            "held": None,
            "last_error": None,
            "changed_by": None,
            "changed_ago": None,
            "problem": b.problem,
        }
        for b in bad
    ]
    return json.dumps(
        [
            {
                "deployment": r.deployment,
                "model_group": r.model_group,
                "model": r.model,
                "host": r.host,
                "state": r.state.value,
                "consecutive_failures": r.consecutive_failures,
                "retry_in": None if math.isinf(r.retry_in) else round(r.retry_in, 3),
                "held": math.isinf(r.retry_in),
                "last_error": r.last_error,
                "changed_by": r.replica,
                "changed_ago": round(r.changed_ago, 3),
                "problem": None,
            }
            for r in records
        ]
        + unreadable,
        indent=2,
    )
