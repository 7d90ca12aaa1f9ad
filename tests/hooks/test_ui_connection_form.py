"""The connection form and the Test button, through the same Airflow REST endpoints the UI calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY

from omni_provider.emulator import EmulatorServer


@pytest.fixture
def api_client(monkeypatch: pytest.MonkeyPatch, airflow_db: Any) -> Iterator[Any]:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        yield client


def test_connection_form_shows_omni_fields(api_client: Any) -> None:
    response = api_client.get("/ui/connections/hook_meta")
    assert response.status_code == 200
    [omni] = [item for item in response.json() if item["connection_type"] == "omni"]
    assert omni["hook_name"] == "Omni"
    fields = omni["standard_fields"]
    assert fields["host"] == {
        "hidden": False,
        "title": "Omni instance URL",
        "placeholder": "https://acme.omniapp.co",
    }
    assert fields["password"]["title"] == "Organization API key" and not fields["password"]["hidden"]
    assert fields["login"]["hidden"] and fields["port"]["hidden"]
    extra = omni["extra_fields"]
    assert {"rate_limit_per_minute", "timeout", "max_retries", "additional_api_keys", "ca_bundle"} <= set(
        extra
    )
    assert extra["additional_api_keys"]["schema"]["format"] == "password"  # masked like the key


@pytest.mark.parametrize(
    ("key", "ok", "message"),
    [
        (TEST_API_KEY, True, "Connected to Omni"),
        ("wrong-key-0123456789", False, "rejected the API key"),
    ],
)
def test_test_button(
    api_client: Any, omni_emulator: EmulatorServer, key: str, ok: bool, message: str
) -> None:
    body = {"connection_id": "omni_ui", "conn_type": "omni", "host": omni_emulator.base_url, "password": key}
    response = api_client.post("/api/v2/connections/test", json=body)
    assert response.status_code == 200
    result = response.json()
    assert result["status"] is ok and message in result["message"]
    assert key not in response.text
