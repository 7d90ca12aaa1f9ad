"""``build_omni_user_attributes_asset`` and ``build_omni_group_membership_asset``: assets that sync an
upstream asset's rows into Omni (user attributes; group membership), through the same engine, with the
same metadata, asset check and failure handling."""

# No ``from __future__ import annotations`` here: Dagster reads the asset function's annotations (the
# context and the resource) as real types.
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from omni_provider.client import OmniError
from omni_provider.dagster.metadata import OutcomeTables, metadata_legend, summary_metadata
from omni_provider.dagster.resource import RUN_ID_PLACEHOLDER, OmniScimResource
from omni_provider.errors import PlanTooLargeError, SyncRunError, rerun_may_help
from omni_provider.sync.groups.options import GROUP_SYNC_DEFAULTS, GroupSyncOptions
from omni_provider.sync.recipients.options import RECIPIENT_SYNC_DEFAULTS, RecipientSyncOptions
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.outcome import RowStatus

#: The asset check every Omni sync asset carries.
NO_FAILED_ROWS = "no_failed_rows"


class OmniSyncRunConfig(dg.Config):  # type: ignore[misc]  # Dagster's Config is untyped for mypy
    """What one launch of a sync asset may change (the launchpad's config): e.g. a preview,
    ``{"dry_run": true}``, of an asset that writes. Unset fields keep the asset's own settings."""

    dry_run: bool | None = Field(
        default=None,
        description="true: plan and report, write nothing (a preview). Unset: the asset's setting.",
    )
    max_changes: str | None = Field(
        default=None,
        description='Refuse a plan changing more than this: a count ("25") or a percentage ("10%"). '
        "Unset: the asset's setting.",
    )

    def changes(self) -> dict[str, Any]:
        """The options this launch overrides."""
        return {
            name: value
            for name, value in (("dry_run", self.dry_run), ("max_changes", self.max_changes))
            if value is not None
        }


def build_omni_user_attributes_asset(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    attributes: Mapping[str, str] | Sequence[str],
    key_column: str | None = SYNC_DEFAULTS["key_column"],
    match_on: str = SYNC_DEFAULTS["match_on"],
    mode: str = SYNC_DEFAULTS["mode"],
    max_changes: int | str | None = SYNC_DEFAULTS["max_changes"],
    dry_run: bool = SYNC_DEFAULTS["dry_run"],
    *,
    display_name_column: str | None = SYNC_DEFAULTS["display_name_column"],
    allow_empty_input: bool = SYNC_DEFAULTS["allow_empty_input"],
    max_failed_rows: int | None = SYNC_DEFAULTS["max_failed_rows"],
    max_failed_pct: float | str | None = SYNC_DEFAULTS["max_failed_pct"],
    max_workers: int | None = SYNC_DEFAULTS["max_workers"],
    report_path: str | None = SYNC_DEFAULTS["report_path"],
    group_name: str | None = None,
    description: str | None = None,
    retry_policy: dg.RetryPolicy | None = None,
    diff_against: str = SYNC_DEFAULTS["diff_against"],
    snapshot_path: str | None = SYNC_DEFAULTS["snapshot_path"],
    full_resync_every: int = SYNC_DEFAULTS["full_resync_every"],
    state_path: str | None = None,
) -> dg.AssetsDefinition:
    """An asset named ``name`` that makes Omni's user attributes match the rows of the asset ``source``.

    ``source`` materialises a list of dicts or a pandas DataFrame (one row per user: ``key_column`` plus
    the ``attributes`` columns). The asset needs an ``OmniScimResource`` under the resource key ``"omni"``.
    Its materialisation carries the counts (``applied``, ``unchanged``, ``rejected``, ``failed``,
    ``planned``), the request count, the report path and the plan as a markdown table; its check
    ``no_failed_rows`` fails when any row was rejected or failed. When more rows did not sync than
    ``max_failed_rows`` / ``max_failed_pct`` allow, or the plan writes more users than ``max_changes``,
    the step fails with the summary attached (retried only when failed writes may succeed on a re-run).
    ``report_path`` (local path or fsspec URL) may contain ``{run_id}``. ``diff_against="snapshot"`` with
    ``snapshot_path`` (one file per asset, local or fsspec URL) lists no Omni users on most runs: see
    ``SyncOmniUserAttributesOperator``. ``state_path`` (may contain ``{run_id}``) makes a step retry continue
    the run from its saved state instead of reading Omni again (``OmniScimResource.sync_user_attributes``).

    The sync options are those of ``SyncOmniUserAttributesOperator``, with the same defaults
    (``SyncOptions``); they are checked here, when the definitions load, so a misconfigured asset never
    reaches a run.
    """
    # Configuration errors surface at load time, like a DAG that fails to parse.
    options = SyncOptions(
        attributes=attributes,
        key_column=key_column,
        match_on=match_on,
        mode=mode,
        max_changes=max_changes,
        dry_run=dry_run,
        display_name_column=display_name_column,
        allow_empty_input=allow_empty_input,
        max_failed_rows=max_failed_rows,
        max_failed_pct=max_failed_pct,
        max_workers=max_workers,
        report_path=report_path,
        diff_against=diff_against,
        snapshot_path=snapshot_path,
        full_resync_every=full_resync_every,
    )
    spec = options.spec
    source_key = dg.AssetKey.from_coercible(source) if not isinstance(source, dg.AssetKey) else source

    attribute_names = ", ".join(spec.managed_attributes)
    return _sync_asset(
        name,
        source_key,
        options,
        OmniScimResource.run_sync,
        state_path=state_path,
        checked="Every row was applied, unchanged or planned",
        description=description
        or f"Omni user attributes ({attribute_names}) from {source_key.to_user_string()}",
        group_name=group_name,
        retry_policy=retry_policy,
    )


def build_omni_group_membership_asset(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    *,
    user_column: str = GROUP_SYNC_DEFAULTS["user_column"],
    group_column: str = GROUP_SYNC_DEFAULTS["group_column"],
    groups: Sequence[str] | str | None = GROUP_SYNC_DEFAULTS["groups"],
    mode: str = GROUP_SYNC_DEFAULTS["mode"],
    create_missing_groups: bool = GROUP_SYNC_DEFAULTS["create_missing_groups"],
    max_changes: int | str | None = GROUP_SYNC_DEFAULTS["max_changes"],
    max_failed_rows: int | None = GROUP_SYNC_DEFAULTS["max_failed_rows"],
    dry_run: bool = GROUP_SYNC_DEFAULTS["dry_run"],
    report_path: str | None = GROUP_SYNC_DEFAULTS["report_path"],
    max_workers: int | None = GROUP_SYNC_DEFAULTS["max_workers"],
    max_members_per_write: int | None = GROUP_SYNC_DEFAULTS["max_members_per_write"],
    group_name: str | None = None,
    description: str | None = None,
    retry_policy: dg.RetryPolicy | None = None,
    state_path: str | None = None,
) -> dg.AssetsDefinition:
    """An asset named ``name`` that makes the membership of Omni groups match the rows of the asset
    ``source`` (a list of dicts or a pandas DataFrame, one row per (user, group) membership), through
    ``OmniScimResource.run_group_sync`` (resource key ``"omni"``; the arguments are
    ``sync_group_membership``'s).

    Its materialisation carries the counts (``added``, ``removed``, ``unchanged``, ``rejected``,
    ``failed``, ``planned``) as integers, the request count, the report path and the plan as a markdown
    table; its check ``no_failed_rows`` fails when any membership was rejected or failed. Over
    ``max_failed_rows`` or ``max_changes``, or when the circuit breaker tripped, the step fails with the
    summary attached (retried only when failed writes may succeed on a re-run). ``report_path`` may contain
    ``{run_id}``; a report of an earlier attempt is never replaced. ``state_path`` (may contain
    ``{run_id}``): a step retry continues from the run's saved state.

    The sync options are those of ``SyncOmniGroupMembershipOperator``, with the same defaults
    (``GroupSyncOptions``); they are checked here, when the definitions load, so a misconfigured asset
    never reaches a run.
    """
    options = GroupSyncOptions(
        user_column=user_column,
        group_column=group_column,
        groups=groups,
        mode=mode,
        create_missing_groups=create_missing_groups,
        max_changes=max_changes,
        max_failed_rows=max_failed_rows,
        dry_run=dry_run,
        report_path=report_path,
        max_workers=max_workers,
        max_members_per_write=max_members_per_write,
    )
    spec = options.spec
    source_key = dg.AssetKey.from_coercible(source) if not isinstance(source, dg.AssetKey) else source
    shown = ", ".join(spec.groups) if spec.groups is not None else "the groups named in the input"

    return _sync_asset(
        name,
        source_key,
        options,
        OmniScimResource.run_group_sync,
        state_path=state_path,
        checked="Every membership was synced, unchanged or planned",
        description=description or f"Omni group membership ({shown}) from {source_key.to_user_string()}",
        group_name=group_name,
        retry_policy=retry_policy,
    )


def build_omni_email_recipients_asset(
    name: str,
    source: str | Sequence[str] | dg.AssetKey,
    attributes: Mapping[str, str] | Sequence[str],
    *,
    key_column: str = RECIPIENT_SYNC_DEFAULTS["key_column"],
    mode: str = RECIPIENT_SYNC_DEFAULTS["mode"],
    max_changes: int | str | None = RECIPIENT_SYNC_DEFAULTS["max_changes"],
    allow_empty_input: bool = RECIPIENT_SYNC_DEFAULTS["allow_empty_input"],
    max_failed_rows: int | None = RECIPIENT_SYNC_DEFAULTS["max_failed_rows"],
    max_failed_pct: float | str | None = RECIPIENT_SYNC_DEFAULTS["max_failed_pct"],
    dry_run: bool = RECIPIENT_SYNC_DEFAULTS["dry_run"],
    report_path: str | None = RECIPIENT_SYNC_DEFAULTS["report_path"],
    max_workers: int | None = RECIPIENT_SYNC_DEFAULTS["max_workers"],
    diff_against: str = RECIPIENT_SYNC_DEFAULTS["diff_against"],
    snapshot_path: str | None = RECIPIENT_SYNC_DEFAULTS["snapshot_path"],
    full_resync_every: int = RECIPIENT_SYNC_DEFAULTS["full_resync_every"],
    group_name: str | None = None,
    description: str | None = None,
    retry_policy: dg.RetryPolicy | None = None,
) -> dg.AssetsDefinition:
    """An asset named ``name`` that makes the attributes of Omni's email-only recipients match the rows of
    the asset ``source`` (a list of dicts or a pandas DataFrame, one row per email), through
    ``OmniScimResource.run_recipient_sync`` (resource key ``"omni"``; the arguments are
    ``sync_email_recipients``'s). Its materialisation and its ``no_failed_rows`` check are the attribute
    asset's. The options are ``SyncOmniEmailRecipientsOperator``'s, with the same defaults
    (``RecipientSyncOptions``), checked here, when the definitions load.
    """
    options = RecipientSyncOptions(
        attributes=attributes,
        key_column=key_column,
        mode=mode,
        max_changes=max_changes,
        allow_empty_input=allow_empty_input,
        max_failed_rows=max_failed_rows,
        max_failed_pct=max_failed_pct,
        dry_run=dry_run,
        report_path=report_path,
        max_workers=max_workers,
        diff_against=diff_against,
        snapshot_path=snapshot_path,
        full_resync_every=full_resync_every,
    )
    source_key = dg.AssetKey.from_coercible(source) if not isinstance(source, dg.AssetKey) else source
    managed = ", ".join(options.spec.managed_attributes)
    return _sync_asset(
        name,
        source_key,
        options,
        OmniScimResource.run_recipient_sync,
        checked="Every recipient row was synced, unchanged or planned",
        description=description
        or f"Omni email-only recipients' attributes ({managed}) from {source_key.to_user_string()}",
        group_name=group_name,
        retry_policy=retry_policy,
    )


def _sync_asset(
    name: str,
    source_key: dg.AssetKey,
    options: SyncOptions | GroupSyncOptions | RecipientSyncOptions,
    run: Callable[..., dict[str, Any]],
    *,
    state_path: str | None = None,
    checked: str,
    description: str,
    group_name: str | None,
    retry_policy: dg.RetryPolicy | None,
) -> dg.AssetsDefinition:
    """The asset of one sync target: its rows from ``source_key``, the resource under ``"omni"`` and its
    ``run`` method (``run_sync``, ``run_group_sync``) with ``options`` as this launch's config
    (``OmniSyncRunConfig``) changes them, the ``no_failed_rows`` check, and the run's summary and rows as
    the materialisation (``_materialise``). ``state_path`` (the targets that keep a run state): where
    the run's resumable state goes, ``{run_id}`` replaced."""

    @dg.asset(
        name=name,
        ins={"rows": dg.AssetIn(key=source_key)},
        check_specs=[dg.AssetCheckSpec(NO_FAILED_ROWS, asset=name, description=checked)],
        group_name=group_name,
        description=description + metadata_legend(),
        kinds={"omni"},
        retry_policy=retry_policy,
    )
    def _sync(
        context: dg.AssetExecutionContext, rows: Any, omni: OmniScimResource, config: OmniSyncRunConfig
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]  # Dagster reads the bare class
        tables = OutcomeTables()

        def sync() -> dict[str, Any]:
            # A bad value in the launch's config is refused here, as a Failure, before any request.
            report_path = _report_path(options.report_path, context)
            launched = options.replace(report_path=report_path, **config.changes())
            resumable = {"state_path": _report_path(state_path, context)} if state_path else {}
            return run(
                omni,
                rows,
                launched,
                log=context.log,
                run_id=context.run_id,
                extra_sinks=[tables],
                **resumable,
            )

        return _materialise(context, sync, tables)

    return _sync


def _report_path(report_path: str | None, context: dg.AssetExecutionContext) -> str | None:
    return report_path.replace(RUN_ID_PLACEHOLDER, context.run_id) if report_path else None


def _materialise(
    context: dg.AssetExecutionContext, sync: Callable[[], dict[str, Any]], tables: OutcomeTables
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    """Run a sync; its summary and rows (``tables``) as the materialisation, its failures as a
    ``dg.Failure`` with the summary and a retry only when a re-run may help (``rerun_may_help``)."""
    try:
        summary = sync()
    except SyncRunError as exc:
        # Thresholds exceeded, the circuit breaker tripped, or the report lost after the writes: the
        # summary goes with the failure. A run that wrote still records what it wrote (Omni changed),
        # and its check says which items did not sync, before the step fails.
        metadata = summary_metadata(exc.summary, tables)
        if tables.wrote:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    description=f"Written before the run failed: {exc}",
                    metadata=metadata,
                )
            )
        if "outcomes" in exc.summary:
            check = _check(exc.summary, tables)
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=context.asset_key,
                    check_name=NO_FAILED_ROWS,
                    passed=check.passed,
                    metadata=check.metadata,
                    severity=check.severity,
                    description=check.description,
                )
            )
        raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=exc.retryable) from None
    except PlanTooLargeError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except OmniError as exc:
        # Retried (by the asset's retry policy) only when waiting could help: 429, 5xx, network.
        raise dg.Failure(description=str(exc), allow_retries=rerun_may_help(exc)) from None
    return dg.MaterializeResult(
        metadata=summary_metadata(summary, tables), check_results=[_check(summary, tables)]
    )


def _check(summary: Mapping[str, Any], tables: OutcomeTables) -> dg.AssetCheckResult:
    """``no_failed_rows``: its text names the counts and the items ("1 rejected: nobody@example.com: no
    Omni user with this email")."""
    outcomes = summary["outcomes"]
    rejected = int(outcomes[RowStatus.REJECTED.value])  # the same names for every target
    failed = int(outcomes[RowStatus.FAILED.value])
    return dg.AssetCheckResult(
        check_name=NO_FAILED_ROWS,
        passed=rejected == 0 and failed == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rejected": rejected, "failed": failed, "not_synced": tables.not_synced_table()},
        description=tables.check_text(outcomes),
    )
