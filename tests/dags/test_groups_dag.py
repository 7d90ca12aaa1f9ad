"""The example group DAG, run with dag.test() against the emulator over loopback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from airflow_testkit import load_dag

from omni_provider.emulator import EmulatorServer

pytestmark = pytest.mark.usefixtures("airflow_db")

ROOT = Path(__file__).resolve().parent.parent.parent
MEMBERSHIPS = [
    ("User00001@Example.com", "Finance"),
    ("user00002@example.com", "Sales"),
    ("user00003@example.com", "Sales"),
    ("USER00004@EXAMPLE.COM", "Engineering"),
]


def use_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's warehouse (``group_memberships`` holding ``MEMBERSHIPS``) and its report folder."""
    warehouse = tmp_path / "warehouse.db"
    with sqlite3.connect(warehouse) as db:
        db.execute("CREATE TABLE group_memberships (email TEXT, team TEXT)")
        db.executemany("INSERT INTO group_memberships VALUES (?, ?)", MEMBERSHIPS)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )
    monkeypatch.setenv("OMNI_SYNC_REPORT_DIR", str(tmp_path / "reports"))


def test_group_dag_mirrors_the_managed_groups_and_a_rerun_sends_nothing(
    omni_connection: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_warehouse(tmp_path, monkeypatch)
    emu = omni_connection
    users = {u.user_name: u.id for u in emu.state.seed_users(6)}
    emu.state.groups.add_group("Sales", [users["user00002@example.com"], users["user00005@example.com"]])
    admins = emu.state.groups.add_group("Admins", [users["user00006@example.com"]])

    dag = load_dag("omni_warehouse_groups", str(ROOT / "dags"))
    assert dag.test().state == "success"

    def names(group: str) -> set[str]:
        (record,) = emu.state.groups.named(group)
        return {emu.state.get_user(u).user_name for u in record.members}  # type: ignore[union-attr]

    assert names("Sales") == {"user00002@example.com", "user00003@example.com"}  # user00005 removed
    assert names("Finance") == {"user00001@example.com"}  # created
    assert names("Engineering") == {"user00004@example.com"}
    assert emu.state.groups.get(admins.id) == admins  # not managed: untouched
    (report,) = sorted((tmp_path / "reports").glob("*.jsonl"))
    statuses = sorted(json.loads(line)["status"] for line in report.read_text().splitlines())
    assert statuses == ["added", "added", "added", "removed", "unchanged"]

    before = emu.stats.snapshot()["requests_by_method"]
    assert dag.test().state == "success"
    after = emu.stats.snapshot()["requests_by_method"]
    assert {m: after.get(m, 0) - before.get(m, 0) for m in ("POST", "PATCH", "PUT", "DELETE")} == {
        "POST": 0,
        "PATCH": 0,
        "PUT": 0,
        "DELETE": 0,
    }


def test_group_dag_trigger_form_previews_the_changes(
    omni_connection: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_warehouse(tmp_path, monkeypatch)
    emu = omni_connection
    users = {u.user_name: u.id for u in emu.state.seed_users(6)}
    emu.state.groups.add_group("Sales", [users["user00005@example.com"]])
    dag = load_dag("omni_warehouse_groups", str(ROOT / "dags"))
    assert {name: dag.params[name] for name in ("dry_run", "max_changes")} == {
        "dry_run": False,
        "max_changes": "25",
    }
    task = dag.get_task("sync_groups")
    assert (task.dry_run, task.max_changes) == ("{{ params.dry_run }}", "{{ params.max_changes }}")

    caplog.set_level("INFO")
    capfd.readouterr()
    assert dag.test(run_conf={"dry_run": True}).state == "success"
    # The task's log, printed or captured (depending on the logging set-up).
    log = "".join(capfd.readouterr()) + caplog.text
    before = emu.stats.snapshot()["requests_by_method"]
    assert not {m for m in ("POST", "PATCH", "PUT", "DELETE") if before.get(m)}  # a preview writes nothing
    assert "Planned changes (dry run: nothing was written), 5:" in log
    assert "  Sales: - user00005@example.com" in log and "  Finance: + user00001@example.com" in log
    # The form's limit is the run's: 5 changes, at most 1 allowed.
    # (dry_run given again: dag.test() keeps the last run's conf as the DAG's params.)
    assert dag.test(run_conf={"dry_run": False, "max_changes": "1"}).state == "failed"
    assert not {
        m for m in ("POST", "PATCH", "PUT", "DELETE") if emu.stats.snapshot()["requests_by_method"].get(m)
    }
