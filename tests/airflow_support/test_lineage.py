"""Lineage of the sync task: hook lineage (datasets on Airflow 2.11), OpenLineage facets, asset events."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_testkit import DAG, capture_task_logs
from omni_testkit import TEST_API_KEY, make_warehouse

from omni_provider._compat import AIRFLOW_V_3_0_PLUS, Asset, Connection
from omni_provider.airflow_support import lineage
from omni_provider.emulator import EmulatorServer
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

WAREHOUSE = [
    ("user00001@example.com", "EMEA", "Finance", "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
]
SQL = "SELECT email, region, department FROM user_attributes WHERE active = 1"


def test_omni_users_uri_is_one_per_instance() -> None:
    for url in ("acme.omniapp.co", "https://ACME.omniapp.co", "https://acme.omniapp.co/api/"):
        assert lineage.omni_users_uri(url) == "omni://acme.omniapp.co/users"
    assert lineage.omni_users_uri("http://127.0.0.1:8123/api") == "omni://127.0.0.1:8123/users"
    with pytest.raises(ValueError, match="no host"):
        lineage.omni_users_uri("https://")


def test_omni_users_asset_is_the_versions_asset_class() -> None:
    asset = lineage.omni_users_asset("acme.omniapp.co")
    expected = "Asset" if AIRFLOW_V_3_0_PLUS else "Dataset"
    assert type(asset).__name__ == expected
    assert asset.uri == "omni://acme.omniapp.co/users"


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        (SQL, "user_attributes"),
        ("select * from Analytics.Users u where u.active", "analytics.users"),
        ("SELECT a.email FROM users a JOIN regions r ON a.r = r.id", None),
        ("SELECT 1", None),
        ("SELECT * FROM a UNION SELECT * FROM b", None),
    ],
)
def test_sql_table(sql: str, table: str | None) -> None:
    assert lineage.sql_table(sql) == table


def test_sql_source_uri_names_the_table_never_the_credentials() -> None:
    conn = Connection(
        conn_id="wh", conn_type="postgres", host="db.internal", port=5432, schema="analytics",
        login="reader", password="warehouse-secret-123",
    )  # fmt: skip
    uri = lineage.sql_source_uri(conn, "SELECT email FROM public.users")
    assert uri == "postgres://db.internal:5432/analytics/public.users"
    assert "reader" not in uri and "warehouse-secret-123" not in uri
    file_db = Connection(conn_id="f", conn_type="sqlite", host="/data/warehouse.db")
    assert lineage.sql_source_uri(file_db, SQL) == "sqlite:///data/warehouse.db/user_attributes"
    weird = Connection(conn_id="g", conn_type="google_cloud_platform", host="h")
    assert lineage.sql_source_uri(weird, "SELECT 1 + 1") == "google-cloud-platform://h/"


# -- hook lineage through Airflow's collector ------------------------------------------------------------


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh hook lineage collector of this Airflow version, as a registered lineage reader (such as the
    OpenLineage provider) makes Airflow hand out; common-compat adds the asset API on 2.11."""
    import airflow.providers.common.compat.sdk as compat_sdk

    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.lineage import HookLineageCollector
    else:
        from airflow.lineage.hook import HookLineageCollector
    fresh = HookLineageCollector()
    monkeypatch.setattr(compat_sdk, "get_hook_lineage_collector", lambda: fresh, raising=False)
    return fresh


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_warehouse(tmp_path / "warehouse.db", WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return path


def as_asset_uri(uri: str) -> str:
    """A URI as Airflow stores it (Airflow 3 writes ``sqlite:///path`` as ``sqlite:/path``)."""
    return str(Asset(uri=uri).uri)


def collected(collector: Any) -> tuple[list[str], list[str], list[Any]]:
    assets = collector.collected_assets
    contexts = [item.context for item in [*assets.inputs, *assets.outputs]]
    return (
        [item.asset.uri for item in assets.inputs],
        [item.asset.uri for item in assets.outputs],
        contexts,
    )


def sync_operator(**kwargs: Any) -> SyncOmniUserAttributesOperator:
    kwargs.setdefault("attributes", ["region"])
    kwargs.setdefault("key_column", "email")
    return SyncOmniUserAttributesOperator(task_id="sync", **kwargs)


def test_sql_sync_reports_its_table_and_omni_users(
    omni_connection: EmulatorServer, warehouse: Path, collector: Any
) -> None:
    omni_connection.state.seed_users(2)
    op = sync_operator(sql=SQL, sql_conn_id="omni_warehouse")
    summary = op.execute({"run_id": "lineage"})  # type: ignore[arg-type]
    assert summary["outcomes"]["applied"] == 2
    inputs, outputs, contexts = collected(collector)
    assert inputs == [as_asset_uri(f"sqlite://{warehouse}/user_attributes")]
    assert outputs == [f"omni://{omni_connection.base_url.split('://')[1]}/users"]
    assert all(isinstance(context, OmniScimHook) for context in contexts)  # hook-level lineage


def test_dry_run_reports_no_output(omni_connection: EmulatorServer, warehouse: Path, collector: Any) -> None:
    omni_connection.state.seed_users(2)
    sync_operator(sql=SQL, sql_conn_id="omni_warehouse", dry_run=True).execute({})  # type: ignore[arg-type]
    inputs, outputs, _ = collected(collector)
    assert inputs == [as_asset_uri(f"sqlite://{warehouse}/user_attributes")] and outputs == []


def test_rows_from_an_upstream_sql_task_name_its_table(warehouse: Path) -> None:
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    with DAG(dag_id="lineage_upstream", schedule=None) as _dag:
        read = SQLExecuteQueryOperator(task_id="read", conn_id="omni_warehouse", sql=SQL)
        other = SQLExecuteQueryOperator(task_id="other", conn_id="omni_warehouse", sql=SQL)
        op = sync_operator(rows=read.output)
        other >> op
    described = lineage.describe_sync(
        omni_base_url="acme.omniapp.co", sql=None, sql_conn_id=None, task=op, attributes=["region"],
        dry_run=False,
    )  # fmt: skip
    assert described.inputs == (f"sqlite://{warehouse}/user_attributes",)  # both read the same table
    assert described.output == "omni://acme.omniapp.co/users"


def test_rows_from_a_python_task_are_named_by_task_id(collector: Any) -> None:
    with DAG(dag_id="lineage_python", schedule=None) as _dag:
        producer = SyncOmniUserAttributesOperator(task_id="make_rows", rows=[], attributes=["region"])
        op = sync_operator(rows=[])
        producer >> op
    hook = OmniScimHook()
    got = lineage.report_sync_lineage(
        hook, "acme.omniapp.co", sql=None, sql_conn_id=None, task=op, attributes=["region"], dry_run=False
    )
    assert got is not None and got.inputs == () and got.upstream_task_ids == ("make_rows",)
    extra = collector.collected_assets.extra
    assert [(e.key, e.value) for e in extra] == [("omni_sync_upstream_tasks", ["make_rows"])]


def test_lineage_errors_never_fail_the_sync(
    omni_connection: EmulatorServer,
    warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    omni_connection.state.seed_users(2)

    def broken() -> Any:
        raise RuntimeError("lineage backend down")

    monkeypatch.setattr("omni_provider._compat.hook_lineage_collector", broken)
    with caplog.at_level(logging.WARNING, logger="omni_provider.airflow_support.lineage"):
        summary = sync_operator(sql=SQL, sql_conn_id="omni_warehouse").execute({})  # type: ignore[arg-type]
    assert summary["outcomes"]["applied"] == 2
    assert "Could not report the lineage" in caplog.text


def test_without_common_compat_lineage_is_skipped_with_a_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from omni_provider import _compat

    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.lineage.hook", None)
    with caplog.at_level(logging.INFO, logger="omni_provider._compat"):
        assert _compat.hook_lineage_collector() is None
    assert "apache-airflow-providers-common-compat" in caplog.text


# -- OpenLineage ------------------------------------------------------------------------------------------


def openlineage_installed() -> bool:
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        return False
    return True


def test_openlineage_facets_of_a_sync(omni_connection: EmulatorServer, warehouse: Path) -> None:
    omni_connection.state.seed_users(2)
    op = sync_operator(sql=SQL, sql_conn_id="omni_warehouse", attributes=["region", "department"])
    op.execute({})  # type: ignore[arg-type]
    if not openlineage_installed():
        # Airflow calls this method only from the openlineage provider; without it the import says so.
        with pytest.raises(ImportError, match="openlineage"):
            op.get_openlineage_facets_on_complete(None)
        return
    facets = op.get_openlineage_facets_on_complete(None)
    [source] = facets.inputs
    assert (source.namespace, source.name) == ("sqlite://", f"{warehouse}/user_attributes")
    [users] = facets.outputs
    host = omni_connection.base_url.split("://")[1]
    assert (users.namespace, users.name) == (f"omni://{host}", "users")
    assert [f.name for f in users.facets["schema"].fields] == ["region", "department"]


def test_openlineage_facets_before_execute_are_empty() -> None:
    if not openlineage_installed():
        pytest.skip("needs the openlineage provider; the case above covers its absence")
    facets = sync_operator(rows=[]).get_openlineage_facets_on_complete(None)
    assert facets.inputs == [] and facets.outputs == []


# -- asset events -----------------------------------------------------------------------------------------


class _Event:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}


class _OutletEvents(dict):  # type: ignore[type-arg]
    def __missing__(self, key: Any) -> _Event:
        self[key] = _Event()
        return self[key]


def test_outlet_event_carries_the_sync_counts(
    omni_connection: EmulatorServer, warehouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    omni_connection.state.seed_users(2)
    asset = lineage.omni_users_asset(omni_connection.base_url)
    other = lineage.omni_users_asset("other.omniapp.co")
    op = sync_operator(sql=SQL, sql_conn_id="omni_warehouse", outlets=[asset, other])
    events = _OutletEvents()
    with (
        capture_task_logs(),
        caplog.at_level(logging.WARNING, logger="omni_provider.airflow_support.lineage"),
    ):
        op.execute({"outlet_events": events})  # type: ignore[arg-type]
    assert events[asset].extra == {
        "omni_users": asset.uri,
        "dry_run": False,
        "mode": "update",
        "outcomes": {"applied": 2, "unchanged": 0, "rejected": 0, "failed": 0, "planned": 0},
    }
    assert "names another Omni instance" in caplog.text  # the outlet for another host is flagged


def test_key_never_in_lineage(omni_connection: EmulatorServer, warehouse: Path, collector: Any) -> None:
    omni_connection.state.seed_users(2)
    events = _OutletEvents()
    asset = lineage.omni_users_asset(omni_connection.base_url)
    sync_operator(sql=SQL, sql_conn_id="omni_warehouse", outlets=[asset]).execute(
        {"outlet_events": events}  # type: ignore[arg-type]
    )
    inputs, outputs, _ = collected(collector)
    assert TEST_API_KEY not in json.dumps([inputs, outputs, events[asset].extra])
