"""Dagster integration: ``pip install "omni-provider[dagster]"`` (Dagster 1.13; no Airflow needed).

``OmniScimResource`` (the client, one user, a whole table, group membership, email-only recipients),
``build_omni_user_attributes_asset``, ``build_omni_group_membership_asset`` and
``build_omni_email_recipients_asset`` (assets syncing an upstream asset's rows) and
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
from omni_provider.dagster.resource import OmniScimResource

__all__ = [
    "NO_FAILED_ROWS",
    "OmniScimResource",
    "OmniSyncRunConfig",
    "OmniUserAttributesComponent",
    "build_omni_email_recipients_asset",
    "build_omni_group_membership_asset",
    "build_omni_user_attributes_asset",
    "summary_metadata",
]
