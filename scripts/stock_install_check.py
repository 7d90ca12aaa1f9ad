"""`make stock-install-check`: the built package in a stock Airflow of each supported version.

For each ``locks/stock-airflow-VERSION.in`` (or each ``--airflow VERSION``): a fresh venv where the wheel
built from this checkout is installed the way the README tells users to, in one pip call with a constraints
file: ``pip install apache-airflow==VERSION "omni-provider[airflow,emulator]" -c <constraints>``. A user
passes Airflow's constraints file for their Airflow and Python; this machine reaches only the package index,
so the check passes the lock ``locks/stock-airflow-VERSION.txt`` (the same kind of file: every distribution
pinned) and then checks that the venv holds exactly it. Checked: Airflow lists the provider and the ``omni``
connection type; ``airflow dags test`` of every example DAG against the local Omni emulator succeeds and
changes what it should. Prints the time of each step. Work files go to ``.stock-check/``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".stock-check"
LOCKS = ROOT / "locks"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import WAREHOUSE_ROWS, free_port, make_warehouse, wait_until_up  # noqa: E402
from omni_dagster_example.sample_warehouse import RECIPIENT_ROWS  # noqa: E402

EXAMPLE_DAGS = [
    (
        "omni_update_user",
        {"email": "User00008@example.com", "attributes": {"region": "EMEA"}, "dry_run": False},
    ),
    ("omni_warehouse_attributes", None),
    ("omni_warehouse_sync", None),
    ("omni_after_attribute_sync", None),
    ("omni_warehouse_groups", None),
    # Twice: the first run lists Omni and writes the snapshot, the second diffs against it.
    ("omni_snapshot_sync", None),
    ("omni_snapshot_sync", None),
    ("omni_email_recipients", None),
]


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    def run(self, version: str, step: str, cmd: list[str], env: dict[str, str] | None = None) -> str:
        started = time.monotonic()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=WORK)
        seconds = time.monotonic() - started
        self.rows.append((version, step, seconds))
        status = "ok" if result.returncode == 0 else f"FAILED ({result.returncode})"
        print(f"[{version}] {step}: {status} in {seconds:.1f} s", flush=True)
        if result.returncode != 0:
            print((result.stdout + result.stderr)[-4000:])
            raise SystemExit(f"[{version}] {step} failed")
        return result.stdout


def build_wheel(timer: Timer) -> Path:
    dist = WORK / "dist"
    timer.run(
        "-",
        "build the wheel",
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)],
    )
    [wheel] = sorted(dist.glob("omni_provider-*.whl"))
    return wheel


def check_version(version: str, wheel: Path, timer: Timer) -> None:
    home = WORK / f"airflow-{version}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    venv = home / "venv"
    python, airflow = str(venv / "bin" / "python"), str(venv / "bin" / "airflow")
    constraints = LOCKS / f"stock-airflow-{version}.txt"
    pip = [python, "-m", "pip", "install", "--quiet", "--constraint", str(constraints)]
    timer.run(version, "create venv", [sys.executable, "-m", "venv", str(venv)])
    timer.run(version, "pip as locked", [*pip, "pip"])
    # The README's install: Airflow and the provider in one call, under a constraints file. The emulator
    # extra runs the example DAGs' Omni; the SQLite provider reads the example warehouse.
    ours = f"omni-provider[airflow,emulator] @ {wheel.as_uri()}"
    install = [*pip, f"apache-airflow=={version}", ours, "apache-airflow-providers-sqlite"]
    timer.run(version, f"pip install apache-airflow=={version} omni-provider -c <constraints>", install)
    check = [sys.executable, str(ROOT / "scripts" / "locks.py"), "check", f"stock-airflow-{version}", python]
    timer.run(version, "the venv holds exactly the constraints", check)

    warehouse = home / "warehouse.db"
    make_warehouse(warehouse)
    api_key = "stock-" + secrets.token_urlsafe(18)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Unpaused, as a deployment runs them: only unpaused DAGs are queued by an asset event.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW_CONN_OMNI_DEFAULT": json.dumps(
                {
                    "conn_type": "omni",
                    "host": base_url,
                    "password": api_key,
                    "extra": {"rate_limit_per_minute": 6000},
                }
            ),
            "AIRFLOW_CONN_OMNI_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            "OMNI_SYNC_REPORT_DIR": str(home / "reports"),
            "OMNI_SYNC_STATE_DIR": str(home / "sync-state"),
            "OMNI_HOST": base_url,
            "OMNI_EMULATOR_API_KEY": api_key,
        }
    )
    providers = json.loads(
        timer.run(version, "airflow providers list", [airflow, "providers", "list", "-o", "json"], env)
    )
    ours = [p for p in providers if p["package_name"] == "omni-provider"]
    assert ours, f"[{version}] Airflow does not list omni-provider"
    hooks = timer.run(version, "airflow providers hooks", [airflow, "providers", "hooks", "-o", "json"], env)
    assert any(h.get("connection_type") == "omni" for h in json.loads(hooks)), f"[{version}] no omni hook"
    timer.run(version, "airflow db migrate", [airflow, "db", "migrate"], env)
    # What the DAG processor does in a deployment: register the DAGs and the assets they use (an asset
    # event is only recorded for a known asset, and only queues DAGs known to be scheduled on it).
    timer.run(version, "airflow dags reserialize", [airflow, "dags", "reserialize"], env)

    emulator = subprocess.Popen(
        [sys.executable, "-m", "omni_provider.emulator", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--seed-users", "25", "--no-rate-limit"],  # max_changes="50%" of the sync DAG allows 12
        env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_up(base_url, emulator)
        for dag_id, conf in EXAMPLE_DAGS:
            cmd = [airflow, "dags", "test", dag_id] + (["-c", json.dumps(conf)] if conf else [])
            timer.run(version, f"airflow dags test {dag_id}", cmd, env)
        users = httpx.get(f"{base_url}/_emulator/users", timeout=10).json()
        users = users.get("users") or users.get("Resources") if isinstance(users, dict) else users
        attrs = {u["userName"]: u.get("urn:omni:params:1.0:UserAttribute") or {} for u in users}
        assert attrs["user00008@example.com"]["region"] == "EMEA", attrs  # the form DAG's write
        for email, region, department, seat_tier, cost, active in WAREHOUSE_ROWS:
            if active:
                got = attrs[email.lower()]
                assert (got["region"], got["seat_tier"], got["cost_centre"]) == (region, seat_tier, cost), got
                assert got.get("department") == department, got
        # The second snapshot run listed no users: the snapshot says so (one run since the full read).
        state = json.loads((home / "sync-state" / "omni_snapshot_sync.json").read_text())
        assert state["runs_since_full_resync"] == 1, state["runs_since_full_resync"]
        listed = httpx.get(
            f"{base_url}/api/scim/v2/groups", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        ).json()
        names = {g["displayName"] for g in listed.get("Resources", [])}
        assert {"Finance", "Sales", "Engineering"} <= names, names  # the group DAG's mirror
        recipients = httpx.get(
            f"{base_url}/api/v1/users/email-only",
            params={"email": "partner001@", "pageSize": 1},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        ).json()["records"]
        email, region, tier = RECIPIENT_ROWS[0]
        assert [r["email"] for r in recipients] == [email], recipients  # the recipients DAG's upsert
        assert recipients[0]["user_attributes"]["region"] == region, recipients
        assert recipients[0]["user_attributes"]["seat_tier"] == tier, recipients
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        kind = "dataset" if version.startswith("2.") else "asset"
        events = db.execute(f"SELECT extra FROM {kind}_event").fetchall()  # noqa: S608 - fixed name
        queued = db.execute(f"SELECT target_dag_id FROM {kind}_dag_run_queue").fetchall()  # noqa: S608
    assert len(events) == 1, f"[{version}] the sync DAG recorded {len(events)} {kind} events"
    assert json.loads(events[0][0])["outcomes"]["applied"] >= 1, events
    assert queued == [("omni_after_attribute_sync",)], queued
    print(f"[{version}] provider registered, every example DAG succeeded; the sync's {kind} event "
          f"{events[0][0]} queued {queued[0][0]}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--airflow",
        action="append",
        help="an Airflow version to check (default: each locks/stock-airflow-VERSION.in)",
    )
    args = parser.parse_args()
    versions = args.airflow or sorted(
        (p.stem.removeprefix("stock-airflow-") for p in LOCKS.glob("stock-airflow-*.in")),
        key=lambda v: tuple(int(part) for part in v.split(".")),
    )
    WORK.mkdir(exist_ok=True)
    timer = Timer()
    wheel = build_wheel(timer)
    for version in versions:
        check_version(version, wheel, timer)
    print("\nTimes (s):")
    for version, step, seconds in timer.rows:
        print(f"  {version:<8} {step:<52} {seconds:7.1f}")
    totals: dict[str, float] = {}
    for version, _step, seconds in timer.rows:
        totals[version] = totals.get(version, 0.0) + seconds
    print("  " + ", ".join(f"{v}: {s:.0f} s" for v, s in totals.items()))


if __name__ == "__main__":
    main()
