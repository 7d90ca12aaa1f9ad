"""The connection list's Test button as Airflow 3.3's UI sends it, for an Omni connection without a port.

The UI posts the saved connection back with ``port: Number(connection.port)`` (``0`` when there is no port)
and the masked password ``***``; without ``OmniConnectionTestPortMiddleware`` Airflow 3.3.2 answers 400
before the hook runs. These tests post exactly that body to the real API app (plugins loaded as in
``airflow api-server``); ``test_browser.py`` clicks the real button.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from omni_testkit import PERSONAL_TOKEN, TEST_API_KEY

from omni_provider.airflow_support.plugin import OmniConnectionTestPortMiddleware, blank_port_for_omni
from omni_provider.emulator import EmulatorServer


@pytest.fixture
def api_client(monkeypatch: pytest.MonkeyPatch, airflow_db: Any) -> Iterator[Any]:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _save(client: Any, conn_id: str, host: str, password: str, conn_type: str = "omni") -> dict[str, Any]:
    """Save as the Add Connection form does (hidden port: not sent) and return the row the list shows."""
    client.delete(f"/api/v2/connections/{conn_id}")
    body = {"connection_id": conn_id, "conn_type": conn_type, "host": host, "password": password}
    assert client.post("/api/v2/connections", json=body).status_code == 201
    row: dict[str, Any] = client.get(f"/api/v2/connections/{conn_id}").json()
    assert row["port"] is None and row["password"] == "***"
    return row


def _press_test(client: Any, row: dict[str, Any]) -> Any:
    """The body of the list's Test button (Airflow 3.3.2 UI, ``ConnectionList`` test action)."""
    body = {
        "conn_type": row["conn_type"],
        "connection_id": row["connection_id"],
        "description": row["description"] or "",
        "extra": row["extra"] or "{}",
        "host": row["host"] or "",
        "login": row["login"] or "",
        "password": row["password"] or "",
        "port": 0 if row["port"] is None else row["port"],  # Number(null) === 0
        "schema": row["schema"] or "",
    }
    return client.post("/api/v2/connections/test", json=body)


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    emulator_server.reset(seed_users=3)
    return emulator_server


def test_each_outcome_reaches_the_hook(api_client: Any, emulator: EmulatorServer, closed_port: int) -> None:
    cases = [
        (emulator.base_url, TEST_API_KEY, True, "Connected to Omni at"),
        (emulator.base_url, "omni-wrong-key-0123456789", False, "Omni rejected the API key"),
        (emulator.base_url, PERSONAL_TOKEN, False, "looks like a personal access token"),
        (f"http://127.0.0.1:{closed_port}", TEST_API_KEY, False, "Cannot reach Omni at"),
        (emulator.base_url + "/not-omni", TEST_API_KEY, False, "No Omni SCIM API at"),
    ]
    for host, key, ok, message in cases:
        response = _press_test(api_client, _save(api_client, "omni_button", host, key))
        assert response.status_code == 200, (host, response.text)
        assert response.json()["status"] is ok and message in response.json()["message"], response.text
        assert key not in response.text


def test_a_port_typed_in_the_form_is_still_used(api_client: Any, emulator: EmulatorServer) -> None:
    api_client.delete("/api/v2/connections/omni_port")
    port = emulator.base_url.rsplit(":", 1)[1]
    body = {
        "connection_id": "omni_port",
        "conn_type": "omni",
        "host": "http://127.0.0.1",
        "port": int(port),
        "password": TEST_API_KEY,
    }
    assert api_client.post("/api/v2/connections", json=body).status_code == 201
    row = api_client.get("/api/v2/connections/omni_port").json()
    response = _press_test(api_client, row)
    assert response.status_code == 200 and response.json()["status"] is True, response.text


def test_other_connection_types_are_left_to_airflow(api_client: Any) -> None:
    """Only Omni bodies are touched: another type keeps Airflow 3.3.2's own answer."""
    row = _save(api_client, "http_button", "https://example.invalid", "secret-12345", conn_type="http")
    response = _press_test(api_client, row)
    assert response.status_code == 400 and "differs from the stored connection" in response.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"conn_type": "omni", "port": 0, "host": "h"}, {"conn_type": "omni", "port": None, "host": "h"}),
        ({"conn_type": "omni", "port": 8443}, None),
        ({"conn_type": "omni", "port": None}, None),
        ({"conn_type": "omni", "port": False}, None),
        ({"conn_type": "omni"}, None),
        ({"conn_type": "http", "port": 0}, None),
        ([1, 2], None),
    ],
)
def test_blank_port_for_omni(body: Any, expected: Any) -> None:
    new = blank_port_for_omni(json.dumps(body).encode())
    assert (json.loads(new) if new is not None else None) == expected


def test_blank_port_for_omni_ignores_non_json() -> None:
    assert blank_port_for_omni(b"{not json") is None


def _run(path: str, chunks: list[bytes], method: str = "POST") -> tuple[bytes, dict[bytes, bytes]]:
    """What the wrapped app receives when the middleware is given ``chunks`` as the request body."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"], seen["headers"] = body, dict(scope["headers"])

    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        pass

    length = str(sum(len(c) for c in chunks)).encode()
    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", length)]}
    asyncio.run(OmniConnectionTestPortMiddleware(app)(scope, receive, send))
    return seen["body"], seen["headers"]


def test_middleware_rewrites_a_chunked_omni_body_and_its_length() -> None:
    raw = json.dumps({"conn_type": "omni", "connection_id": "c", "port": 0}).encode()
    body, headers = _run("/api/v2/connections/test", [raw[:10], raw[10:]])
    assert json.loads(body) == {"conn_type": "omni", "connection_id": "c", "port": None}
    assert headers[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/v2/connections", "POST"), ("/api/v2/connections/test", "PUT"), ("/ui/connections/test", "POST")],
)
def test_middleware_passes_other_requests_untouched(path: str, method: str) -> None:
    raw = json.dumps({"conn_type": "omni", "port": 0}).encode()
    assert _run(path, [raw], method)[0] == raw


def test_the_plugin_is_registered_with_airflow() -> None:
    """Found through the ``airflow.plugins`` entry point, as ``airflow api-server`` loads it."""
    from airflow import plugins_manager

    _apps, middlewares = plugins_manager.get_fastapi_plugins()
    assert {
        "name": "omni-connection-test-port",
        "middleware": OmniConnectionTestPortMiddleware,
    } in middlewares
