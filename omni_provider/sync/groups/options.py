"""``GroupSyncOptions``: every option of the group-membership sync, with its default and its checks, in
one place.

Each adapter (``SyncOmniGroupMembershipOperator``, ``OmniScimResource.sync_group_membership``,
``build_omni_group_membership_asset``) keeps its explicit keyword parameters (Airflow's template fields,
Dagster's signature), takes their defaults from ``GROUP_SYNC_DEFAULTS`` and builds one
``GroupSyncOptions`` from them: a bad value fails there, with the same message everywhere, before any
request. What the sync manages is checked by ``GroupSyncSpec``; the options every target's run takes by
the engine (``check_run_options``). The README's group sync section lists them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.checks import check_count, check_flag, check_run_options
from omni_provider.sync.engine.run import RunOptions
from omni_provider.sync.groups.plan import GroupSyncMode, managed_group_names


@dataclasses.dataclass(frozen=True)
class GroupSyncSpec:
    """What a group sync manages, checked: the columns, the managed groups, the mode."""

    user_column: str = "email"
    group_column: str = "group"
    #: The managed groups (NFC, stripped); None: the groups named in the input.
    groups: tuple[str, ...] | None = None
    mode: GroupSyncMode = GroupSyncMode.ADD
    create_missing_groups: bool = False

    @classmethod
    def from_user_args(
        cls,
        *,
        user_column: str = "email",
        group_column: str = "group",
        groups: Sequence[str] | str | None = None,
        mode: str = "add",
        create_missing_groups: bool = False,
    ) -> GroupSyncSpec:
        try:
            checked_mode = GroupSyncMode(mode)
        except ValueError:
            raise OmniValidationError(f"mode must be 'add' or 'mirror', got {mode!r}") from None
        if not isinstance(user_column, str) or not isinstance(group_column, str):
            raise OmniValidationError("user_column and group_column must be column names")
        if not user_column or not group_column or user_column == group_column:
            raise OmniValidationError("user_column and group_column must be two different column names")
        check_flag("create_missing_groups", create_missing_groups)
        managed = managed_group_names(groups)
        return cls(
            user_column,
            group_column,
            tuple(managed) if managed is not None else None,
            checked_mode,
            create_missing_groups,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupSyncOptions:
    """The options of one group-membership sync, checked on construction (``OmniValidationError``)."""

    #: Column holding the user's email (matched case-insensitively).
    user_column: str = "email"
    #: Column holding the group's name (matched exactly).
    group_column: str = "group"
    #: The managed groups (others are never changed), kept as a tuple; None: the groups named in the input.
    groups: Sequence[str] | str | None = None
    #: ``add`` or ``mirror`` (kept as a ``GroupSyncMode``).
    mode: str = "add"
    #: Create managed groups that do not exist (otherwise their rows are rejected).
    create_missing_groups: bool = False
    #: Refuse a plan changing more memberships than this: a count or a percentage like ``"10%"``.
    max_changes: int | str | None = None
    #: The run fails when rejected plus failed memberships exceed this (None: not checked).
    max_failed_rows: int | None = 0
    #: Plan and report without writing.
    dry_run: bool = False
    #: Where the per-membership report goes (each adapter has its own sinks; None: no report file).
    report_path: str | None = None
    #: Threads sending writes; None: enough to keep every key's paced slots busy.
    max_workers: int | None = None
    #: Split a group's write into PATCHes of at most this many member changes (None: one per group).
    max_members_per_write: int | None = None
    #: What the sync manages (columns, groups, mode), derived and checked by ``GroupSyncSpec``.
    spec: GroupSyncSpec = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        spec = GroupSyncSpec.from_user_args(
            user_column=self.user_column,
            group_column=self.group_column,
            groups=self.groups,
            mode=self.mode,
            create_missing_groups=self.create_missing_groups,
        )
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "groups", spec.groups)
        object.__setattr__(self, "mode", spec.mode)
        check_run_options(
            dry_run=self.dry_run,
            max_changes=self.max_changes,
            max_failed_rows=self.max_failed_rows,
            max_workers=self.max_workers,
            report_path=self.report_path,
        )
        check_count("max_members_per_write", self.max_members_per_write)

    def run_options(self) -> RunOptions:
        """The options the engine's run takes from these (the adapter adds its sinks, log and run id)."""
        return {
            "dry_run": self.dry_run,
            "max_changes": self.max_changes,
            "max_failed_rows": self.max_failed_rows,
            "max_workers": self.max_workers,
        }

    def replace(self, **changes: Any) -> GroupSyncOptions:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


#: Every option's default: the adapters' keyword defaults.
GROUP_SYNC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {f.name: f.default for f in dataclasses.fields(GroupSyncOptions) if f.default is not dataclasses.MISSING}
)
