"""The attribute target's side of the plan artifact (``sync.engine.plan_artifact``): its items, its review,
and the plan an apply may still send. No I/O.

One item per planned write::

    {"row": n | null, "key": <match key>, "action": "create" | "update" | "unset",
     "user_id": <id> | null (create), "userName": ..., "displayName": ... | null,
     "changes": [{"attribute": name, "old": <what Omni held when planned>, "new": <value to send>}]}

At apply time each item is checked against a fresh read (``applicable_plan``): a user holding, for some
attribute, neither the plan's ``old`` value nor its ``new`` one (or who is gone, or, for a create, who
exists now with other values) is rejected as "changed in Omni since the plan" and not written; a user
already holding every ``new`` value is unchanged (so a retried apply does not reject what its first attempt
wrote); the rest is sent as planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omni_provider.domain.identity import identity_key
from omni_provider.domain.models import AttributeDefinition, OmniUser
from omni_provider.domain.values import values_equal
from omni_provider.sync.engine.plan_artifact import ALREADY_AS_PLANNED, CHANGED_SINCE_PLAN, PlanArtifact
from omni_provider.sync.engine.review import REVIEW_ROWS, review_markdown
from omni_provider.sync.users.plan import AttributeChange, PlanItem, PlanItems, RowAction, SyncPlan
from omni_provider.sync.users.spec import SyncMode, SyncSpec

TARGET = "user_attributes"
__all__ = ["CHANGED_SINCE_PLAN", "TARGET", "applicable_plan", "plan_artifact", "review", "spec_of"]
MIRROR_NOTE = "absent from the input (mirror)"


def plan_artifact(plan: SyncPlan, spec: SyncSpec, *, omni: str, run_id: str = "") -> PlanArtifact:
    """The stored form of ``plan`` (its writes), made against ``omni`` with ``spec``."""
    return PlanArtifact.build(
        target=TARGET,
        omni=omni,
        managed=spec.managed_attributes,
        mode=spec.mode.value,
        items=[_item(item) for item in plan.writes()],
        rows=plan.row_count,
        counts=plan.counts(),
        options={
            "attributes": dict(spec.attributes),
            "match_on": spec.match_on,
            "key_column": spec.key_column,
            "display_name_column": spec.display_name_column,
            "omni_users": plan.user_count,
        },
        run_id=run_id,
    )


def _item(item: PlanItem) -> dict[str, Any]:
    return {
        "row": item.row_number,
        "key": item.key,
        "action": item.action.value,
        "user_id": item.user_id,
        "userName": item.user_name,
        "displayName": item.display_name,
        "changes": [{"attribute": c.attribute, "old": c.old, "new": c.new} for c in item.changes],
    }


def spec_of(artifact: PlanArtifact) -> SyncSpec:
    """The sync the plan was made by (what the apply reports and writes)."""
    options = artifact.header.options
    return SyncSpec(
        attributes=options["attributes"],
        match_on=options["match_on"],
        mode=SyncMode(artifact.header.mode),
        key_column=options.get("key_column"),
        display_name_column=options.get("display_name_column"),
    )


def _plan_item(entry: Mapping[str, Any], action: RowAction, reason: str | None) -> PlanItem:
    changes = tuple(AttributeChange(c["attribute"], c["old"], c["new"]) for c in entry["changes"])
    if reason is None and entry["row"] is None:
        reason = MIRROR_NOTE
    return PlanItem(
        entry["row"],
        entry["key"],
        action,
        entry["user_id"],
        entry["userName"],
        entry["displayName"],
        {c.attribute: c.new for c in changes},
        changes,
        reason,
    )


def standing(
    entry: Mapping[str, Any],
    now: OmniUser | None,
    definitions: Mapping[str, AttributeDefinition] | None = None,
) -> tuple[RowAction, str | None]:
    """What becomes of one planned write, given the user as read for the apply (``now``; None: not found;
    for a create, the user with its email if one exists now): the planned action; ``unchanged`` when Omni
    already holds every planned value (an earlier attempt of this apply, or another writer, did it); or
    ``rejected`` with why, when some attribute holds neither the value the plan saw nor the planned one."""
    planned = RowAction(entry["action"])

    def holds(name: str, value: Any) -> bool:
        return values_equal(now.attributes.get(name) if now else None, value, (definitions or {}).get(name))

    if planned is RowAction.CREATE and now is None:
        return planned, None
    if now is None:
        return RowAction.REJECTED, f"{CHANGED_SINCE_PLAN}: the user is no longer in Omni"
    if all(holds(c["attribute"], c["new"]) for c in entry["changes"]):
        return RowAction.UNCHANGED, ALREADY_AS_PLANNED
    if planned is RowAction.CREATE:
        return RowAction.REJECTED, f"{CHANGED_SINCE_PLAN}: the user exists now"
    moved = [
        c["attribute"]
        for c in entry["changes"]
        if not holds(c["attribute"], c["old"]) and not holds(c["attribute"], c["new"])
    ]
    if moved:
        return RowAction.REJECTED, f"{CHANGED_SINCE_PLAN}: {', '.join(moved)}"
    return planned, None


def applicable_plan(
    artifact: PlanArtifact,
    current: Mapping[str, OmniUser | None],
    existing: Mapping[str, OmniUser],
    definitions: Mapping[str, AttributeDefinition] | None = None,
) -> SyncPlan:
    """The plan the apply sends: the artifact's writes, each still as planned when Omni holds what the plan
    saw (``current``: the planned users by id, as read now; ``existing``: by identity key of their email,
    the users that exist now for planned creates), ``unchanged`` when Omni already holds the planned values,
    else rejected as changed since the plan (``standing``). Nothing else."""
    items: list[PlanItem] = []
    for entry in artifact.items:
        user_id = entry["user_id"]
        now = current.get(user_id) if user_id else existing.get(identity_key(str(entry["userName"])))
        items.append(_plan_item(entry, *standing(entry, now, definitions)))
    spec = spec_of(artifact)
    return SyncPlan(
        items=PlanItems(items, [item.key for item in items]),
        mode=spec.mode,
        managed_attributes=spec.managed_attributes,
        row_count=artifact.header.rows,
        user_count=int(artifact.header.options.get("omni_users", 0)),
    )


def review(artifact: PlanArtifact, *, limit: int = REVIEW_ROWS) -> str:
    """The plan in a few lines of markdown: counts, the first changes (old -> new), what mirror unsets."""
    header = artifact.header
    rows = (
        (entry["userName"] or entry["key"], entry["action"], c["attribute"], c["old"], c["new"])
        for entry in artifact.items
        for c in entry["changes"]
    )
    total = sum(len(entry["changes"]) for entry in artifact.items)
    notes = []
    unsets = [entry for entry in artifact.items if entry["row"] is None]
    if header.mode == SyncMode.MIRROR.value:
        shown = ", ".join(str(e["userName"] or e["key"]) for e in unsets[:5])
        more = f" and {len(unsets) - 5} more" if len(unsets) > 5 else ""
        notes.append(
            f"Mirror: {len(unsets)} user(s) absent from the input get their managed attributes unset"
            + (f": {shown}{more}" if unsets else "")
        )
    notes.append(f"Plan digest: `{artifact.digest}`")
    return review_markdown(
        title=f"Omni user attributes: {len(artifact.items)} user(s) to write",
        facts={
            "Omni": header.omni,
            "mode": header.mode,
            "attributes": ", ".join(header.managed),
            "planned": header.created_at,
            "rows": header.rows,
        },
        counts=header.counts,
        columns=("user", "action", "attribute", "old", "new"),
        rows=rows,
        total_rows=total,
        notes=notes,
        limit=limit,
    )
