"""The connection form and the Test button, through the same endpoints each Airflow's UI calls.

Airflow 3.x: the FastAPI server's ``/ui/connections/hook_meta`` (built from the provider info) and
``/api/v2/connections/test``. Airflow 2.11: the Flask UI's connection form page (built from the hook's
``get_connection_form_widgets`` / ``get_ui_field_behaviour``) and ``/api/v1/connections/test``. The same
assertions run against both, through one adapter per version.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.emulator import EmulatorServer
from omni_provider.get_provider_info import CONNECTION_FIELDS

AIRFLOW2_PLACEHOLDER = "RATHER_LONG_SENSITIVE_FIELD_PLACEHOLDER"  # airflow.www.views, 2.11
STANDARD_FIELDS = ("host", "port", "login", "password", "schema", "extra", "description")


class Airflow3Ui:
    def __init__(self, client: Any) -> None:
        self.client = client

    def omni_form(self) -> dict[str, Any]:
        response = self.client.get("/ui/connections/hook_meta")
        assert response.status_code == 200
        [omni] = [item for item in response.json() if item["connection_type"] == "omni"]
        return {
            "hook_name": omni["hook_name"],
            "standard": {
                # A field the provider does not customise comes as null.
                name: {k: v for k, v in (field or {}).items() if k in ("hidden", "title", "placeholder")}
                for name, field in omni["standard_fields"].items()
            },
            "extra": {
                name: {
                    "label": field["schema"]["title"],
                    "password": field["schema"].get("format") == "password",
                }
                for name, field in omni["extra_fields"].items()
            },
        }

    def test(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        response = self.client.post("/api/v2/connections/test", json=body)
        return response.status_code, response.json(), response.text


class Airflow2Ui:
    """The 2.11 Flask UI renders the extra fields server-side and hands the field behaviour (hide,
    relabel, placeholder) to its JavaScript as JSON in the page."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def omni_form(self) -> dict[str, Any]:
        response = self.client.get("/connection/add")
        assert response.status_code == 200
        page = response.data.decode()
        found = re.search(r'<script id="field_behaviours" type="text/json">(.*?)</script>', page, re.S)
        assert found is not None
        behaviour = json.loads(html.unescape(found.group(1)))["omni"]
        [hook_name] = re.findall(r'<option value="omni">([^<]*)', page)
        standard = {
            name: {
                "hidden": name in behaviour["hidden_fields"],
                **({"title": behaviour["relabeling"][name]} if name in behaviour["relabeling"] else {}),
                **(
                    {"placeholder": behaviour["placeholders"][name]}
                    if name in behaviour["placeholders"]
                    else {}
                ),
            }
            for name in STANDARD_FIELDS
        }
        extra: dict[str, Any] = {}
        for name in re.findall(r'<input[^>]*id="extra__omni__(\w+)"', page):
            label = re.search(rf'<label for="extra__omni__{name}"[^>]*>\s*([^<]*?)\s*<', page)
            field = re.search(rf'<input[^>]*id="extra__omni__{name}"[^>]*>', page)
            assert label is not None and field is not None
            extra[name] = {"label": html.unescape(label.group(1)), "password": 'type="password"' in field[0]}
        return {"hook_name": hook_name.strip(), "standard": standard, "extra": extra}

    def test(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        response = self.client.post("/api/v1/connections/test", json=body)
        return response.status_code, response.get_json(), response.data.decode()


@pytest.fixture(scope="module")
def ui(airflow_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
        if AIRFLOW_V_3_0_PLUS:
            patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
            from airflow.api_fastapi.app import create_app
            from fastapi.testclient import TestClient

            with TestClient(create_app()) as client:
                yield Airflow3Ui(client)
        else:
            # Anonymous requests get the Admin role, as the all-admins switch does on Airflow 3.
            config = Path(tmp_path_factory.mktemp("webserver")) / "webserver_config.py"
            config.write_text('AUTH_ROLE_PUBLIC = "Admin"\nWTF_CSRF_ENABLED = False\n')
            patch.setenv("AIRFLOW__WEBSERVER__CONFIG_FILE", str(config))
            patch.setenv("AIRFLOW__API__AUTH_BACKENDS", "airflow.api.auth.backend.default")
            from airflow.www.app import create_app as create_flask_app

            yield Airflow2Ui(create_flask_app(testing=True).test_client())


def test_connection_form_shows_omni_fields(ui: Any) -> None:
    form = ui.omni_form()
    assert form["hook_name"] == "Omni"
    fields = form["standard"]
    assert fields["host"] == {
        "hidden": False,
        "title": "Omni instance URL",
        "placeholder": "https://acme.omniapp.co",
    }
    assert fields["password"]["title"] == "Organization API key" and not fields["password"]["hidden"]
    assert fields["login"]["hidden"] and fields["port"]["hidden"]
    extra = form["extra"]
    assert set(extra) == set(CONNECTION_FIELDS)
    assert {name: field["label"] for name, field in extra.items()} == {
        name: field["label"] for name, field in CONNECTION_FIELDS.items()
    }
    assert extra["additional_api_keys"]["password"]  # masked like the key
    assert not extra["timeout"]["password"]


@pytest.mark.parametrize(
    ("key", "ok", "message"),
    [
        (TEST_API_KEY, True, "Connected to Omni"),
        ("wrong-key-0123456789", False, "rejected the API key"),
    ],
)
def test_test_button(ui: Any, omni_emulator: EmulatorServer, key: str, ok: bool, message: str) -> None:
    body = {"connection_id": "omni_ui", "conn_type": "omni", "host": omni_emulator.base_url, "password": key}
    status, result, text = ui.test(body)
    assert status == 200
    assert result["status"] is ok and message in result["message"]
    assert key not in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"host": "https://acme.omniapp.co"}, "connection 'omni_typed' has no Organization API key"),
        (  # 2.11's Edit page sends a saved secret extra back as its placeholder: not a key
            {
                "host": "https://acme.omniapp.co",
                "extra": json.dumps({"additional_api_keys": AIRFLOW2_PLACEHOLDER}),
            },
            "connection 'omni_typed' has no Organization API key",
        ),
        (
            {"host": "https://acme.omniapp.co", "password": TEST_API_KEY, "extra": '{"timeout": "soon"}'},
            "connection 'omni_typed' extra 'timeout'",
        ),
    ],
)
def test_test_message_names_the_typed_connection_id(ui: Any, fields: dict[str, str], message: str) -> None:
    """Airflow tests under a random temporary id; the message names the one in the form."""
    status, result, text = ui.test({"connection_id": "omni_typed", "conn_type": "omni", **fields})
    assert status == 200 and result["status"] is False
    assert message in result["message"], result["message"]
    assert TEST_API_KEY not in text


def test_test_button_refuses_a_host_with_spaces_before_any_request(
    ui: Any, omni_emulator: EmulatorServer
) -> None:
    before = len(omni_emulator.stats.request_log())
    host = omni_emulator.base_url.replace("127.0.0.1", "127.0.0.1 ")
    body = {"connection_id": "omni_ui", "conn_type": "omni", "host": host, "password": TEST_API_KEY}
    status, result, _text = ui.test(body)
    assert status == 200 and result["status"] is False
    assert "Invalid Omni" in result["message"] and "contains a space" in result["message"], result["message"]
    assert len(omni_emulator.stats.request_log()) == before


def test_test_button_counts_one_user_in_the_singular(ui: Any, omni_emulator: EmulatorServer) -> None:
    omni_emulator.reset(seed_users=1)
    body = {
        "connection_id": "omni_ui",
        "conn_type": "omni",
        "host": omni_emulator.base_url,
        "password": TEST_API_KEY,
    }
    status, result, _text = ui.test(body)
    assert status == 200 and result["message"].endswith("the SCIM API answered (1 user)"), result
