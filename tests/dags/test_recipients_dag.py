"""The example email-only recipients DAG, run with dag.test() against the emulator over loopback."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from airflow_testkit import load_dag

from omni_provider.emulator import EmulatorServer

pytestmark = pytest.mark.usefixtures("airflow_db")

ROOT = Path(__file__).resolve().parent.parent.parent
RECIPIENTS = [(f"partner{i:03d}@partners.example.com", "EMEA", "gold") for i in range(1, 31)]


def test_recipients_dag_upserts_in_bulk_keeps_unmanaged_and_a_rerun_sends_nothing(
    omni_connection: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "warehouse.db"
    with sqlite3.connect(warehouse) as db:
        db.execute("CREATE TABLE delivery_recipients (email TEXT, region TEXT, partner_tier TEXT)")
        db.executemany("INSERT INTO delivery_recipients VALUES (?, ?, ?)", RECIPIENTS)
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )
    monkeypatch.setenv("OMNI_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    emu = omni_connection
    for i in range(1, 11):  # ten exist already, half with attributes the DAG does not manage
        extra = {"department": "Partners", "omni_user_timezone": "Europe/Berlin"} if i % 2 else {}
        emu.state.recipients.add(f"partner{i:03d}@partners.example.com", {"region": "AMER", **extra})

    dag = load_dag("omni_email_recipients", str(ROOT / "dags"))
    assert dag.test().state == "success"

    held = {r.email: dict(r.attributes) for r in emu.state.recipients.all()}
    assert len(held) == 30
    assert held["partner001@partners.example.com"] == {
        "region": "EMEA",
        "seat_tier": "gold",
        "department": "Partners",
        "omni_user_timezone": "Europe/Berlin",
    }
    assert held["partner030@partners.example.com"] == {"region": "EMEA", "seat_tier": "gold"}
    bulk = emu.stats.snapshot()["requests_by_route"]["POST /v1/users/email-only/bulk"]
    assert math.ceil(30 / 20) <= bulk <= math.ceil(30 / 20) + 1
    (report,) = sorted((tmp_path / "reports").glob("*.jsonl"))
    assert [json.loads(line)["status"] for line in report.read_text().splitlines()] == ["applied"] * 30

    before = emu.stats.snapshot()["requests_by_method"].get("POST", 0)
    assert dag.test().state == "success"
    assert emu.stats.snapshot()["requests_by_method"].get("POST", 0) == before
