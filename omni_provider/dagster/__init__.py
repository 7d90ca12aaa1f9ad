"""Dagster integration: ``pip install "omni-provider[dagster]"`` (Dagster 1.13; no Airflow needed).

``OmniScimResource`` (the client, one user, a whole table, group membership, email-only recipients),
``build_omni_user_attributes_asset``, ``build_omni_group_membership_asset`` and
``build_omni_email_recipients_asset`` (assets syncing an upstream asset's rows), the ``..._plan_assets``
pairs of the attribute and group syncs (plan for review, apply by hand) and
``OmniUserAttributesComponent`` (the same from a ``defs.yaml``), all
running the same engine as the Airflow operators.
"""

from omni_provider.dagster.asset import (
    NO_FAILED_ROWS,
    OmniSyncRunConfig,
    build_omni_email_recipients_asset,
    build_omni_group_membership_asset,
    build_omni_user_attributes_asset,
)
from omni_provider.dagster.component import OmniUserAttributesComponent
from omni_provider.dagster.metadata import summary_metadata
from omni_provider.dagster.plan_assets import (
    ApplyPlanConfig,
    build_omni_group_membership_plan_assets,
    build_omni_user_attributes_plan_assets,
)
from omni_provider.dagster.resource import OmniScimResource

__all__ = [
    "NO_FAILED_ROWS",
    "ApplyPlanConfig",
    "OmniScimResource",
    "OmniSyncRunConfig",
    "OmniUserAttributesComponent",
    "build_omni_email_recipients_asset",
    "build_omni_group_membership_asset",
    "build_omni_group_membership_plan_assets",
    "build_omni_user_attributes_asset",
    "build_omni_user_attributes_plan_assets",
    "summary_metadata",
]
