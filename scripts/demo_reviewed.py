"""The reviewed sync in `make demo` (``omni_reviewed_sync``: plan -> approve -> apply), on Airflow 3.3.

The approval is given the way a reviewer's click in the UI gives it: through Airflow's REST API
(``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/approve/-1/hitlDetails``), answered by an
``airflow api-server`` sharing the demo's metadata DB. ``airflow dags test`` runs the DAG: it keeps the run
alive while the approval task waits in ``awaiting_input`` and goes on once the answer is recorded. A
scheduler is not needed. Run twice: rejected (the apply is skipped, nothing is written), then approved.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

#: The warehouse moves after the last sync: the reviewed run has these to plan.
WAREHOUSE_CHANGES = [
    ("APAC", "user00002@example.com"),
    ("APAC", "user00004@example.com"),
    ("AMER", "user00007@example.com"),
]
ADMIN = "reviewer"


def _wait(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")


def _awaiting_approval(airflow_db: Path) -> str | None:
    """The run id whose approval task waits for a reviewer, if any."""
    with contextlib.closing(sqlite3.connect(airflow_db)) as db:
        row = db.execute(
            "SELECT run_id FROM task_instance WHERE dag_id = 'omni_reviewed_sync' AND task_id = 'approve' "
            "AND state = 'awaiting_input'"
        ).fetchone()
    return str(row[0]) if row else None


def _task_states(airflow_db: Path, run_id: str) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(airflow_db)) as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = 'omni_reviewed_sync' AND run_id = ?",
            (run_id,),
        ).fetchall()
    return {task_id: str(state) for task_id, state in rows}


def _writes(base_url: str) -> int:
    methods = httpx.get(f"{base_url}/_emulator/stats", timeout=10).json()["requests_by_method"]
    return sum(methods.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))


class ApiServer:
    """``airflow api-server`` on loopback with one reviewer (simple auth manager), in its own session."""

    def __init__(self, airflow: str, env: dict[str, str], home: Path, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.password = "pw-" + secrets.token_urlsafe(12)
        passwords = home / "reviewers.json"
        passwords.write_text(json.dumps({ADMIN: self.password}))
        self.env = {
            **env,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "NO_PROXY": "*",
        }
        self.log = home.parent / "api-server.log"
        self.process = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait("the api-server", self._healthy, timeout=180)
        token = httpx.post(
            f"{self.base_url}/auth/token", json={"username": ADMIN, "password": self.password}, timeout=30
        )
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit(f"airflow api-server exited with {self.process.returncode}; see {self.log}")
        try:
            return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def hitl(self, run_id: str, method: str = "GET", body: Any = None) -> Any:
        path = f"/api/v2/dags/omni_reviewed_sync/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
        answer = httpx.request(method, self.base_url + path, json=body, headers=self.headers, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def run_reviewed_sync(
    airflow: str, env: dict[str, str], demo: Path, base_url: str, warehouse: Path, port: int
) -> None:
    """Reject once (nothing written), then approve (exactly the plan written)."""
    airflow_home = Path(env["AIRFLOW_HOME"])
    airflow_db = airflow_home / "airflow.db"
    with contextlib.closing(sqlite3.connect(warehouse)) as db, db:
        db.executemany("UPDATE user_attributes SET region = ? WHERE lower(email) = ?", WAREHOUSE_CHANGES)
    print("\nomni_reviewed_sync: the warehouse moved 3 regions; plan -> approve (REST API) -> apply")
    server = ApiServer(airflow, env, airflow_home, port)
    try:
        for decision in ("Reject", "Approve"):
            writes_before = _writes(base_url)
            log_path = demo / f"omni_reviewed_sync_{decision.lower()}.log"
            print(f"\n$ airflow dags test omni_reviewed_sync   (log: {log_path})")
            with log_path.open("w") as log:
                test = subprocess.Popen(
                    [airflow, "dags", "test", "omni_reviewed_sync"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    run_id = _wait("the approval task", lambda: _awaiting_approval(airflow_db), timeout=300)
                    detail = server.hitl(run_id)
                    if decision == "Reject":
                        print(f"  The reviewer sees ({detail['subject']}):")
                        print("    " + "\n    ".join(str(detail["body"]).splitlines()))
                    server.hitl(run_id, "PATCH", {"chosen_options": [decision], "params_input": {}})
                    print(f"  {decision} given through the REST API as {ADMIN}")
                    code = test.wait(timeout=300)
                finally:
                    if test.poll() is None:
                        test.terminate()
                        test.wait(timeout=30)
            if code != 0:
                print(log_path.read_text()[-4000:])
                raise SystemExit(f"omni_reviewed_sync ({decision}) failed with exit code {code}")
            states = _task_states(airflow_db, run_id)
            written = _writes(base_url) - writes_before
            print(f"  tasks: {states}; writes sent to Omni: {written}")
            if decision == "Reject" and (written or states.get("apply") != "skipped"):
                raise SystemExit("a rejected plan must end with the apply skipped and nothing written")
            if decision == "Approve" and (
                written != len(WAREHOUSE_CHANGES) or states.get("apply") != "success"
            ):
                raise SystemExit(
                    f"the approved plan should write {len(WAREHOUSE_CHANGES)} users, wrote {written}"
                )
    finally:
        server.stop()
