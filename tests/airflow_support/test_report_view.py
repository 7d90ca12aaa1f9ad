"""The Omni report tab (Airflow 3 API-server plugin) through the real API app, plugins loaded as in
``airflow api-server``: ``omni_warehouse_sync`` really runs (dag.test(), the emulator as Omni) with one
rejected row and a ``<script>`` value, then the page is read as the UI's iframe reads it (the JWT cookie).
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import airflow_testkit
import pytest
from omni_testkit import make_warehouse, omni_connection_json

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.airflow_support.report_link import APP_PREFIX, VIEW_HREF, VIEW_ROUTE
from omni_provider.emulator import EmulatorServer

pytestmark = [
    pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="the report view is an Airflow 3 API-server plugin"),
    pytest.mark.usefixtures("airflow_db"),
]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert('x')</script>"
MISSING = "nobody@example.com"
WAREHOUSE = [
    # email, region, department, seat_tier, cost_centre, active
    ("user00001@example.com", "EMEA", SCRIPT, "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
    (MISSING, "APAC", "Finance", "pro", 4300, 1),
]
MEMBERSHIPS = [("user00001@example.com", "Finance"), ("user00002@example.com", "Sales")]
RECIPIENT = ("partner@partners.example.com", "EMEA", "gold")


@pytest.fixture(scope="module")
def synced(
    emulator_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One real run of omni_warehouse_sync (it fails its threshold on the rejected row, as in the issue),
    one of omni_warehouse_groups, and one of a DAG whose task is not a sync."""
    folder = tmp_path_factory.mktemp("report-view")
    emulator_server.reset(seed_users=6)  # max_changes="50%": 2 changes of 6 users
    before = {}
    for email, *_ in WAREHOUSE[:2]:
        user = emulator_server.state.find_by_email(email)
        assert user is not None
        before[email] = dict(user.attributes)
    with pytest.MonkeyPatch.context() as patch:
        warehouse = make_warehouse(folder / "warehouse.db", WAREHOUSE)
        with sqlite3.connect(warehouse) as db:
            db.execute("CREATE TABLE group_memberships (email TEXT, team TEXT)")
            db.executemany("INSERT INTO group_memberships VALUES (?, ?)", MEMBERSHIPS)
            db.execute("CREATE TABLE delivery_recipients (email TEXT, region TEXT, partner_tier TEXT)")
            db.execute("INSERT INTO delivery_recipients VALUES (?, ?, ?)", RECIPIENT)
        patch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emulator_server.base_url))
        patch.setenv(
            "AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
        )
        patch.setenv("OMNI_SYNC_REPORT_DIR", str(folder / "reports"))
        run = airflow_testkit.load_dag("omni_warehouse_sync", str(ROOT / "dags")).test()
        groups = airflow_testkit.load_dag("omni_warehouse_groups", str(ROOT / "dags")).test()
        recipients = airflow_testkit.load_dag("omni_email_recipients", str(ROOT / "dags")).test()
        other = airflow_testkit.load_dag("omni_after_attribute_sync", str(ROOT / "dags")).test()
    assert run.state == "failed"  # max_failed_rows=0 and one rejected row: the report is still written
    assert groups.state == "success"
    assert recipients.state == "success"
    yield {
        "recipients_run_id": recipients.run_id,
        "run_id": run.run_id,
        "groups_run_id": groups.run_id,
        "other_run_id": other.run_id,
        "before": before,
    }


@pytest.fixture(scope="module")
def app() -> Any:
    from airflow.api_fastapi.app import create_app

    return create_app()


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """A client that sends the UI's JWT cookie, as the iframe does."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        test_client.cookies.set(COOKIE_NAME_JWT_TOKEN, token)
        yield test_client


def page_url(
    run_id: str, task_id: str = "sync_attributes", dag_id: str = "omni_warehouse_sync", **more: str
) -> str:
    params = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": "{MAP_INDEX}", **more}
    return f"{APP_PREFIX}/report?{urlencode(params)}"


def _cell_text(cell: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", cell).split()))


def table_rows(html: str) -> list[list[str]]:
    """The table's cells as the browser shows their text."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return [
        [_cell_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    ]


def test_the_plugin_registers_the_task_instance_tab(client: Any) -> None:
    plugins = client.get("/api/v2/plugins").json()["plugins"]
    omni = next(p for p in plugins if p["name"] == "omni_provider")
    assert [(v["name"], v["href"], v["destination"], v["url_route"]) for v in omni["external_views"]] == [
        ("Omni report", VIEW_HREF, "task_instance", VIEW_ROUTE)
    ]
    assert [(a["url_prefix"], a["name"]) for a in omni["fastapi_apps"]] == [(APP_PREFIX, "Omni report view")]


def test_lists_changes_old_to_new_and_the_rejected_row_with_its_reason(
    client: Any, synced: dict[str, Any]
) -> None:
    response = client.get(page_url(synced["run_id"]))
    assert response.status_code == 200
    rows = table_rows(response.text)
    # The rejected row first, with its email and reason; then every change sent, old -> new.
    assert rows[0] == ["3", "rejected", MISSING, "", "", "no Omni user with this email"]
    expected = []
    for number, (email, *values, _active) in enumerate(WAREHOUSE[:2], start=1):
        before = synced["before"][email]
        for attribute, new in zip(("region", "department", "seat_tier", "cost_centre"), values, strict=True):
            old = before.get(attribute, "not set")
            expected.append([str(number), "applied", email, attribute, f"{old} → {new}", ""])
    assert rows[1:] == expected
    assert "all (3)" in response.text and "rejected (1)" in response.text and "applied (2)" in response.text


def test_lists_a_group_sync_by_group(client: Any, synced: dict[str, Any]) -> None:
    url = page_url(synced["groups_run_id"], task_id="sync_groups", dag_id="omni_warehouse_groups")
    rows = table_rows(client.get(url).text)
    assert rows == [
        ["1", "added", "Finance", "member user00001@example.com", "not a member → member", ""],
        ["2", "added", "Sales", "member user00002@example.com", "not a member → member", ""],
    ]


def test_lists_an_email_recipients_sync(client: Any, synced: dict[str, Any]) -> None:
    url = page_url(synced["recipients_run_id"], task_id="sync_recipients", dag_id="omni_email_recipients")
    rows = table_rows(client.get(url).text)
    email, region, tier = RECIPIENT
    # A new recipient: created, its note in the reason column.
    assert rows == [
        ["1", "applied", email, "region", f"not set → {region}", "not in Omni; create"],
        ["1", "applied", email, "seat_tier", f"not set → {tier}", "not in Omni; create"],
    ]


def test_filters_by_status(client: Any, synced: dict[str, Any]) -> None:
    rows = table_rows(client.get(page_url(synced["run_id"], status="rejected")).text)
    assert [r[1:3] for r in rows] == [["rejected", MISSING]]
    rows = table_rows(client.get(page_url(synced["run_id"], status="applied")).text)
    assert rows and {r[1] for r in rows} == {"applied"} and MISSING not in {r[2] for r in rows}
    # An unknown status is no filter, and is not echoed into the page.
    response = client.get(page_url(synced["run_id"], status="<b>x</b>"))
    assert len(table_rows(response.text)) == len(table_rows(client.get(page_url(synced["run_id"])).text))
    assert "<b>x</b>" not in response.text


def test_every_value_is_escaped(client: Any, synced: dict[str, Any]) -> None:
    text = client.get(page_url(synced["run_id"])).text
    assert SCRIPT not in text and "<script" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text


def test_unknown_task_instance_is_404(client: Any, synced: dict[str, Any]) -> None:
    for url in (
        page_url(synced["run_id"], task_id="no_such_task"),
        page_url("no-such-run"),
        page_url(synced["run_id"], map_index="3"),
    ):
        response = client.get(url)
        assert response.status_code == 404 and "No such task instance" in response.text


def test_a_task_without_a_report_says_so(client: Any, synced: dict[str, Any]) -> None:
    url = page_url(synced["other_run_id"], task_id="summarise_sync", dag_id="omni_after_attribute_sync")
    response = client.get(url)
    assert response.status_code == 200
    assert "No Omni sync report for this task instance yet" in response.text and "<table" not in response.text


def test_unauthenticated_and_bad_tokens_are_refused(app: Any, synced: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as anonymous:
        assert anonymous.get(page_url(synced["run_id"])).status_code == 401
        anonymous.cookies.set("_token", "not-a-jwt")
        assert anonymous.get(page_url(synced["run_id"])).status_code in (401, 403)
        headers = {"Authorization": "Bearer not-a-jwt"}
        assert anonymous.get(page_url(synced["run_id"]), headers=headers).status_code in (401, 403)


def _set_report_path(run_id: str, path: str) -> str:
    """Point the task instance's summary elsewhere (as someone who can edit XCom could); returns the old."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(XComModel.run_id == run_id, XComModel.key == "sync_summary")
        ).one()
        value = json.loads(row.value) if isinstance(row.value, str) else dict(row.value)
        old = value["report_path"]
        value["report_path"] = path
        row.value = json.dumps(value)
    return str(old)


def test_reads_only_a_report_file_named_by_the_task_instance(
    client: Any, synced: dict[str, Any], tmp_path: Path
) -> None:
    # The URL cannot name a file: extra parameters are ignored.
    response = client.get(page_url(synced["run_id"], report_path="/etc/passwd", path="../../etc/passwd"))
    assert response.status_code == 200 and "root:" not in response.text and MISSING in response.text
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("api_key=omni-live-secret\n")
    not_a_report = tmp_path / "notes.jsonl"
    not_a_report.write_text('{"api_key": "omni-live-secret"}\n')
    original = _set_report_path(synced["run_id"], "/etc/passwd")
    try:
        for path, message in (
            ("/etc/passwd", "not a .jsonl report file"),
            (secret_file.as_uri(), "not a .jsonl report file"),
            (not_a_report.as_uri(), "holds no Omni report records"),
            ((tmp_path / "gone.jsonl").as_uri(), "not readable from the API server"),
            ("s3://user:hunter2@bucket/r.jsonl", "Could not read the report"),
        ):
            _set_report_path(synced["run_id"], path)
            text = client.get(page_url(synced["run_id"])).text
            assert message in text, (path, text)
            assert "root:" not in text and "omni-live-secret" not in text and "hunter2" not in text
    finally:
        _set_report_path(synced["run_id"], original)
