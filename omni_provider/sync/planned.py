"""Apply a stored plan, whatever its target: the one entry point the adapters call (Airflow's
``ApplyOmniPlanOperator``, Dagster's ``OmniScimResource.apply_plan``).

``load_planned_run`` reads the plan (``sync.engine.plan_artifact``), refuses it before any request when it
is edited, replaced, expired or made for another Omni, and returns the target's planned run
(``PlannedSyncRun``, ``PlannedGroupSyncRun``); a new target adds its planned run to ``PLANNED_RUNS``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol, Unpack

from omni_provider.client import OmniScimClient
from omni_provider.sync.engine.plan_artifact import (
    DEFAULT_MAX_AGE,
    PlanArtifact,
    PlanStore,
    check_plan_for_apply,
    parse_plan,
)
from omni_provider.sync.engine.review import REVIEW_ROWS
from omni_provider.sync.engine.run import EngineRun, RunOptions
from omni_provider.sync.groups import plan_file as group_plan_file
from omni_provider.sync.groups.planned_run import PlannedGroupSyncRun
from omni_provider.sync.users import plan_file as user_plan_file
from omni_provider.sync.users.planned_run import PlannedSyncRun

__all__ = ["PLANNED_RUNS", "load_planned_run", "parse_plan", "review_of"]


class PlannedRun(Protocol):
    def __call__(
        self, client: OmniScimClient, artifact: PlanArtifact, **options: Unpack[RunOptions]
    ) -> EngineRun: ...


#: The planned run of each target, by the ``target`` its plans carry.
PLANNED_RUNS: dict[str, PlannedRun] = {
    user_plan_file.TARGET: PlannedSyncRun,
    group_plan_file.TARGET: PlannedGroupSyncRun,
}


def load_planned_run(
    client: OmniScimClient,
    store: PlanStore,
    *,
    plan_digest: str | None = None,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    **options: Unpack[RunOptions],
) -> EngineRun:
    """The run applying the plan in ``store``; ``PlanRefusedError`` before any request when the plan is
    unreadable, edited (its digest is not ``plan_digest``), older than ``max_age``, made for another Omni
    than ``client``'s, or for a target this version cannot apply."""
    artifact = store.load()
    check_plan_for_apply(
        artifact, omni=client.base_url, plan_digest=plan_digest, max_age=max_age, targets=list(PLANNED_RUNS)
    )
    return PLANNED_RUNS[artifact.header.target](client, artifact, **options)


class Review(Protocol):
    def __call__(self, artifact: PlanArtifact, *, limit: int = ...) -> str: ...


#: The review (markdown) of each target's plans.
REVIEWS: dict[str, Review] = {
    user_plan_file.TARGET: user_plan_file.review,
    group_plan_file.TARGET: group_plan_file.group_review,
}


def review_of(artifact: PlanArtifact, *, limit: int = REVIEW_ROWS) -> str:
    """The plan's review (markdown), whatever its target: counts, the first ``limit`` changes."""
    return REVIEWS[artifact.header.target](artifact, limit=limit)
