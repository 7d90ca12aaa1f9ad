"""``SyncOptions``: every option of the user attribute sync, with its default and its checks, in one place.

Each adapter (``SyncOmniUserAttributesOperator``, ``OmniScimResource.sync_user_attributes``,
``build_omni_user_attributes_asset``, ``OmniUserAttributesComponent``) keeps its explicit keyword
parameters (Airflow's template fields, Dagster's config schema), takes their defaults from
``SYNC_DEFAULTS`` and builds one ``SyncOptions`` from them: a bad value fails there, with the same message
everywhere, before any request. The checks themselves live with the rules they guard (``SyncSpec``, the
guards, the snapshot settings); this object only calls them. The README's "Sync options" table lists them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.checks import check_flag, check_run_options
from omni_provider.sync.snapshot.format import (
    DEFAULT_FULL_RESYNC_EVERY,
    FileSnapshotStore,
    SnapshotSettings,
    SnapshotStore,
    check_snapshot_args,
    snapshot_settings,
)
from omni_provider.sync.users.spec import SyncSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """The options of one user attribute sync, checked on construction (``OmniValidationError``)."""

    #: Column -> Omni attribute reference name, or a list when the names are the same (kept as a dict).
    attributes: Mapping[str, str] | Sequence[str]
    #: ``"userName"`` (email, case-insensitive) or ``"id"`` (Omni user id).
    match_on: str = "userName"
    #: Column holding the match key; None: the column named like ``match_on`` (``userName`` or ``id``).
    key_column: str | None = None
    #: Column holding the display name of users to create (upsert only).
    display_name_column: str | None = None
    #: ``update``, ``upsert`` or ``mirror`` (kept as a ``SyncMode``).
    mode: str = "update"
    #: Refuse a plan writing more users than this: a count or a percentage like ``"10%"``.
    max_changes: int | str | None = None
    #: In mirror mode, allow an empty input (which unsets everyone's managed attributes).
    allow_empty_input: bool = False
    #: The run fails when rejected rows plus failed writes exceed this (None: not checked).
    max_failed_rows: int | None = 0
    #: The same as a percentage of the plan's items: 5, 2.5 or "5%" (None: not checked).
    max_failed_pct: float | str | None = None
    #: Plan and report without writing.
    dry_run: bool = False
    #: Where the per-row report goes (each adapter has its own sinks; None: no report file).
    report_path: str | None = None
    #: Threads sending writes; None: enough to keep every key's paced slots busy.
    max_workers: int | None = None
    #: Seconds between progress lines during the writes (0: after every write).
    progress_every: float = 30.0
    #: ``"omni"`` (list every Omni user each run) or ``"snapshot"`` (diff against the last run's snapshot).
    diff_against: str = "omni"
    #: Where the snapshot lives (local path or fsspec/ObjectStoragePath URL); only with ``"snapshot"``.
    snapshot_path: str | None = None
    #: In snapshot mode, diff against live Omni every this many runs.
    full_resync_every: int = DEFAULT_FULL_RESYNC_EVERY
    #: What the sync manages (attributes, match, mode), derived and checked by ``SyncSpec``.
    spec: SyncSpec = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec = SyncSpec.from_user_args(
            self.attributes,
            match_on=self.match_on,
            mode=self.mode,
            display_name_column=self.display_name_column,
            key_column=self.key_column,
        )
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "attributes", dict(spec.attributes))
        object.__setattr__(self, "mode", spec.mode)
        check_flag("allow_empty_input", self.allow_empty_input)
        check_run_options(
            dry_run=self.dry_run,
            max_changes=self.max_changes,
            max_failed_rows=self.max_failed_rows,
            max_failed_pct=self.max_failed_pct,
            max_workers=self.max_workers,
            report_path=self.report_path,
        )
        every = self.progress_every
        if (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not math.isfinite(every)
            or every < 0
        ):
            raise OmniValidationError(f"progress_every must be a number of seconds >= 0, got {every!r}")
        check_snapshot_args(self.diff_against, self.snapshot_path, self.full_resync_every)

    def snapshot(
        self, make_store: Callable[[str], SnapshotStore] = FileSnapshotStore
    ) -> SnapshotSettings | None:
        """The snapshot settings (None for a live diff), the store made by the adapter's ``make_store``."""
        return snapshot_settings(self.diff_against, self.snapshot_path, self.full_resync_every, make_store)

    def replace(self, **changes: Any) -> SyncOptions:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


#: Every option's default: the adapters' keyword defaults.
SYNC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {f.name: f.default for f in dataclasses.fields(SyncOptions) if f.default is not dataclasses.MISSING}
)
