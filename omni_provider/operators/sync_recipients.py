"""``SyncOmniEmailRecipientsOperator``: warehouse rows -> the attributes of Omni's email-only recipients.

A thin adapter over the engine's recipients target (``omni_provider.sync.recipients.run.RecipientSyncRun``,
which the Dagster resource runs too), run the way the attribute operator runs ``SyncRun``
(``common.execute_sync``): the same report sinks (file, SQL table, local fallback), lineage and asset
event, XCom pushed on failure too, and the same retry-or-fail rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from omni_provider._compat import BaseOperator, Context
from omni_provider.airflow_support import lineage
from omni_provider.airflow_support.report_link import RECIPIENT_SUMMARY_KEY
from omni_provider.airflow_support.row_sources import read_rows
from omni_provider.airflow_support.snapshot_store import ObjectStorageSnapshotStore
from omni_provider.airflow_support.templating import parse_attribute_mapping, parse_bool
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import execute_sync, prepare_sync
from omni_provider.sync.recipients.options import RECIPIENT_SYNC_DEFAULTS, RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun


class SyncOmniEmailRecipientsOperator(BaseOperator):
    """Make the attributes of Omni's email-only recipients (people who get deliveries without an Omni
    login) match the warehouse, sending only what differs, 20 recipients per request.

    Steps: read the rows (one per recipient); read the attribute definitions and every recipient (one
    request per 20); plan (create / update / unset / unchanged / rejected per row); check the guards; write
    the changed and new recipients in bulk upserts of up to 20, the first recipient alone as a canary
    checked on a fresh read; write the per-row report; return a small summary. Each written recipient's
    body is its current custom attributes plus the managed changes, so unmanaged attributes survive
    whether Omni merges or replaces them.

    :param rows: list of dicts (column -> value), a JSON string of one, or an XComArg.
    :param sql: query returning the email and attribute columns (run through ``sql_conn_id``).
    :param attributes: column -> attribute reference name, or a list when the names are the same. Only
        these attributes are ever changed.
    :param key_column: column holding the recipient's email (matched case-insensitively).
    :param mode: ``upsert`` (default: create missing recipients), ``update`` (a row whose email is no
        recipient is rejected) or ``mirror`` (as upsert, and also unset the managed attributes of recipients
        absent from the input; refused before any request when a key is unreadable or the key column is
        missing, and over the blast-radius guard).
    :param max_changes: refuse a plan writing more recipients than this: a count or ``"10%"`` of Omni's
        recipients. Without it, mirror mode refuses to unset values of more than 10% of them.
    :param allow_empty_input: in mirror mode, allow an empty input (which unsets every managed value).
    :param max_failed_rows: the task fails when rejected plus failed rows exceed this (default 0).
    :param max_failed_pct: the same as a percentage of the plan's items.
    :param dry_run: plan and report without writing.
    :param report_path: where to write the per-row outcomes as JSON lines (as the attribute sync).
    :param report_table: optional table to insert the per-row outcomes into, through ``report_conn_id``
        (default: ``sql_conn_id``).
    :param fallback_report_dir: local folder for the outcomes when the report cannot be written.
    :param diff_against: ``"omni"`` (default: list every recipient each run, one request per 20) or
        ``"snapshot"``: diff against what the last run left at ``snapshot_path`` (every attribute of each
        recipient) and list no recipients; rows whose email the snapshot does not know are looked up, and
        each recipient to be written is read again first (its body carries its current attributes), one
        filtered read each. Omni is listed in full on every ``full_resync_every``-th run, or whenever the
        snapshot is missing, unusable, or the reads would cost more than the listing.
    :param snapshot_path: where the snapshot lives (a local path or any ObjectStoragePath URL); only with
        ``diff_against="snapshot"``.
    :param full_resync_every: in snapshot mode, list every recipient every this many runs (default 7).
    :param max_workers: threads sending writes (default: enough to keep every key's paced slots busy).

    The options' defaults and checks are ``RecipientSyncOptions``'s (``sync/recipients/options.py``), shared
    with the Dagster resource and asset.
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
        key_column: str = RECIPIENT_SYNC_DEFAULTS["key_column"],
        mode: str = RECIPIENT_SYNC_DEFAULTS["mode"],
        dry_run: bool | str = RECIPIENT_SYNC_DEFAULTS["dry_run"],
        max_changes: int | str | None = RECIPIENT_SYNC_DEFAULTS["max_changes"],
        allow_empty_input: bool = RECIPIENT_SYNC_DEFAULTS["allow_empty_input"],
        max_failed_rows: int | None = RECIPIENT_SYNC_DEFAULTS["max_failed_rows"],
        max_failed_pct: float | str | None = RECIPIENT_SYNC_DEFAULTS["max_failed_pct"],
        report_path: str | None = RECIPIENT_SYNC_DEFAULTS["report_path"],
        report_table: str | None = None,
        report_conn_id: str | None = None,
        fallback_report_dir: str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        max_workers: int | None = RECIPIENT_SYNC_DEFAULTS["max_workers"],
        diff_against: str = RECIPIENT_SYNC_DEFAULTS["diff_against"],
        snapshot_path: str | None = RECIPIENT_SYNC_DEFAULTS["snapshot_path"],
        full_resync_every: int = RECIPIENT_SYNC_DEFAULTS["full_resync_every"],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.attributes = attributes
        self.rows = rows
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_batch_size = sql_batch_size
        self.key_column = key_column
        self.mode = mode
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]  # as in the attribute sync
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
        self.diff_against = diff_against
        self.snapshot_path = snapshot_path
        self.full_resync_every = full_resync_every
        self._hook: OmniScimHook | None = None
        self._run: RecipientSyncRun | None = None
        self._lineage: lineage.SyncLineage | None = None

    def recipient_sync_options(self) -> RecipientSyncOptions:
        """The rendered arguments as the sync's options, checked (``RecipientSyncOptions``), before any
        request."""
        return RecipientSyncOptions(
            attributes=parse_attribute_mapping(self.attributes),
            key_column=self.key_column,
            mode=str(self.mode),
            dry_run=parse_bool(self.dry_run, what="dry_run"),
            max_changes=self.max_changes,
            allow_empty_input=self.allow_empty_input,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            report_path=str(self.report_path) if self.report_path else None,
            max_workers=self.max_workers,
            diff_against=str(self.diff_against),
            snapshot_path=str(self.snapshot_path) if self.snapshot_path else None,
            full_resync_every=self.full_resync_every,
        )

    def _read_rows(self) -> list[Mapping[str, Any]]:
        return read_rows(self.rows, self.sql, self.sql_conn_id, self.sql_batch_size)

    def execute(self, context: Context) -> dict[str, Any]:
        # The summary is pushed to XCom as "recipient_sync_summary" in every run, failed ones included.
        prepare = lambda: self._prepare(context)  # noqa: E731 - checked inside the shared handling
        return execute_sync(self, context, prepare, self._read_rows, key=RECIPIENT_SUMMARY_KEY)

    def _prepare(self, context: Context) -> RecipientSyncRun:
        """Arguments rendered and checked, the client built: the engine's run, before any request."""
        options = self.recipient_sync_options()
        client, run = prepare_sync(
            self, context, options.spec.managed_attributes, kind="email_only_attribute"
        )
        self._run = RecipientSyncRun.from_options(
            client,
            options,
            sinks=run["sinks"],
            fallback_sink=run["fallback_sink"],
            make_snapshot_store=ObjectStorageSnapshotStore,
            log=self.log,
            run_id=run["run_id"],
        )
        return self._run

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by the OpenLineage provider (when installed): what the sync read and wrote."""
        return lineage.openlineage_facets(self._lineage)

    def on_kill(self) -> None:
        # Stop sending; the run still reports every row, and execute() still pushes the summary.
        if self._run is not None:
            self._run.stop()
