"""SyncOmniEmailRecipientsOperator.execute() against the emulator over loopback (Airflow 3.x and 2.11):
both upsert meanings, the report and XCom summary, a re-run that sends nothing, mirror's refusals before any
write as Airflow failures (no retry), and templated arguments."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from airflow_testkit import RecordingTI, capture_task_logs
from recipients_testkit import ROUTE, UNMANAGED, bulk_writes, recipient_state, seed_recipients, writes

from omni_provider import SyncOmniEmailRecipientsOperator
from omni_provider._compat import AirflowFailException
from omni_provider.emulator import EmulatorServer

#: Every request to the email-only endpoints, as the emulator's stats name them.
EMAIL_ONLY_ROUTES = (f"GET {ROUTE}", f"GET {ROUTE}?email", f"POST {ROUTE}", f"POST {ROUTE}/bulk")


def run_op(*, raises: type[BaseException] | None = None, **kwargs: Any) -> tuple[Any, RecordingTI]:
    operator = SyncOmniEmailRecipientsOperator(task_id="recipients", **kwargs)
    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": "manual__2025-01-01"}
    with capture_task_logs():
        if raises is None:
            return operator.execute(context), ti
        with pytest.raises(raises) as info:
            operator.execute(context)
    return info.value, ti


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_upsert_bulk_report_and_a_rerun_that_sends_nothing(
    omni_connection: EmulatorServer, tmp_path: Path, meaning: str
) -> None:
    emu = omni_connection
    emu.config.apply_patch({"email_only_upsert": meaning})
    emails = seed_recipients(emu, 50)
    rows = [{"EMAIL": e, "region": "us" if i < 30 else "eu", "cost_centre": 1} for i, e in enumerate(emails)]
    rows += [{"EMAIL": f"new{i}@example.com", "region": "apac", "cost_centre": 2} for i in range(10)]
    report = tmp_path / "report.jsonl"

    summary, ti = run_op(rows=rows, attributes=["region", "cost_centre"], report_path=str(report))

    assert summary["outcomes"]["applied"] == 40 and summary["outcomes"]["unchanged"] == 20
    assert ti.pushed["recipient_sync_summary"]["stage"] == "done"
    assert math.ceil(40 / 20) <= bulk_writes(emu) <= math.ceil(40 / 20) + 1
    state = recipient_state(emu)
    assert state["r0003@example.com"] == {"region": "us", "cost_centre": 1, **UNMANAGED}
    assert state["new3@example.com"] == {"region": "apac", "cost_centre": 2}
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == 60 and {r["key"] for r in records} >= {"r0001@example.com", "new0@example.com"}

    emu.stats.reset()
    again, _ = run_op(rows=rows, attributes=["region", "cost_centre"])
    assert writes(emu) == 0 and again["outcomes"]["unchanged"] == 60


def test_mirror_refusals_fail_the_task_before_any_write(omni_connection: EmulatorServer) -> None:
    emu = omni_connection
    emails = seed_recipients(emu, 40)
    attributes = '["region", "cost_centre"]'  # as a rendered template
    error, ti = run_op(
        raises=AirflowFailException,
        rows=[{"mail": emails[0], "region": "eu"}],
        attributes=attributes,
        mode="mirror",
    )
    assert "key column 'email' is not in the input" in str(error)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails[:20]]
    error, ti = run_op(raises=AirflowFailException, rows=rows, attributes=attributes, mode="mirror")
    assert "default limit for mirror runs" in str(error)
    assert ti.pushed["recipient_sync_summary"]["stage"] == "planning"
    rows.append({"email": None, "region": "eu", "cost_centre": 1})
    error, _ = run_op(raises=AirflowFailException, rows=rows, attributes=attributes, mode="mirror")
    assert "unreadable key" in str(error)
    assert writes(emu) == 0


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_snapshot_runs_read_only_what_they_need(
    omni_connection: EmulatorServer, tmp_path: Path, meaning: str
) -> None:
    emu = omni_connection
    emu.config.apply_patch({"email_only_upsert": meaning})
    emails = seed_recipients(emu, 40)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]
    snapshot = tmp_path / "recipients-snapshot.json"
    args: dict[str, Any] = {
        "attributes": ["region", "cost_centre"],
        "diff_against": "snapshot",
        "snapshot_path": str(snapshot),
    }
    first, _ = run_op(rows=rows, **args)
    assert first["diff_against"] == "omni" and snapshot.exists()
    emu.stats.reset()
    second, ti = run_op(rows=rows, **args)
    assert second["diff_against"] == "snapshot" and second["outcomes"]["unchanged"] == 40
    assert ti.pushed["recipient_sync_summary"]["snapshot"]["path"] == str(snapshot)
    assert sum(emu.stats.snapshot()["requests_by_route"].get(r, 0) for r in EMAIL_ONLY_ROUTES) == 0
    rows[2] = {"email": emails[2], "region": "us", "cost_centre": 1}  # r0003 holds unmanaged attributes
    third, _ = run_op(rows=rows, **args)
    assert third["diff_against"] == "snapshot" and third["outcomes"]["applied"] == 1
    assert recipient_state(emu)["r0003@example.com"] == {"region": "us", "cost_centre": 1, **UNMANAGED}


def test_snapshot_path_without_snapshot_mode_fails_before_any_request(
    omni_connection: EmulatorServer,
) -> None:
    error, _ = run_op(
        raises=AirflowFailException, rows=[], attributes=["region"], snapshot_path="/tmp/recipients.json"
    )
    assert "snapshot_path is only used with diff_against='snapshot'" in str(error)
    assert sum(omni_connection.stats.snapshot()["requests_by_method"].values()) == 0
