"""A sync summary as Dagster metadata: integer counts, the plan as a small markdown table, the report path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from omni_provider.sync.users.outcome import RowStatus

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


def summary_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata for a materialisation (or a failure): what a person looks at first comes first."""
    # The target's statuses as integers: applied, unchanged, ... (attributes); added, removed, ... (groups).
    outcomes: Mapping[str, int] = summary.get("outcomes") or {s.value: 0 for s in RowStatus}
    metadata: dict[str, Any] = {status: dg.MetadataValue.int(int(n)) for status, n in outcomes.items()}
    metadata.update({name: dg.MetadataValue.int(int(summary[name])) for name in _COUNTS if name in summary})
    metadata["plan"] = dg.MetadataValue.md(plan_markdown(summary))
    metadata["mode"] = dg.MetadataValue.text(str(summary.get("mode", "")))
    metadata["dry_run"] = dg.MetadataValue.bool(bool(summary.get("dry_run")))
    if "complete" in summary:
        metadata["complete"] = dg.MetadataValue.bool(bool(summary["complete"]))
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
