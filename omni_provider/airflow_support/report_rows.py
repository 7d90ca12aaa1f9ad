"""A sync report (JSON lines, ``report_sinks``) as the rows of a table a person reads: status, key, attribute,
old -> new and reason, for the attribute target and the group target alike.

Pure (no Airflow import): the report view (``report_view``) renders these rows; they can be tested on any
Airflow. A line that is not a report record is counted, never shown: the file is only trusted as far as it
looks like an Omni report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The table's status filter lists these first, in this order (both targets' statuses); others follow.
STATUS_ORDER = ("applied", "added", "removed", "planned", "rejected", "failed", "unchanged")
#: What a group's membership row shows in the old -> new columns.
_MEMBERSHIP_CHANGE = {"add": ("not a member", "member"), "remove": ("member", "not a member")}


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of the table: one change of an item, or the item itself when it changes nothing."""

    row: int | None
    status: str
    #: The user's email (attribute target) or the group's name (group target).
    key: str
    attribute: str = ""
    old: str | None = None
    new: str | None = None
    #: Why the item did not sync (rejected, failed), or the planner's remark.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ParsedReport:
    rows: list[ReportRow] = field(default_factory=list)
    #: Report records (items, not table rows) per status.
    counts: Counter[str] = field(default_factory=Counter)
    #: Lines that were not report records.
    skipped: int = 0

    def statuses(self) -> list[str]:
        known = [s for s in STATUS_ORDER if s in self.counts]
        return known + sorted(s for s in self.counts if s not in STATUS_ORDER)

    def filtered(self, status: str | None) -> list[ReportRow]:
        return [r for r in self.rows if status is None or r.status == status]


def show_value(value: Any) -> str | None:
    """An attribute value as text: strings as they are, lists joined, None as None (not set)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def rows_of_record(record: dict[str, Any]) -> list[ReportRow]:
    """The table rows of one report record (a user row's changes, or a group membership)."""
    status = _text(record.get("status"))
    row = record.get("row") if isinstance(record.get("row"), int) else None
    reason = _text(record.get("error") or record.get("note"))
    if "group" in record and "key" not in record:  # the group target: one membership
        old, new = _MEMBERSHIP_CHANGE.get(_text(record.get("action")), (None, None))
        member = f"member {_text(record.get('user'))}"
        return [ReportRow(row, status, _text(record.get("group")), member, old, new, reason)]
    key = _text(record.get("key"))
    changes = [c for c in record.get("changes") or [] if isinstance(c, dict)]
    if not changes:
        return [ReportRow(row, status, key, reason=reason)]
    return [
        ReportRow(
            row,
            status,
            key,
            _text(c.get("attribute")),
            show_value(c.get("old")),
            show_value(c.get("new")),
            reason,
        )
        for c in changes
    ]


def is_report_record(data: Any) -> bool:
    return (
        isinstance(data, dict) and isinstance(data.get("status"), str) and ("key" in data or "group" in data)
    )


def parse_report(lines: Iterable[str], *, max_rows: int) -> tuple[ParsedReport, bool]:
    """The report's table rows (at most ``max_rows``) and its counts; True when rows were left out."""
    report = ParsedReport()
    skipped = 0
    truncated = False
    for line in lines:
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not is_report_record(data):
            skipped += 1
            continue
        report.counts[data["status"]] += 1
        for row in rows_of_record(data):
            if len(report.rows) < max_rows:
                report.rows.append(row)
            else:
                truncated = True
    return ParsedReport(report.rows, report.counts, skipped), truncated


def order_rows(rows: Sequence[ReportRow]) -> list[ReportRow]:
    """Problems first (rejected, failed), then changes, then the rest; input order within each."""
    rank = {"rejected": 0, "failed": 0, "unchanged": 2}
    return sorted(rows, key=lambda r: rank.get(r.status, 1))
