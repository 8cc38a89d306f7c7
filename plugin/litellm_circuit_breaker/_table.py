"""Aligned plain-text columns for the command line (``check`` and ``status``).

Why not a table library: the two tables need left/right alignment and a blank
trim at the end of each line, nothing more. rich, tabulate and prettytable are
none of them a LiteLLM dependency, so one would be a new install for every user
to replace these few lines.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["columns"]


def columns(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[int] = ()
) -> list[str]:
    """``headers`` and ``rows`` as aligned lines; columns in ``right`` align right."""
    widths = [max(len(line[i]) for line in (headers, *rows)) for i in range(len(headers))]
    return [
        "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in (headers, *rows)
    ]
