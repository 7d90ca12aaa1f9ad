"""``build_omni_user_attributes_plan_assets`` and ``build_omni_group_membership_plan_assets``: review before
it writes, in Dagster. Each returns two assets:

- ``<name>_plan``: reads the upstream asset's rows, plans and checks the guards like the sync asset, sends
  nothing, stores the plan (``plan_path``, may contain ``{run_id}``). Its materialisation's metadata carries
  the review (markdown), ``plan_path`` and ``plan_digest``: what the reviewer reads in the asset's page.
- ``<name>_apply``: materialised by hand after review; applies exactly the plan of the latest ``_plan``
  materialisation (``OmniScimResource.apply_plan``), refusing it when its digest is not the one the run
  config names (``plan_digest``: paste the reviewed one; default the digest that materialisation recorded),
  when it is older than ``max_age``, or made for another Omni.
"""

# No ``from __future__ import annotations`` here: Dagster reads the asset functions' annotations.
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg

from omni_provider.dagster.asset import NO_FAILED_ROWS, _materialise, _report_path
from omni_provider.dagster.metadata import OutcomeTables, summary_metadata
from omni_provider.dagster.resource import OmniScimResource
from omni_provider.errors import OmniError
from omni_provider.sync.engine.plan_artifact import DEFAULT_MAX_AGE
from omni_provider.sync.engine.review import REVIEW_ROWS
from omni_provider.sync.groups.options import GroupSyncOptions
from omni_provider.sync.users.options import SyncOptions


class ApplyPlanConfig(dg.Config):
    """The apply's run config: the digest the reviewer approved (from the plan asset's metadata)."""

    plan_digest: str | None = None


def build_omni_user_attributes_plan_assets(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    attributes: Mapping[str, str] | Sequence[str],
    *,
    plan_path: str,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    report_path: str | None = None,
    review_rows: int = REVIEW_ROWS,
    group_name: str | None = None,
    **options: Any,
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The plan and apply assets of a user attribute sync (``options``: ``build_omni_user_attributes_asset``'s
    sync options, checked here, when the definitions load)."""
    sync_options = SyncOptions(attributes=attributes, **{**options, "dry_run": True})
    what = f"Omni user attributes {list(sync_options.spec.managed_attributes)}"
    planned = _Planned(sync_options, plan_path, review_rows, max_age, report_path)
    return _plan_assets(name, source, planned, what, group_name)


def build_omni_group_membership_plan_assets(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    *,
    plan_path: str,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    report_path: str | None = None,
    review_rows: int = REVIEW_ROWS,
    group_name: str | None = None,
    **options: Any,
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The plan and apply assets of a group-membership sync (``options``: the sync options of
    ``build_omni_group_membership_asset``, checked here, when the definitions load)."""
    group_options = GroupSyncOptions(**{**options, "dry_run": True})
    planned = _Planned(group_options, plan_path, review_rows, max_age, report_path)
    return _plan_assets(name, source, planned, "Omni group membership", group_name)


@dataclass(frozen=True)
class _Planned:
    """What the pair of assets is built from: the sync's options (checked), where the plan goes, the apply's
    settings."""

    options: SyncOptions | GroupSyncOptions
    plan_path: str
    review_rows: int
    max_age: timedelta | None
    report_path: str | None


def _plan_assets(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    planned: _Planned,
    what: str,
    group_name: str | None,
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    source_key = dg.AssetKey.from_coercible(source) if not isinstance(source, dg.AssetKey) else source
    plan_name, apply_name = f"{name}_plan", f"{name}_apply"

    @dg.asset(
        name=plan_name,
        ins={"rows": dg.AssetIn(key=source_key)},
        group_name=group_name,
        description=f"The plan of {what} from {source_key.to_user_string()}, for review (nothing written)",
        kinds={"omni"},
    )
    def _plan(context: dg.AssetExecutionContext, rows: Any, omni: OmniScimResource) -> dg.MaterializeResult:  # type: ignore[type-arg]  # Dagster reads the bare class
        try:
            result = omni.run_plan(
                rows,
                planned.options,
                planned.plan_path,
                review_rows=planned.review_rows,
                log=context.log,
                run_id=context.run_id,
            )
        except OmniError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        metadata = summary_metadata(result["summary"])
        metadata["review"] = dg.MetadataValue.md(result["review"])
        metadata["plan_path"] = dg.MetadataValue.path(result["plan_path"])
        metadata["plan_digest"] = dg.MetadataValue.text(result["plan_digest"])
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        name=apply_name,
        deps=[plan_name],
        check_specs=[
            dg.AssetCheckSpec(NO_FAILED_ROWS, asset=apply_name, description="Every planned write was applied")
        ],
        group_name=group_name,
        description=f"Apply the reviewed plan of {what} (materialise by hand after review)",
        kinds={"omni"},
    )
    def _apply(
        context: dg.AssetExecutionContext,
        config: ApplyPlanConfig,
        omni: OmniScimResource,
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        event = context.instance.get_latest_materialization_event(dg.AssetKey(plan_name))
        recorded = event.asset_materialization if event is not None else None
        if recorded is None:
            raise dg.Failure(
                description=f"{plan_name} has no materialisation: plan first", allow_retries=False
            )
        path = str(recorded.metadata["plan_path"].value)
        digest = config.plan_digest or str(recorded.metadata["plan_digest"].value)
        tables = OutcomeTables()
        return _materialise(
            context,
            lambda: omni.apply_plan(
                path,
                plan_digest=digest,
                max_age=planned.max_age,
                report_path=_report_path(planned.report_path, context),
                log=context.log,
                run_id=context.run_id,
                extra_sinks=[tables],
            ),
            tables,
        )

    return _plan, _apply


__all__ = [
    "ApplyPlanConfig",
    "build_omni_group_membership_plan_assets",
    "build_omni_user_attributes_plan_assets",
]
