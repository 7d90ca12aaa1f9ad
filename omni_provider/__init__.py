"""omni-provider: Omni's SCIM user API for Airflow and Dagster.

Top-level names are imported lazily: ``import omni_provider`` (and its client, sync engine, emulator and
Dagster adapter) works without Airflow installed; only the Airflow names need the ``airflow`` extra.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from omni_provider.__about__ import __version__

_LAZY = {
    "OmniScimClient": "omni_provider.client",
    "SyncRun": "omni_provider.sync.users.run",
    "update_one_user": "omni_provider.sync.users.single",
    "OmniScimHook": "omni_provider.hooks.omni",
    "UpdateOmniUserOperator": "omni_provider.operators.update_user",
    "SyncOmniUserAttributesOperator": "omni_provider.operators.sync_attributes",
    "SyncOmniGroupMembershipOperator": "omni_provider.operators.sync_groups",
    "SyncOmniEmailRecipientsOperator": "omni_provider.operators.sync_recipients",
    "PlanOmniUserAttributesOperator": "omni_provider.operators.plan",
    "PlanOmniGroupMembershipOperator": "omni_provider.operators.plan",
    "ApplyOmniPlanOperator": "omni_provider.operators.apply_plan",
}

__all__ = [
    "ApplyOmniPlanOperator",
    "OmniScimClient",
    "OmniScimHook",
    "PlanOmniGroupMembershipOperator",
    "PlanOmniUserAttributesOperator",
    "SyncOmniEmailRecipientsOperator",
    "SyncOmniGroupMembershipOperator",
    "SyncOmniUserAttributesOperator",
    "SyncRun",
    "UpdateOmniUserOperator",
    "__version__",
    "update_one_user",
]

if TYPE_CHECKING:
    from omni_provider.client import OmniScimClient
    from omni_provider.hooks.omni import OmniScimHook
    from omni_provider.operators.apply_plan import ApplyOmniPlanOperator
    from omni_provider.operators.plan import PlanOmniGroupMembershipOperator, PlanOmniUserAttributesOperator
    from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
    from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator
    from omni_provider.operators.sync_recipients import SyncOmniEmailRecipientsOperator
    from omni_provider.operators.update_user import UpdateOmniUserOperator
    from omni_provider.sync.users.run import SyncRun
    from omni_provider.sync.users.single import update_one_user


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        try:
            module = import_module(_LAZY[name])
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "airflow":
                raise
            raise ModuleNotFoundError(
                f"omni_provider.{name} needs Airflow: pip install 'omni-provider[airflow]'", name=exc.name
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module 'omni_provider' has no attribute {name!r}")
