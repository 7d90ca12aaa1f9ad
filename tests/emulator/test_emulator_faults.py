"""Fault injection: random kinds with a seed, fail_next, method filters; admin routes unaffected."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from emulator_testkit import ATTRS, MakeEmulator, admin, api_client, create_user, patch_body

from omni_provider.emulator import EmulatorServer


def _fault_stats(server: EmulatorServer) -> dict[str, int]:
    return dict(admin(server, "GET", "stats").json()["faults_injected"])


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_faults(make_emulator: MakeEmulator, status: int) -> None:
    server = make_emulator(faults={f"error_{status}": 1.0})
    with api_client(server) as client:
        response = client.get("/scim/v2/users")
    assert response.status_code == status
    assert response.json()["message"] == "Injected fault"
    assert _fault_stats(server) == {f"error_{status}": 1}


def test_drop_connection_is_a_transport_error(make_emulator: MakeEmulator) -> None:
    server = make_emulator(faults={"drop_connection": 1.0})
    with api_client(server) as client:
        with pytest.raises(httpx.TransportError):
            client.get("/scim/v2/users")
        with pytest.raises(httpx.RemoteProtocolError):  # the specific kind httpx raises
            client.get("/scim/v2/users")
    assert _fault_stats(server) == {"drop_connection": 2}


def test_lost_response_applies_the_write(make_emulator: MakeEmulator) -> None:
    server = make_emulator(faults={"lost_response": 1.0})
    with api_client(server) as client:
        listing = client.get("/scim/v2/users")  # reads are never "lost"
        assert listing.status_code == 200
        with pytest.raises(httpx.TransportError):
            client.post("/scim/v2/users", json={"userName": "lost@example.com", "displayName": "Lost"})
        admin(server, "POST", "config", json={"faults": {}})
        found = client.get("/scim/v2/users", params={"filter": 'userName eq "lost@example.com"'}).json()
        assert found["totalResults"] == 1
    stats = admin(server, "GET", "stats").json()
    assert stats["writes_applied"] == 1 and stats["users_created"] == 1
    assert stats["faults_injected"] == {"lost_response": 1}


def test_burst_429(make_emulator: MakeEmulator) -> None:
    server = make_emulator(faults={"burst_429": 1.0}, burst_429_length=3, fault_seed=1)
    with api_client(server) as client:
        statuses = [client.get("/scim/v2/users").status_code for _ in range(3)]
        assert statuses == [429, 429, 429]
        admin(server, "POST", "config", json={"faults": {}})
        # A burst already under way keeps going for its full length.
        server.reset()
        admin(server, "POST", "config", json={"faults": {"burst_429": 1.0}, "burst_429_length": 2})
        assert client.get("/scim/v2/users").status_code == 429
        admin(server, "POST", "config", json={"faults": {}})
        assert client.get("/scim/v2/users").status_code == 429
        assert client.get("/scim/v2/users").status_code == 200


def test_slow(make_emulator: MakeEmulator) -> None:
    server = make_emulator(faults={"slow": 1.0}, slow_seconds=0.3)
    with api_client(server) as client:
        started = time.monotonic()
        assert client.get("/scim/v2/users").status_code == 200
        assert time.monotonic() - started >= 0.3
    assert _fault_stats(server) == {"slow": 1}


def _statuses(server: EmulatorServer, n: int) -> list[int]:
    with api_client(server) as client:
        return [client.get("/scim/v2/users").status_code for _ in range(n)]


def test_random_faults_are_deterministic_per_seed(make_emulator: MakeEmulator) -> None:
    faults = {"error_503": 0.3, "error_500": 0.1}
    first = _statuses(make_emulator(faults=faults, fault_seed=42), 40)
    second = _statuses(make_emulator(faults=faults, fault_seed=42), 40)
    other = _statuses(make_emulator(faults=faults, fault_seed=7), 40)
    assert first == second
    assert first != other
    assert {200, 503} <= set(first)


def test_fault_methods_and_admin_routes(make_emulator: MakeEmulator) -> None:
    server = make_emulator(faults={"error_503": 1.0}, fault_methods=frozenset({"PATCH"}))
    with api_client(server) as client:
        user = create_user(client, "methods@example.com")
        assert client.get(f"/scim/v2/users/{user['id']}").status_code == 200
        patched = client.patch(
            f"/scim/v2/users/{user['id']}",
            json=patch_body({"op": "replace", "path": "active", "value": False}),
        )
        assert patched.status_code == 503
    # Admin routes never see faults, whatever the settings.
    admin(server, "POST", "config", json={"fault_methods": None})
    assert httpx.get(server.base_url + "/_emulator/stats").status_code == 200
    assert httpx.get(server.base_url + "/_emulator/users").status_code == 200


def test_fail_next_queue(emulator: EmulatorServer, client: httpx.Client) -> None:
    user = create_user(client, "queue@example.com", region="us-east")
    url = f"/scim/v2/users/{user['id']}"
    body = patch_body({"op": "replace", "value": {ATTRS: {"region": "eu-west"}}})
    admin(
        emulator,
        "POST",
        "config",
        json={"fail_next": [{"status": 503, "count": 2, "methods": ["PATCH"]}, {"status": 429}]},
    )
    assert client.get(url).status_code == 429  # the GET skips the PATCH-only entry, takes the 429
    assert [client.patch(url, json=body).status_code for _ in range(3)] == [503, 503, 200]
    assert admin(emulator, "GET", "stats").json()["fail_next_pending"] == []

    admin(emulator, "POST", "config", json={"fail_next": [{"fault": "lost_response"}]})
    assert client.get(url).status_code == 200  # reads do not consume a lost_response entry
    with pytest.raises(httpx.TransportError):
        client.patch(url, json=patch_body({"op": "replace", "path": "displayName", "value": "Applied"}))
    assert client.get(url).json()["displayName"] == "Applied"

    admin(emulator, "POST", "config", json={"fail_next": [{"fault": "drop_connection"}]})
    with pytest.raises(httpx.TransportError):
        client.get(url)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    "entry",
    [
        {"status": 200},
        {"status": 503, "count": 0},
        {"fault": "explode"},
        {"status": 503, "fault": "slow"},
        {},
    ],
)
def test_fail_next_validation(emulator: EmulatorServer, entry: dict[str, Any]) -> None:
    response = httpx.post(emulator.base_url + "/_emulator/config", json={"fail_next": [entry]})
    assert response.status_code == 400


def test_unknown_fault_kind_rejected(emulator: EmulatorServer) -> None:
    response = httpx.post(emulator.base_url + "/_emulator/config", json={"faults": {"error_418": 0.5}})
    assert response.status_code == 400
