"""SyncOmniUserAttributesOperator.execute() against the emulator over loopback.

Modes, guards, dry run, rejected rows, re-runs after injected failures, a stop mid-run, paging, the SQL
source read in batches, and the per-row report (JSON lines and a SQL table). The emulator's counters say
what was really sent; no assertion depends on timing.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pytest
from airflow_testkit import RecordingTI, capture_task_logs
from omni_testkit import TEST_API_KEY, TEST_API_KEY_2, omni_connection_json

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.emulator import EmulatorServer
from omni_provider.emulator.stats import key_id
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.sync.users.apply import NOT_ATTEMPTED

MANAGED = ["region", "cost_centre"]
#: Set on every seeded user and never managed here: it must survive every run.
UNMANAGED = {"regions": ["EU"], "department": "Sales"}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
RECORD_FIELDS = {
    "row", "key", "action", "status", "user_id", "changed", "error", "changes", "note",
    "never_sent", "stopped",
}  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------------


@dataclass
class Run:
    summary: dict[str, Any] | None
    ti: RecordingTI
    logs: list[dict[str, Any]]
    error: BaseException | None = None
    operator: SyncOmniUserAttributesOperator | None = field(default=None, repr=False)

    @property
    def pushed(self) -> dict[str, Any]:
        return self.ti.pushed["sync_summary"]  # type: ignore[no-any-return]

    def events(self, level: str) -> list[str]:
        return [str(e["event"]) for e in self.logs if e.get("log_level") == level]


def run_sync(
    *,
    raises: type[BaseException] | None = None,
    op: SyncOmniUserAttributesOperator | None = None,
    **kwargs: Any,
) -> Run:
    """Execute the operator with a fake context; ``raises`` is the exact exception type expected."""
    kwargs.setdefault("attributes", MANAGED)
    operator = op or SyncOmniUserAttributesOperator(task_id="sync", **kwargs)
    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": "manual__2025-01-01T00:00:00"}
    with capture_task_logs() as logs:
        if raises is None:
            return Run(operator.execute(context), ti, logs, operator=operator)
        with pytest.raises(raises) as info:
            operator.execute(context)
    assert type(info.value) is raises, f"expected {raises.__name__}, got {type(info.value).__name__}"
    return Run(None, ti, logs, info.value, operator)


def seed(emu: EmulatorServer, n: int, *, region: str = "us-east") -> list[str]:
    emails = [f"user{i:03d}@example.com" for i in range(1, n + 1)]
    for i, email in enumerate(emails, start=1):
        emu.state.add_user(email, f"User {i}", {"region": region, **UNMANAGED})
    return emails


def attrs(emu: EmulatorServer, email: str) -> dict[str, Any]:
    user = emu.state.find_by_email(email)
    assert user is not None, email
    return dict(user.attributes)


def writes(emu: EmulatorServer) -> int:
    methods = emu.stats.snapshot()["requests_by_method"]
    return sum(methods.get(m, 0) for m in WRITE_METHODS)


def method_count(emu: EmulatorServer, method: str) -> int:
    return int(emu.stats.snapshot()["requests_by_method"].get(method, 0))


def read_report(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for record in records:
        assert set(record) == RECORD_FIELDS, record
    return records


def listing_requests(users: int, page: int) -> int:
    """Pages to list ``users``: each page after the first starts on the last user already read (so a
    shifted listing is noticed), so it brings ``page - 1`` new users."""
    return 1 if users <= page else 1 + math.ceil((users - page) / (page - 1))


#: The canary's fresh read: the first write of each kind (set, unset) is checked on a GET of its user.
CANARY_READ = 1


def state_of(emu: EmulatorServer) -> dict[str, dict[str, Any]]:
    return {u.user_name.lower(): dict(u.attributes) for u in emu.state.users()}


@pytest.fixture
def emu(omni_connection: EmulatorServer) -> EmulatorServer:
    return omni_connection


@pytest.fixture
def no_retries(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The connection with ``max_retries=0``: an injected error fails its row at once (no backoff)."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, max_retries=0))
    return emu


# -- update mode, matching, coercion, report file ------------------------------------------------------


def test_update_mode_writes_only_differences_and_reports_every_row(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, 6)
    ids = {e: emu.state.find_by_email(e).id for e in emails}  # type: ignore[union-attr]
    before = state_of(emu)
    report = tmp_path / "reports" / "run.jsonl"
    rows = [
        {"userName": "USER001@EXAMPLE.COM", "region": "eu-west", "cost_centre": "4100"},  # coerced to 4100
        {"userName": "user002@example.com", "region": "us-east", "cost_centre": None},  # already so
        {"userName": "  User003@Example.com ", "region": "ap-south", "cost_centre": 4300.0},
        {"userName": "ghost@example.com", "region": "eu-west", "cost_centre": 1},  # not in Omni
    ]
    run = run_sync(rows=rows, max_failed_rows=1, report_path=str(report))

    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 4100}
    assert attrs(emu, emails[2]) == {**UNMANAGED, "region": "ap-south", "cost_centre": 4300}
    for email in emails[1:2] + emails[3:]:
        assert attrs(emu, email) == before[email]
    assert method_count(emu, "PATCH") == 2 and writes(emu) == 2
    assert emu.stats.snapshot()["users_created"] == 0

    summary = run.summary
    assert summary is not None and run.pushed == summary
    assert summary["plan"] == {"create": 0, "update": 2, "unset": 0, "unchanged": 1, "rejected": 1}
    assert summary["outcomes"] == {"applied": 2, "unchanged": 1, "rejected": 1, "failed": 0, "planned": 0}
    assert summary["by_action"] == {
        "rejected": {"rejected": 1},
        "unchanged": {"unchanged": 1},
        "update": {"applied": 2},
    }
    assert summary["complete"] is True and summary["dry_run"] is False and summary["mode"] == "update"
    assert summary["rows"] == 4 and summary["omni_users"] == 6
    assert summary["errors_sample"] == [
        {"row": 4, "key": "ghost@example.com", "status": "rejected", "error": "no Omni user with this email"}
    ]
    assert len(json.dumps(summary)) < 2000  # small enough for XCom

    records = read_report(report)
    assert summary["report_path"] == report.resolve().as_uri()
    assert [(r["row"], r["key"], r["action"], r["status"], r["changed"], r["error"]) for r in records] == [
        (1, "user001@example.com", "update", "applied", ["region", "cost_centre"], None),
        (2, "user002@example.com", "unchanged", "unchanged", [], None),
        (3, "user003@example.com", "update", "applied", ["region", "cost_centre"], None),
        (4, "ghost@example.com", "rejected", "rejected", [], "no Omni user with this email"),
    ]
    assert [r["user_id"] for r in records] == [ids[emails[0]], ids[emails[1]], ids[emails[2]], None]
    assert records[0]["changes"] == [
        {"attribute": "region", "old": "us-east", "new": "eu-west"},
        {"attribute": "cost_centre", "old": None, "new": 4100},
    ]
    # The table in the log, and an ERROR line for the row that did not sync (never a success message).
    assert any("Sync outcome by action" in e and "applied" in e for e in run.events("info"))
    assert [e for e in run.events("error") if "1 of 4 rows did not sync: 1 rejected, 0 failed writes" in e]
    assert not [e for e in run.events("info") if e.startswith("All ")]
    # Each row that did not sync by its email and reason at ERROR, each change old -> new.
    assert [e for e in run.events("error") if "\n  ghost@example.com: no Omni user with this email" in e]
    (changes,) = [e for e in run.events("info") if e.startswith("Changes written to Omni, 4:")]
    assert changes.splitlines()[1:] == [
        '  user001@example.com: region "us-east" -> "eu-west"',
        "  user001@example.com: cost_centre (unset) -> 4100",
        '  user003@example.com: region "us-east" -> "ap-south"',
        "  user003@example.com: cost_centre (unset) -> 4300.0",  # as sent (the report says the same)
    ]


def test_all_rows_synced_logs_no_error(emu: EmulatorServer) -> None:
    seed(emu, 2)
    run = run_sync(rows=[{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}])
    assert run.events("error") == []
    assert [e for e in run.events("info") if e == "All 1 rows synced: 1 applied"]


def test_rows_as_json_string(emu: EmulatorServer) -> None:
    seed(emu, 2)
    rows = json.dumps([{"userName": "User002@Example.com", "region": "eu-west", "cost_centre": 7}])
    run = run_sync(rows=rows)
    assert run.summary is not None and run.summary["outcomes"]["applied"] == 1
    assert attrs(emu, "user002@example.com") == {**UNMANAGED, "region": "eu-west", "cost_centre": 7}


def test_match_on_id_with_key_column_and_column_mapping(emu: EmulatorServer) -> None:
    emails = seed(emu, 3)
    user = emu.state.find_by_email(emails[1])
    assert user is not None
    rows = [{"omni_id": f"  {user.id.upper()} ", "REGION_COL": "apac"}]
    run = run_sync(rows=rows, match_on="id", key_column="omni_id", attributes={"REGION_COL": "region"})
    assert run.summary is not None and run.summary["outcomes"]["applied"] == 1
    assert attrs(emu, emails[1]) == {**UNMANAGED, "region": "apac"}
    assert attrs(emu, emails[0])["region"] == "us-east"


def test_report_to_an_object_storage_url(emu: EmulatorServer) -> None:
    from airflow_testkit import attach

    # Any fsspec filesystem Airflow knows works; the in-memory one stands in for s3:// or gs:// here.
    memory = fsspec.filesystem("memory")
    attach("memory", fs=memory)
    seed(emu, 2)
    url = "memory://omni-reports/run-1/outcome.jsonl"
    run = run_sync(
        rows=[{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}], report_path=url
    )
    assert run.summary is not None and run.summary["report_path"] == url
    lines = memory.cat("/omni-reports/run-1/outcome.jsonl").decode().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["applied"]
    memory.rm("/omni-reports", recursive=True)


# -- rejected rows -------------------------------------------------------------------------------------


def test_duplicate_empty_and_bad_rows_are_rejected_before_anything_is_sent(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, 4)
    before = state_of(emu)
    report = tmp_path / "rejected.jsonl"
    rows = [
        {"userName": "user001@example.com", "region": "eu-west", "cost_centre": 1},
        {"userName": "USER001@example.com", "region": "us-west", "cost_centre": 1},  # duplicate of row 1
        {"userName": "", "region": "eu-west", "cost_centre": 1},
        {"userName": None, "region": "eu-west", "cost_centre": 1},
        {"region": "eu-west", "cost_centre": 1},  # no key column at all
        {"userName": "not-an-email", "region": "eu-west", "cost_centre": 1},
        {"userName": "user002@example.com", "region": "eu-west", "cost_centre": "abc"},  # not a number
        {"userName": "user003@example.com", "region": ["a", "b"], "cost_centre": 1},  # list, single-valued
        {"userName": "user004@example.com", "region": "eu-west"},  # a managed column is missing
        {"userName": "user004@example.com ", "region": "ap-south", "cost_centre": 4},  # duplicate of row 9
    ]
    # Only rejected rows, and a lenient threshold: the task passes, but says so in red.
    run = run_sync(rows=rows, max_failed_rows=len(rows), report_path=str(report))

    assert writes(emu) == 0
    assert state_of(emu) == before
    assert run.summary is not None
    assert run.summary["plan"]["rejected"] == len(rows) and run.summary["outcomes"]["rejected"] == len(rows)
    errors = [r["error"] for r in read_report(report)]
    assert errors[0] == "duplicate key, also in row 2" and errors[1] == "duplicate key, also in row 1"
    assert errors[2] == errors[3] == "empty match key"
    assert errors[4] == "missing column 'userName'"
    assert errors[5].startswith("not an email")
    assert errors[6].startswith("column 'cost_centre'")
    assert errors[7].startswith("column 'region'")
    assert errors[8] == "duplicate key, also in row 10"
    assert all(r["status"] == "rejected" and r["changed"] == [] for r in read_report(report))
    assert [e for e in run.events("error") if f"{len(rows)} of {len(rows)} rows did not sync" in e]
    assert emails  # seeded


def test_rejected_rows_fail_the_task_by_default_but_valid_rows_are_applied(emu: EmulatorServer) -> None:
    seed(emu, 3)
    rows = [
        {"userName": "user001@example.com", "region": "eu-west", "cost_centre": None},
        {"userName": "nobody@example.com", "region": "eu-west", "cost_centre": None},
    ]
    run = run_sync(rows=rows, raises=AirflowFailException)  # max_failed_rows=0; a retry cannot help
    assert "max_failed_rows=0" in str(run.error)
    assert attrs(emu, "user001@example.com")["region"] == "eu-west"
    assert run.pushed["outcomes"]["applied"] == 1 and run.pushed["outcomes"]["rejected"] == 1
    assert run.events("error")


# -- failed writes and the failure thresholds ----------------------------------------------------------


def test_failed_writes_fail_the_task_retryably(no_retries: EmulatorServer, tmp_path: Path) -> None:
    emu = no_retries
    seed(emu, 5)
    # Not 400: a 400 to the run's first write means the PATCH form is refused and stops the run.
    emu.context.faults.set_fail_next([{"status": 503, "count": 2, "methods": ["PATCH"]}])
    rows = [
        {"userName": f"user{i:03d}@example.com", "region": "eu-west", "cost_centre": i} for i in range(1, 6)
    ]
    report = tmp_path / "failed.jsonl"
    run = run_sync(rows=rows, report_path=str(report), raises=AirflowException)

    assert "2 failed writes" in str(run.error)
    assert run.pushed["outcomes"] == {"applied": 3, "unchanged": 0, "rejected": 0, "failed": 2, "planned": 0}
    assert run.pushed["complete"] is True  # every write was attempted
    records = read_report(report)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2 and all("503" in r["error"] for r in failed)
    assert all(r["error"] is None for r in records if r["status"] == "applied")
    assert sum(attrs(emu, f"user{i:03d}@example.com")["region"] == "eu-west" for i in range(1, 6)) == 3
    assert [e for e in run.events("error") if "2 of 5 rows did not sync: 0 rejected, 2 failed writes" in e]


@pytest.mark.parametrize(
    ("max_failed_rows", "max_failed_pct", "passes"),
    [
        (2, None, True),  # 2 failed <= 2
        (1, None, False),
        (None, "20%", True),  # 2 of 10 = 20%, not over
        (None, 19.9, False),
        (None, None, True),  # no threshold at all
    ],
)
def test_failure_thresholds(
    no_retries: EmulatorServer, max_failed_rows: int | None, max_failed_pct: Any, passes: bool
) -> None:
    emu = no_retries
    seed(emu, 9)
    emu.context.faults.set_fail_next([{"status": 500, "count": 1, "methods": ["PATCH"]}])
    rows: list[dict[str, Any]] = [
        {"userName": f"user{i:03d}@example.com", "region": "eu-west", "cost_centre": None}
        for i in range(1, 10)
    ]
    rows.append({"userName": "ghost@example.com", "region": "eu-west", "cost_centre": None})  # rejected
    run = run_sync(
        rows=rows,
        max_failed_rows=max_failed_rows,
        max_failed_pct=max_failed_pct,
        raises=None if passes else AirflowException,
    )
    assert run.pushed["outcomes"] == {"applied": 8, "unchanged": 0, "rejected": 1, "failed": 1, "planned": 0}
    # Passing or not, a run that lost rows logs an ERROR and no success line.
    assert [e for e in run.events("error") if "2 of 10 rows did not sync: 1 rejected, 1 failed writes" in e]
    assert not [e for e in run.events("info") if e.startswith("All ")]


def test_transient_errors_are_retried_by_the_client(emu: EmulatorServer) -> None:
    seed(emu, 3)
    emu.context.faults.set_fail_next([{"status": 503, "count": 1, "methods": ["PATCH"]}])
    rows = [
        {"userName": f"user{i:03d}@example.com", "region": "eu-west", "cost_centre": None} for i in (1, 2)
    ]
    run = run_sync(rows=rows)
    assert run.summary is not None
    assert run.summary["outcomes"]["applied"] == 2 and run.summary["retries"] == 1
    assert method_count(emu, "PATCH") == 3


# -- max_changes and empty input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_changes", "refused"),
    [(2, True), (3, False), ("10%", True), ("15%", False), ("3", False)],
)
def test_max_changes(emu: EmulatorServer, max_changes: int | str, refused: bool) -> None:
    seed(emu, 20)
    before = state_of(emu)
    rows = [
        {"userName": f"user{i:03d}@example.com", "region": "eu-west", "cost_centre": None} for i in (1, 2, 3)
    ]
    if refused:
        run = run_sync(rows=rows, max_changes=max_changes, raises=AirflowFailException)
        assert "max_changes" in str(run.error) and "3 users" in str(run.error)
        assert writes(emu) == 0 and state_of(emu) == before
    else:
        run = run_sync(rows=rows, max_changes=max_changes)
        assert run.summary is not None and run.summary["outcomes"]["applied"] == 3


def test_empty_input_in_mirror_mode_is_refused_unless_allowed(emu: EmulatorServer) -> None:
    emails = seed(emu, 3)
    before = state_of(emu)
    run = run_sync(rows=[], mode="mirror", raises=AirflowFailException)
    assert "no rows" in str(run.error)
    assert writes(emu) == 0 and state_of(emu) == before

    run = run_sync(rows=[], mode="mirror", allow_empty_input=True)
    assert run.summary is not None and run.summary["by_action"] == {"unset": {"applied": 3}}
    for email in emails:
        assert attrs(emu, email) == UNMANAGED  # managed keys gone, the others kept


# -- dry run -------------------------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_reports_planned(emu: EmulatorServer, tmp_path: Path) -> None:
    seed(emu, 4)
    before = state_of(emu)
    report = tmp_path / "dry.jsonl"
    rows = [
        {"userName": "user001@example.com", "region": "eu-west", "cost_centre": 1},  # update
        {"userName": "user002@example.com", "region": "us-east", "cost_centre": None},  # unchanged
    ]
    # Mirror mode, so the plan also unsets users 3 and 4; max_changes would refuse it for real.
    run = run_sync(rows=rows, mode="mirror", dry_run="true", max_changes=1, report_path=str(report))

    assert writes(emu) == 0 and emu.stats.snapshot()["writes_applied"] == 0
    assert state_of(emu) == before
    assert run.summary is not None and run.summary["dry_run"] is True
    assert "max_changes" in run.summary["refused"]
    assert run.summary["plan"] == {"create": 0, "update": 1, "unset": 2, "unchanged": 1, "rejected": 0}
    assert run.summary["outcomes"]["planned"] == 3 and run.summary["outcomes"]["applied"] == 0
    records = read_report(report)
    assert [(r["row"], r["action"], r["status"]) for r in records] == [
        (1, "update", "planned"),
        (2, "unchanged", "unchanged"),
        (None, "unset", "planned"),
        (None, "unset", "planned"),
    ]
    assert [e for e in run.events("error") if "would be refused" in e]


# -- upsert and mirror ---------------------------------------------------------------------------------


def test_upsert_creates_missing_users_once_despite_a_lost_response(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    seed(emu, 2)
    # The POST is applied, then the connection drops: the client must find the user, not POST again.
    emu.context.faults.set_fail_next([{"fault": "lost_response", "methods": ["POST"]}])
    report = tmp_path / "upsert.jsonl"
    rows = [
        {"userName": "USER001@example.com", "name": "ignored", "region": "eu-west", "cost_centre": None},
        {"userName": "New.Person@Example.com", "name": "New Person", "region": "ap-south", "cost_centre": 9},
        {"userName": "nameless@example.com", "name": "  ", "region": "ap-south", "cost_centre": 9},
    ]
    run = run_sync(
        rows=rows, mode="upsert", display_name_column="name", max_failed_rows=1, report_path=str(report)
    )

    stats = emu.stats.snapshot()
    assert stats["users_created"] == 1 and stats["faults_injected"] == {"lost_response": 1}
    assert len(emu.state.users()) == 3
    created = emu.state.find_by_email("new.person@example.com")
    assert created is not None
    assert created.user_name == "New.Person@Example.com" and created.display_name == "New Person"
    assert dict(created.attributes) == {"region": "ap-south", "cost_centre": 9}
    assert attrs(emu, "user001@example.com") == {**UNMANAGED, "region": "eu-west"}
    assert emu.state.find_by_email("nameless@example.com") is None

    assert run.summary is not None
    assert run.summary["plan"] == {"create": 1, "update": 1, "unset": 0, "unchanged": 0, "rejected": 1}
    records = read_report(report)
    assert [(r["action"], r["status"]) for r in records] == [
        ("update", "applied"),
        ("create", "applied"),
        ("rejected", "rejected"),
    ]
    assert records[1]["user_id"] == created.id and records[1]["error"] is None
    assert "display name" in records[2]["error"]


def test_mirror_unsets_only_managed_keys_of_absent_users(emu: EmulatorServer, tmp_path: Path) -> None:
    emails = seed(emu, 5)
    emu.state.add_user("bare@example.com", "Bare", dict(UNMANAGED))  # no managed key set: nothing to unset
    before = state_of(emu)
    report = tmp_path / "mirror.jsonl"
    rows = [
        {"userName": emails[0], "region": "eu-west", "cost_centre": 1},
        {"userName": emails[1].upper(), "region": "us-east", "cost_centre": None},  # unchanged
        # A bad row for user 3: rejected, and a mirror must not take it for "absent" and blank the user.
        {"userName": emails[2], "region": "eu-west", "cost_centre": "many"},
    ]
    # 2 of 6 users lose values: over the default mirror limit (10%), so the limit is given explicitly.
    run = run_sync(rows=rows, mode="mirror", max_changes=3, max_failed_rows=1, report_path=str(report))

    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 1}
    assert attrs(emu, emails[1]) == before[emails[1]]
    assert attrs(emu, emails[2]) == before[emails[2]]
    assert attrs(emu, emails[3]) == UNMANAGED and attrs(emu, emails[4]) == UNMANAGED
    assert attrs(emu, "bare@example.com") == UNMANAGED
    assert method_count(emu, "PATCH") == 3 and writes(emu) == 3

    assert run.summary is not None
    assert run.summary["plan"] == {"create": 0, "update": 1, "unset": 2, "unchanged": 1, "rejected": 1}
    unsets = [r for r in read_report(report) if r["action"] == "unset"]
    assert sorted(r["key"] for r in unsets) == [emails[3], emails[4]]
    for record in unsets:
        assert record["row"] is None and record["status"] == "applied" and record["error"] is None
        assert record["changed"] == ["region"]  # cost_centre was never set on them
        assert record["note"] == "absent from the input (mirror)"


# -- re-run after a failure ----------------------------------------------------------------------------


def test_rerun_after_injected_failures_sends_only_what_is_left(no_retries: EmulatorServer) -> None:
    emu = no_retries
    emails = seed(emu, 10)
    rows = [
        {"userName": e, "region": "eu-west" if i % 5 else "us-east", "cost_centre": i}
        for i, e in enumerate(emails)
    ]
    emu.context.faults.set_fail_next([{"status": 503, "count": 3, "methods": ["PATCH"]}])
    first = run_sync(rows=rows, raises=AirflowException)
    assert first.pushed["outcomes"]["failed"] == 3 and first.pushed["outcomes"]["applied"] == 7

    patches = method_count(emu, "PATCH")
    second = run_sync(rows=rows)
    assert method_count(emu, "PATCH") - patches == 3  # only the three that failed
    assert second.summary is not None
    assert second.summary["plan"] == {"create": 0, "update": 3, "unset": 0, "unchanged": 7, "rejected": 0}
    desired = {
        r["userName"]: {**UNMANAGED, "region": r["region"], "cost_centre": r["cost_centre"]} for r in rows
    }
    assert {e: attrs(emu, e) for e in emails} == desired

    third = run_sync(rows=rows)  # nothing left to do
    assert third.summary is not None and third.summary["plan"]["unchanged"] == 10
    assert method_count(emu, "PATCH") - patches == 3


# -- stopping mid-run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["stop_event", "on_kill"])
def test_stop_mid_run_accounts_for_every_row(emu: EmulatorServer, tmp_path: Path, how: str) -> None:
    emails = seed(emu, 30)
    # Slow writes, so the stop lands while most of them are still to come.
    emu.config.apply_patch({"faults": {"slow": 1.0}, "fault_methods": ["PATCH"], "slow_seconds": 0.05})
    rows = [{"userName": e, "region": "eu-west", "cost_centre": None} for e in emails]
    report = tmp_path / "stopped.jsonl"
    operator = SyncOmniUserAttributesOperator(
        task_id="sync", rows=rows, attributes=MANAGED, max_workers=2, report_path=str(report)
    )

    def stop_after_three_writes() -> None:
        deadline = time.monotonic() + 60  # only so a broken run cannot hang the suite
        while emu.stats.snapshot()["writes_applied"] < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        if how == "on_kill":
            operator.on_kill()
        else:  # only the engine's stop event: no cancelling of the client's waits
            assert operator._run is not None
            operator._run._stop.set()

    stopper = threading.Thread(target=stop_after_three_writes)
    stopper.start()
    try:
        run = run_sync(op=operator, raises=AirflowException)  # not-attempted rows count as failed writes
    finally:
        stopper.join()

    summary = run.pushed
    assert summary["complete"] is False
    records = read_report(report)
    assert [r["row"] for r in records] == list(range(1, 31))  # every row accounted for
    applied = [r for r in records if r["status"] == "applied"]
    skipped = [r for r in records if r["status"] == "failed"]
    assert all(r["error"] == NOT_ATTEMPTED for r in skipped)
    assert len(applied) + len(skipped) == 30 and skipped
    # The report is exact: what it calls applied is what Omni received, and nothing else changed.
    assert len(applied) == emu.stats.snapshot()["writes_applied"] == summary["outcomes"]["applied"]
    for record in records:
        expected = "eu-west" if record["status"] == "applied" else "us-east"
        assert attrs(emu, record["key"])["region"] == expected
    assert [e for e in run.logs if e.get("log_level") == "warning" and "Stopped before" in str(e["event"])]

    # A re-run picks up exactly what the stop left.
    emu.config.apply_patch({"faults": {}})
    patches = method_count(emu, "PATCH")
    rerun = run_sync(rows=rows)
    assert method_count(emu, "PATCH") - patches == len(skipped)
    assert rerun.summary is not None and rerun.summary["complete"] is True
    assert all(attrs(emu, e)["region"] == "eu-west" for e in emails)


# -- request count, paging, pacing ---------------------------------------------------------------------


def test_request_count_is_pages_plus_changes_plus_a_constant(emu: EmulatorServer) -> None:
    n, page, k = 250, 50, 17
    emu.config.max_page_size = page
    emails = seed(emu, n)
    changed = set(range(0, n, n // k)[:k])
    rows = [
        {"userName": e.upper() if i % 3 == 0 else e, "region": "eu-west" if i in changed else "us-east"}
        for i, e in enumerate(emails)
    ]
    run = run_sync(rows=rows, attributes=["region"], progress_every=0)

    stats = emu.stats.snapshot()
    pages = listing_requests(n, page)
    # +1: the attribute definitions
    assert stats["requests_by_method"] == {"GET": pages + 1 + CANARY_READ, "PATCH": k}
    assert stats["requests_total"] == pages + k + 1 + CANARY_READ
    assert run.summary is not None and run.summary["requests"] == stats["requests_total"]
    assert run.summary["omni_users"] == n and run.summary["outcomes"]["applied"] == k
    progress = [e for e in run.events("info") if e.startswith("Sync progress:")]
    assert progress and all("ETA" in e for e in progress)
    assert progress[-1].startswith(f"Sync progress: {k}/{k} writes (100%), 0 failed")


def test_paced_over_two_keys_under_the_emulator_rate_limit(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one test with a real limit: 20 requests per 1 s window per key on both sides.
    emu.config.apply_patch({"rate_limit_enabled": True, "rate_limit": 20, "rate_window": 1.0})
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_connection_json(
            emu.base_url, rate_limit_per_minute=20, rate_window_seconds=1, additional_api_keys=TEST_API_KEY_2
        ),
    )
    emails = seed(emu, 40)
    rows = [{"userName": e, "region": "eu-west", "cost_centre": None} for e in emails]
    run = run_sync(rows=rows)

    assert run.summary is not None and run.summary["outcomes"]["applied"] == 40
    assert all(attrs(emu, e)["region"] == "eu-west" for e in emails)
    by_key = emu.stats.snapshot()["requests_by_key"]
    one, two = by_key.get(key_id(TEST_API_KEY), 0), by_key.get(key_id(TEST_API_KEY_2), 0)
    assert one + two == run.summary["requests"]  # both sides count every attempt
    assert min(one, two) >= 0.4 * (one + two)  # the load is spread over both keys
    # Each request counts until a window after its answer, so even a stalled one cannot cause a 429.
    assert run.summary["rate_limited"] == 0


# -- SQL source and SQL report table -------------------------------------------------------------------


class _CursorSpy:
    def __init__(self, cursor: sqlite3.Cursor, calls: list[int | None]) -> None:
        self._cursor = cursor
        self._calls = calls

    def fetchmany(self, size: int | None = None) -> list[Any]:
        self._calls.append(size)
        return self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _ConnectionSpy:
    """A sqlite3 connection whose cursors note every fetchmany() size."""

    def __init__(self, conn: sqlite3.Connection, calls: list[int | None]) -> None:
        self._conn = conn
        self._calls = calls

    def cursor(self) -> _CursorSpy:
        return _CursorSpy(self._conn.cursor(), self._calls)

    def __enter__(self) -> _ConnectionSpy:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[int | None]]]:
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    path = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    calls: list[int | None] = []
    real_get_conn = SqliteHook.get_conn
    monkeypatch.setattr(SqliteHook, "get_conn", lambda self: _ConnectionSpy(real_get_conn(self), calls))
    yield path, calls


def test_sql_source_in_batches_paging_and_report_table(
    emu: EmulatorServer, warehouse: tuple[Path, list[int | None]]
) -> None:
    path, fetch_sizes = warehouse
    n_users, n_rows, page, batch = 260, 250, 20, 7
    emu.config.max_page_size = page
    emails = seed(emu, n_users)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE wh (email TEXT, region TEXT, cost NUMERIC)")
        db.executemany(
            "INSERT INTO wh VALUES (?, ?, ?)",
            [
                (e.upper(), "eu-west" if i % 10 == 0 else "us-east", None)
                for i, e in enumerate(emails[:n_rows])
            ],
        )
    run = run_sync(
        sql="SELECT email, region, cost FROM wh ORDER BY email",
        sql_conn_id="warehouse",
        sql_batch_size=batch,
        key_column="email",
        attributes={"region": "region", "cost": "cost_centre"},
        report_table="omni_sync_report",
    )

    # Read in batches of 7 (the last call finds nothing), never as one fetchall.
    query_fetches = fetch_sizes[: math.ceil(n_rows / batch) + 1]
    assert query_fetches == [batch] * (math.ceil(n_rows / batch) + 1)
    # Omni clamps pages to 20 users: 14 overlapping pages, all read.
    stats = emu.stats.snapshot()
    gets = listing_requests(n_users, page) + 1 + CANARY_READ
    assert stats["requests_by_method"] == {"GET": gets, "PATCH": n_rows // 10}
    assert run.summary is not None and run.summary["omni_users"] == n_users
    assert run.summary["plan"]["update"] == 25 and run.summary["plan"]["unchanged"] == 225
    assert run.summary["report_table"] == "omni_sync_report"
    assert attrs(emu, emails[0])["region"] == "eu-west" and attrs(emu, emails[1])["region"] == "us-east"
    assert attrs(emu, emails[n_rows])["region"] == "us-east"  # not in the table; update mode leaves it

    with sqlite3.connect(path) as db:
        table = db.execute(
            "SELECT run_id, row_number, match_key, action, status, user_id, changed, error "
            "FROM omni_sync_report ORDER BY row_number"
        ).fetchall()
    assert len(table) == n_rows
    assert {r[0] for r in table} == {"manual__2025-01-01T00:00:00"}
    assert [r[1] for r in table] == list(range(1, n_rows + 1))
    assert table[0][2:5] == (emails[0], "update", "applied") and json.loads(table[0][6]) == ["region"]
    assert table[1][2:5] == (emails[1], "unchanged", "unchanged") and json.loads(table[1][6]) == []
    assert all(r[5] for r in table) and all(r[7] is None for r in table)


def test_configuration_errors_surface_before_any_request(emu: EmulatorServer) -> None:
    seed(emu, 1)
    run_sync(rows=[], sql="SELECT 1", sql_conn_id="x", raises=AirflowFailException)
    run_sync(rows=[], attributes={"a": "not a name"}, raises=AirflowFailException)
    run_sync(rows=[], mode="sideways", raises=AirflowFailException)
    run_sync(rows=[], mode="upsert", raises=AirflowFailException)  # no display_name_column
    # Settings only used after the writes are checked before the first request too.
    run_sync(rows=[], max_failed_pct="lots", raises=AirflowFailException)
    run_sync(rows=[], max_failed_rows=-1, raises=AirflowFailException)
    run_sync(rows=[], max_changes="ten", raises=AirflowFailException)
    run_sync(rows=[], report_table="r; DROP TABLE users", report_conn_id="w", raises=AirflowFailException)
    run_sync(rows=[], report_table="omni_report", raises=AirflowFailException)  # no connection for it
    assert emu.stats.snapshot()["requests_total"] == 0
    # Unknown attributes are caught against Omni's definitions, before any write.
    rows = [{"userName": "user001@example.com", "nonexistent": 1}]
    run = run_sync(rows=rows, attributes=["nonexistent"], raises=AirflowFailException)
    assert "nonexistent" in str(run.error)
    assert writes(emu) == 0


def test_interrupted_apply_settles_every_item_exactly(emu: EmulatorServer) -> None:
    """Airflow's task timeout raises in the task's thread mid-apply: queued writes must not go out after
    it, writes already sent must be reported as applied, and every item still gets one outcome."""
    from airflow_testkit import AirflowTaskTimeout

    from omni_provider.client import OmniScimClient
    from omni_provider.sync import SyncSpec, build_plan
    from omni_provider.sync.users.apply import Progress, apply_plan
    from omni_provider.sync.users.outcome import RowOutcome

    emails = seed(emu, 40)
    emu.config.apply_patch({"faults": {"slow": 1.0}, "fault_methods": ["PATCH"], "slow_seconds": 0.05})
    settled: dict[int, RowOutcome] = {}

    def time_out(progress: Progress) -> None:
        if progress.done >= 3:
            raise AirflowTaskTimeout()

    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1_000_000) as client:
        users = client.list_users()
        rows = [{"userName": e, "region": "eu-west"} for e in emails]
        plan = build_plan(rows, users, SyncSpec(attributes={"region": "region"}))
        with pytest.raises(AirflowTaskTimeout):
            apply_plan(
                client,
                plan,
                {u.id: u for u in users},
                max_workers=2,
                on_outcome=settled.__setitem__,
                on_progress=time_out,
                progress_every=0,
            )
        sent_at_exit = emu.stats.snapshot()["writes_applied"]

    assert sorted(settled) == list(range(40))
    applied = [o for o in settled.values() if o.status.value == "applied"]
    skipped = [o for o in settled.values() if o.status.value == "failed"]
    assert all(o.error == NOT_ATTEMPTED for o in skipped) and len(skipped) > 20
    assert len(applied) == sent_at_exit == emu.stats.snapshot()["writes_applied"]
    assert sum(attrs(emu, e)["region"] == "eu-west" for e in emails) == len(applied)


def test_upper_case_warehouse_columns_match_a_lower_case_mapping(omni_connection: EmulatorServer) -> None:
    omni_connection.state.add_user("snow@example.com", "Snow", {"region": "us-east"})
    op = SyncOmniUserAttributesOperator(
        task_id="sync",
        rows=[{"EMAIL": "SNOW@example.com", "REGION": "EMEA"}],  # as Snowflake names them
        key_column="email",
        attributes=["region"],
    )
    op.execute({"run_id": "case"})
    user = omni_connection.state.find_by_email("snow@example.com")
    assert user is not None and user.attributes["region"] == "EMEA"
