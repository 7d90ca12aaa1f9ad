"""Interrupting a sync (``on_kill``, SIGTERM) leaves a complete report of what was applied so far.

Airflow 2.11 differs in one step (``TaskInstance._execute_task_with_callbacks``' signal handler): it calls
``on_kill()`` and then raises ``AirflowTaskTerminated`` in the task's thread; the operator's report is
written on the way out, the same report.

What Airflow 3.3 does on SIGTERM (``airflow/sdk/execution_time/task_runner.py``,
``_run_task_and_map_outcome``): its ``_on_term`` handler calls ``ti.task.on_kill()`` and returns; it does
not raise, so ``execute`` goes on until it returns or fails by itself. The supervisor, which forwarded the
signal, escalates to SIGKILL after ``escalation_delay`` = 5 s (``supervisor.py``, ``kill()``). So after
SIGTERM the operator must stop sending and write its report well within 5 s.

The subprocess test runs the real thing: ``dag.test()`` in a child process (its task runs under that
same ``_run_task_and_map_outcome`` and its handler), SIGTERM sent while the sync is writing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from airflow_subprocess_kit import child_env, child_home, start_runner, step_results
from airflow_testkit import allow_execute_in_this_thread
from omni_testkit import omni_connection_json
from reliability_kit import RecordingTI, print_figures, read_report

from omni_provider._compat import AIRFLOW_V_3_0_PLUS, AirflowException
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.sync.users.apply import NOT_ATTEMPTED, STOPPED_PENDING

USERS = 150
#: Paced by the client (connection extras: 5 requests per 1 s window) so the sync takes ~30 s uninterrupted:
#: plenty of time to stop it.
PACING = {"rate_limit_per_minute": 5, "rate_window_seconds": 1}
STOP_AFTER_WRITES = 10
#: The supervisor's SIGTERM -> SIGKILL escalation delay in Airflow 3.3.
ESCALATION_DELAY = 5.0

DAG_FILE = """
import json, os
from airflow.providers.common.compat.sdk import DAG
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

with DAG(dag_id="omni_interrupt_sync", schedule=None, catchup=False) as dag:
    SyncOmniUserAttributesOperator(
        task_id="sync",
        rows=json.loads(open(os.environ["OMNI_INTERRUPT_ROWS"]).read()),
        attributes=["region"],
        report_path=os.environ["OMNI_INTERRUPT_REPORT"],
        max_workers=2,
        progress_every=1,
    )
"""


def seed(emu: EmulatorServer) -> list[dict[str, Any]]:
    emu.state.seed_users(USERS)
    return [{"userName": u.user_name, "region": "interrupted-test"} for u in emu.state.users()]


def check_report(emu: EmulatorServer, report: Path) -> Counter[str]:
    """Every row once; ``applied`` exactly for the users Omni now holds the new value for."""
    records = read_report(report)
    assert [r["row"] for r in records] == list(range(1, USERS + 1))
    statuses = Counter(r["status"] for r in records)
    assert set(statuses) <= {"applied", "failed"}
    assert 0 < statuses["applied"] < USERS and statuses["failed"] > 0
    for record in records:
        user = emu.state.find_by_email(record["key"])
        assert user is not None
        written = user.attributes.get("region") == "interrupted-test"
        assert written == (record["status"] == "applied"), record
        if record["status"] == "failed":  # never started, or stopped waiting for its paced slot
            assert record["error"] in (NOT_ATTEMPTED, STOPPED_PENDING), record
    return statuses


def wait_for_writes(
    emu: EmulatorServer, count: int, timeout: float, child: subprocess.Popen[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while emu.stats.snapshot()["writes_applied"] < count:
        if child is not None and child.poll() is not None:
            output, _ = child.communicate()
            pytest.fail(f"the child exited ({child.returncode}) before writing:\n{output[-5000:]}")
        assert time.monotonic() < deadline, "the sync did not start writing in time"
        time.sleep(0.05)


def test_on_kill_mid_sync_reports_every_row(
    omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emu = omni_emulator
    rows = seed(emu)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, **PACING))
    report = tmp_path / "killed.jsonl"
    op = SyncOmniUserAttributesOperator(
        task_id="sync", rows=rows, attributes=["region"], report_path=str(report), max_workers=2
    )
    ti = RecordingTI()
    outcome: dict[str, Any] = {}

    def run() -> None:
        allow_execute_in_this_thread()
        try:
            op.execute({"ti": ti, "run_id": "killed"})  # type: ignore[arg-type]
        except AirflowException as exc:
            outcome["error"] = str(exc)
        outcome["finished"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    wait_for_writes(emu, STOP_AFTER_WRITES, timeout=60)
    killed = time.monotonic()
    op.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive()

    stop_seconds = outcome["finished"] - killed
    assert stop_seconds < ESCALATION_DELAY
    assert "did not sync" in outcome["error"] or "failed" in outcome["error"]  # not green: rows missing
    statuses = check_report(emu, report)
    summary = ti.pushed["sync_summary"]
    assert summary["complete"] is False and summary["outcomes"]["applied"] == statuses["applied"]

    # A re-run (Airflow's task retry) picks up exactly what was left.
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    again = SyncOmniUserAttributesOperator(task_id="sync", rows=rows, attributes=["region"]).execute(
        {"run_id": "retry"}  # type: ignore[arg-type]
    )
    assert again["outcomes"]["applied"] == statuses["failed"]
    assert again["outcomes"]["unchanged"] == statuses["applied"]
    print_figures(
        "INTERRUPT (on_kill)",
        {"rows": USERS, **statuses, "seconds_from_on_kill_to_report": round(stop_seconds, 2)},
    )


def test_on_kill_during_an_outage_does_not_wait_out_the_retries(
    omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Writes stuck in retry back-offs (Omni answering 503) give up at ``on_kill``: the report is written
    at once, not after the back-offs (which can add up to ~15 s per write here, past Airflow's SIGKILL)."""
    emu = omni_emulator
    rows = seed(emu)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, max_retries=4))
    emu.config.apply_patch({"faults": {"error_503": 1.0}, "fault_methods": ["PATCH"]})
    report = tmp_path / "outage.jsonl"
    op = SyncOmniUserAttributesOperator(
        task_id="sync", rows=rows, attributes=["region"], report_path=str(report), max_workers=4
    )
    finished: dict[str, float] = {}

    def run() -> None:
        allow_execute_in_this_thread()
        with pytest.raises(AirflowException):
            op.execute({"run_id": "outage"})  # type: ignore[arg-type]
        finished["at"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while emu.stats.snapshot()["requests_by_method"].get("PATCH", 0) < 4:  # every worker in a back-off
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed = time.monotonic()
    op.on_kill()
    worker.join(timeout=30)
    assert not worker.is_alive()
    patches = emu.stats.snapshot()["requests_by_method"]["PATCH"]
    stop_seconds = finished["at"] - killed
    assert stop_seconds < 1.0  # well inside the supervisor's 5 s
    records = read_report(report)
    assert [r["row"] for r in records] == list(range(1, USERS + 1))
    assert {r["status"] for r in records} == {"failed"}
    reasons = Counter(r["error"] for r in records)
    assert set(reasons) <= {STOPPED_PENDING, NOT_ATTEMPTED} and reasons[STOPPED_PENDING] >= 1
    time.sleep(0.3)
    assert emu.stats.snapshot()["requests_by_method"]["PATCH"] == patches  # nothing sent after the stop
    assert all(u.attributes.get("region") != "interrupted-test" for u in emu.state.users())
    print_figures(
        "INTERRUPT (on_kill during a 503 outage)",
        {"rows": USERS, "patches_sent": patches, "seconds_from_on_kill_to_report": round(stop_seconds, 2)},
    )


@pytest.mark.timeout(180)
def test_sigterm_to_dag_test_process_leaves_a_complete_report(
    omni_emulator: EmulatorServer, airflow_db: Path, tmp_path: Path
) -> None:
    emu = omni_emulator
    rows = seed(emu)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "omni_interrupt_sync.py").write_text(DAG_FILE)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    report = tmp_path / "sigterm.jsonl"
    env = child_env(
        child_home(tmp_path, airflow_db),
        [dags],
        {
            "AIRFLOW_CONN_OMNI_DEFAULT": omni_connection_json(emu.base_url, **PACING),
            "OMNI_INTERRUPT_ROWS": str(rows_file),
            "OMNI_INTERRUPT_REPORT": str(report),
        },
    )
    child = start_runner([{"folder": str(dags), "dag_id": "omni_interrupt_sync"}], env)
    try:
        # Only once the task is writing is Airflow's handler installed: SIGTERM before that would just end
        # the process (no task running, nothing to report).
        wait_for_writes(emu, STOP_AFTER_WRITES, timeout=120, child=child)
        os.kill(child.pid, signal.SIGTERM)
        sent = time.monotonic()
        while not report.exists():
            assert child.poll() is None or report.exists(), "the child exited without writing the report"
            assert time.monotonic() - sent < 30
            time.sleep(0.02)
        report_seconds = time.monotonic() - sent
        output, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    writes_when_done = emu.stats.snapshot()["writes_applied"]

    assert report_seconds < ESCALATION_DELAY, "the report must be written before the supervisor's SIGKILL"
    if AIRFLOW_V_3_0_PLUS:
        assert child.returncode == 0, output[-3000:]
        assert [r["state"] for r in step_results(output)] == ["failed"]  # stopped rows keep it from green
    else:
        # Airflow 2.11's handler calls on_kill, then raises AirflowTaskTerminated in the task's thread;
        # the operator writes its report on the way out and dag.test() lets the exception through.
        assert child.returncode != 0 and "AirflowTaskTerminated" in output, output[-3000:]
        assert step_results(output) == []
    statuses = check_report(emu, report)
    assert writes_when_done == statuses["applied"]  # nothing was sent after the stop that the report misses
    time.sleep(0.5)
    assert emu.stats.snapshot()["writes_applied"] == writes_when_done  # and nothing later either
    print_figures(
        "INTERRUPT (SIGTERM to dag.test process)",
        {"rows": USERS, **statuses, "seconds_from_sigterm_to_report": round(report_seconds, 2)},
    )
