"""The group target's side of the plan artifact (``sync.engine.plan_artifact``): its items, its review, and
the plan an apply may still send. No I/O.

One item per changed group::

    {"group": <name>, "group_id": <id> | null (created by the apply),
     "add": [{"id": <user id>, "email": ..., "row": n}],
     "remove": [{"id": ..., "email": ..., "row": n | null}]}

At apply time each membership is checked against a fresh read of its group (``applicable_group_plan``): a
member to add who is already in the group, or to remove who is no longer in it, is unchanged (already as
planned: a retried apply does not reject what its first attempt wrote); a group that is gone, or a group to
create that exists now without the member, is rejected as "changed in Omni since the plan"; the rest is
sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omni_provider.domain.groups import OmniGroup
from omni_provider.domain.identity import group_key
from omni_provider.sync.engine.plan_artifact import ALREADY_AS_PLANNED, CHANGED_SINCE_PLAN, PlanArtifact
from omni_provider.sync.engine.review import REVIEW_ROWS, review_markdown
from omni_provider.sync.groups.plan import (
    GroupChange,
    GroupPlan,
    GroupSyncMode,
    MembershipAction,
    MembershipItem,
)

TARGET = "group_membership"


def group_plan_artifact(plan: GroupPlan, *, omni: str, run_id: str = "") -> PlanArtifact:
    """The stored form of ``plan`` (its group changes), made against ``omni``."""
    items = plan.items

    def members(indexes: tuple[int, ...], action: MembershipAction) -> list[dict[str, Any]]:
        chosen = [items[i] for i in indexes if items[i].action is action]
        return [{"id": i.user_id, "email": i.user, "row": i.row_number} for i in chosen]

    return PlanArtifact.build(
        target=TARGET,
        omni=omni,
        managed=plan.managed_groups,
        mode=plan.mode.value,
        items=[
            {
                "group": change.group,
                "group_id": change.group_id,
                "add": members(change.items, MembershipAction.ADD),
                "remove": members(change.items, MembershipAction.REMOVE),
            }
            for change in plan.changes
        ],
        rows=plan.row_count,
        counts=plan.counts(),
        options={"managed_memberships": plan.managed_memberships},
        run_id=run_id,
    )


def _member_standing(
    group: OmniGroup | None, planned_id: str | None, action: MembershipAction, user_id: str
) -> tuple[MembershipAction, str | None]:
    """What becomes of one planned membership, given its group as read now (for a group to create, the
    group of that name if one exists now): the planned action; ``unchanged`` when the group already is as
    planned for this member; or ``rejected`` when the group is gone, or (to create) exists without it."""
    if group is None:
        if planned_id is None:
            return action, None
        return MembershipAction.REJECTED, f"{CHANGED_SINCE_PLAN}: the group is no longer in Omni"
    present = user_id.strip().lower() in group.member_ids
    if present == (action is MembershipAction.ADD):
        return MembershipAction.UNCHANGED, ALREADY_AS_PLANNED
    if planned_id is None:
        return MembershipAction.REJECTED, f"{CHANGED_SINCE_PLAN}: the group exists now"
    return action, None


def applicable_group_plan(
    artifact: PlanArtifact, groups: Mapping[str, OmniGroup | None], existing: Mapping[str, OmniGroup]
) -> GroupPlan:
    """The plan the apply sends: the artifact's memberships still to be written (``groups``: the planned
    groups by id as read now, None when gone; ``existing``: by identity key of their name, the groups that
    exist now for the planned creates), ``unchanged`` where Omni is already as planned, rejected as changed
    since the plan where the group is gone or was created meanwhile. Nothing else."""
    items: list[MembershipItem] = []
    changes: list[GroupChange] = []
    emails: dict[str, str] = {}
    for entry in artifact.items:
        group_id = entry["group_id"]
        now = groups.get(group_id) if group_id else existing.get(group_key(entry["group"]))
        kept: list[int] = []
        for planned, listed in (
            (MembershipAction.ADD, entry["add"]),
            (MembershipAction.REMOVE, entry["remove"]),
        ):
            for member in listed:
                user_id = str(member["id"])
                emails[user_id] = str(member["email"])
                action, reason = _member_standing(now, group_id, planned, user_id)
                if action is planned:
                    kept.append(len(items))
                items.append(
                    MembershipItem(
                        member["row"], str(member["email"]), entry["group"], action, user_id, group_id, reason
                    )
                )
        if kept:
            changes.append(
                GroupChange(
                    entry["group"],
                    group_id,
                    tuple(items[i].user_id or "" for i in kept if items[i].action is MembershipAction.ADD),
                    tuple(items[i].user_id or "" for i in kept if items[i].action is MembershipAction.REMOVE),
                    tuple(kept),
                )
            )
    return GroupPlan(
        items=tuple(items),
        changes=tuple(changes),
        mode=GroupSyncMode(artifact.header.mode),
        managed_groups=artifact.header.managed,
        row_count=artifact.header.rows,
        managed_memberships=int(artifact.header.options.get("managed_memberships", 0)),
        emails=emails,
    )


def group_review(artifact: PlanArtifact, *, limit: int = REVIEW_ROWS) -> str:
    """The plan in a few lines of markdown: counts, the first member changes, what mirror removes."""
    header = artifact.header
    rows = [
        (entry["group"] + (" (new)" if entry["group_id"] is None else ""), action, member["email"])
        for entry in artifact.items
        for action in ("add", "remove")
        for member in entry[action]
    ]
    notes = []
    if header.mode == GroupSyncMode.MIRROR.value:
        removals = sum(len(entry["remove"]) for entry in artifact.items)
        notes.append(f"Mirror: {removals} member(s) absent from the input are removed from managed groups")
    notes.append(f"Plan digest: `{artifact.digest}`")
    return review_markdown(
        title=f"Omni group membership: {len(artifact.items)} group(s) to write",
        facts={"Omni": header.omni, "mode": header.mode, "planned": header.created_at, "rows": header.rows},
        counts=header.counts,
        columns=("group", "change", "member"),
        rows=rows,
        total_rows=len(rows),
        notes=notes,
        limit=limit,
    )
