"""``OmniScimResource``: Omni's SCIM API as a Dagster resource, calling the same engine as the Airflow
operators."""

from __future__ import annotations

import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from omni_provider.client import OmniScimClient
from omni_provider.client.settings import ClientSettings, setting_field, validate_settings
from omni_provider.dagster.rows import rows_from
from omni_provider.sync.engine.checks import check_run_options
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.pause import Deferral
from omni_provider.sync.engine.plan_artifact import DEFAULT_MAX_AGE, PlanStore
from omni_provider.sync.engine.report import JsonlFileSink, ReportSink
from omni_provider.sync.engine.review import REVIEW_ROWS
from omni_provider.sync.engine.run import EngineRun, RunOptions
from omni_provider.sync.engine.state import RunStateStore
from omni_provider.sync.engine.steps import run_in_steps
from omni_provider.sync.groups.options import GROUP_SYNC_DEFAULTS, GroupSyncOptions
from omni_provider.sync.groups.run import GroupSyncRun
from omni_provider.sync.planned import load_planned_run, review_of
from omni_provider.sync.recipients.options import RECIPIENT_SYNC_DEFAULTS, RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun
from omni_provider.sync.users.apply import Progress
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.run import SyncRun
from omni_provider.sync.users.single import update_one_user

_log = logging.getLogger("omni_provider.dagster")
#: ``report_path`` and ``plan_path`` may hold this placeholder, replaced by the Dagster run id.
RUN_ID_PLACEHOLDER = "{run_id}"
#: Where the per-row outcomes go when ``report_path`` cannot be written after the writes.
FALLBACK_REPORT_DIR = Path(tempfile.gettempdir()) / "omni-sync-reports"


def _fallback_path(run_id: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id) if run_id else uuid.uuid4().hex
    return FALLBACK_REPORT_DIR / f"omni-{name}.jsonl"


class OmniScimResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Omni's SCIM user API. Give the key as ``dg.EnvVar("OMNI_API_KEY")``: Dagster then reads it at run
    launch and shows only the variable's name; it never appears in the resource's repr, logs, metadata or
    errors."""

    host: str = Field(description="Omni instance URL: acme.omniapp.co, https://acme.omniapp.co or .../api")
    api_key: str = Field(description="Organization API key (use dg.EnvVar)", repr=False)
    additional_api_keys: list[str] = Field(
        default=[], description="More Organization API keys; each has its own rate limit", repr=False
    )
    ca_bundle: str | None = Field(default=None, description="Path to a CA bundle; TLS is always verified")
    # The client settings: default, range and description from ``ClientSettings`` (client/settings.py).
    rate_limit_per_minute: float = setting_field("rate_limit_per_minute")
    rate_window_seconds: float = setting_field("rate_window_seconds")
    rate_limit_margin: float = setting_field("rate_limit_margin")
    timeout: float = setting_field("timeout")
    connect_timeout: float = setting_field("connect_timeout")
    max_retries: int = setting_field("max_retries")
    page_size: int = setting_field("page_size")
    max_response_bytes: int = setting_field("max_response_bytes")
    # A string in Dagster's config schema; the one check of its choices is ``ClientSettings``'s.
    patch_form: str = setting_field("patch_form")

    def client_settings(self) -> ClientSettings:
        """The resource's client settings, checked as a connection's are."""
        return validate_settings(
            {name: getattr(self, name) for name in ClientSettings.model_fields},
            describe={name: f"OmniScimResource field {name!r}" for name in ClientSettings.model_fields},
        )

    def get_client(self) -> OmniScimClient:
        """A new client (one connection pool, one pacer); close it, or use it as a context manager."""
        keys = [self.api_key, *(k.strip() for k in self.additional_api_keys if k.strip())]
        return OmniScimClient(
            self.host,
            keys,
            verify=self.ca_bundle or True,
            **self.client_settings().client_arguments(),
        )

    def update_user(
        self,
        user_name: str | None = None,
        user_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        display_name: str | None = None,
        active: bool | None = None,
        dry_run: bool = False,
        *,
        validate_attributes: bool | None = None,
        log: RunLog | None = None,
    ) -> dict[str, Any]:
        """Set attributes of one user (``None`` unsets); the same result as ``UpdateOmniUserOperator``."""
        with self.get_client() as client:
            return update_one_user(
                client,
                user_id=user_id,
                user_name=user_name,
                attributes=attributes,
                display_name=display_name,
                active=active,
                dry_run=dry_run,
                validate_attributes=validate_attributes,
                log=log or _log,
            )

    def sync_user_attributes(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        attributes: Mapping[str, str] | Sequence[str],
        key_column: str | None = SYNC_DEFAULTS["key_column"],
        match_on: str = SYNC_DEFAULTS["match_on"],
        mode: str = SYNC_DEFAULTS["mode"],
        max_changes: int | str | None = SYNC_DEFAULTS["max_changes"],
        dry_run: bool = SYNC_DEFAULTS["dry_run"],
        report_path: str | None = SYNC_DEFAULTS["report_path"],
        display_name_column: str | None = SYNC_DEFAULTS["display_name_column"],
        allow_empty_input: bool = SYNC_DEFAULTS["allow_empty_input"],
        max_failed_rows: int | None = SYNC_DEFAULTS["max_failed_rows"],
        max_failed_pct: float | str | None = SYNC_DEFAULTS["max_failed_pct"],
        max_workers: int | None = SYNC_DEFAULTS["max_workers"],
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog | None = None,
        run_id: str = "",
        diff_against: str = SYNC_DEFAULTS["diff_against"],
        snapshot_path: str | None = SYNC_DEFAULTS["snapshot_path"],
        full_resync_every: int = SYNC_DEFAULTS["full_resync_every"],
        state_path: str | None = None,
    ) -> dict[str, Any]:
        """Make Omni match ``rows`` (dicts or a pandas DataFrame) for ``attributes``; the same summary as
        ``SyncOmniUserAttributesOperator``, whose parameters these are (defaults and checks from
        ``SyncOptions``: ``key_column`` defaults to the ``match_on`` name). Raises ``SyncFailedError``
        (with the summary) when more rows did not sync than ``max_failed_rows`` / ``max_failed_pct`` allow,
        and ``PlanTooLargeError`` when the plan writes more users than ``max_changes``.
        ``diff_against="snapshot"`` diffs against what the last run left at ``snapshot_path`` (local path
        or fsspec URL) and lists no users, re-reading Omni in full every ``full_resync_every`` runs.
        ``state_path`` (local path or fsspec URL) makes the run resumable: its state is saved there before
        the first write and whenever Omni's rate window is full, and a step retry within an hour continues
        from it without reading Omni again (see ``run_resumable``)."""
        options = SyncOptions(
            attributes=attributes,
            key_column=key_column,
            match_on=match_on,
            mode=mode,
            max_changes=max_changes,
            dry_run=dry_run,
            report_path=report_path,
            display_name_column=display_name_column,
            allow_empty_input=allow_empty_input,
            max_failed_rows=max_failed_rows,
            max_failed_pct=max_failed_pct,
            max_workers=max_workers,
            diff_against=diff_against,
            snapshot_path=snapshot_path,
            full_resync_every=full_resync_every,
        )
        return self.run_sync(
            rows, options, on_progress=on_progress, log=log, run_id=run_id, state_path=state_path
        )

    def run_sync(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        options: SyncOptions,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog | None = None,
        run_id: str = "",
        state_path: str | None = None,
        extra_sinks: Sequence[ReportSink] = (),
    ) -> dict[str, Any]:
        """``sync_user_attributes`` with its options already built (the asset builds them once, at load);
        ``extra_sinks`` get every outcome too (the asset's metadata tables)."""
        return self._run_target(
            lambda client, report: SyncRun.from_options(
                client,
                options,
                sinks=report["sinks"],
                fallback_sink=report["fallback_sink"],
                on_progress=on_progress,
                log=report["log"],
                run_id=run_id,
                deferral=_deferral(state_path),
            ),
            rows,
            _report_options(options.report_path, run_id, log, extra_sinks),
            state_path,
        )

    def sync_group_membership(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
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
        log: RunLog | None = None,
        run_id: str = "",
        state_path: str | None = None,
    ) -> dict[str, Any]:
        """Make the membership of Omni groups match ``rows`` (dicts or a pandas DataFrame, one row per
        (user, group)); the same summary as ``SyncOmniGroupMembershipOperator``, whose parameters these are
        (defaults and checks from ``GroupSyncOptions``). ``mode="mirror"`` also removes members absent
        from the input (one unreadable email or group refuses the run before any request; members of
        rejected rows are kept). Raises ``SyncFailedError`` (with the summary) when more memberships did
        not sync than ``max_failed_rows`` allows, ``SyncHaltedError`` when the circuit breaker tripped, and
        ``PlanTooLargeError`` over ``max_changes`` (in mirror mode, by default, more than 10% of the
        managed memberships removed). ``state_path``: as for ``sync_user_attributes``."""
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
        return self.run_group_sync(rows, options, log=log, run_id=run_id, state_path=state_path)

    def run_group_sync(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        options: GroupSyncOptions,
        *,
        log: RunLog | None = None,
        run_id: str = "",
        state_path: str | None = None,
        extra_sinks: Sequence[ReportSink] = (),
    ) -> dict[str, Any]:
        """``sync_group_membership`` with its options already built (the asset builds them once, at
        load); ``state_path`` and ``extra_sinks`` as ``run_sync``'s."""
        return self._run_target(
            lambda client, report: GroupSyncRun.from_options(
                client,
                options,
                sinks=report["sinks"],
                fallback_sink=report["fallback_sink"],
                log=report["log"],
                run_id=run_id,
                deferral=_deferral(state_path),
            ),
            rows,
            _report_options(options.report_path, run_id, log, extra_sinks),
            state_path,
        )

    def sync_email_recipients(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        attributes: Mapping[str, str] | Sequence[str],
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
        log: RunLog | None = None,
        run_id: str = "",
    ) -> dict[str, Any]:
        """Make the attributes of Omni's email-only recipients match ``rows`` (dicts or a pandas DataFrame,
        one row per email); the same summary as ``SyncOmniEmailRecipientsOperator``, whose parameters these
        are (defaults and checks from ``RecipientSyncOptions``). Raises ``SyncFailedError`` (with the
        summary) over ``max_failed_rows`` / ``max_failed_pct`` (rows Omni refused count as rejected),
        ``SyncHaltedError`` when the canary or the circuit breaker stopped the writes, and
        ``PlanTooLargeError`` over ``max_changes`` (in mirror mode, by default, more than 10% of the
        recipients losing values)."""
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
        return self.run_recipient_sync(rows, options, log=log, run_id=run_id)

    def run_recipient_sync(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        options: RecipientSyncOptions,
        *,
        log: RunLog | None = None,
        run_id: str = "",
        extra_sinks: Sequence[ReportSink] = (),
    ) -> dict[str, Any]:
        """``sync_email_recipients`` with its options already built (the asset builds them once, at
        load); ``extra_sinks`` as ``run_sync``'s."""
        return self._run_target(
            lambda client, report: RecipientSyncRun.from_options(
                client,
                options,
                sinks=report["sinks"],
                fallback_sink=report["fallback_sink"],
                log=report["log"],
                run_id=run_id,
            ),
            rows,
            _report_options(options.report_path, run_id, log, extra_sinks),
        )

    def _run_target(
        self,
        make_run: Callable[[OmniScimClient, RunOptions], EngineRun],
        rows: Iterable[Mapping[str, Any]] | Any,
        report: RunOptions,
        state_path: str | None = None,
    ) -> dict[str, Any]:
        """A target's run (``make_run`` from a client and the resource's report options) on a client closed
        afterwards: in one go, or (``state_path``) in resumable steps (``steps.run_in_steps``), each step
        a fresh run on a fresh client."""

        @contextmanager
        def start() -> Iterator[EngineRun]:
            with self.get_client() as client:
                yield make_run(client, report)

        if state_path is None:
            with start() as run:
                return run.run(rows_from(rows))
        return run_in_steps(start, lambda run: run.run(rows_from(rows)))

    # -- review before it writes: plan, then apply exactly the plan ---------------------------------------

    def plan_user_attributes(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        plan_path: str,
        attributes: Mapping[str, str] | Sequence[str],
        review_rows: int = REVIEW_ROWS,
        log: RunLog | None = None,
        run_id: str = "",
        **options: Any,
    ) -> dict[str, Any]:
        """Read, plan and check the guards exactly like ``sync_user_attributes`` (whose keyword arguments
        ``options`` are: ``key_column``, ``match_on``, ``mode``, ``max_changes``, ...), send nothing, and
        store the plan at ``plan_path`` (local path or fsspec URL; ``{run_id}`` is replaced). Returns
        ``{"summary", "plan_path", "plan_digest", "review"}``; apply it with ``apply_plan``."""
        sync_options = SyncOptions(attributes=attributes, **{**options, "dry_run": True})
        return self.run_plan(rows, sync_options, plan_path, review_rows=review_rows, log=log, run_id=run_id)

    def plan_group_membership(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        plan_path: str,
        review_rows: int = REVIEW_ROWS,
        log: RunLog | None = None,
        run_id: str = "",
        **options: Any,
    ) -> dict[str, Any]:
        """``plan_user_attributes`` for group membership (``options``: ``sync_group_membership``'s)."""
        group_options = GroupSyncOptions(**{**options, "dry_run": True})
        return self.run_plan(rows, group_options, plan_path, review_rows=review_rows, log=log, run_id=run_id)

    def run_plan(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        options: SyncOptions | GroupSyncOptions,
        plan_path: str,
        *,
        review_rows: int = REVIEW_ROWS,
        log: RunLog | None = None,
        run_id: str = "",
    ) -> dict[str, Any]:
        """A plan-only run of the target of ``options``; the plan stored at ``plan_path`` (checked before
        any request)."""
        store = PlanStore(plan_path.replace(RUN_ID_PLACEHOLDER, run_id))
        store.check()
        with self.get_client() as client:
            run: EngineRun
            if isinstance(options, SyncOptions):
                run = SyncRun.from_options(client, options, log=log or _log, run_id=run_id, plan_only=True)
            else:
                run = GroupSyncRun.from_options(
                    client, options, log=log or _log, run_id=run_id, plan_only=True
                )
            summary = run.run(rows_from(rows))
            artifact = run.plan_artifact()
        digest = store.save(artifact)
        review = review_of(artifact, limit=review_rows)
        return {"summary": summary, "plan_path": store.path, "plan_digest": digest, "review": review}

    def apply_plan(
        self,
        plan_path: str,
        *,
        plan_digest: str | None = None,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        report_path: str | None = None,
        max_failed_rows: int | None = 0,
        max_failed_pct: float | str | None = None,
        max_workers: int | None = None,
        log: RunLog | None = None,
        run_id: str = "",
        extra_sinks: Sequence[ReportSink] = (),
    ) -> dict[str, Any]:
        """Apply exactly the plan at ``plan_path`` (of any target), like ``ApplyOmniPlanOperator``:
        ``PlanRefusedError`` before any request when its digest is not ``plan_digest``, it is older than
        ``max_age`` or it was made for another Omni; users changed in Omni since the plan are rejected, not
        written. Returns the sync's summary; ``SyncFailedError`` over ``max_failed_rows``. ``extra_sinks`` as
        ``run_sync``'s."""
        check_run_options(
            dry_run=False,
            max_changes=None,
            max_failed_rows=max_failed_rows,
            max_failed_pct=max_failed_pct,
            max_workers=max_workers,
            report_path=report_path,
        )
        run_options = _report_options(report_path, run_id, log, extra_sinks)
        run_options.update(
            {"max_failed_rows": max_failed_rows, "max_failed_pct": max_failed_pct, "max_workers": max_workers}
        )
        with self.get_client() as client:
            run = load_planned_run(
                client, PlanStore(plan_path), plan_digest=plan_digest, max_age=max_age, **run_options
            )
            return run.run()


def _deferral(state_path: str | None) -> Deferral | None:
    """A resumable run of a step: it pauses (saving its state) whenever the window is full, however short
    the wait; the step waits either way, so each window's end is a checkpoint a step retry resumes from."""
    return None if state_path is None else Deferral(RunStateStore(state_path), min_defer_seconds=0.0)


def _report_options(
    report_path: str | None, run_id: str, log: RunLog | None, extra_sinks: Sequence[ReportSink] = ()
) -> RunOptions:
    """Where a run of the resource reports: the report as JSON lines (never over an earlier attempt's),
    a local fallback named by the run id, the log, and any ``extra_sinks``."""
    return {
        "sinks": [*extra_sinks, *([JsonlFileSink(report_path)] if report_path else [])],
        "fallback_sink": JsonlFileSink(_fallback_path(run_id)),
        "log": log or _log,
        "run_id": run_id,
    }
