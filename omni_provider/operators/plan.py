"""``PlanOmniUserAttributesOperator`` and ``PlanOmniGroupMembershipOperator``: the sync, up to its plan.

Each is its sync operator (the same arguments, declared once in the target's options, the same reading,
planning and guards: the engine's run with ``plan_only``) that writes nothing to Omni and stores the plan
(``sync.engine.plan_artifact``) at ``plan_path`` instead. Its XCom: ``plan_path``, ``plan_digest`` and
``review`` (markdown for an approval screen), and as return value those with the summary. The plan is
applied by ``ApplyOmniPlanOperator``, after review.

These two subclass the sync operators on purpose (a plan task *is* the sync task stopped at its plan);
no other operator module imports another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omni_provider._compat import Context
from omni_provider.airflow_support.plan_files import plan_store, publish_plan
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator
from omni_provider.sync.engine.review import REVIEW_ROWS
from omni_provider.sync.planned import review_of

_PLAN_DOC = """
    :param plan_path: where the plan goes: a local path or any ObjectStoragePath URL (templated, e.g.
        ``s3://bucket/omni/plans/{{ run_id }}.plan.json``); ending in ``/`` a folder, the file then named
        ``<dag>.<task>.<run id>.plan.json``. Checked before any request; replaced when the task runs again.
    :param review_rows: how many changes the review lists (the plan file has them all).

    ``dry_run`` is always true: a plan task sends no write (so it never defers: ``deferrable`` is
    ignored). The guards (``max_changes``, the mirror
    limit) refuse a plan as they would refuse the sync.
"""


class _PlanInsteadOfSync:
    """What turns a sync operator into its plan operator (mixed in before it)."""

    template_fields: Sequence[str]
    task_id: str
    _run: Any
    ui_color = "#fef7e0"

    def _plan_arguments(self, plan_path: str, review_rows: int) -> None:
        """The plan task's own arguments (each operator's ``__init__`` calls this: Airflow's metaclass
        wraps the ``__init__`` and ``execute`` of operator classes only, so the mixin defines neither)."""
        self.plan_path = plan_path
        self.review_rows = review_rows
        # Shadows BaseOperator.dry_run() as the sync operators do: a plan task never writes.
        setattr(self, "dry_run", True)  # noqa: B010 - the attribute is declared by the sync operator
        # Nothing to wait for without writes: a plan task never defers and keeps no run state.
        setattr(self, "deferrable", False)  # noqa: B010 - declared by the sync operator

    def _prepare(self, context: Context, state_path: str | None = None) -> Any:
        self._plan_store = plan_store(self.plan_path, context, self.task_id)
        run = super()._prepare(context, state_path)  # type: ignore[misc]
        run.plan_only = True
        return run

    def _publish(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        """After the sync's ``execute`` stopped at its plan: store it and push its XCom."""
        artifact = self._run.plan_artifact()
        text = review_of(artifact, limit=self.review_rows)
        return publish_plan(context, self._plan_store, artifact, text, summary)


class PlanOmniUserAttributesOperator(_PlanInsteadOfSync, SyncOmniUserAttributesOperator):
    """Plan a user attribute sync for review: read, plan and check the guards exactly like
    ``SyncOmniUserAttributesOperator`` (same arguments), send nothing, store the plan.
    """

    __doc__ = (__doc__ or "") + _PLAN_DOC
    template_fields: Sequence[str] = (*SyncOmniUserAttributesOperator.template_fields, "plan_path")

    def __init__(self, *, plan_path: str, review_rows: int = REVIEW_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._plan_arguments(plan_path, review_rows)

    def execute(self, context: Context) -> dict[str, Any]:
        return self._publish(context, super().execute(context))


class PlanOmniGroupMembershipOperator(_PlanInsteadOfSync, SyncOmniGroupMembershipOperator):
    """Plan a group-membership sync for review: read, plan and check the guards exactly like
    ``SyncOmniGroupMembershipOperator`` (same arguments), send nothing, store the plan.
    """

    __doc__ = (__doc__ or "") + _PLAN_DOC
    template_fields: Sequence[str] = (*SyncOmniGroupMembershipOperator.template_fields, "plan_path")

    def __init__(self, *, plan_path: str, review_rows: int = REVIEW_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._plan_arguments(plan_path, review_rows)

    def execute(self, context: Context) -> dict[str, Any]:
        return self._publish(context, super().execute(context))
