"""``RecipientSyncOptions``: every option of the email-only recipients sync, with its default and its
checks, in one place.

Each adapter (``SyncOmniEmailRecipientsOperator``, ``OmniScimResource.sync_email_recipients``,
``build_omni_email_recipients_asset``) keeps its explicit keyword parameters, takes their defaults from
``RECIPIENT_SYNC_DEFAULTS`` and builds one ``RecipientSyncOptions``: a bad value fails there, with the same
message everywhere, before any request. What the sync manages is a ``SyncSpec`` (the attribute sync's: the
same attribute mapping, key checks and mode rules), matched on the email; the run options are checked by
the engine (``check_run_options``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.checks import check_flag, check_run_options
from omni_provider.sync.engine.run import RunOptions
from omni_provider.sync.snapshot.format import (
    DEFAULT_FULL_RESYNC_EVERY,
    FileSnapshotStore,
    SnapshotSettings,
    SnapshotStore,
    check_snapshot_args,
    snapshot_settings,
)
from omni_provider.sync.users.spec import SyncMode, SyncSpec


def recipient_spec(
    attributes: Mapping[str, str] | Sequence[str], *, key_column: str = "email", mode: str = "upsert"
) -> SyncSpec:
    """The attribute sync's ``SyncSpec`` for recipients: matched by email in ``key_column``; creating one
    needs no display name (recipients have none)."""
    if not isinstance(key_column, str) or not key_column:
        raise OmniValidationError(f"key_column must be a non-empty string, got {key_column!r}")
    return SyncSpec.from_user_args(
        attributes,
        mode=mode,
        key_column=key_column,
        display_name_required=False,
        item_noun="email-only recipient",
        mirror_creates=True,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecipientSyncOptions:
    """The options of one email-only recipients sync, checked on construction (``OmniValidationError``)."""

    #: Column -> Omni attribute reference name, or a list when the names are the same (kept as a dict).
    attributes: Mapping[str, str] | Sequence[str]
    #: Column holding the recipient's email (matched case-insensitively).
    key_column: str = "email"
    #: ``upsert`` (create missing recipients), ``update`` (a row whose email is no recipient is rejected)
    #: or ``mirror`` (as upsert, and also unset the managed attributes of recipients absent from the input).
    mode: str = "upsert"
    #: Refuse a plan writing more recipients than this: a count or a percentage like ``"10%"``.
    max_changes: int | str | None = None
    #: In mirror mode, allow an empty input (which unsets every recipient's managed attributes).
    allow_empty_input: bool = False
    #: The run fails when rejected plus failed rows exceed this (None: not checked).
    max_failed_rows: int | None = 0
    #: The same as a percentage of the plan's items: 5, 2.5 or "5%" (None: not checked).
    max_failed_pct: float | str | None = None
    #: Plan and report without writing.
    dry_run: bool = False
    #: Where the per-row report goes (each adapter has its own sinks; None: no report file).
    report_path: str | None = None
    #: Threads sending writes; None: enough to keep every key's paced slots busy.
    max_workers: int | None = None
    #: ``"omni"`` (list every recipient each run) or ``"snapshot"`` (diff against the last run's snapshot,
    #: reading only the recipients it does not know and those it writes: ``sync.recipients.view``).
    diff_against: str = "omni"
    #: Where the snapshot lives (local path or fsspec/ObjectStoragePath URL); only with ``"snapshot"``.
    snapshot_path: str | None = None
    #: In snapshot mode, list every recipient every this many runs.
    full_resync_every: int = DEFAULT_FULL_RESYNC_EVERY
    #: What the sync manages (attributes, key column, mode), derived and checked by ``recipient_spec``.
    spec: SyncSpec = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec = recipient_spec(self.attributes, key_column=self.key_column, mode=self.mode)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "attributes", dict(spec.attributes))
        object.__setattr__(self, "mode", SyncMode(spec.mode))
        check_flag("allow_empty_input", self.allow_empty_input)
        check_run_options(
            dry_run=self.dry_run,
            max_changes=self.max_changes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            max_workers=self.max_workers,
            report_path=self.report_path,
        )
        check_snapshot_args(self.diff_against, self.snapshot_path, self.full_resync_every)

    def snapshot(
        self, make_store: Callable[[str], SnapshotStore] = FileSnapshotStore
    ) -> SnapshotSettings | None:
        """The snapshot settings (None for a live diff), the store made by the adapter's ``make_store``."""
        return snapshot_settings(self.diff_against, self.snapshot_path, self.full_resync_every, make_store)

    def run_options(self) -> RunOptions:
        """The options the engine's run takes from these (the adapter adds its sinks, log and run id)."""
        return {
            "dry_run": self.dry_run,
            "max_changes": self.max_changes,
            "max_failed_rows": self.max_failed_rows,
            "max_failed_pct": self.max_failed_pct,
            "max_workers": self.max_workers,
        }

    def replace(self, **changes: Any) -> RecipientSyncOptions:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


#: Every option's default: the adapters' keyword defaults.
RECIPIENT_SYNC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        f.name: f.default
        for f in dataclasses.fields(RecipientSyncOptions)
        if f.default is not dataclasses.MISSING
    }
)
