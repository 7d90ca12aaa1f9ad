"""The plan tasks' files and XCom on Airflow: where a plan goes (``plan_path``: a local path or any
ObjectStoragePath URL; ending in ``/`` a folder, the file then named ``<dag>.<task>.<run id>.plan.json``),
and what a plan task hands to the approval and apply tasks (``plan_path``, ``plan_digest``, ``review``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omni_provider._compat import Context
from omni_provider.airflow_support.report_sinks import ReportNaming, report_target
from omni_provider.airflow_support.snapshot_store import ObjectStoragePlanStore
from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.plan_artifact import PlanArtifact

#: The XCom keys a plan task pushes (its return value holds them too, with the summary).
PLAN_XCOM_KEYS = ("plan_path", "plan_digest", "review")


def plan_store(plan_path: object, context: Context, task_id: str) -> ObjectStoragePlanStore:
    """The plan's file, checked writable before any request (a retry of the same run plans again and
    replaces it: the file name carries no try number)."""
    if not isinstance(plan_path, str) or not plan_path.strip():
        raise OmniValidationError(f"plan_path must be a path or URL, got {plan_path!r}")
    naming = dataclasses.replace(ReportNaming.from_context(context, task_id), try_number=None)
    store = ObjectStoragePlanStore(report_target(plan_path, naming, suffix=".plan.json"))
    store.check()
    return store


def publish_plan(
    context: Context,
    store: ObjectStoragePlanStore,
    artifact: PlanArtifact,
    review: str,
    summary: Mapping[str, Any],
) -> dict[str, Any]:
    """Store the plan, then push ``plan_path``, ``plan_digest`` and ``review`` to XCom; returns them with
    the summary (the task's return value)."""
    digest = store.save(artifact)
    result: dict[str, Any] = {"plan_path": store.path, "plan_digest": digest, "review": review}
    ti = context.get("ti")
    if ti is not None:
        for key in PLAN_XCOM_KEYS:
            ti.xcom_push(key=key, value=result[key])
    return {"summary": dict(summary), **result}
