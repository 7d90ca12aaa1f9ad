"""The sync engine (``engine``) and its targets (``users``: user attributes; ``groups``: group membership),
with the snapshot a run can diff against (``snapshot``). Orchestrator-free: no I/O beyond the client, no
Airflow. The names below are the pure planning API of the user-attribute target."""

from omni_provider.sync.engine.guards import FailureVerdict, resolve_max_changes
from omni_provider.sync.users.guards import check_max_changes, evaluate_failures
from omni_provider.sync.users.plan import (
    WRITE_ACTIONS,
    AttributeChange,
    PlanItem,
    RowAction,
    SyncPlan,
    build_plan,
    check_managed_attributes,
    definitions_by_name,
)
from omni_provider.sync.users.spec import SyncMode, SyncSpec

__all__ = [
    "WRITE_ACTIONS",
    "AttributeChange",
    "FailureVerdict",
    "PlanItem",
    "RowAction",
    "SyncMode",
    "SyncPlan",
    "SyncSpec",
    "build_plan",
    "check_managed_attributes",
    "check_max_changes",
    "definitions_by_name",
    "evaluate_failures",
    "resolve_max_changes",
]
