"""Aligned plain-text columns for the command line (``check`` and ``status``).

Why not a table library: the two tables need left/right alignment, a blank
trim at the end of each line and a width limit, nothing more. rich, tabulate and
prettytable are none of them a LiteLLM dependency, so one would be a new install
for every user to replace these few lines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

__all__ = ["TABLE_WIDTH", "columns", "short_id"]

TABLE_WIDTH = 100
"""Columns a table keeps within unless ``--wide`` is given."""
_GENERATED_ID = re.compile(r"[0-9a-f]{64}")
_SHORT_ID_CHARS = 10
_GAP = "  "


def short_id(deployment: str) -> str:
    """A LiteLLM-generated id (64 hex digits) cut to its first digits; others as they are."""
    if _GENERATED_ID.fullmatch(deployment):
        return deployment[:_SHORT_ID_CHARS] + "…"
    return deployment


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(cell: str) -> str:
    """Control characters (escape sequences, newlines) shown as ``\\xNN``: a cell read
    from Redis or a provider must not move the cursor or split a row."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", cell)


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    max_width: int | None = None,
    shrink: Sequence[tuple[int, int]] = (),
    cut: set[int] | None = None,
) -> list[str]:
    """``headers`` and ``rows`` as aligned lines; columns in ``right`` align right.

    With ``max_width``, the columns in ``shrink`` (index, narrowest width) are
    cut with "…", in that order, until the lines fit: each as far as needed,
    never below its narrowest width or its header. What still does not fit stays.
    The indices of the columns that were cut are added to ``cut``.
    """
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in (headers, *rows)) for i in range(len(headers))]
    if max_width is not None:
        for i, narrowest in shrink:
            excess = sum(widths) + len(_GAP) * (len(widths) - 1) - max_width
            if excess <= 0:
                break
            floor = min(widths[i], max(narrowest, len(headers[i])))
            if widths[i] > floor and cut is not None:
                cut.add(i)
            widths[i] = max(widths[i] - excess, floor)
        rows = [[_cut(cell, widths[i]) for i, cell in enumerate(row)] for row in rows]
    return [
        _GAP.join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in (headers, *rows)
    ]
