"""``PlannedSyncRun``: apply a stored plan of user attributes, exactly, through the sync's own stages.

The plan (``sync.engine.plan_artifact``) was made and reviewed earlier; this run reads no rows. It refuses
before any request a plan whose digest is not the approved one, one older than ``max_age`` or one made for
another Omni (``PlanRefusedError``, never retried). Then it reads the planned users from Omni (one listing
when many are planned, else one GET each), rejects every planned write whose user no longer holds what the
plan saw ("changed in Omni since the plan"), and sends the rest through ``SyncRun``'s apply, report and
verdict (pacing, canary, breaker): nothing that is not in the plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from omni_provider.client import OmniScimClient, OmniUser
from omni_provider.domain.identity import identity_key
from omni_provider.sync.engine.plan_artifact import PlanArtifact
from omni_provider.sync.engine.planned import LISTING_FROM, AppliesPlan, read_each
from omni_provider.sync.engine.run import RunOptions
from omni_provider.sync.users.definitions import load_definitions
from omni_provider.sync.users.plan_file import applicable_plan, spec_of
from omni_provider.sync.users.run import SyncRun


def read_planned_users(
    client: OmniScimClient, artifact: PlanArtifact
) -> tuple[dict[str, OmniUser | None], dict[str, OmniUser]]:
    """The planned users as Omni holds them now (by id; None: gone), and the users that exist now for the
    planned creates (by identity key of their email). A listing when many users are planned (or any create
    is), else one GET each; a listed user without its attribute map is read on its own."""
    ids = [str(e["user_id"]) for e in artifact.items if e["user_id"]]
    creates = {identity_key(str(e["userName"])) for e in artifact.items if not e["user_id"]}
    if not creates and len(ids) < LISTING_FROM:
        return read_each(ids, client.get_user), {}
    wanted = set(ids)
    listed = [u for u in client.list_users() if u.id in wanted or identity_key(u.user_name) in creates]
    bare = [user.id for user in listed if not user.attributes_present]
    fresh = read_each(bare, client.get_user)
    complete = [fresh.get(user.id) if user.id in fresh else user for user in listed]
    current: dict[str, OmniUser | None] = {u.id: u for u in complete if u is not None and u.id in wanted}
    existing = {identity_key(u.user_name): u for u in complete if u is not None and u.id not in wanted}
    return current, existing


class PlannedSyncRun(AppliesPlan, SyncRun):
    """Apply ``artifact`` (checked by ``sync.planned.load_planned_run``) with the sync's apply, report and
    verdict."""

    def __init__(self, client: OmniScimClient, artifact: PlanArtifact, **options: Unpack[RunOptions]) -> None:
        super().__init__(client, spec_of(artifact), **options)
        self.artifact = artifact

    def _run(self, source: Sequence[Mapping[str, Any]], started: float) -> dict[str, Any]:
        counters_before = self._start_applying()
        definitions = load_definitions(self.client, self.log)
        current, existing = read_planned_users(self.client, self.artifact)
        self.summary["stage"] = "planning"
        plan = applicable_plan(self.artifact, current, existing, definitions)
        self.plan = plan
        self.summary["plan"] = plan.counts()
        self._report_changed([(i.user_name or i.key, i.reason) for i in plan.rejected()], len(plan.items))
        users = [user for user in current.values() if user is not None]
        return self._apply(plan, users, definitions, counters_before, started)
