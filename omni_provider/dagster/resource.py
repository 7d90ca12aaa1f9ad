"""``OmniScimResource``: Omni's SCIM API as a Dagster resource, calling the same engine as the Airflow
operators."""

from __future__ import annotations

import logging
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.dagster.rows import rows_from
from omni_provider.sync.apply import Progress
from omni_provider.sync.definitions import RunLog
from omni_provider.sync.engine import RunOptions
from omni_provider.sync.groups_run import GroupSyncRun, GroupSyncSpec
from omni_provider.sync.report import JsonlFileSink
from omni_provider.sync.run import SyncRun
from omni_provider.sync.single import update_one_user
from omni_provider.sync.snapshot import DEFAULT_FULL_RESYNC_EVERY, snapshot_settings
from omni_provider.sync.spec import SyncSpec

_log = logging.getLogger("omni_provider.dagster")
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
    rate_limit_per_minute: float = Field(default=60.0, description="Requests per minute per key", gt=0)
    timeout: float = Field(default=30.0, description="Read timeout of one request, in seconds", gt=0)
    max_retries: int = Field(default=4, description="Retries per request (429, 5xx, network)", ge=0)
    ca_bundle: str | None = Field(default=None, description="Path to a CA bundle; TLS is always verified")

    def get_client(self) -> OmniScimClient:
        """A new client (one connection pool, one pacer); close it, or use it as a context manager."""
        keys = [self.api_key, *(k.strip() for k in self.additional_api_keys if k.strip())]
        return OmniScimClient(
            self.host,
            keys,
            timeout=self.timeout,
            rate_limit_per_minute=self.rate_limit_per_minute,
            retry_policy=RetryPolicy(max_attempts=self.max_retries + 1),
            verify=self.ca_bundle or True,
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
        key_column: str = "email",
        match_on: str = "userName",
        mode: str = "update",
        max_changes: int | str | None = None,
        dry_run: bool = False,
        report_path: str | None = None,
        display_name_column: str | None = None,
        allow_empty_input: bool = False,
        max_failed_rows: int | None = 0,
        max_failed_pct: float | str | None = None,
        max_workers: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        log: RunLog | None = None,
        run_id: str = "",
        diff_against: str = "omni",
        snapshot_path: str | None = None,
        full_resync_every: int = DEFAULT_FULL_RESYNC_EVERY,
    ) -> dict[str, Any]:
        """Make Omni match ``rows`` (dicts or a pandas DataFrame) for ``attributes``; the same summary as
        ``SyncOmniUserAttributesOperator``. Raises ``SyncFailedError`` (with the summary) when more rows did
        not sync than ``max_failed_rows`` / ``max_failed_pct`` allow, and ``PlanTooLargeError`` when the
        plan writes more users than ``max_changes``. ``diff_against="snapshot"`` diffs against what the
        last run left at ``snapshot_path`` (local path or fsspec URL) and lists no users, re-reading Omni
        in full every ``full_resync_every`` runs (as the operator does)."""
        snapshot = snapshot_settings(diff_against, snapshot_path, full_resync_every)
        spec = SyncSpec.from_user_args(
            attributes,
            match_on=match_on,
            mode=mode,
            display_name_column=display_name_column,
            key_column=key_column,
        )
        options = _run_options(report_path, run_id, log, dry_run, max_changes, max_failed_rows, max_workers)
        options["max_failed_pct"] = max_failed_pct
        with self.get_client() as client:
            run = SyncRun(
                client,
                spec,
                allow_empty_input=allow_empty_input,
                on_progress=on_progress,
                snapshot=snapshot,
                **options,
            )
            return run.run(rows_from(rows))

    def sync_group_membership(
        self,
        rows: Iterable[Mapping[str, Any]] | Any,
        *,
        user_column: str = "email",
        group_column: str = "group",
        groups: Sequence[str] | str | None = None,
        mode: str = "add",
        create_missing_groups: bool = False,
        max_changes: int | str | None = None,
        max_failed_rows: int | None = 0,
        dry_run: bool = False,
        report_path: str | None = None,
        max_workers: int | None = None,
        max_members_per_write: int | None = None,
        log: RunLog | None = None,
        run_id: str = "",
    ) -> dict[str, Any]:
        """Make the membership of Omni groups match ``rows`` (dicts or a pandas DataFrame, one row per
        (user, group)); the same summary as ``SyncOmniGroupMembershipOperator``. ``mode="mirror"`` also
        removes members absent from the input (one unreadable email or group refuses the run before any
        request; members of rejected rows are kept). Raises ``SyncFailedError`` (with the summary) when
        more memberships did not sync than ``max_failed_rows`` allows, ``SyncHaltedError`` when the circuit
        breaker tripped, and ``PlanTooLargeError`` over ``max_changes`` (in mirror mode, by default, more
        than 10% of the managed memberships removed)."""
        spec = GroupSyncSpec.from_user_args(
            user_column=user_column,
            group_column=group_column,
            groups=groups,
            mode=mode,
            create_missing_groups=create_missing_groups,
        )
        options = _run_options(report_path, run_id, log, dry_run, max_changes, max_failed_rows, max_workers)
        with self.get_client() as client:
            run = GroupSyncRun(client, spec, max_members_per_write=max_members_per_write, **options)
            return run.run(rows_from(rows))


def _run_options(
    report_path: str | None,
    run_id: str,
    log: RunLog | None,
    dry_run: bool,
    max_changes: int | str | None,
    max_failed_rows: int | None,
    max_workers: int | None,
) -> RunOptions:
    """The engine run's shared options as the resource sets them: the report as JSON lines (never over an
    earlier attempt's), a local fallback named by the run id."""
    return {
        "dry_run": dry_run,
        "max_changes": max_changes,
        "max_failed_rows": max_failed_rows,
        "sinks": [JsonlFileSink(report_path)] if report_path else [],
        "fallback_sink": JsonlFileSink(_fallback_path(run_id)),
        "max_workers": max_workers,
        "log": log or _log,
        "run_id": run_id,
    }
