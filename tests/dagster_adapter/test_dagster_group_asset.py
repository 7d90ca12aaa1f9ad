"""``build_omni_group_membership_asset`` and ``OmniScimResource.sync_group_membership`` against the emulator:
the exact end state of the groups, and the materialisation's metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from sync_testkit import seed, writes

from omni_provider.client import OmniValidationError
from omni_provider.dagster import NO_FAILED_ROWS, OmniScimResource, build_omni_group_membership_asset
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncFailedError
from omni_provider.sync.users.keys import UnreadableKeysError

ASSET = "omni_group_membership"


def members(emu: EmulatorServer) -> dict[str, set[str]]:
    by_id = {u.id: u.user_name for u in emu.state.users()}
    return {g.display_name: {by_id[m] for m in g.members} for g in emu.state.groups.groups()}


def materialize(omni: OmniScimResource, rows: Any, **kwargs: Any) -> dg.ExecuteInProcessResult:
    @dg.asset(name="warehouse_memberships")
    def warehouse_memberships() -> Any:
        return rows

    asset = build_omni_group_membership_asset(ASSET, "warehouse_memberships", **kwargs)
    return dg.materialize(
        [warehouse_memberships, asset],
        resources={"omni": omni},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_mirror_asset_materialises_the_exact_end_state_and_its_counts(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 6)
    ids = {u.user_name: u.id for u in emu.state.users()}
    emu.state.groups.add_group("Sales", [ids[emails[0]], ids[emails[1]], ids[emails[2]]])
    emu.state.groups.add_group("Finance", [ids[emails[5]]])  # not managed: never touched
    data = pd.DataFrame(
        {
            "email": [emails[0], emails[1], emails[3], emails[4], "ghost@example.com"],
            "team": ["Sales", "Sales", "Sales", "Support", "Sales"],
        }
    )
    report = tmp_path / "groups-{run_id}.jsonl"
    result = materialize(
        omni,
        data,
        group_column="team",
        groups=["Sales", "Support"],
        mode="mirror",
        create_missing_groups=True,
        max_changes=5,
        max_failed_rows=1,
        report_path=str(report),
    )
    assert result.success
    assert members(emu) == {
        "Sales": {emails[0], emails[1], emails[3]},
        "Finance": {emails[5]},
        "Support": {emails[4]},
    }
    (materialization,) = result.asset_materializations_for_node(ASSET)
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert {k: metadata[k] for k in ("added", "removed", "unchanged", "rejected", "failed")} == {
        "added": 2,
        "removed": 1,
        "unchanged": 2,
        "rejected": 1,
        "failed": 0,
    }
    assert all(type(metadata[k]) is int for k in ("added", "removed", "unchanged", "rejected", "failed"))
    assert metadata["mode"] == "mirror" and metadata["managed_groups"] == 2
    assert "| add | 2 |" in metadata["plan"] and "| remove | 1 |" in metadata["plan"]
    written = Path(metadata["report_path"])
    assert written.name == f"groups-{result.run_id}.jsonl"
    statuses = sorted(json.loads(line)["status"] for line in written.read_text().splitlines())
    assert statuses == ["added", "added", "rejected", "removed", "unchanged", "unchanged"]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == NO_FAILED_ROWS and not check.passed  # the ghost row was rejected
    assert check.description == "1 rejected: ghost@example.com in Sales: no Omni user has this email"
    # Each member added or removed, by group; each membership that did not sync, by member and group.
    changes = sorted(
        (r.data["key"], r.data["old"], r.data["new"], r.data["status"]) for r in metadata["changes"].records
    )
    assert changes == [
        ("Sales", f'"{emails[2]}"', "(unset)", "removed"),
        ("Sales", "(unset)", f'"{emails[3]}"', "added"),
        ("Support", "(unset)", f'"{emails[4]}"', "added"),
    ]
    assert [dict(r.data) for r in metadata["not_synced"].records] == [
        {"key": "ghost@example.com in Sales", "status": "rejected", "reason": "no Omni user has this email"}
    ]
    assert "[" not in result.job_def.asset_layer.get(dg.AssetKey(ASSET)).description

    again = materialize(omni, data, group_column="team", groups=["Sales", "Support"], mode="mirror")
    assert not again.success  # the ghost row is over max_failed_rows=0 ...
    assert members(emu)["Sales"] == {emails[0], emails[1], emails[3]}  # ... and nothing changed


def test_the_resource_syncs_group_membership(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 3)
    emu.state.groups.add_group("Sales", [])
    summary = omni.sync_group_membership([{"email": e, "group": "Sales"} for e in emails[:2]])
    assert summary["outcomes"]["added"] == 2 and members(emu) == {"Sales": set(emails[:2])}
    dry = omni.sync_group_membership([{"email": emails[2], "group": "Sales"}], dry_run=True)
    assert dry["outcomes"]["planned"] == 1 and members(emu) == {"Sales": set(emails[:2])}
    with pytest.raises(SyncFailedError):
        omni.sync_group_membership([{"email": "ghost@example.com", "group": "Sales"}])


def test_mirror_with_an_unreadable_email_fails_before_any_write(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(emu, 2)
    ids = {u.user_name: u.id for u in emu.state.users()}
    emu.state.groups.add_group("Sales", [ids[e] for e in emails])
    with pytest.raises(UnreadableKeysError):
        omni.sync_group_membership([{"email": None, "group": "Sales"}], mode="mirror", max_changes=10)
    assert writes(emu) == 0 and members(emu) == {"Sales": set(emails)}


def test_bad_configuration_fails_when_the_definitions_load() -> None:
    with pytest.raises(OmniValidationError, match="mode"):
        build_omni_group_membership_asset(ASSET, "warehouse_memberships", mode="replace")
    with pytest.raises(OmniValidationError, match="name one group"):
        build_omni_group_membership_asset(ASSET, "warehouse_memberships", groups=["Sales", "sales"])


def test_a_retried_step_keeps_the_first_attempts_report(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    report = tmp_path / "groups.jsonl"
    rows = [{"email": emails[0], "group": "Sales"}, {"email": "ghost@example.com", "group": "Sales"}]
    for _attempt in range(2):  # two attempts of one step write to the same report_path
        with pytest.raises(SyncFailedError):
            omni.sync_group_membership(rows, report_path=str(report))
    first = [json.loads(line)["status"] for line in report.read_text().splitlines()]
    second = [json.loads(line)["status"] for line in (tmp_path / "groups.2.jsonl").read_text().splitlines()]
    assert first == ["added", "rejected"] and second == ["unchanged", "rejected"]
