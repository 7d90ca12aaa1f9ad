"""``PlannedGroupSyncRun``: apply a stored group-membership plan, exactly, through the group sync's stages.

As ``PlannedSyncRun`` for attributes: no rows are read; the planned groups are read from Omni (one listing
when many are planned or one is to be created, else one GET each); a membership Omni no longer holds as
the plan saw it is rejected ("changed in Omni since the plan"); the rest goes through ``GroupSyncRun``'s
apply, report and verdict (canary, breaker): nothing that is not in the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from omni_provider.client import GroupsApi, OmniScimClient
from omni_provider.domain.groups import OmniGroup
from omni_provider.domain.identity import group_key
from omni_provider.sync.engine.plan_artifact import PlanArtifact
from omni_provider.sync.engine.planned import LISTING_FROM, AppliesPlan, read_each
from omni_provider.sync.engine.run import RunOptions
from omni_provider.sync.groups.options import GroupSyncSpec
from omni_provider.sync.groups.plan import GroupSyncMode, MembershipAction
from omni_provider.sync.groups.plan_file import applicable_group_plan
from omni_provider.sync.groups.run import GroupSyncRun


def read_planned_groups(
    api: GroupsApi, artifact: PlanArtifact
) -> tuple[dict[str, OmniGroup | None], dict[str, OmniGroup]]:
    """The planned groups as Omni holds them now (by id; None: gone), and the groups that exist now for the
    planned creates (by identity key of their name)."""
    ids = [str(e["group_id"]) for e in artifact.items if e["group_id"]]
    creates = {group_key(str(e["group"])) for e in artifact.items if not e["group_id"]}
    if not creates and len(ids) < LISTING_FROM:
        return read_each(ids, api.get_group), {}
    wanted = set(ids)
    current: dict[str, OmniGroup | None] = {}
    existing: dict[str, OmniGroup] = {}
    for group in api.list_groups():
        if group.id in wanted:
            current[group.id] = group
        elif group_key(group.display_name) in creates:
            existing[group_key(group.display_name)] = group
    return current, existing


class PlannedGroupSyncRun(AppliesPlan, GroupSyncRun):
    """Apply ``artifact`` (checked by ``sync.planned.load_planned_run``) with the group sync's apply,
    report and verdict."""

    def __init__(self, client: OmniScimClient, artifact: PlanArtifact, **options: Unpack[RunOptions]) -> None:
        header = artifact.header
        spec = GroupSyncSpec(mode=GroupSyncMode(header.mode), groups=tuple(header.managed))
        super().__init__(client, spec, **options)
        self.artifact = artifact

    def _run(self, source: Sequence[Mapping[str, Any]], started: float) -> dict[str, Any]:
        counters_before = self._start_applying()
        api = GroupsApi(self.client)
        current, existing = read_planned_groups(api, self.artifact)
        self.summary["stage"] = "planning"
        plan = applicable_group_plan(self.artifact, current, existing)
        self.plan = plan
        self.summary["plan"] = plan.counts()
        changed = [
            (f"{i.user} in {i.group!r}", i.reason)
            for i in plan.items
            if i.action is MembershipAction.REJECTED
        ]
        self._report_changed(changed, len(plan.items))
        groups = [group for group in current.values() if group is not None]
        return self._apply(api, plan, groups, counters_before, started)
