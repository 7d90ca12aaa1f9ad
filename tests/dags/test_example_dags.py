"""The example DAGs and every templating route, run with dag.test() against the emulator over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import airflow_testkit
import pytest
from airflow_testkit import DagBag
from omni_testkit import TEST_API_KEY, make_warehouse, omni_connection_json

from omni_provider.emulator import EmulatorServer

pytestmark = pytest.mark.usefixtures("airflow_db")

ROOT = Path(__file__).resolve().parent.parent.parent

WAREHOUSE = [
    # email, region, department, seat_tier, cost_centre, active
    ("User00001@Example.com", "EMEA", "Finance", "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
    ("USER00003@EXAMPLE.COM", "APAC", None, "pro", 4300, 1),
    ("user00004@example.com", "EMEA", "Marketing", "viewer", 4400, 0),
]


def load_dag(dag_id: str, folder: Path) -> Any:
    return airflow_testkit.load_dag(dag_id, str(folder))


def test_example_dags_import_cleanly() -> None:
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors
    assert {
        "omni_update_user",
        "omni_warehouse_attributes",
        "omni_warehouse_sync",
        "omni_after_attribute_sync",
        "omni_warehouse_groups",
        "omni_snapshot_sync",
        "omni_deferrable_sync",
        "omni_email_recipients",
    } <= set(bag.dag_ids)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_warehouse(tmp_path / "warehouse.db", WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("OMNI_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("OMNI_SYNC_STATE_DIR", str(tmp_path / "state"))
    return path


def seed(emu: EmulatorServer) -> None:
    emu.state.seed_users(6)
    # Attributes the warehouse does not manage must survive every run.
    for i in (1, 2, 3, 4):
        user = emu.state.find_by_email(f"user{i:05d}@example.com")
        assert user is not None
        emu.state.replace_user(user.evolve(attributes={**user.attributes, "regions": ["EU"]}))


def attributes_of(emu: EmulatorServer, email: str) -> dict[str, Any]:
    user = emu.state.find_by_email(email)
    assert user is not None
    return dict(user.attributes)


@pytest.mark.parametrize("put_mode", ["merge", "replace"])
def test_update_user_dag_from_trigger_form(omni_connection: EmulatorServer, put_mode: str) -> None:
    omni_connection.config.put_mode = put_mode  # type: ignore[assignment]
    seed(omni_connection)
    before = attributes_of(omni_connection, "user00002@example.com")
    dag = load_dag("omni_update_user", ROOT / "dags")

    dry = dag.test(run_conf={"email": "USER00002@example.com", "attributes": {"region": "EMEA"}})
    assert dry.state == "success"
    assert attributes_of(omni_connection, "user00002@example.com") == before  # dry run is the default

    run = dag.test(
        run_conf={
            "email": "USER00002@example.com",
            "attributes": {"region": "EMEA", "cost_centre": 4100},
            "display_name": "Barbara B.",
            "dry_run": False,
        }
    )
    assert run.state == "success"
    after = omni_connection.state.find_by_email("user00002@example.com")
    assert after is not None
    assert dict(after.attributes) == {**before, "region": "EMEA", "cost_centre": 4100}
    assert after.display_name == "Barbara B." and after.active


def test_update_user_dag_fails_on_bad_attribute(omni_connection: EmulatorServer) -> None:
    seed(omni_connection)
    before = attributes_of(omni_connection, "user00002@example.com")
    dag = load_dag("omni_update_user", ROOT / "dags")
    run = dag.test(
        run_conf={"email": "user00002@example.com", "attributes": {"cost_centre": "abc"}, "dry_run": False}
    )
    assert run.state == "failed"
    assert attributes_of(omni_connection, "user00002@example.com") == before


@pytest.mark.parametrize("put_mode", ["merge", "replace"])
def test_warehouse_attributes_dag_makes_omni_match_the_table(
    omni_connection: EmulatorServer, warehouse: Path, put_mode: str
) -> None:
    omni_connection.config.put_mode = put_mode  # type: ignore[assignment]
    seed(omni_connection)
    untouched = attributes_of(omni_connection, "user00004@example.com")  # inactive in the warehouse
    dag = load_dag("omni_warehouse_attributes", ROOT / "dags")
    run = dag.test()
    assert run.state == "success"
    for email, region, department, seat_tier, _cost, active in WAREHOUSE:
        if not active:
            continue
        attrs = attributes_of(omni_connection, email)
        expected = {"region": region, "seat_tier": seat_tier, "regions": ["EU"]}
        if department is not None:
            expected["department"] = department
        assert attrs == expected, email
    assert attributes_of(omni_connection, "user00004@example.com") == untouched


def assert_omni_holds_the_active_rows(emu: EmulatorServer) -> None:
    """The warehouse's active rows in Omni, the unmanaged ``regions`` kept."""
    for email, region, department, seat_tier, cost, active in WAREHOUSE:
        if active:
            expected = {"region": region, "seat_tier": seat_tier, "cost_centre": cost, "regions": ["EU"]}
            if department is not None:
                expected["department"] = department
            assert attributes_of(emu, email) == expected


def test_warehouse_sync_dag_diffs_and_reports(omni_connection: EmulatorServer, warehouse: Path) -> None:
    seed(omni_connection)
    dag = load_dag("omni_warehouse_sync", ROOT / "dags")
    first = dag.test()
    assert first.state == "success"
    assert_omni_holds_the_active_rows(omni_connection)
    reports = sorted((warehouse.parent / "reports").glob("*.jsonl"))
    assert len(reports) == 1
    # The default name comes from the real task instance: dag, task, run id and try number.
    assert reports[0].name.startswith("omni_warehouse_sync.sync_attributes.") and reports[0].name.endswith(
        ".try1.jsonl"
    ), reports[0].name
    records = [json.loads(line) for line in reports[0].read_text().splitlines()]
    assert [r["row"] for r in records] == [1, 2, 3]
    assert {r["status"] for r in records} == {"applied"}

    writes_before = omni_connection.stats.snapshot()["requests_by_method"].get("PATCH", 0)
    second = dag.test()
    assert second.state == "success"
    assert omni_connection.stats.snapshot()["requests_by_method"].get("PATCH", 0) == writes_before


def test_deferrable_sync_dag_defers_and_makes_omni_match_the_table(
    omni_connection: EmulatorServer, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dag.test()`` runs the trigger in its own process (no triggerer); ``make demo`` runs the same DAG
    in ``airflow standalone`` with a real one."""
    seed(omni_connection)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_SLOW",
        omni_connection_json(omni_connection.base_url, rate_limit_per_minute=3, rate_window_seconds=11),
    )
    monkeypatch.setenv("OMNI_DEFERRABLE_CONN_ID", "omni_slow")
    dag = load_dag("omni_deferrable_sync", ROOT / "dags")
    assert dag.task_dict["sync_attributes"].deferrable is True
    assert dag.test().state == "success"
    assert_omni_holds_the_active_rows(omni_connection)
    (report,) = sorted((warehouse.parent / "reports").glob("*.jsonl"))
    assert [json.loads(line)["row"] for line in report.read_text().splitlines()] == [1, 2, 3]
    assert list((warehouse.parent / "state").glob("*.state.json")) == []  # removed at the end


def test_snapshot_sync_dag_lists_omni_once_then_diffs_against_its_snapshot(
    omni_connection: EmulatorServer, warehouse: Path
) -> None:
    seed(omni_connection)
    dag = load_dag("omni_snapshot_sync", ROOT / "dags")
    assert dag.test().state == "success"
    snapshot = json.loads((warehouse.parent / "state" / "omni_snapshot_sync.json").read_text())
    assert snapshot["user_count"] == 6 and snapshot["runs_since_full_resync"] == 0
    routes = omni_connection.stats.snapshot()["requests_by_route"]
    listed, total = routes.get("GET /scim/v2/users", 0), sum(routes.values())
    assert dag.test().state == "success"
    routes = omni_connection.stats.snapshot()["requests_by_route"]
    # Nothing changed: the second run reads the attribute definitions and nothing else.
    assert routes.get("GET /scim/v2/users", 0) == listed and sum(routes.values()) == total + 1


def test_warehouse_sync_emits_the_omni_users_asset_event(
    omni_connection: EmulatorServer, warehouse: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> None:
    """The sync task's outlet records an event with its counts, and queues the asset-scheduled DAG."""
    monkeypatch.setenv("OMNI_HOST", omni_connection.base_url)
    seed(omni_connection)
    airflow_testkit.sync_dags_to_db(str(ROOT / "dags"))
    uri = f"omni://{omni_connection.base_url.split('://')[1]}/users"
    before = airflow_testkit.asset_events(uri, str(airflow_db))
    assert load_dag("omni_warehouse_sync", ROOT / "dags").test().state == "success"
    events = airflow_testkit.asset_events(uri, str(airflow_db))
    assert len(events) == len(before) + 1
    assert events[-1]["extra"] == {
        "omni_users": uri,
        "dry_run": False,
        "mode": "update",
        "outcomes": {"applied": 3, "unchanged": 0, "rejected": 0, "failed": 0, "planned": 0},
    }
    assert events[-1]["queued"] == ["omni_after_attribute_sync"]
    # The follower reads the triggering event's counts (none here: it was started by hand).
    assert load_dag("omni_after_attribute_sync", ROOT / "dags").test().state == "success"


ROUTES = {
    "omni_route_xcomarg": "xcomarg",
    "omni_route_task_output": "task-output",
    "omni_route_jinja_plain": "jinja-plain",
    "omni_route_jinja_native": "jinja-native",
    "omni_route_jinja_tojson": "jinja-tojson",
    "omni_route_params": "params",
}


@pytest.mark.parametrize(("dag_id", "region"), sorted(ROUTES.items()))
def test_templating_routes(omni_connection: EmulatorServer, dag_id: str, region: str) -> None:
    omni_connection.state.add_user("route.user@example.com", "Route User", {"department": "Finance"})
    dag = load_dag(dag_id, ROOT / "tests" / "dag_fixtures")
    run = dag.test()
    assert run.state == "success"
    attrs = attributes_of(omni_connection, "route.user@example.com")
    assert attrs["region"] == region
    assert attrs["department"] == "Finance"
    if "cost_centre" in attrs:
        assert attrs["cost_centre"] == 4100


def test_expand_kwargs_route(omni_connection: EmulatorServer) -> None:
    omni_connection.state.add_user("route.user@example.com", "Route User")
    omni_connection.state.add_user("second@example.com", "Second")
    run = load_dag("omni_route_expand_kwargs", ROOT / "tests" / "dag_fixtures").test()
    assert run.state == "success"
    assert attributes_of(omni_connection, "route.user@example.com") == {"region": "mapped-1"}
    assert attributes_of(omni_connection, "second@example.com") == {"region": "mapped-2"}


@pytest.fixture
def task_log(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """What dag.test() logged since the last call (printed or captured, depending on the logging set-up)."""
    caplog.set_level("INFO")

    def since_last_call() -> str:
        text = "".join(capfd.readouterr()) + caplog.text
        caplog.clear()
        return text

    return since_last_call


def test_dag_run_output_never_contains_the_key(
    omni_connection: EmulatorServer, warehouse: Path, task_log: Callable[[], str]
) -> None:
    seed(omni_connection)
    for dag_id in ("omni_warehouse_attributes", "omni_warehouse_sync"):
        assert load_dag(dag_id, ROOT / "dags").test().state == "success"
    everything = task_log()
    assert "DAG TEST" in everything  # the run's output was captured (where depends on logging set-up)
    assert TEST_API_KEY not in everything


#: Registers the example DAGs anew and prints which are paused, then removes them again (so the other tests
#: register them with this process's setting). Run in a child: Airflow reads the setting at import.
REGISTER_AND_READ_PAUSED = """
import contextlib, json, sqlite3, sys
import airflow_testkit
from airflow.api.common.delete_dag import delete_dag
folder, db_path = sys.argv[1], sys.argv[2]
dag_ids = airflow_testkit.DagBag(folder).dag_ids
def forget():
    for dag_id in dag_ids:
        with contextlib.suppress(Exception):  # not registered
            delete_dag(dag_id)
forget()
airflow_testkit.sync_dags_to_db(folder)
with sqlite3.connect(db_path) as db:
    rows = db.execute("SELECT dag_id, is_paused FROM dag").fetchall()
forget()
print(json.dumps({dag_id: bool(paused) for dag_id, paused in rows if dag_id in dag_ids}))
"""


def test_only_the_asset_follower_starts_unpaused(airflow_db: Path) -> None:
    """With Airflow's default (new DAGs paused), ``omni_after_attribute_sync`` is still registered unpaused,
    so it runs by itself after each sync as the README says; the DAGs that write to Omni stay paused."""
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, "-c", REGISTER_AND_READ_PAUSED, str(ROOT / "dags"), str(airflow_db)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    paused = json.loads(done.stdout.strip().splitlines()[-1])
    assert paused.pop("omni_after_attribute_sync") is False
    assert paused and all(paused.values()), paused


def test_warehouse_sync_trigger_form_previews_and_limits(
    omni_connection: EmulatorServer, warehouse: Path, task_log: Callable[[], str]
) -> None:
    seed(omni_connection)
    before = {
        f"user{i:05d}@example.com": attributes_of(omni_connection, f"user{i:05d}@example.com")
        for i in (1, 2, 3)
    }
    dag = load_dag("omni_warehouse_sync", ROOT / "dags")
    # The form: a dry-run toggle (off: unattended runs sync) and the write limit, both rendered into the task.
    params = {name: dag.params[name] for name in ("dry_run", "max_changes")}
    assert params == {"dry_run": False, "max_changes": "50%"}
    task = dag.get_task("sync_attributes")
    assert (task.dry_run, task.max_changes) == ("{{ params.dry_run }}", "{{ params.max_changes }}")
    assert {"dry_run", "max_changes"} <= set(task.template_fields)

    task_log()
    preview = dag.test(run_conf={"dry_run": True})
    assert preview.state == "success"
    assert omni_connection.stats.snapshot()["requests_by_method"].get("PATCH", 0) == 0
    assert {email: attributes_of(omni_connection, email) for email in before} == before
    log = task_log()
    assert "Planned changes (dry run: nothing was written), 12:" in log
    assert '\n  user00001@example.com: region "eu-west" -> "EMEA"\n' in log
    assert "\n  user00003@example.com: cost_centre (unset) -> 4300" in log

    # The limit from the form refuses the plan (3 users to write, at most 1): nothing is written.
    # (dry_run given again: dag.test() keeps the last run's conf as the DAG's params.)
    assert dag.test(run_conf={"dry_run": False, "max_changes": "1"}).state == "failed"
    assert omni_connection.stats.snapshot()["requests_by_method"].get("PATCH", 0) == 0
