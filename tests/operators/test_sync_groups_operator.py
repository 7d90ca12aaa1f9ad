"""SyncOmniGroupMembershipOperator.execute() against the emulator over loopback: both modes, managed groups
only, case-insensitive users, unknown users and groups, creation opt-in, guards, dry run, faults converging,
the canary and circuit breaker, the report, and a re-run that sends nothing."""

from __future__ import annotations

import functools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from airflow_testkit import RecordingTI, capture_task_logs

from omni_provider import SyncOmniGroupMembershipOperator
from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.airflow_support import lineage
from omni_provider.client import RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.engine.breaker import halted_error

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
RECORD_FIELDS = {
    "row", "user", "group", "action", "status", "user_id", "group_id", "error", "note",
    "never_sent", "stopped",
}  # fmt: skip


def run_sync(*, raises: type[BaseException] | None = None, **kwargs: Any) -> tuple[Any, RecordingTI, Any]:
    operator = SyncOmniGroupMembershipOperator(task_id="groups", **kwargs)
    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": "manual__2025-01-01"}
    with capture_task_logs() as logs:
        if raises is None:
            return operator.execute(context), ti, logs
        with pytest.raises(raises) as info:
            operator.execute(context)
    assert type(info.value) is raises, f"expected {raises.__name__}, got {type(info.value).__name__}"
    return info.value, ti, logs


@pytest.fixture
def emu(omni_connection: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    # Retries back off in milliseconds here, so fault tests stay fast.
    fast = functools.partial(RetryPolicy, backoff_initial=0.01, backoff_max=0.02)
    monkeypatch.setattr("omni_provider.hooks.omni.RetryPolicy", fast)
    return omni_connection


def seed(emu: EmulatorServer, n: int) -> dict[str, str]:
    """user001@example.com... -> id."""
    return {
        u.user_name: u.id for u in (emu.state.add_user(f"user{i:03d}@example.com") for i in range(1, n + 1))
    }


def members(emu: EmulatorServer, name: str) -> set[str]:
    found = emu.state.groups.named(name)
    assert len(found) == 1, name
    return {emu.state.get_user(u).user_name for u in found[0].members if emu.state.get_user(u)}  # type: ignore[union-attr]


def writes(emu: EmulatorServer) -> dict[str, int]:
    methods = emu.stats.snapshot()["requests_by_method"]
    return {m: methods[m] for m in WRITE_METHODS if methods.get(m)}


def rows_for(mapping: dict[str, list[int]]) -> list[dict[str, str]]:
    return [{"email": f"user{i:03d}@example.com", "group": g} for g, users in mapping.items() for i in users]


def test_add_mode_sends_one_patch_per_changed_group_and_a_rerun_sends_nothing(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    ids = seed(emu, 10)
    emu.state.groups.add_group("Sales", [ids["user001@example.com"], ids["user009@example.com"]])
    emu.state.groups.add_group("Finance", [])
    emu.state.groups.add_group("Support", [ids["user005@example.com"]])
    rows = [
        {"email": "USER001@Example.com", "group": "Sales"},  # already a member, other case
        {"email": "user002@example.com", "group": "Sales"},
        {"email": "user003@example.com", "group": "Sales"},
        {"email": " user004@EXAMPLE.com ", "group": "Finance"},
        {"email": "user005@example.com", "group": "Support"},  # unchanged group: no write
    ]
    report = tmp_path / "groups.jsonl"
    summary, ti, logs = run_sync(rows=rows, report_path=str(report))

    assert members(emu, "Sales") == {f"user00{i}@example.com" for i in (1, 2, 3, 9)}  # 9 kept (add mode)
    assert members(emu, "Finance") == {"user004@example.com"}
    assert writes(emu) == {"PATCH": 2}
    assert summary["outcomes"] == {
        "added": 3,
        "removed": 0,
        "unchanged": 2,
        "rejected": 0,
        "failed": 0,
        "planned": 0,
    }
    assert summary["plan"]["groups_changed"] == 2
    assert ti.pushed["group_sync_summary"] == summary
    # Users and groups read once (one page each), then one PATCH per changed group: the least possible.
    assert summary["requests"] == 2 + 2
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert all(set(r) == RECORD_FIELDS for r in records)
    assert [(r["row"], r["user"], r["group"], r["status"]) for r in records] == [
        (1, "user001@example.com", "Sales", "unchanged"),
        (2, "user002@example.com", "Sales", "added"),
        (3, "user003@example.com", "Sales", "added"),
        (4, "user004@example.com", "Finance", "added"),
        (5, "user005@example.com", "Support", "unchanged"),
    ]
    assert any("Group sync outcome by group" in str(e["event"]) for e in logs)

    before = emu.stats.snapshot()["requests_by_method"]
    again, _, _ = run_sync(rows=rows)
    assert again["outcomes"]["unchanged"] == 5
    after = emu.stats.snapshot()["requests_by_method"]
    assert {m: after.get(m, 0) - before.get(m, 0) for m in WRITE_METHODS} == dict.fromkeys(WRITE_METHODS, 0)


def test_mirror_mode_adds_and_removes_in_one_patch_and_leaves_unmanaged_groups_alone(
    emu: EmulatorServer,
) -> None:
    ids = seed(emu, 12)
    all_ids = list(ids.values())
    emu.state.groups.add_group("Sales", all_ids[:10])
    unmanaged = emu.state.groups.add_group("Admins", all_ids[:3])
    rows = rows_for({"Sales": [*range(1, 10), 11], "Admins": [12]})  # drops user010, adds user011
    summary, _, _ = run_sync(rows=rows, groups=["Sales"], mode="mirror", max_failed_rows=1)

    assert members(emu, "Sales") == {f"user{i:03d}@example.com" for i in [*range(1, 10), 11]}
    assert emu.state.groups.get(unmanaged.id) == unmanaged  # never written
    assert writes(emu) == {"PATCH": 1}
    assert summary["outcomes"]["added"] == 1 and summary["outcomes"]["removed"] == 1
    assert summary["outcomes"]["rejected"] == 1  # the Admins row: not a managed group
    assert summary["errors_sample"][0]["error"] == "group 'Admins' is not one of the managed groups"


def test_mirror_refuses_large_removals_unless_max_changes_is_explicit(emu: EmulatorServer) -> None:
    ids = seed(emu, 10)
    emu.state.groups.add_group("Sales", list(ids.values()))
    rows = rows_for({"Sales": [1, 2, 3, 4, 5]})
    error, _, _ = run_sync(rows=rows, mode="mirror", raises=AirflowFailException)
    assert "more than 10%" in str(error)
    assert writes(emu) == {}
    # A dry run shows the plan and that it would be refused, and sends nothing.
    summary, _, _ = run_sync(rows=rows, mode="mirror", dry_run=True)
    assert "refused" in summary and summary["outcomes"]["planned"] == 5
    assert writes(emu) == {}
    summary, _, _ = run_sync(rows=rows, mode="mirror", max_changes=5)
    assert members(emu, "Sales") == {f"user00{i}@example.com" for i in range(1, 6)}
    assert writes(emu) == {"PATCH": 1}


def test_dry_run_plans_without_writing(emu: EmulatorServer) -> None:
    seed(emu, 3)
    emu.state.groups.add_group("Sales", [])
    summary, _, _ = run_sync(rows=rows_for({"Sales": [1, 2]}), dry_run=True)
    assert summary["outcomes"]["planned"] == 2 and summary["dry_run"] is True
    assert writes(emu) == {}
    assert members(emu, "Sales") == set()


def test_unknown_users_and_groups_are_rejected_and_fail_the_task(emu: EmulatorServer) -> None:
    seed(emu, 3)
    emu.state.groups.add_group("Sales", [])
    rows = [*rows_for({"Sales": [1], "Nope": [2]}), {"email": "ghost@example.com", "group": "Sales"}]
    error, ti, _ = run_sync(rows=rows, raises=AirflowFailException)
    assert "2 of 3" in str(error)
    summary = ti.pushed["group_sync_summary"]
    assert summary["outcomes"]["added"] == 1 and summary["outcomes"]["rejected"] == 2
    assert [g.display_name for g in emu.state.groups.groups()] == ["Sales"]  # nothing created


def test_missing_groups_are_created_with_their_members_on_opt_in(emu: EmulatorServer) -> None:
    seed(emu, 4)
    rows = rows_for({"New team": [1, 2], "Other team": [3]})
    summary, _, _ = run_sync(rows=rows, create_missing_groups=True)
    assert members(emu, "New team") == {"user001@example.com", "user002@example.com"}
    assert members(emu, "Other team") == {"user003@example.com"}
    assert writes(emu) == {"POST": 2}  # one request per new group, members included
    assert sorted(summary["groups_created"]) == ["New team", "Other team"]
    again, _, _ = run_sync(rows=rows, create_missing_groups=True)
    assert again["outcomes"]["unchanged"] == 3 and writes(emu) == {"POST": 2}


def _teams_across_pages(emu: EmulatorServer) -> dict[str, str]:
    """12 groups (Team 00-11) on pages of 5; the managed Team 05 opens page 2 and holds user001, user002."""
    ids = seed(emu, 4)
    for i in range(12):
        team = [ids["user001@example.com"]] + ([ids["user002@example.com"]] if i == 5 else [])
        emu.state.groups.add_group(f"Team {i:02d}", team)
    emu.config.apply_patch({"max_page_size": 5})
    return ids


def test_a_group_listing_that_shifted_is_read_again_and_the_mirror_misses_no_group(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Team 00 is deleted right after page 1 is served: Team 05 moves onto page 1's last place. A walk
    advancing by what it read never saw Team 05, so the sync planned to create it (a POST into a 409) and
    mirrored nothing; the drift-checked read notices, reads the list again, and PATCHes Team 05."""
    _teams_across_pages(emu)
    emu.config.apply_patch({"group_list_churn": {"after_page": 1, "delete": 1}})
    rows = rows_for({"Team 05": [2, 3]})  # user001 leaves, user003 joins
    summary, _, _ = run_sync(
        rows=rows, groups=["Team 05"], mode="mirror", create_missing_groups=True, max_changes=2
    )
    assert members(emu, "Team 05") == {"user002@example.com", "user003@example.com"}
    assert writes(emu) == {"PATCH": 1}  # no create
    assert summary["outcomes"]["added"] == 1 and summary["outcomes"]["removed"] == 1
    assert summary["outcomes"]["unchanged"] == 1 and summary["outcomes"]["failed"] == 0
    assert "group list shifted while it was read" in caplog.text


def test_a_group_listing_that_never_settles_fails_retryably_before_any_write(emu: EmulatorServer) -> None:
    _teams_across_pages(emu)
    emu.config.apply_patch({"group_list_churn": {"after_page": 1, "delete": 1, "create": 1, "repeat": True}})
    rows = rows_for({"Team 05": [2, 3]})
    error, _, _ = run_sync(
        rows=rows,
        groups=["Team 05"],
        mode="mirror",
        create_missing_groups=True,
        max_changes=2,
        raises=AirflowException,  # retryable: a later run reads a settled list
    )
    assert "group list kept shifting" in str(error)
    assert writes(emu) == {}
    # 3 reads, each stopped on its second page: 6 group list pages.
    assert emu.stats.snapshot()["requests_by_method"]["GET"] == 1 + 6  # one user page (4 users) first


@pytest.mark.parametrize(
    "faults",
    [
        {"error_503": 0.3},
        {"error_500": 0.3},
        {"burst_429": 0.2},
        {"lost_response": 0.4},
        {"drop_connection": 0.2, "error_502": 0.2, "lost_response": 0.2},
    ],
)
def test_faults_converge_without_duplicate_groups_or_lost_members(
    emu: EmulatorServer, faults: dict[str, float]
) -> None:
    ids = seed(emu, 30)
    all_ids = list(ids.values())
    for g in range(6):
        emu.state.groups.add_group(f"Team {g}", all_ids[g * 5 : g * 5 + 3])  # 3 members each, kept (add mode)
    wanted = {f"Team {g}": [g * 5 + 4, g * 5 + 5] for g in range(6)}
    wanted |= {f"New {g}": [g + 1, g + 2] for g in range(3)}
    rows = rows_for(wanted)
    emu.config.apply_patch({"faults": faults, "fault_seed": 7, "fault_methods": ["POST", "PATCH"]})
    emu.context.faults.reseed(7)  # config.apply_patch alone does not reseed: without this the run is random
    for _attempt in range(4):  # a few task retries at most
        try:
            run_sync(rows=rows, create_missing_groups=True)
            break
        except AirflowException:
            continue
    else:
        pytest.fail("did not converge in 4 runs")
    assert sum(emu.stats.snapshot()["faults_injected"].values()) > 0
    emu.config.apply_patch({"faults": {}})
    names = [g.display_name for g in emu.state.groups.groups()]
    assert sorted(names) == sorted(set(names)) and len(names) == 9  # no duplicate group
    for g in range(6):
        kept = {emu.state.get_user(u).user_name for u in all_ids[g * 5 : g * 5 + 3]}  # type: ignore[union-attr]
        added = {f"user{i:03d}@example.com" for i in wanted[f"Team {g}"]}
        assert members(emu, f"Team {g}") == kept | added  # nothing lost, everything added
    for g in range(3):
        assert members(emu, f"New {g}") == {f"user{i:03d}@example.com" for i in (g + 1, g + 2)}
    assert "PUT" not in emu.stats.snapshot()["requests_by_method"]


def test_circuit_breaker_stops_after_the_canary_and_fails_without_retry(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    ids = seed(emu, 40)
    all_ids = list(ids.values())
    for g in range(8):
        emu.state.groups.add_group(f"Team {g}", all_ids[g * 5 : g * 5 + 2])
    emu.config.apply_patch({"group_patch_mode": "replace_members"})  # an add replaces the member list
    rows = rows_for({f"Team {g}": [g * 5 + 3, g * 5 + 4, g * 5 + 5] for g in range(8)})
    report = tmp_path / "r.jsonl"
    error, ti, _ = run_sync(rows=rows, report_path=str(report), max_workers=8, raises=AirflowFailException)

    assert writes(emu) == {"PATCH": 1}  # the canary only: at most one group damaged
    assert "circuit breaker" in str(error) and "Team 0" in str(error) and "What to check" in str(error)
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == 24 and {r["status"] for r in records} == {"failed"}
    stopped = [r for r in records if r["group"] != "Team 0"]
    reason = "group 'Team 0': Omni reports members this write did not touch are gone"
    assert {r["error"] for r in stopped} == {halted_error(reason)}
    assert ti.pushed["group_sync_summary"]["stopped"] == reason
    for g in range(1, 8):  # untouched
        assert len(emu.state.groups.named(f"Team {g}")[0].members) == 2


def test_a_split_write_limit_splits_only_that_group(emu: EmulatorServer) -> None:
    seed(emu, 6)
    emu.state.groups.add_group("Sales", [])
    emu.state.groups.add_group("Finance", [])
    rows = rows_for({"Sales": [1, 2, 3, 4, 5], "Finance": [6]})
    run_sync(rows=rows, max_members_per_write=2)
    assert writes(emu) == {"PATCH": 4}  # Sales in 3 writes of at most 2, Finance in 1
    assert len(members(emu, "Sales")) == 5


def test_bad_configuration_fails_before_any_request(emu: EmulatorServer) -> None:
    for kwargs in (
        {"rows": [], "mode": "replace"},
        {"rows": [], "groups": ["x" * 65]},
        {"rows": [], "sql": "SELECT 1"},
        {"rows": [], "max_changes": "lots"},
    ):
        run_sync(raises=AirflowFailException, **kwargs)
    assert emu.stats.snapshot()["requests_total"] == 0


def test_breaker_tripping_after_the_canary_stops_every_write_not_yet_started(emu: EmulatorServer) -> None:
    ids = seed(emu, 40)
    all_ids = list(ids.values())
    emu.state.groups.add_group("Team 0", [])  # the canary: an add to an empty group looks right either way
    for g in range(1, 6):
        emu.state.groups.add_group(f"Team {g}", all_ids[g * 5 : g * 5 + 2])
    emu.config.apply_patch({"group_patch_mode": "replace_members"})
    rows = rows_for({f"Team {g}": [g * 5 + 3] for g in range(6)})
    error, ti, _ = run_sync(rows=rows, max_workers=1, raises=AirflowFailException)
    assert writes(emu) == {"PATCH": 2}  # the canary, then the write that tripped; nothing after it
    assert "Team 1" in str(error)
    outcomes = ti.pushed["group_sync_summary"]["outcomes"]
    assert outcomes["added"] == 1 and outcomes["failed"] == 5


def test_managed_groups_may_come_from_a_rendered_template(emu: EmulatorServer) -> None:
    seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    rows = rows_for({"Sales": [1], "Finance": [2]})
    summary, _, _ = run_sync(rows=rows, groups='["Sales"]', max_failed_rows=1)
    assert summary["managed_groups"] == 1
    assert summary["outcomes"]["added"] == 1 and summary["outcomes"]["rejected"] == 1


# -- parity with the attribute operator: the same engine run, sinks, XCom and retry rule ---------------


class FailingSink:
    label = "report file on a full disk"

    def check(self) -> None:
        """Fine before the run."""

    def write(self, outcomes: Any, *, run_id: str) -> dict[str, Any]:
        raise OSError("disk full")


def test_report_table_and_asset_event_as_the_attribute_operator(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "reports.db"
    monkeypatch.setenv("AIRFLOW_CONN_REPORTS", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    seed(emu, 3)
    emu.state.groups.add_group("Sales", [])
    asset = lineage.omni_users_asset(emu.base_url)

    class Events(dict):  # type: ignore[type-arg]
        def __missing__(self, key: Any) -> Any:
            self[key] = type("Event", (), {"extra": None})()
            return self[key]

    events = Events()
    operator = SyncOmniGroupMembershipOperator(
        task_id="groups",
        rows=rows_for({"Sales": [1, 2]}),
        report_table="omni_group_report",
        report_conn_id="reports",
        outlets=[asset],
    )
    ti = RecordingTI()
    summary = operator.execute({"ti": ti, "run_id": "manual__2025-01-01", "outlet_events": events})
    assert summary["report_table"] == "omni_group_report" and members(emu, "Sales") == {
        "user001@example.com",
        "user002@example.com",
    }
    with sqlite3.connect(database) as db:
        stored = db.execute(
            "SELECT match_key, status, changed FROM omni_group_report ORDER BY row_number"
        ).fetchall()
    assert stored == [
        ("user001@example.com", "added", '["Sales"]'),
        ("user002@example.com", "added", '["Sales"]'),
    ]
    assert events[asset].extra["outcomes"]["added"] == 2


def test_xcom_is_pushed_on_failure_with_the_stage_and_error(emu: EmulatorServer) -> None:
    seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    _, ti, _ = run_sync(rows=[{"email": None, "group": "Sales"}], mode="mirror", raises=AirflowFailException)
    summary = ti.pushed["group_sync_summary"]
    assert summary["stage"] == "reading" and "nobody was removed" in summary["error"]
    assert writes(emu) == {}


def test_a_lost_report_goes_to_the_fallback(emu: EmulatorServer, tmp_path: Path) -> None:
    seed(emu, 1)
    emu.state.groups.add_group("Sales", [])
    fallback = tmp_path / "fallback"
    operator = SyncOmniGroupMembershipOperator(
        task_id="groups", rows=rows_for({"Sales": [1]}), fallback_report_dir=str(fallback)
    )
    real = operator._prepare

    def prepare(context: Any) -> Any:
        run = real(context)
        run.sinks = (FailingSink(),)
        return run

    operator._prepare = prepare  # type: ignore[method-assign]
    ti = RecordingTI()
    with pytest.raises(AirflowFailException, match="could not be written"):
        operator.execute({"ti": ti, "run_id": "manual__2025-01-01"})
    summary = ti.pushed["group_sync_summary"]
    kept = Path(summary["report_fallback_path"].removeprefix("file://"))
    assert [json.loads(line)["status"] for line in kept.read_text().splitlines()] == ["added"]
    assert members(emu, "Sales") == {"user001@example.com"}
