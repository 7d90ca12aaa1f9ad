"""omni-provider: Apache Airflow provider for Omni's SCIM user API.

Top-level names are imported lazily so that ``omni_provider.client`` (Airflow-free) and the emulator can
be used without importing Airflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "OmniScimClient": "omni_provider.client",
    "OmniScimHook": "omni_provider.hooks.omni",
    "UpdateOmniUserOperator": "omni_provider.operators.update_user",
    "SyncOmniUserAttributesOperator": "omni_provider.operators.sync_attributes",
    "SyncOmniGroupMembershipOperator": "omni_provider.operators.sync_groups",
}

__all__ = [
    "OmniScimClient",
    "OmniScimHook",
    "SyncOmniGroupMembershipOperator",
    "SyncOmniUserAttributesOperator",
    "UpdateOmniUserOperator",
    "__version__",
]

if TYPE_CHECKING:
    from omni_provider.client import OmniScimClient
    from omni_provider.hooks.omni import OmniScimHook
    from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
    from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator
    from omni_provider.operators.update_user import UpdateOmniUserOperator


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'omni_provider' has no attribute {name!r}")
