"""The Dagster resource returns what the Airflow operators return for the same input and the same Omni."""

from __future__ import annotations

from typing import Any

import pytest
from omni_testkit import omni_connection_json
from sync_testkit import seed, writes

from omni_provider.dagster import OmniScimResource
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.update_user import UpdateOmniUserOperator

#: Timing, and the report's location (each side writes its own file).
VARYING = {"seconds", "report_path"}


@pytest.fixture
def airflow_conn(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    return emu


class TI:
    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        pass


def test_update_user_result_matches_the_operator(
    airflow_conn: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(airflow_conn, 1)
    args: dict[str, Any] = {
        "user_name": emails[0].upper(),
        "attributes": {"region": "apac", "cost_centre": 3},
        "display_name": "Renamed",
        "dry_run": True,
    }
    from_airflow = UpdateOmniUserOperator(task_id="update", **args).execute({})
    from_dagster = omni.update_user(**args)
    assert from_dagster == from_airflow and writes(airflow_conn) == 0


@pytest.mark.parametrize("mode", ["update", "mirror"])
def test_sync_summary_matches_the_operator(
    airflow_conn: EmulatorServer, omni: OmniScimResource, mode: str
) -> None:
    emails = seed(airflow_conn, 4)
    rows = [
        {"email": emails[0], "region": "apac"},
        {"email": emails[1], "region": "us-east"},
        {"email": "ghost@example.com", "region": "apac"},
    ]
    settings: dict[str, Any] = {"mode": mode, "dry_run": True, "max_failed_rows": None, "max_changes": 0}
    operator = SyncOmniUserAttributesOperator(
        task_id="sync", rows=rows, attributes=["region"], key_column="email", **settings
    )
    from_airflow = operator.execute({"ti": TI(), "run_id": "manual"})
    from_dagster = omni.sync_user_attributes(rows, attributes=["region"], key_column="email", **settings)
    assert from_dagster.keys() == from_airflow.keys()
    assert {k: v for k, v in from_dagster.items() if k not in VARYING} == {
        k: v for k, v in from_airflow.items() if k not in VARYING
    }
    assert "refused" in from_dagster and writes(airflow_conn) == 0
