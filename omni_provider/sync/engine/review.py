"""The review of a plan: a short markdown text that fits an approval screen (Airflow's ``ApprovalOperator``
body, a Dagster asset's metadata): the counts by action, the first changes as a table, and notes (what a
mirror run would unset or remove). The target says what its rows are; this module only lays them out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: How many changes the review lists (the plan file has them all).
REVIEW_ROWS = 20
_MAX_CELL = 60


def _cell(value: Any) -> str:
    text = "∅" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def review_markdown(
    *,
    title: str,
    facts: Mapping[str, Any],
    counts: Mapping[str, int],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    total_rows: int,
    notes: Sequence[str] = (),
    limit: int = REVIEW_ROWS,
) -> str:
    """``title``; a line of ``facts`` (Omni, mode, ...); counts by action; the first ``limit`` of ``rows``
    as a table under ``columns`` (with how many more are in the plan file); then ``notes``."""
    lines = [f"### {title}", "", " · ".join(f"**{k}**: {_cell(v)}" for k, v in facts.items()), ""]
    lines.append("| action | count |")
    lines.append("|---|---:|")
    lines += [f"| {action} | {count} |" for action, count in counts.items()]
    lines.append("")
    shown = 0
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if shown == limit:
            break
        table.append("| " + " | ".join(_cell(v) for v in row) + " |")
        shown += 1
    if shown:
        lines += table
        if total_rows > shown:
            lines.append(f"\n… and {total_rows - shown} more (the plan file lists every change).")
    else:
        lines.append("Nothing to write.")
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
