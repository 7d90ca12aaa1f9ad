"""Constants and helpers shared by the emulator tests (a uniquely named module, importable
from the test files without clashing with other conftest.py files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from omni_provider.emulator import EmulatorServer

API_KEY = "emu-test-org-key-7Hq2"
API_KEY_2 = "emu-test-org-key-second"
PAT = "emu-test-personal-token"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ATTRS = "urn:omni:params:1.0:UserAttribute"

MakeEmulator = Callable[..., EmulatorServer]


def api_client(server: EmulatorServer, token: str | None = API_KEY) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.api_url, headers=headers, timeout=10.0)


def admin(server: EmulatorServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, f"{server.base_url}/_emulator/{path}", timeout=10.0, **kwargs)
    response.raise_for_status()
    return response


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def create_user(client: httpx.Client, email: str, name: str = "Test User", **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"userName": email, "displayName": name}
    if attrs:
        body[ATTRS] = attrs
    response = client.post("/scim/v2/users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())
