"""A sync summary as Dagster metadata: integer counts, the plan as a small markdown table, the report path,
and the run's rows: a table of the changes (the first 200) and one of every item that did not sync.

Dagster gives a materialization's metadata keys no description of their own: ``METADATA_DESCRIPTIONS`` is
shown in the asset's description (``metadata_legend``), and the tables' columns carry theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

import dagster as dg

from omni_provider.sync.engine.outcome import (
    CHANGES_SHOWN,
    Change,
    ReportRecord,
    changes_of,
    not_synced,
    show_value,
)
from omni_provider.sync.users.outcome import RowStatus

#: What every metadata key of a sync's materialization (and of its failure) means.
METADATA_DESCRIPTIONS: Mapping[str, str] = {
    "applied": "Rows written and confirmed by Omni (attribute sync).",
    "added": "Members added and confirmed by Omni (group sync).",
    "removed": "Members removed and confirmed by Omni (group sync).",
    "unchanged": "Items Omni already held as the input says: nothing was sent.",
    "rejected": "Items refused before sending (see not_synced): bad key or value, user not in Omni...",
    "failed": "Writes not confirmed by Omni (an error, or the run stopped first); a re-run retries them.",
    "planned": "Dry run: items that would be written.",
    "changes": f"Each change written (or planned in a dry run), the first {CHANGES_SHOWN}: key, attribute, "
    "old and new value, status.",
    "changes_count": "How many changes the run wrote (or planned); the report lists every one.",
    "not_synced": "Every rejected or failed item: its key (email; member and group) and why.",
    "rows": "Input rows read.",
    "omni_users": "Users Omni holds (as listed, or as the snapshot says).",
    "omni_groups": "Groups Omni holds.",
    "managed_groups": "Groups this sync manages.",
    "managed_memberships": "Members those groups had before the run.",
    "requests": "HTTP requests sent to Omni (retries included).",
    "retries": "Requests sent again after a transient error.",
    "rate_limited": "Answers 429 (too many requests) Omni gave.",
    "plan": "The plan: items per action, and how they ended.",
    "mode": "update, upsert or mirror (attributes); add or mirror (groups).",
    "dry_run": "True: nothing was written.",
    "complete": "False when the run stopped before every write was confirmed.",
    "verdict": "passed, or failed: more items did not sync than max_failed_rows / max_failed_pct allow.",
    "seconds": "How long the run took.",
    "report_path": "The per-row report (JSON lines): every item's outcome.",
    "report_error": "Why the report could not be written.",
    "report_fallback_path": "Where the outcomes went instead (a local file).",
    "stopped": "Why the run stopped early (the circuit breaker, a stop request).",
    "refused": "Dry run: why the max_changes guard would refuse this plan.",
    "diff_against": "What the plan was diffed against: omni (every user listed) or snapshot (the last "
    "run's).",
    "diff_reason": "Why that source was used.",
    "drifted_users": "Users changed in Omni outside the sync since the snapshot.",
    "drift": "Details of that drift.",
    "snapshot": "The snapshot file and how many users were looked up beside it.",
    "errors_sample": "The first items that did not sync (key, status, error), as JSON.",
}

_CHANGE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string", "Whose: the user's email (match key), or the group's name."),
        dg.TableColumn("attribute", "string", "The attribute changed (member, for a group)."),
        dg.TableColumn("old", "string", "The value before, as JSON; (unset) when there was none."),
        dg.TableColumn("new", "string", "The value after, as JSON; (unset) when cleared."),
        dg.TableColumn("status", "string", "applied, added or removed (written); planned (dry run)."),
    ]
)
_NOT_SYNCED_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string", "Whose: the user's email (match key), or the member and group."),
        dg.TableColumn("status", "string", "rejected (never sent) or failed (not confirmed)."),
        dg.TableColumn("reason", "string", "Why it did not sync."),
    ]
)


def metadata_legend() -> str:
    """The metadata keys and what they mean, as markdown for an asset's description."""
    lines = ["", "", "**Materialization metadata**", ""]
    lines += [f"- `{key}`: {text}" for key, text in METADATA_DESCRIPTIONS.items()]
    return "\n".join(lines)


class OutcomeTables:
    """A report sink that keeps what the Dagster metadata shows of the rows: the first changes, how many
    there were, and every item that did not sync. Kept in memory for the run; returns nothing to the
    summary (so XCom-like summaries stay small)."""

    label = "Dagster metadata tables"

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.change_count = 0
        self.not_synced: list[tuple[str, str, str]] = []

    def check(self) -> None:
        """Nothing to check: memory."""

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        changes = changes_of(outcomes)
        self.changes = list(islice(changes, CHANGES_SHOWN))
        self.change_count = len(self.changes) + sum(1 for _ in changes)
        self.not_synced = [(o.key, o.status.value, str(o.error)) for o in not_synced(outcomes)]
        return {}

    @property
    def wrote(self) -> bool:
        """Whether the run changed Omni (a change not merely planned)."""
        return any(change.status != "planned" for change in self.changes)

    def metadata(self) -> dict[str, Any]:
        """The rows' metadata: ``changes``, ``changes_count`` and ``not_synced``."""
        changes = [
            dg.TableRecord(
                {
                    "key": c.key,
                    "attribute": c.attribute,
                    "old": show_value(c.old),
                    "new": show_value(c.new),
                    "status": c.status,
                }
            )
            for c in self.changes
        ]
        return {
            "changes": dg.MetadataValue.table(changes, schema=_CHANGE_COLUMNS),
            "changes_count": dg.MetadataValue.int(self.change_count),
            "not_synced": self.not_synced_table(),
        }

    def not_synced_table(self) -> dg.TableMetadataValue:
        rows = [dg.TableRecord({"key": k, "status": s, "reason": r}) for k, s, r in self.not_synced]
        return dg.MetadataValue.table(rows, schema=_NOT_SYNCED_COLUMNS)

    def check_text(self, outcomes: Mapping[str, int], shown: int = 5) -> str | None:
        """The asset check's text: each count that did not sync and its items ("1 rejected:
        nobody@example.com: no Omni user with this email"), the first ``shown`` of each."""
        parts = []
        for status, label in (("rejected", "rejected"), ("failed", "failed writes")):
            count = int(outcomes.get(status, 0))
            if not count:
                continue
            items = [f"{key}: {reason}" for key, s, reason in self.not_synced if s == status]
            more = count - min(shown, len(items))
            listed = "; ".join(items[:shown]) + (f"; and {more} more" if more else "")
            parts.append(f"{count} {label}: {listed}" if items else f"{count} {label}")
        return "\n".join(parts) or None


#: Summary fields shown as plain integers.
_COUNTS = (
    "rows",
    "omni_users",
    "omni_groups",
    "managed_groups",
    "managed_memberships",
    "requests",
    "retries",
    "rate_limited",
)


def plan_markdown(summary: Mapping[str, Any]) -> str:
    """One line per plan action (any sync target): how many items the plan gave it, and how they ended."""
    statuses = list(summary.get("outcomes", {})) or [s.value for s in RowStatus]
    by_action: Mapping[str, Mapping[str, int]] = summary.get("by_action", {})
    plan: Mapping[str, int] = summary.get("plan", {})
    lines = [
        "| action | rows | " + " | ".join(statuses) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in statuses) + " |",
    ]
    # The plan's counts of actions (not its group totals), then any action only the outcomes name.
    actions = [a for a in plan if not a.startswith("groups_")] + [a for a in by_action if a not in plan]
    for action in actions:
        planned = int(plan.get(action, 0))
        ended = by_action.get(action, {})
        if planned or ended:
            lines.append(
                f"| {action} | {planned} | " + " | ".join(str(ended.get(s, 0)) for s in statuses) + " |"
            )
    return "\n".join(lines)


def summary_metadata(summary: Mapping[str, Any], tables: OutcomeTables | None = None) -> dict[str, Any]:
    """Metadata for a materialisation (or a failure): what a person looks at first comes first; the rows'
    tables when the run kept them (``tables``)."""
    # The target's statuses as integers: applied, unchanged, ... (attributes); added, removed, ... (groups).
    outcomes: Mapping[str, int] = summary.get("outcomes") or {s.value: 0 for s in RowStatus}
    metadata: dict[str, Any] = {status: dg.MetadataValue.int(int(n)) for status, n in outcomes.items()}
    metadata.update({name: dg.MetadataValue.int(int(summary[name])) for name in _COUNTS if name in summary})
    if tables is not None:
        metadata.update(tables.metadata())
    metadata["plan"] = dg.MetadataValue.md(plan_markdown(summary))
    metadata["mode"] = dg.MetadataValue.text(str(summary.get("mode", "")))
    metadata["dry_run"] = dg.MetadataValue.bool(bool(summary.get("dry_run")))
    if "complete" in summary:
        metadata["complete"] = dg.MetadataValue.bool(bool(summary["complete"]))
    if "verdict" in summary:
        metadata["verdict"] = dg.MetadataValue.text(str(summary["verdict"]))
    if "seconds" in summary:
        metadata["seconds"] = dg.MetadataValue.float(float(summary["seconds"]))
    if "report_path" in summary:
        metadata["report_path"] = dg.MetadataValue.path(str(summary["report_path"]))
    if summary.get("report_error"):
        metadata["report_error"] = dg.MetadataValue.text(str(summary["report_error"]))
    if summary.get("report_fallback_path"):
        metadata["report_fallback_path"] = dg.MetadataValue.path(str(summary["report_fallback_path"]))
    if summary.get("stopped"):
        metadata["stopped"] = dg.MetadataValue.text(str(summary["stopped"]))
    if summary.get("refused"):
        metadata["refused"] = dg.MetadataValue.text(str(summary["refused"]))
    if "diff_against" in summary:
        metadata["diff_against"] = dg.MetadataValue.text(str(summary["diff_against"]))
    if summary.get("diff_reason"):
        metadata["diff_reason"] = dg.MetadataValue.text(str(summary["diff_reason"]))
    if summary.get("drift"):
        metadata["drifted_users"] = dg.MetadataValue.int(int(summary["drift"]["users"]))
        metadata["drift"] = dg.MetadataValue.json(dict(summary["drift"]))
    if summary.get("snapshot"):
        metadata["snapshot"] = dg.MetadataValue.json(dict(summary["snapshot"]))
    if summary.get("errors_sample"):
        metadata["errors_sample"] = dg.MetadataValue.json(list(summary["errors_sample"]))
    return metadata
