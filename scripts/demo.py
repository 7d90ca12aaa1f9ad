"""`make demo`: the example DAGs end to end against the local Omni emulator, through Airflow itself.

1. A fresh ``.demo/`` folder: an Airflow home on SQLite and a small "warehouse" (SQLite) of user attributes.
2. The emulator on a free loopback port, seeded with users, its state kept in ``.demo/omni-state.json``.
3. ``airflow dags test`` of ``omni_update_user`` (what the UI trigger form does, for one user), of
   ``omni_warehouse_attributes`` (a task per user), then of ``omni_warehouse_sync`` (one diffing, paced
   task), twice of ``omni_snapshot_sync`` (the same sync diffed against a snapshot: the second run lists
   no users), of ``omni_warehouse_groups`` and twice of ``omni_email_recipients`` (email-only recipients in
   bulk); the users' attributes before and after, and the summaries.
4. ``omni_reviewed_sync`` (plan -> approval -> apply, ``scripts/demo_reviewed.py``): rejected, then approved,
   the answers given through the REST API of an ``airflow api-server`` sharing the metadata DB.
5. ``omni_deferrable_sync`` (``deferrable=True``) in a real ``airflow standalone`` (scheduler, triggerer,
   dag-processor, api-server), after the emulator's users are reset: the task defers while its rate window
   (5 requests per 20 s, this DAG's connection) is full, the triggerer wakes it, and the run succeeds.

The API key is random for each run and is never printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The sample warehouse lives in the Dagster example, whose README makes it with one command: one copy.
sys.path.insert(0, str(ROOT / "examples" / "dagster"))
from omni_dagster_example.sample_warehouse import WAREHOUSE_ROWS, make_warehouse  # noqa: E402

DEMO = ROOT / ".demo"
PYTHON = sys.executable
AIRFLOW = str(Path(PYTHON).with_name("airflow"))

SHOWN = ["region", "department", "seat_tier", "cost_centre"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_groups(base_url: str, api_key: str) -> None:
    """Groups as an admin left them: Sales with a member the warehouse no longer lists, and Admins,
    which the DAG does not manage. (Finance and Engineering do not exist yet: the DAG creates them.)"""
    api = httpx.Client(base_url=base_url + "/api", headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    with api:
        users = api.get("/scim/v2/users", params={"count": 100}).json()["Resources"]
        ids = {u["userName"]: u["id"] for u in users}
        for name, emails in (
            ("Sales", ["user00002@example.com", "user00010@example.com"]),
            ("Admins", ["user00011@example.com"]),
        ):
            body = {"displayName": name, "members": [{"value": ids[e]} for e in emails]}
            api.post("/scim/v2/groups", json=body).raise_for_status()


def show_groups(title: str, base_url: str) -> None:
    print(f"\n{title}")
    for group in httpx.get(f"{base_url}/_emulator/groups", timeout=10).json()["groups"]:
        emails = sorted(m["display"] for m in group["members"])
        print(f"  {group['displayName']:<12} {', '.join(emails) or '-'}")


def show_recipients_run(base_url: str, api_key: str, env: dict[str, str], airflow_home: Path) -> None:
    """``omni_email_recipients`` twice: 12 of the 45 partners exist already (some with attributes the DAG
    does not manage, which it keeps); the second run sends no write."""
    existing = [
        {
            "email": f"partner{i:03d}@partners.example.com",
            "userAttributes": {"region": "AMER", **({"department": "Partners"} if i % 3 == 0 else {})},
        }
        for i in range(1, 13)
    ]
    with httpx.Client(base_url=base_url + "/api", headers={"Authorization": f"Bearer {api_key}"}) as api:
        api.post("/v1/users/email-only/bulk", json={"users": existing}).raise_for_status()
    print("\nomni_email_recipients (45 partners, 12 already recipients), run twice:")
    for attempt in ("first", "second"):
        run([AIRFLOW, "dags", "test", "omni_email_recipients"], env, f"omni_email_recipients_{attempt}.log")
        for _task_id, _map_index, value in task_summaries(
            airflow_home / "airflow.db", "omni_email_recipients"
        )[-1:]:
            print(
                f"  {attempt} run: plan {value['plan']}, outcomes {value['outcomes']}, "
                f"requests {value['requests_by_method']} (one upsert per changed or new recipient: "
                f"{value['plan']['create'] + value['plan']['update'] + value['plan']['unset']} POSTs; "
                f"one per row: {value['rows']})"
            )
    with httpx.Client(base_url=base_url + "/api", headers={"Authorization": f"Bearer {api_key}"}) as api:
        page = api.get("/v1/users/email-only", params={"email": "partner003@", "pageSize": 1}).json()
    for record in page["records"]:
        kept = {k: v for k, v in record["user_attributes"].items() if not k.startswith("omni_")}
        print(f"  {record['email']}: {kept} (department set by hand in Omni: kept)")


def wait_until_up(base_url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the emulator exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/_emulator/stats", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the emulator did not start within 30 s")


def snapshot(base_url: str) -> dict[str, dict[str, Any]]:
    users = httpx.get(f"{base_url}/_emulator/users", timeout=10).json()
    if isinstance(users, dict):
        users = users.get("users") or users.get("Resources") or []
    wanted = {row[0].casefold() for row in WAREHOUSE_ROWS}
    return {
        u["userName"]: dict(u.get("urn:omni:params:1.0:UserAttribute") or {})
        for u in users
        if u["userName"].casefold() in wanted
    }


def show(
    title: str, state: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]] | None = None
) -> None:
    print(f"\n{title}")
    print(f"  {'user':<24}" + "".join(f"{name:<14}" for name in SHOWN) + "other attributes")
    for email in sorted(state):
        attrs = state[email]
        cells = []
        for name in SHOWN:
            value = attrs.get(name, "-")
            changed = before is not None and before.get(email, {}).get(name) != attrs.get(name)
            cells.append(f"{str(value) + (' *' if changed else ''):<14}")
        others = {k: v for k, v in attrs.items() if k not in SHOWN}
        print(f"  {email:<24}" + "".join(cells) + (json.dumps(others) if others else ""))
    if before is not None:
        print("  (* = changed by this run)")


def run(cmd: list[str], env: dict[str, str], log_name: str) -> None:
    log_path = DEMO / log_name
    print(f"\n$ {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}   (log: {log_path})")
    with log_path.open("w") as log:
        result = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        print(log_path.read_text()[-4000:])
        raise SystemExit(f"{cmd[1:4]} failed with exit code {result.returncode}")


def task_summaries(airflow_db: Path, dag_id: str) -> list[tuple[str, int, Any]]:
    with sqlite3.connect(airflow_db) as db:
        rows = db.execute(
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND key = 'return_value' "
            "ORDER BY task_id, map_index",
            (dag_id,),
        ).fetchall()
    out = []
    for task_id, map_index, value in rows:
        try:
            decoded = json.loads(value) if isinstance(value, str | bytes) else value
        except ValueError:
            decoded = value
        out.append((task_id, map_index, decoded))
    return out


def dag_run_state(airflow_db: Path, dag_id: str) -> str | None:
    with sqlite3.connect(airflow_db) as db:
        row = db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    return None if row is None else str(row[0])


def run_deferrable_sync(env: dict[str, str], airflow_home: Path, base_url: str) -> None:
    """``omni_deferrable_sync`` in ``airflow standalone``: deferrals go through a real triggerer (``airflow
    dags test`` would run the trigger inline)."""
    dag_id = "omni_deferrable_sync"
    before = snapshot(base_url)
    httpx.post(f"{base_url}/_emulator/reset", json={"seed_users": 25}, timeout=10).raise_for_status()
    reset = snapshot(base_url)
    show(f"\nOmni reset for {dag_id} (the sync has work again):", reset, before)
    api_port = free_port()
    standalone_env = {
        **env,
        "AIRFLOW_CONN_OMNI_DEFERRABLE": json.dumps(
            {
                "conn_type": "omni",
                "host": base_url,
                "password": env["OMNI_EMULATOR_API_KEY"],
                # A window long enough that each deferral outlasts the worker's exit (a few seconds):
                # a trigger firing before it makes Airflow 3.3's scheduler fail the task.
                "extra": {"rate_limit_per_minute": 5, "rate_window_seconds": 20},
            }
        ),
        "OMNI_DEFERRABLE_CONN_ID": "omni_deferrable",
        # standalone starts each component as `airflow ...` from the PATH: this venv's.
        "PATH": str(Path(AIRFLOW).parent) + os.pathsep + env.get("PATH", ""),
        "AIRFLOW__API__PORT": str(api_port),
        # Task runners reach the api-server's execution API on this port (the default is 8080).
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
    }
    log_path = DEMO / "airflow-standalone.log"
    print(f"\n$ airflow standalone   (scheduler, triggerer, dag-processor, api-server; log: {log_path})")
    standalone = subprocess.Popen(
        [AIRFLOW, "standalone"],
        env=standalone_env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stopping its session stops every process it started
    )
    try:
        deadline = time.monotonic() + 240
        triggered = False
        while not triggered:
            if standalone.poll() is not None or time.monotonic() > deadline:
                print(log_path.read_text()[-4000:])
                raise SystemExit("airflow standalone did not come up (or did not parse the DAG) in time")
            time.sleep(3)
            for args in (["dags", "unpause", dag_id], ["dags", "trigger", dag_id]):
                done = subprocess.run(
                    [AIRFLOW, *args], env=standalone_env, capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    break
            else:
                triggered = True
        print(f"Triggered {dag_id}; waiting for the run (the task defers while the window is full)")
        state = None
        while state not in ("success", "failed"):
            if time.monotonic() > deadline + 300:
                raise SystemExit(f"{dag_id} did not finish in time (last state {state})")
            time.sleep(3)
            state = dag_run_state(airflow_home / "airflow.db", dag_id)
        if state != "success":
            print(log_path.read_text()[-4000:])
            raise SystemExit(f"{dag_id} ended {state}")
        after = snapshot(base_url)
        show(f"Omni after {dag_id} (deferrable, through the triggerer):", after, reset)
        for task_id, _map_index, value in task_summaries(airflow_home / "airflow.db", dag_id):
            print(
                f"Summary (XCom, {task_id}): deferrals {value['deferrals']}, outcomes {value['outcomes']}, "
                f"requests {value['requests_by_method']}"
            )
            if not value["deferrals"]:
                raise SystemExit(f"{dag_id} never deferred")
    finally:
        os.killpg(standalone.pid, signal.SIGTERM)
        try:
            standalone.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(standalone.pid, signal.SIGKILL)


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    airflow_home = DEMO / "airflow"
    warehouse = DEMO / "warehouse.db"
    make_warehouse(warehouse)
    api_key = "demo-" + secrets.token_urlsafe(24)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW_CONN_OMNI_DEFAULT": json.dumps(
                {
                    "conn_type": "omni",
                    "host": base_url,
                    "password": api_key,
                    # The emulator answers in microseconds; the limit is kept so pacing is visible.
                    "extra": {"rate_limit_per_minute": 600},
                }
            ),
            "AIRFLOW_CONN_OMNI_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            "OMNI_SYNC_REPORT_DIR": str(DEMO / "reports"),
            "OMNI_SYNC_STATE_DIR": str(DEMO / "sync-state"),
            "OMNI_EMULATOR_API_KEY": api_key,
        }
    )
    print(f"Starting the Omni emulator on {base_url} (state: {DEMO / 'omni-state.json'})")
    emulator = subprocess.Popen(
        [
            PYTHON, "-m", "omni_provider.emulator", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--seed-users", "25",
            "--state-file", str(DEMO / "omni-state.json"),
            "--put-mode", "replace",
            "--rate-limit", "600",
        ],
        env=env,
        stdout=(DEMO / "emulator.log").open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(base_url, emulator)
        before = snapshot(base_url)
        show("Omni before (users named in the warehouse):", before)
        print("\nSetting up Airflow's metadata DB (SQLite, first run takes a few seconds)")
        run([AIRFLOW, "db", "migrate"], env, "airflow-db-migrate.log")

        # What an admin does from the trigger form: fix one user (user00008 is inactive in the warehouse).
        form = {"email": "User00008@example.com", "attributes": {"region": "EMEA"}, "dry_run": False}
        single = [AIRFLOW, "dags", "test", "omni_update_user", "-c", json.dumps(form)]
        run(single, env, "omni_update_user.log")
        for task_id, _map_index, value in task_summaries(airflow_home / "airflow.db", "omni_update_user"):
            print(f"  {task_id}: {json.dumps(value)}")

        run([AIRFLOW, "dags", "test", "omni_warehouse_attributes"], env, "omni_warehouse_attributes.log")
        middle = snapshot(base_url)
        show("Omni after omni_update_user and omni_warehouse_attributes (a task per user):", middle, before)

        print("\nTask summaries (XCom):")
        for task_id, map_index, value in task_summaries(
            airflow_home / "airflow.db", "omni_warehouse_attributes"
        ):
            if task_id == "update_user":
                print(f"  {task_id}[{map_index}]: {json.dumps(value)}")

        if (ROOT / "dags" / "omni_warehouse_sync.py").exists():
            run([AIRFLOW, "dags", "test", "omni_warehouse_sync"], env, "omni_warehouse_sync.log")
            after = snapshot(base_url)
            show("Omni after omni_warehouse_sync (one diffing task):", after, middle)
            for task_id, _map_index, value in task_summaries(
                airflow_home / "airflow.db", "omni_warehouse_sync"
            ):
                if task_id == "sync_attributes":
                    print(f"\nSync summary (XCom): {json.dumps(value, indent=2)}")
            reports = sorted((DEMO / "reports").glob("*.jsonl"))
            if reports:
                print(f"\nPer-row report: {reports[-1]}")
                for line in reports[-1].read_text().splitlines()[:12]:
                    print(f"  {line}")
        if (ROOT / "dags" / "omni_snapshot_sync.py").exists():
            print("\nomni_snapshot_sync (diff_against='snapshot'), run twice:")
            for attempt in ("first", "second"):
                run([AIRFLOW, "dags", "test", "omni_snapshot_sync"], env, f"omni_snapshot_sync_{attempt}.log")
                for _task_id, _map_index, value in task_summaries(
                    airflow_home / "airflow.db", "omni_snapshot_sync"
                )[-1:]:
                    print(
                        f"  {attempt} run: diff against {value['diff_against']} ({value['diff_reason']}), "
                        f"{value['requests']} requests, outcomes {value['outcomes']}"
                    )
        if (ROOT / "dags" / "omni_warehouse_groups.py").exists():
            seed_groups(base_url, api_key)
            show_groups("Omni groups before omni_warehouse_groups:", base_url)
            run([AIRFLOW, "dags", "test", "omni_warehouse_groups"], env, "omni_warehouse_groups.log")
            show_groups(
                "Omni groups after (Sales, Finance, Engineering mirrored; Admins untouched):", base_url
            )
            for task_id, _map_index, value in task_summaries(
                airflow_home / "airflow.db", "omni_warehouse_groups"
            ):
                print(f"\nGroup sync summary (XCom, {task_id}): {json.dumps(value)}")
            run([AIRFLOW, "dags", "test", "omni_warehouse_groups"], env, "omni_warehouse_groups_rerun.log")
            for task_id, _map_index, value in task_summaries(
                airflow_home / "airflow.db", "omni_warehouse_groups"
            )[-1:]:
                sent = value["requests_by_method"]
                print(f"Re-run (XCom, {task_id}): outcomes {value['outcomes']}, requests {sent}")
        if (ROOT / "dags" / "omni_email_recipients.py").exists():
            show_recipients_run(base_url, api_key, env, airflow_home)
        if (ROOT / "dags" / "omni_reviewed_sync.py").exists():
            from demo_reviewed import run_reviewed_sync

            run_reviewed_sync(AIRFLOW, env, DEMO, base_url, warehouse, free_port())
        if (ROOT / "dags" / "omni_deferrable_sync.py").exists():
            run_deferrable_sync(env, airflow_home, base_url)
        print("\nDemo finished: every DAG run succeeded.")
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()


if __name__ == "__main__":
    main()
