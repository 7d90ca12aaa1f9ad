"""``SyncOmniUserAttributesOperator(diff_against="snapshot", ...)``: the arguments checked before any
request, the snapshot on a local path and on an ObjectStoragePath URL, and what XCom says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pytest
from airflow_testkit import RecordingTI, capture_task_logs

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

UNMANAGED = {"department": "Sales"}


def execute(**kwargs: Any) -> tuple[dict[str, Any], RecordingTI]:
    kwargs.setdefault("attributes", ["region"])
    kwargs.setdefault("key_column", "email")
    operator = SyncOmniUserAttributesOperator(task_id="sync", **kwargs)
    ti = RecordingTI()
    with capture_task_logs():
        result = operator.execute({"ti": ti, "run_id": "scheduled__1"})  # type: ignore[arg-type]
    return result, ti


def seed(emu: EmulatorServer, n: int) -> list[str]:
    emails = [f"user{i:03d}@example.com" for i in range(1, n + 1)]
    for email in emails:
        emu.state.add_user(email, email, {"region": "us-east", **UNMANAGED})
    return emails


def by_route(emu: EmulatorServer) -> dict[str, int]:
    return dict(emu.stats.snapshot()["requests_by_route"])


@pytest.fixture
def emu(omni_connection: EmulatorServer) -> EmulatorServer:
    return omni_connection


def test_snapshot_mode_lists_omni_once_then_only_diffs(emu: EmulatorServer, tmp_path: Path) -> None:
    emails = seed(emu, 3)
    path = str(tmp_path / "snapshots" / "attributes.json")
    rows = [{"email": e, "region": "emea"} for e in emails]
    first, ti = execute(rows=rows, diff_against="snapshot", snapshot_path=path, max_changes=3)
    assert first["diff_against"] == "omni" and first["diff_reason"] == "no snapshot yet"
    assert ti.pushed["sync_summary"]["snapshot"]["written"] is True

    rows[1]["region"] = "apac"
    listed = by_route(emu).get("GET /scim/v2/users", 0)
    second, ti = execute(rows=rows, diff_against="snapshot", snapshot_path=path)
    assert second["diff_against"] == "snapshot" and second["outcomes"]["applied"] == 1
    assert by_route(emu).get("GET /scim/v2/users", 0) == listed  # no listing
    assert ti.pushed["sync_summary"]["snapshot"]["runs_since_full_resync"] == 1
    assert emu.state.find_by_email(emails[1]).attributes["region"] == "apac"  # type: ignore[union-attr]


def test_snapshot_at_an_object_storage_url(emu: EmulatorServer) -> None:
    from airflow_testkit import attach

    memory = fsspec.filesystem("memory")
    attach("memory", fs=memory)
    emails = seed(emu, 2)
    url = "memory://omni-state/attributes.json"
    rows = [{"email": e, "region": "emea"} for e in emails]
    execute(rows=rows, diff_against="snapshot", snapshot_path=url, max_changes=2)
    document = json.loads(memory.cat("/omni-state/attributes.json"))
    assert document["user_count"] == 2 and memory.ls("/omni-state", detail=False) == [
        "/omni-state/attributes.json"
    ]  # no temporary object left behind
    second, _ = execute(rows=rows, diff_against="snapshot", snapshot_path=url)
    assert second["diff_against"] == "snapshot" and second["outcomes"]["unchanged"] == 2
    memory.rm("/omni-state", recursive=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diff_against": "warehouse"}, "diff_against must be one of"),
        ({"diff_against": "snapshot"}, "needs snapshot_path"),
        ({"snapshot_path": "/tmp/omni.json"}, "only used with diff_against='snapshot'"),
        ({"diff_against": "snapshot", "snapshot_path": "/tmp/s.json", "full_resync_every": 0}, "full_resync"),
        ({"diff_against": "snapshot", "snapshot_path": "nosuchscheme://b/s.json"}, "no storage backend"),
    ],
)
def test_bad_snapshot_arguments_fail_before_any_request(
    emu: EmulatorServer, kwargs: dict[str, Any], message: str
) -> None:
    seed(emu, 1)
    before = emu.stats.snapshot()["requests_total"]
    with pytest.raises(AirflowFailException, match=message):
        execute(rows=[{"email": "user001@example.com", "region": "x"}], **kwargs)
    assert emu.stats.snapshot()["requests_total"] == before


def test_snapshot_path_is_templated() -> None:
    assert "snapshot_path" in SyncOmniUserAttributesOperator.template_fields
    assert "diff_against" in SyncOmniUserAttributesOperator.template_fields


def test_a_snapshot_that_cannot_be_marked_before_the_writes_is_retried(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omni_provider.airflow_support.snapshot_store import ObjectStorageSnapshotStore

    emails = seed(emu, 1)
    path = str(tmp_path / "s.json")
    execute(rows=[{"email": emails[0], "region": "emea"}], diff_against="snapshot", snapshot_path=path)

    def full(self: Any, data: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ObjectStorageSnapshotStore, "write", full)
    with pytest.raises(AirflowException, match="nothing was sent to Omni") as info:
        execute(rows=[{"email": emails[0], "region": "apac"}], diff_against="snapshot", snapshot_path=path)
    assert type(info.value) is AirflowException  # retryable
    assert emu.state.find_by_email(emails[0]).attributes["region"] == "emea"  # type: ignore[union-attr]
