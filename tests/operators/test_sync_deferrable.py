"""Issue 21: deferrable syncs, driven as Airflow drives them (``execute`` -> ``TaskDeferred`` -> the trigger's
moment -> a fresh operator instance's ``execute_complete`` -> ... -> the summary), against the emulator
enforcing a small rate limit with a short window. The emulator's counters say what was sent and that no
window held more than the limit (it answers 429 beyond it); nothing asserts timing."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_testkit import RecordingTI, capture_task_logs
from deferral_testkit import drive, trigger_moment
from omni_testkit import omni_connection_json
from test_sync_groups_operator import members
from test_sync_operator import UNMANAGED, attrs, method_count, read_report, seed, state_of

from omni_provider import SyncOmniGroupMembershipOperator
from omni_provider._compat import AirflowException, AirflowFailException, TaskDeferred
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED

LIMIT, WINDOW = 15, 1.0
USERS, CHANGED = 60, 45
MANAGED = ["region", "cost_centre"]


@pytest.fixture
def emu(omni_connection: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """The emulator enforcing LIMIT requests per WINDOW seconds, and a connection paced to the same."""
    omni_connection.config.apply_patch(
        {"rate_limit_enabled": True, "rate_limit": LIMIT, "rate_window": WINDOW, "retry_after_header": True}
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_connection_json(
            omni_connection.base_url, rate_limit_per_minute=LIMIT, rate_window_seconds=WINDOW
        ),
    )
    return omni_connection


def rows_for(emails: list[str]) -> list[dict[str, Any]]:
    return [
        {"userName": e, "region": "eu-west" if i < CHANGED else "us-east", "cost_centre": None}
        for i, e in enumerate(emails)
    ]


def context(ti: RecordingTI | None = None) -> dict[str, Any]:
    return {"ti": ti or RecordingTI(), "run_id": "manual__2025-01-01T00:00:00"}


def attribute_task(tmp_path: Path, emails: list[str], **kwargs: Any) -> Any:
    kwargs.setdefault("report_path", str(tmp_path / "reports") + "/")
    return lambda: SyncOmniUserAttributesOperator(
        task_id="sync",
        rows=rows_for(emails),
        attributes=MANAGED,
        deferrable=True,
        min_defer_seconds=0.3,
        **kwargs,
    )


def no_window_overrun(emu: EmulatorServer) -> None:
    stats = emu.stats.snapshot()
    assert stats["rate_limited"] == 0 and stats["responses_429"] == 0, stats


def total_requests(emu: EmulatorServer) -> int:
    return sum(emu.stats.snapshot()["requests_by_method"].values())


def only_file(folder: Path) -> Path:
    files = [p for p in folder.iterdir() if p.suffix == ".jsonl"]
    assert len(files) == 1, files
    return files[0]


def test_attribute_sync_defers_while_the_window_is_full_and_ends_exact(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    ti = RecordingTI()
    with capture_task_logs() as logs:
        driven = drive(attribute_task(tmp_path, emails), context(ti))
    summary = driven.summary
    assert driven.error is None and summary is not None
    # The last step logs every change of every step (rows settled before a deferral included) and the
    # verdict, as a run that does not defer.
    logged = "\n".join(str(e["event"]) for e in logs)
    assert f"Changes written to Omni, {CHANGED}:" in logged
    for email in emails[:CHANGED]:
        assert f"  {email}: region " in logged and f"{email}: cost_centre" not in logged, email
    assert summary["verdict"] == "passed"
    assert f"All {USERS} rows synced" in logged
    # Omni exact; the unmanaged attributes untouched.
    for i, email in enumerate(emails):
        expected = {"region": "eu-west" if i < CHANGED else "us-east", **UNMANAGED}
        assert attrs(emu, email) == expected, email
    # Deferred several times, never more than the limit in any window.
    assert summary["deferrals"] == len(driven.deferrals) >= 2
    no_window_overrun(emu)
    # The same summary as a run that does not defer, counted over every step.
    assert summary["outcomes"]["applied"] == CHANGED and summary["outcomes"]["unchanged"] == USERS - CHANGED
    assert summary["complete"] is True and summary["stage"] == "done"
    assert summary["requests"] == total_requests(emu)
    assert summary["requests_by_method"]["PATCH"] == method_count(emu, "PATCH") == CHANGED
    assert ti.pushed["sync_summary"] == summary
    # Every row reported once, in one report file; the state and the interim report are gone.
    reports = tmp_path / "reports"
    records = read_report(only_file(reports))
    assert sorted(r["row"] for r in records) == list(range(1, USERS + 1))
    assert [p.name for p in reports.iterdir() if ".state" in p.name] == []
    # The trigger's arguments are small: where the state is, never the plan.
    for deferred in driven.deferrals:
        assert set(deferred.kwargs) == {"state_path", "deferrals"}
        assert len(json.dumps(deferred.kwargs)) < 300
        assert deferred.method_name == "execute_complete"


def test_group_sync_defers_and_ends_exact(emu: EmulatorServer, tmp_path: Path) -> None:
    ids = {u.user_name: u.id for u in (emu.state.add_user(f"user{i:03d}@example.com") for i in range(40))}
    groups = [f"team-{n}" for n in range(30)]
    rows = [{"email": email, "group": g} for n, g in enumerate(groups) for email in list(ids)[n : n + 3]]
    ti = RecordingTI()
    driven = drive(
        lambda: SyncOmniGroupMembershipOperator(
            task_id="groups",
            rows=rows,
            groups=groups,
            create_missing_groups=True,
            deferrable=True,
            min_defer_seconds=0.3,
            report_path=str(tmp_path / "reports") + "/",
        ),
        context(ti),
    )
    summary = driven.summary
    assert driven.error is None and summary is not None
    for n, group in enumerate(groups):
        assert members(emu, group) == set(list(ids)[n : n + 3]), group
    assert summary["deferrals"] == len(driven.deferrals) >= 1
    assert summary["outcomes"]["added"] == len(rows)
    assert summary["requests"] == total_requests(emu)
    no_window_overrun(emu)
    records = read_report_groups(only_file(tmp_path / "reports"))
    assert sorted(r["row"] for r in records) == list(range(1, len(rows) + 1))
    assert ti.pushed["group_sync_summary"] == summary


def read_report_groups(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def first_step(make: Any, ti: RecordingTI | None = None) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        make().execute(context(ti))
    return info.value


def test_a_retry_after_a_kill_resumes_from_the_state_without_listing_again(
    emu: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, USERS)
    make = attribute_task(tmp_path, emails)
    deferred = first_step(make)
    state = Path(deferred.kwargs["state_path"])
    assert state.exists()
    # The worker is killed while deferred: no execute_complete; Airflow retries the task.
    lists_before = emu.stats.snapshot()["requests_by_route"].get("GET /Users", 0)
    applied_first = method_count(emu, "PATCH")
    time.sleep(max(0.0, trigger_moment(deferred) - time.time()))
    with capture_task_logs() as logs, caplog.at_level(logging.INFO, logger="omni_provider.sync"):
        driven = drive(make, context())
    assert driven.error is None and driven.summary is not None
    assert emu.stats.snapshot()["requests_by_route"].get("GET /Users", 0) == lists_before  # no listing
    assert any("Resuming from the run state" in str(e["event"]) for e in logs)
    assert "First write of its kind to" in caplog.text  # the first write after the resume: a canary
    assert method_count(emu, "PATCH") == CHANGED and applied_first > 0
    assert state_of(emu) == {
        e: {"region": "eu-west" if i < CHANGED else "us-east", **UNMANAGED} for i, e in enumerate(emails)
    }
    assert driven.summary["outcomes"]["applied"] == CHANGED
    records = read_report(only_file(tmp_path / "reports"))
    assert sorted(r["row"] for r in records) == list(range(1, USERS + 1))
    no_window_overrun(emu)
    assert not state.exists()


def test_stale_state_is_discarded_and_the_run_starts_over(emu: EmulatorServer, tmp_path: Path) -> None:
    emails = seed(emu, USERS)
    make = attribute_task(tmp_path, emails, resume_within=timedelta(minutes=5))
    deferred = first_step(make)
    state = Path(deferred.kwargs["state_path"])
    document = json.loads(state.read_text())
    document["run"]["saved_at"] -= 600
    state.write_text(json.dumps(document))
    lists_before = method_count(emu, "GET")
    time.sleep(max(0.0, trigger_moment(deferred) - time.time()))
    with capture_task_logs() as logs:
        driven = drive(make, context())
    assert driven.error is None and driven.summary is not None
    assert any("older than resume_within" in str(e["event"]) for e in logs)
    assert method_count(emu, "GET") > lists_before  # listed again
    assert state_of(emu)[emails[0]]["region"] == "eu-west"
    # Started over: the rows applied before the state was discarded are found unchanged now.
    assert driven.summary["outcomes"]["applied"] + driven.summary["outcomes"]["unchanged"] == USERS


def test_execution_timeout_counts_across_deferrals_and_ends_with_a_complete_report(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    ti = RecordingTI()
    make = attribute_task(tmp_path, emails, execution_timeout=timedelta(seconds=1.5))
    driven = drive(make, context(ti))
    assert isinstance(driven.error, AirflowException)  # failed writes a re-run applies: retryable
    for deferred in driven.deferrals:
        assert deferred.timeout is not None and deferred.timeout <= timedelta(seconds=1.5)
    pushed = ti.pushed["sync_summary"]
    assert pushed["stopped"] == "the run's execution_timeout ends before Omni's rate window frees"
    assert pushed["complete"] is False
    records = read_report(only_file(tmp_path / "reports"))
    assert sorted(r["row"] for r in records) == list(range(1, USERS + 1))
    not_sent = [r for r in records if r["status"] == "failed"]
    assert not_sent and all(r["never_sent"] and r["error"] == NOT_ATTEMPTED for r in not_sent)
    assert len([r for r in records if r["status"] == "applied"]) == method_count(emu, "PATCH") < CHANGED
    no_window_overrun(emu)


def test_cancelled_while_deferred_sends_nothing_more_and_leaves_a_report_of_every_row(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    driven = drive(attribute_task(tmp_path, emails), context(), before_step=lambda n, _d: n < 1)
    assert driven.summary is None and len(driven.deferrals) == 2
    sent = total_requests(emu)
    time.sleep(2 * WINDOW)  # the trigger's moment passes; the task is failed, nothing resumes it
    assert total_requests(emu) == sent
    interim = Path(driven.deferrals[-1].kwargs["state_path"] + ".report.jsonl")
    records = read_report(interim)
    assert sorted(r["row"] for r in records) == list(range(1, USERS + 1))
    applied = [r for r in records if r["status"] == "applied"]
    assert len(applied) == method_count(emu, "PATCH") > 0
    assert all(r["never_sent"] for r in records if r["status"] == "failed")


def test_the_breaker_trips_in_a_resumed_step(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = seed(emu, USERS)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_connection_json(
            emu.base_url, rate_limit_per_minute=LIMIT, rate_window_seconds=WINDOW, patch_form="map_replace"
        ),
    )

    def surprise_after_first(step: int, _deferred: TaskDeferred) -> bool:
        if step == 1:  # Omni starts replacing the whole map: the verified kind now does damage
            emu.config.apply_patch({"patch_semantics": "other"})
        return True

    ti = RecordingTI()
    driven = drive(attribute_task(tmp_path, emails), context(ti), before_step=surprise_after_first)
    assert isinstance(driven.error, AirflowFailException), driven.error  # never retried
    assert len(driven.deferrals) >= 2
    pushed = ti.pushed["sync_summary"]
    assert "stopped" in pushed and pushed["deferrals"] == len(driven.deferrals)
    records = read_report(only_file(tmp_path / "reports"))
    assert sorted(r["row"] for r in records) == list(range(1, USERS + 1))
    stopped = [r for r in records if r["status"] == "failed" and r["never_sent"]]
    assert stopped and all("stopped" in r["error"] for r in stopped)
    damaged = [e for e in emails if attrs(emu, e).get("department") != UNMANAGED["department"]]
    assert len(damaged) <= 16  # at most the writes on the wire when the first answer showed the damage


def test_a_state_whose_plan_was_edited_is_refused_before_any_write(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    """The state's plan is the plan artifact, digest included: an edited one does not resume."""
    emails = seed(emu, USERS)
    make = attribute_task(tmp_path, emails)
    deferred = first_step(make)
    state = Path(deferred.kwargs["state_path"])
    document = json.loads(state.read_text())
    assert document["plan"]["format"] == "omni-provider/plan" and document["plan"]["digest"]
    document["plan"]["items"][-1]["changes"][0]["new"] = "ap-south"
    state.write_text(json.dumps(document))
    patches = method_count(emu, "PATCH")
    time.sleep(max(0.0, trigger_moment(deferred) - time.time()))
    with pytest.raises(AirflowFailException, match="changed after it was written"):
        make().execute_complete(context(), event=None, **deferred.kwargs)
    assert method_count(emu, "PATCH") == patches


# -- diff_against="snapshot": the snapshot kept true over the steps ------------------------------------------


def snapshot_users(path: Path) -> dict[str, Any]:
    """user id -> the managed values the snapshot holds (None: uncertain, read from Omni next run)."""
    return {user["id"]: user["values"] for user in json.loads(path.read_text())["users"]}


def ids_of(emu: EmulatorServer, emails: list[str]) -> set[str]:
    return {emu.state.find_by_email(email).id for email in emails}  # type: ignore[union-attr]


def assert_snapshot_true(emu: EmulatorServer, path: Path, emails: list[str]) -> None:
    """Every user in the snapshot, none uncertain, each with the managed values Omni holds."""
    held = snapshot_users(path)
    assert set(held) == ids_of(emu, emails)
    for email in emails:
        user = emu.state.find_by_email(email)
        assert user is not None
        omni = {name: user.attributes[name] for name in MANAGED if user.attributes.get(name) is not None}
        assert held[user.id] == omni, email


def snapshot_task(tmp_path: Path, emails: list[str]) -> Any:
    return attribute_task(
        tmp_path, emails, diff_against="snapshot", snapshot_path=str(tmp_path / "snapshot.json")
    )


def test_a_deferred_snapshot_sync_keeps_the_snapshot_true_and_the_next_run_lists_no_users(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    snapshot = tmp_path / "snapshot.json"
    written = ids_of(emu, emails[:CHANGED])
    while_deferred: list[set[str]] = []

    def look(_step: int, _deferred: TaskDeferred) -> bool:
        while_deferred.append({i for i, values in snapshot_users(snapshot).items() if values is None})
        return True

    driven = drive(snapshot_task(tmp_path, emails), context(), before_step=look)
    summary = driven.summary
    assert driven.error is None and summary is not None
    assert summary["deferrals"] == len(driven.deferrals) >= 2
    no_window_overrun(emu)
    assert summary["outcomes"]["applied"] == CHANGED and summary["verdict"] == "passed"
    # Between the steps the users being written are uncertain in the file (a cancelled run claims nothing).
    assert while_deferred and all(uncertain == written for uncertain in while_deferred)
    # At the end: every state Omni confirmed, in any step, recorded.
    assert summary["snapshot"]["written"] is True and summary["snapshot"]["uncertain"] == 0
    assert_snapshot_true(emu, snapshot, emails)

    # The next run diffs against it: no listing, no write.
    listed, patches = (
        emu.stats.snapshot()["requests_by_route"].get("GET /Users", 0),
        method_count(emu, "PATCH"),
    )
    again = drive(snapshot_task(tmp_path, emails), {"ti": RecordingTI(), "run_id": "manual__2025-01-02"})
    assert again.error is None and again.summary is not None
    assert again.summary["diff_against"] == "snapshot" and again.summary["outcomes"]["unchanged"] == USERS
    assert emu.stats.snapshot()["requests_by_route"].get("GET /Users", 0) == listed
    assert method_count(emu, "PATCH") == patches


def test_a_snapshot_sync_resumed_after_a_kill_keeps_the_writes_of_every_step(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    make = snapshot_task(tmp_path, emails)
    deferred = first_step(make)
    written_first = method_count(emu, "PATCH")
    assert 0 < written_first < CHANGED
    # The worker is killed while deferred; Airflow's retry resumes from the state (confirmed states too).
    time.sleep(max(0.0, trigger_moment(deferred) - time.time()))
    driven = drive(make, context())
    assert driven.error is None and driven.summary is not None
    assert driven.summary["outcomes"]["applied"] == CHANGED
    assert driven.summary["snapshot"]["uncertain"] == 0
    assert_snapshot_true(emu, tmp_path / "snapshot.json", emails)


def test_a_snapshot_sync_cancelled_while_deferred_leaves_its_writes_uncertain(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    snapshot = tmp_path / "snapshot.json"
    driven = drive(snapshot_task(tmp_path, emails), context(), before_step=lambda _n, _d: False)
    assert driven.summary is None and len(driven.deferrals) == 1
    written = method_count(emu, "PATCH")
    assert 0 < written < CHANGED
    uncertain = {i for i, values in snapshot_users(snapshot).items() if values is None}
    assert uncertain == ids_of(emu, emails[:CHANGED])
    # The next run reads the uncertain users from Omni: it writes only what the cancelled run did not.
    time.sleep(WINDOW)
    nxt = drive(snapshot_task(tmp_path, emails), {"ti": RecordingTI(), "run_id": "manual__2025-01-02"})
    assert nxt.error is None and nxt.summary is not None
    assert nxt.summary["diff_against"] == "snapshot"
    assert nxt.summary["outcomes"]["applied"] == CHANGED - written
    assert_snapshot_true(emu, snapshot, emails)
