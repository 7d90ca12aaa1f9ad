"""``SyncOmniUserAttributesOperator``: a warehouse table -> Omni user attributes, diffed, paced, reported.

A thin adapter over the sync engine (``omni_provider.sync.users.run.SyncRun``, which the Dagster asset runs
too): it renders and checks its arguments, picks Airflow's report sinks (ObjectStoragePath file, SQL table),
builds the client from the hook, runs the engine, maps its errors to Airflow's retry or fail, and pushes
the summary to XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from omni_provider._compat import BaseOperator, Context
from omni_provider.airflow_support import lineage
from omni_provider.airflow_support.report_link import ATTRIBUTE_SUMMARY_KEY
from omni_provider.airflow_support.row_sources import read_rows
from omni_provider.airflow_support.snapshot_store import ObjectStorageSnapshotStore
from omni_provider.airflow_support.templating import parse_attribute_mapping, parse_bool
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import execute_sync, prepare_sync
from omni_provider.operators.deferral import (
    DEFAULT_MIN_DEFER_SECONDS,
    DEFAULT_RESUME_WITHIN,
    default_deferrable,
    load_state,
)
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.run import SyncRun


class SyncOmniUserAttributesOperator(BaseOperator):
    """Make Omni user attributes match a warehouse table, sending only what differs.

    Steps: read the rows (``rows``, e.g. a SQL task's output, or ``sql`` run here in batches so large tables
    never pass through XCom); read every Omni user (one request per 100) and the attribute definitions;
    plan (create / update / unset / unchanged / rejected per row); check the guards; apply the writes paced
    to the connection's rate limit over all its keys; write the per-row report; return a small summary.

    :param rows: list of dicts (column -> value), or a JSON string of one.
    :param sql: query whose result columns include the match column and the attribute columns.
    :param sql_conn_id: any common-sql connection (required with ``sql``).
    :param match_on: ``"userName"`` (email, case-insensitive) or ``"id"`` (Omni user id).
    :param key_column: column holding the key (default: the ``match_on`` name).
    :param attributes: column -> attribute reference name, or a list when the names are the same. Only
        these attributes are ever written.
    :param mode: ``update`` (users must exist), ``upsert`` (create missing users; needs
        ``display_name_column``) or ``mirror`` (also unset managed attributes of users absent from the input).
    :param max_changes: refuse to apply a plan writing more users than this: a count or ``"10%"`` of Omni's
        users. Guards against a broken upstream query blanking everyone. When not given, a mirror run is
        still refused if it would unset attributes of more than 10% of Omni's users.
    :param allow_empty_input: in mirror mode, allow an empty input (which unsets everyone's managed keys).
    :param max_failed_rows: the task fails when rejected rows plus failed writes exceed this (default 0).
    :param max_failed_pct: the same as a percentage of the plan's items.
    :param report_path: where to write the per-row outcomes as JSON lines (a local path or any
        ObjectStoragePath URL such as ``s3://bucket/omni/{{ run_id }}.jsonl``). Ending in ``/`` (or naming an
        existing local directory) it is a folder, and the file is named
        ``<dag>.<task>.<run id>.try<n>.jsonl``. Checked before anything is sent; an existing file is never
        replaced (a fresh name with the try number is used and logged).
    :param fallback_report_dir: local folder for the per-row outcomes when the report cannot be written
        after the writes (default: ``omni-sync-reports`` in the worker's temp directory).
    :param report_table: optional table to insert the per-row outcomes into, through ``report_conn_id``
        (default: ``sql_conn_id``).
    :param dry_run: plan and report without writing.
    :param diff_against: ``"omni"`` (default): list every Omni user each run and diff against that.
        ``"snapshot"``: diff against what the last run left at ``snapshot_path`` and list no users; rows
        whose key the snapshot does not know are looked up one by one, and Omni is read in full on every
        ``full_resync_every``-th run (the users that drifted outside the sync are then reported in the
        summary's ``drift``), or whenever the snapshot is missing, unreadable or made for another sync.
    :param snapshot_path: where the snapshot lives (a local path or any ObjectStoragePath URL), written
        atomically with the states Omni confirmed. Checked before anything is sent. One per sync.
    :param full_resync_every: in snapshot mode, diff against live Omni every this many runs (default 7).
    :param max_workers: threads sending writes (default: enough to keep every key's paced slots busy).
    :param progress_every: seconds between progress lines during the writes (default 30).
    :param deferrable: while Omni's rate window is full, hand the wait to the triggerer and free the worker
        slot (default: Airflow's ``[operators] default_deferrable``, False). The run sends what the window
        allows now, saves its state and resumes in ``execute_complete`` when the window is empty again; its
        summary adds ``deferrals``. ``execution_timeout`` counts across the deferrals.
    :param state_path: where a deferrable run keeps its state between steps (a local path or any
        ObjectStoragePath URL; ending in ``/``, a folder). Default: beside the report, else in the fallback
        report folder. Checked before anything is sent; removed when the run ends.
    :param min_defer_seconds: defer only when the next request would wait at least this long (default 10).
    :param resume_within: a retry continues from a state younger than this (seconds or a timedelta;
        default one hour) instead of listing Omni again; older state is discarded.

    The sync options' defaults and checks are ``SyncOptions``'s (``omni_provider/sync/users/options.py``),
    shared with the Dagster resource, asset and component.
    """

    template_fields: Sequence[str] = (
        "rows",
        "sql",
        "sql_conn_id",
        "attributes",
        "mode",
        "dry_run",
        "max_changes",
        "report_path",
        "report_table",
        "omni_conn_id",
        "state_path",
        "diff_against",
        "snapshot_path",
    )
    template_fields_renderers = {"rows": "json", "attributes": "json", "sql": "sql"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        attributes: Mapping[str, str] | Sequence[str] | str,
        rows: Sequence[Mapping[str, Any]] | str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_batch_size: int = 5000,
        match_on: str = SYNC_DEFAULTS["match_on"],
        key_column: str | None = SYNC_DEFAULTS["key_column"],
        display_name_column: str | None = SYNC_DEFAULTS["display_name_column"],
        mode: str = SYNC_DEFAULTS["mode"],
        dry_run: bool | str = SYNC_DEFAULTS["dry_run"],
        max_changes: int | str | None = SYNC_DEFAULTS["max_changes"],
        allow_empty_input: bool = SYNC_DEFAULTS["allow_empty_input"],
        max_failed_rows: int | None = SYNC_DEFAULTS["max_failed_rows"],
        max_failed_pct: float | str | None = SYNC_DEFAULTS["max_failed_pct"],
        report_path: str | None = SYNC_DEFAULTS["report_path"],
        report_table: str | None = None,
        report_conn_id: str | None = None,
        fallback_report_dir: str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        max_workers: int | None = SYNC_DEFAULTS["max_workers"],
        progress_every: float = SYNC_DEFAULTS["progress_every"],
        diff_against: str = SYNC_DEFAULTS["diff_against"],
        snapshot_path: str | None = SYNC_DEFAULTS["snapshot_path"],
        full_resync_every: int = SYNC_DEFAULTS["full_resync_every"],
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
        self.attributes = attributes
        self.rows = rows
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_batch_size = sql_batch_size
        self.match_on = match_on
        self.key_column = key_column
        self.display_name_column = display_name_column
        self.mode = mode
        # Shadows BaseOperator.dry_run(), a legacy method nothing in Airflow 3.3 calls (checked); the
        # parameter name is the public interface.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.max_changes = max_changes
        self.allow_empty_input = allow_empty_input
        self.max_failed_rows = max_failed_rows
        self.max_failed_pct = max_failed_pct
        self.report_path = report_path
        self.report_table = report_table
        self.report_conn_id = report_conn_id
        self.fallback_report_dir = fallback_report_dir
        self.omni_conn_id = omni_conn_id
        self.max_workers = max_workers
        self.progress_every = progress_every
        self.diff_against = diff_against
        self.snapshot_path = snapshot_path
        self.full_resync_every = full_resync_every
        self._hook: OmniScimHook | None = None
        self._run: SyncRun | None = None
        self._lineage: lineage.SyncLineage | None = None

    # -- input ---------------------------------------------------------------------------------------------

    def sync_options(self) -> SyncOptions:
        """The rendered arguments as the sync's options, checked (``SyncOptions``), before any request."""
        return SyncOptions(
            attributes=parse_attribute_mapping(self.attributes),
            match_on=self.match_on,
            key_column=self.key_column,
            display_name_column=self.display_name_column,
            mode=self.mode,
            dry_run=parse_bool(self.dry_run, what="dry_run"),
            max_changes=self.max_changes,
            allow_empty_input=self.allow_empty_input,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            report_path=str(self.report_path) if self.report_path else None,
            max_workers=self.max_workers,
            progress_every=self.progress_every,
            diff_against=str(self.diff_against),
            snapshot_path=str(self.snapshot_path) if self.snapshot_path else None,
            full_resync_every=self.full_resync_every,
        )

    def _read_rows(self) -> list[Mapping[str, Any]]:
        return read_rows(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)

    # -- run -----------------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        # The summary is pushed to XCom as "sync_summary" in every run, failed ones included.
        prepare = lambda: self._prepare(context)  # noqa: E731 - checked inside the shared handling
        return execute_sync(self, context, prepare, self._read_rows, key=ATTRIBUTE_SUMMARY_KEY)

    def execute_complete(
        self, context: Context, event: Any = None, *, state_path: str | None = None, **_: Any
    ) -> dict[str, Any]:
        """A deferred run's next step (``deferrable``), on a fresh instance: load the state, go on."""
        path, document = load_state(self, context, state_path)
        prepare = lambda: self._prepare(context, path)  # noqa: E731 - as in execute()
        return execute_sync(
            self, context, prepare, self._read_rows, key=ATTRIBUTE_SUMMARY_KEY, resume=document
        )

    def _prepare(self, context: Context, state_path: str | None = None) -> SyncRun:
        """Arguments rendered and checked, the client built: the engine's run, before any request."""
        options = self.sync_options()
        client, run = prepare_sync(self, context, options.spec.managed_attributes, state_path=state_path)
        self._run = SyncRun.from_options(
            client,
            options,
            sinks=run["sinks"],
            fallback_sink=run["fallback_sink"],
            make_snapshot_store=ObjectStorageSnapshotStore,
            log=self.log,
            run_id=run["run_id"],
            deferral=run["deferral"],
        )
        return self._run

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage provider (when installed): what the sync read and wrote."""
        return lineage.openlineage_facets(self._lineage)

    def on_kill(self) -> None:
        # Stop sending; the run still reports every row, and execute() still pushes the summary.
        if self._run is not None:
            self._run.stop()
