"""``GroupSyncOptions``: the group sync's defaults and checks, in one place; a bad value is refused with the
option named."""

from __future__ import annotations

from typing import Any

import pytest

from omni_provider.errors import OmniValidationError
from omni_provider.sync.groups.options import GROUP_SYNC_DEFAULTS, GroupSyncOptions
from omni_provider.sync.groups.plan import GroupSyncMode


def test_the_defaults_are_the_group_syncs() -> None:
    assert dict(GROUP_SYNC_DEFAULTS) == {
        "user_column": "email",
        "group_column": "group",
        "groups": None,
        "mode": "add",
        "create_missing_groups": False,
        "max_changes": None,
        "max_failed_rows": 0,
        "dry_run": False,
        "report_path": None,
        "max_workers": None,
        "max_members_per_write": None,
    }
    options = GroupSyncOptions()
    assert options.mode is GroupSyncMode.ADD and options.groups is None
    assert options.run_options() == {
        "dry_run": False,
        "max_changes": None,
        "max_failed_rows": 0,
        "max_workers": None,
    }


def test_groups_and_mode_are_kept_checked_so_equal_options_compare_equal() -> None:
    one = GroupSyncOptions(groups="  Sales ", mode="mirror")
    assert one.groups == ("Sales",) and one.mode is GroupSyncMode.MIRROR
    assert one == GroupSyncOptions(groups=["Sales"], mode=GroupSyncMode.MIRROR)
    assert one.spec.groups == ("Sales",) and one.spec.mode is GroupSyncMode.MIRROR
    assert one.replace(dry_run=True).dry_run is True


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"mode": "replace"}, "mode"),
        ({"user_column": "team", "group_column": "team"}, "user_column and group_column"),
        ({"groups": ["Sales", "sales"]}, "groups"),
        ({"create_missing_groups": "no"}, "create_missing_groups"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"max_changes": "lots"}, "max_changes"),
        ({"max_failed_rows": -1}, "max_failed_rows"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_members_per_write": 0}, "max_members_per_write"),
        ({"max_members_per_write": True}, "max_members_per_write"),
        ({"report_path": ""}, "report_path"),
    ],
)
def test_a_bad_value_is_refused_with_the_option_named(args: dict[str, Any], named: str) -> None:
    with pytest.raises(OmniValidationError, match=named):
        GroupSyncOptions(**args)
    # A copy is checked again.
    with pytest.raises(OmniValidationError, match=named):
        GroupSyncOptions().replace(**args)
