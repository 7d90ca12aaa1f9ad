"""``SyncOmniGroupMembershipOperator``: (user, group) rows from the warehouse -> Omni group membership.

A thin adapter over the engine's group target (``omni_provider.sync.groups.run.GroupSyncRun``, which the
Dagster resource runs too), run the way the attribute operator runs ``SyncRun`` (``common.execute_sync``):
the same report sinks (file, SQL table, local fallback), lineage and asset event, XCom pushed on failure
too, and the same retry-or-fail rule (``rerun_may_help``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from omni_provider._compat import BaseOperator, Context
from omni_provider.airflow_support import lineage
from omni_provider.airflow_support.report_link import GROUP_SUMMARY_KEY
from omni_provider.airflow_support.row_sources import read_rows
from omni_provider.airflow_support.templating import parse_bool, parse_structure
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import execute_sync, prepare_sync
from omni_provider.operators.deferral import (
    DEFAULT_MIN_DEFER_SECONDS,
    DEFAULT_RESUME_WITHIN,
    default_deferrable,
    load_state,
)
from omni_provider.sync.groups.options import GROUP_SYNC_DEFAULTS, GroupSyncOptions
from omni_provider.sync.groups.run import GroupSyncRun


class SyncOmniGroupMembershipOperator(BaseOperator):
    """Make the membership of Omni groups match the warehouse, sending only what differs.

    Steps: read the rows (one per membership); read every Omni user and group once (about one request per
    100 of each; a list whose pages shift while it is read is read again, never used); plan per membership
    (add / remove / unchanged / rejected); check the guards; write one request per changed group (a PATCH
    carrying all its adds and removes, or a POST creating it with its members), the first alone as a
    canary; write the per-membership report; return a small summary.

    :param rows: list of dicts (column -> value), a JSON string of one, or an XComArg.
    :param sql: query returning the user and group columns (run through ``sql_conn_id``).
    :param user_column: column holding the user's email (matched case-insensitively, as the attribute sync).
    :param group_column: column holding the group's name (matched exactly).
    :param groups: the managed groups. Others are never changed. ``None``: the groups named in the input.
    :param mode: ``add`` (only adds members) or ``mirror`` (a managed group's members become exactly the
        input's; others are removed).
    :param create_missing_groups: create managed groups that do not exist (otherwise their rows are rejected).
    :param max_changes: refuse a plan changing more memberships than this: a count or a percentage like
        ``"10%"`` of the managed groups' memberships. Without it, mirror mode refuses to remove more than 10%.
    :param max_failed_rows: the task fails when rejected plus failed memberships exceed this.
    :param dry_run: plan and report without writing.
    :param report_path: where to write the per-membership outcomes as JSON lines (local path or any
        ObjectStoragePath URL; ending in ``/``, a folder). Never replaces an existing file.
    :param report_table: optional table to insert the per-membership outcomes into, through
        ``report_conn_id`` (default: ``sql_conn_id``).
    :param fallback_report_dir: local folder for the outcomes when the report cannot be written after the
        writes (default: ``omni-sync-reports`` in the worker's temp directory).
    :param deferrable: free the worker slot while Omni's rate window is full; with ``state_path``,
        ``min_defer_seconds`` and ``resume_within`` as in ``SyncOmniUserAttributesOperator``.
    """

    template_fields: Sequence[str] = (
        "rows",
        "sql",
        "sql_conn_id",
        "groups",
        "mode",
        "dry_run",
        "max_changes",
        "report_path",
        "report_table",
        "omni_conn_id",
        "state_path",
    )
    template_fields_renderers = {"rows": "json", "groups": "json", "sql": "sql"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        rows: Sequence[Mapping[str, Any]] | str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        user_column: str = GROUP_SYNC_DEFAULTS["user_column"],
        group_column: str = GROUP_SYNC_DEFAULTS["group_column"],
        groups: Sequence[str] | str | None = GROUP_SYNC_DEFAULTS["groups"],
        mode: str = GROUP_SYNC_DEFAULTS["mode"],
        create_missing_groups: bool = GROUP_SYNC_DEFAULTS["create_missing_groups"],
        max_changes: int | str | None = GROUP_SYNC_DEFAULTS["max_changes"],
        max_failed_rows: int | None = GROUP_SYNC_DEFAULTS["max_failed_rows"],
        dry_run: bool | str = GROUP_SYNC_DEFAULTS["dry_run"],
        report_path: str | None = GROUP_SYNC_DEFAULTS["report_path"],
        report_table: str | None = None,
        report_conn_id: str | None = None,
        fallback_report_dir: str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        sql_batch_size: int = 5000,
        max_members_per_write: int | None = GROUP_SYNC_DEFAULTS["max_members_per_write"],
        max_workers: int | None = GROUP_SYNC_DEFAULTS["max_workers"],
        deferrable: bool | None = None,
        state_path: str | None = None,
        min_defer_seconds: float = DEFAULT_MIN_DEFER_SECONDS,
        resume_within: float | timedelta = DEFAULT_RESUME_WITHIN,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.state_path = state_path
        self.min_defer_seconds = min_defer_seconds
        self.resume_within = resume_within
        self.rows = rows
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.user_column = user_column
        self.group_column = group_column
        self.groups = groups
        self.mode = mode
        self.create_missing_groups = create_missing_groups
        self.max_changes = max_changes
        self.max_failed_rows = max_failed_rows
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]  # as in the attribute sync
        self.report_path = report_path
        self.report_table = report_table
        self.report_conn_id = report_conn_id
        self.fallback_report_dir = fallback_report_dir
        self.omni_conn_id = omni_conn_id
        self.sql_batch_size = sql_batch_size
        self.max_members_per_write = max_members_per_write
        self.max_workers = max_workers
        self._hook: OmniScimHook | None = None
        self._run: GroupSyncRun | None = None
        self._lineage: lineage.SyncLineage | None = None

    def _managed(self) -> Sequence[str] | str | None:
        groups: Any = self.groups
        if isinstance(groups, str) and groups.lstrip().startswith("["):
            groups = parse_structure(groups, what="groups")  # a rendered template
        return groups  # type: ignore[no-any-return]

    def group_sync_options(self) -> GroupSyncOptions:
        """The rendered arguments as the sync's options, checked (``GroupSyncOptions``), before any
        request."""
        return GroupSyncOptions(
            user_column=self.user_column,
            group_column=self.group_column,
            groups=self._managed(),
            mode=str(self.mode),
            create_missing_groups=self.create_missing_groups,
            max_changes=self.max_changes,
            max_failed_rows=self.max_failed_rows,
            dry_run=parse_bool(self.dry_run, what="dry_run"),
            report_path=str(self.report_path) if self.report_path else None,
            max_workers=self.max_workers,
            max_members_per_write=self.max_members_per_write,
        )

    def _read_rows(self) -> list[Mapping[str, Any]]:
        return read_rows(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)

    def execute(self, context: Context) -> dict[str, Any]:
        # The summary is pushed to XCom as "group_sync_summary" in every run, failed ones included.
        prepare = lambda: self._prepare(context)  # noqa: E731 - checked inside the shared handling
        return execute_sync(self, context, prepare, self._read_rows, key=GROUP_SUMMARY_KEY)

    def execute_complete(
        self, context: Context, event: Any = None, *, state_path: str | None = None, **_: Any
    ) -> dict[str, Any]:
        """A deferred run's next step (``deferrable``), on a fresh instance: load the state, go on."""
        path, document = load_state(self, context, state_path)
        prepare = lambda: self._prepare(context, path)  # noqa: E731 - as in execute()
        return execute_sync(self, context, prepare, self._read_rows, key=GROUP_SUMMARY_KEY, resume=document)

    def _prepare(self, context: Context, state_path: str | None = None) -> GroupSyncRun:
        """Arguments rendered and checked, the client built: the engine's run, before any request."""
        options = self.group_sync_options()
        client, run = prepare_sync(
            self, context, options.spec.groups or (), kind="group_membership", state_path=state_path
        )
        self._run = GroupSyncRun.from_options(
            client,
            options,
            sinks=run["sinks"],
            fallback_sink=run["fallback_sink"],
            log=self.log,
            run_id=run["run_id"],
            deferral=run["deferral"],
        )
        return self._run

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage provider (when installed): what the sync read and wrote."""
        return lineage.openlineage_facets(self._lineage)

    def on_kill(self) -> None:
        # Stop sending; the run still reports every membership, and execute() still pushes the summary.
        if self._run is not None:
            self._run.stop()
