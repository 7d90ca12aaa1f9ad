"""``OmniUserAttributesComponent``: the asset and its resource from a ``defs.yaml``, Dagster's Components way.

A thin layer over ``build_omni_user_attributes_asset`` and ``OmniScimResource``; nothing runs differently.
The key is named by its environment variable (``api_key_env_var``) and read at run launch through
``dg.EnvVar``, so it never lands in the YAML, the resolved component, or Dagster's UI.
"""

# No ``from __future__ import annotations``: Dagster resolves the YAML schema from the real field types.
from typing import Any

import dagster as dg
from pydantic import Field

from omni_provider.client.settings import ClientSettings, setting_field
from omni_provider.dagster.asset import build_omni_user_attributes_asset
from omni_provider.dagster.resource import OmniScimResource
from omni_provider.sync.users.options import SYNC_DEFAULTS


class OmniConnection(dg.Model, dg.Resolvable):
    """Where Omni is and which environment variable holds the Organization API key."""

    host: str = Field(description="Omni instance URL, e.g. https://acme.omniapp.co")
    api_key_env_var: str = Field(default="OMNI_API_KEY", description="Environment variable holding the key")
    ca_bundle: str | None = None
    # The client settings, defaults and descriptions from ``ClientSettings``; their ranges are checked by
    # ``OmniScimResource`` (a nested model here may not carry pydantic constraints).
    rate_limit_per_minute: float = setting_field("rate_limit_per_minute", constrained=False)
    rate_window_seconds: float = setting_field("rate_window_seconds", constrained=False)
    rate_limit_margin: float = setting_field("rate_limit_margin", constrained=False)
    timeout: float = setting_field("timeout", constrained=False)
    connect_timeout: float = setting_field("connect_timeout", constrained=False)
    max_retries: int = setting_field("max_retries", constrained=False)
    page_size: int = setting_field("page_size", constrained=False)
    max_response_bytes: int = setting_field("max_response_bytes", constrained=False)
    patch_form: str = setting_field("patch_form", constrained=False)


class OmniUserAttributesComponent(dg.Component, dg.Model, dg.Resolvable):
    """The rows of an upstream asset into Omni user attributes (``build_omni_user_attributes_asset``).

    ``defs.yaml``::

        type: omni_provider.dagster.OmniUserAttributesComponent
        attributes:
          asset_name: omni_user_attributes
          source: warehouse_user_attributes
          attributes: [region, department]
          key_column: email
          max_changes: "10%"
          connection:
            host: "{{ env.OMNI_HOST }}"
            api_key_env_var: OMNI_API_KEY
    """

    asset_name: str = Field(description="Name of the asset this component defines")
    source: str = Field(description="The upstream asset holding the rows (its key, '/'-separated)")
    attributes: list[str] | dict[str, str] = Field(description="Attribute names, or column -> attribute")
    # The sync options: defaults from ``SyncOptions`` (the same as the operator's), checked by it at load.
    key_column: str | None = Field(
        default=SYNC_DEFAULTS["key_column"], description="Column of the match key (default: match_on)"
    )
    match_on: str = SYNC_DEFAULTS["match_on"]
    mode: str = SYNC_DEFAULTS["mode"]
    display_name_column: str | None = SYNC_DEFAULTS["display_name_column"]
    max_changes: int | str | None = SYNC_DEFAULTS["max_changes"]
    allow_empty_input: bool = SYNC_DEFAULTS["allow_empty_input"]
    max_failed_rows: int | None = SYNC_DEFAULTS["max_failed_rows"]
    max_failed_pct: float | str | None = SYNC_DEFAULTS["max_failed_pct"]
    max_workers: int | None = SYNC_DEFAULTS["max_workers"]
    dry_run: bool = SYNC_DEFAULTS["dry_run"]
    report_path: str | None = Field(
        default=SYNC_DEFAULTS["report_path"], description="Local path or fsspec URL; may hold {run_id}"
    )
    group_name: str | None = None
    diff_against: str = Field(
        default=SYNC_DEFAULTS["diff_against"], description='"omni" (list every user) or "snapshot"'
    )
    snapshot_path: str | None = Field(
        default=SYNC_DEFAULTS["snapshot_path"], description="Local path or fsspec URL of the snapshot"
    )
    full_resync_every: int = SYNC_DEFAULTS["full_resync_every"]
    state_path: str | None = Field(
        default=None,
        description="Local path or fsspec URL of the run's resumable state (a step retry continues from it); "
        "may hold {run_id}",
    )
    connection: OmniConnection

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Every sync option the component has (all but progress_every), under its own name.
        options = {name: getattr(self, name) for name in SYNC_DEFAULTS if name in type(self).model_fields}
        asset = build_omni_user_attributes_asset(
            self.asset_name,
            self.source.split("/"),
            self.attributes,
            group_name=self.group_name,
            state_path=self.state_path,
            **options,
        )
        return dg.Definitions(assets=[asset], resources={"omni": self.resource()})

    def resource(self) -> OmniScimResource:
        conn = self.connection
        settings: dict[str, Any] = {name: getattr(conn, name) for name in ClientSettings.model_fields}
        return OmniScimResource(
            host=conn.host, api_key=dg.EnvVar(conn.api_key_env_var), ca_bundle=conn.ca_bundle, **settings
        )
