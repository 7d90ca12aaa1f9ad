"""Bearer auth (org keys vs personal access tokens) and the per-key sliding-window limit."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_testkit import API_KEY, API_KEY_2, PAT, MakeEmulator, admin, api_client

from omni_provider.emulator import EmulatorServer, key_id

AUTH_REQUIRED = {"error": "Unauthorized", "message": "Authentication required (SCIM bearer token)"}
PAT_REJECTED = {
    "error": "Unauthorized",
    "message": "Personal access tokens are not supported on SCIM endpoints; use an Organization API key",
}
RATE_LIMITED = {"error": "Too Many Requests", "message": "Rate limit exceeded"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Token abc"},
    ],
)
def test_missing_or_bad_token(emulator: EmulatorServer, headers: dict[str, str]) -> None:
    for path in ("/api/scim/v2/users", "/api/v1/user-attributes", "/api/scim/v2/embed/users"):
        response = httpx.get(emulator.base_url + path, headers=headers)
        assert response.status_code == 401
        assert response.json() == AUTH_REQUIRED


def test_personal_token_rejected_on_scim_only(emulator: EmulatorServer) -> None:
    with api_client(emulator, PAT) as client:
        for path in ("/scim/v2/users", "/scim/v2/Users/x", "/scim/v2/embed/users"):
            response = client.get(path)
            assert response.status_code == 401
            assert response.json() == PAT_REJECTED
        assert client.post("/scim/v2/users", json={}).json() == PAT_REJECTED
        assert client.get("/v1/user-attributes").status_code == 200


def test_every_org_key_works(emulator: EmulatorServer) -> None:
    for key in (API_KEY, API_KEY_2):
        with api_client(emulator, key) as client:
            assert client.get("/scim/v2/users").status_code == 200
    # The scheme name is case-insensitive, as in RFC 7235.
    response = httpx.get(emulator.api_url + "/scim/v2/users", headers={"Authorization": f"bearer {API_KEY}"})
    assert response.status_code == 200


def test_rate_limit_window_and_recovery(make_emulator: MakeEmulator) -> None:
    server = make_emulator(rate_limit_enabled=True, rate_limit=3, rate_window=0.6)
    with api_client(server) as client, api_client(server, API_KEY_2) as other:
        started = time.monotonic()
        assert [client.get("/scim/v2/users").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/scim/v2/users")
        assert limited.status_code == 429
        assert limited.json() == RATE_LIMITED
        assert "retry-after" not in limited.headers  # Omni documents no Retry-After
        assert other.get("/scim/v2/users").status_code == 200  # the limit is per key
        time.sleep(max(0.0, started + 0.65 - time.monotonic()))
        assert client.get("/scim/v2/users").status_code == 200
    stats = admin(server, "GET", "stats").json()
    assert stats["rate_limited"] == 1 and stats["responses_429"] == 1
    assert stats["requests_by_key"] == {key_id(API_KEY): 5, key_id(API_KEY_2): 1}
    assert stats["requests_by_method"] == {"GET": 6}


def test_rejected_requests_do_not_use_slots(make_emulator: MakeEmulator) -> None:
    server = make_emulator(rate_limit_enabled=True, rate_limit=2, rate_window=0.8)
    with api_client(server) as client:
        started = time.monotonic()
        assert [client.get("/scim/v2/users").status_code for _ in range(2)] == [200, 200]
        # Keep hammering while the window is full; none of these may extend the lockout.
        while time.monotonic() < started + 0.5:
            assert client.get("/scim/v2/users").status_code == 429
            time.sleep(0.05)
        time.sleep(max(0.0, started + 0.85 - time.monotonic()))
        assert client.get("/scim/v2/users").status_code == 200


def test_retry_after_header_option(make_emulator: MakeEmulator) -> None:
    server = make_emulator(rate_limit_enabled=True, rate_limit=1, rate_window=2.5, retry_after_header=True)
    with api_client(server) as client:
        assert client.get("/scim/v2/users").status_code == 200
        limited = client.get("/scim/v2/users")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3"  # 2.5 s rounded up


def test_rate_limit_can_be_changed_at_runtime(emulator: EmulatorServer) -> None:
    admin(emulator, "POST", "config", json={"rate_limit_enabled": True, "rate_limit": 1, "rate_window": 30})
    with api_client(emulator) as client:
        assert client.get("/scim/v2/users").status_code == 200
        assert client.get("/scim/v2/users").status_code == 429
        admin(emulator, "POST", "config", json={"rate_limit_enabled": False})
        assert client.get("/scim/v2/users").status_code == 200


def test_admin_routes_need_no_auth_and_reject_bad_config(emulator: EmulatorServer) -> None:
    assert httpx.get(emulator.base_url + "/_emulator/health").json() == {"status": "ok"}
    bad = httpx.post(emulator.base_url + "/_emulator/config", json={"put_mode": "sideways"})
    assert bad.status_code == 400
    secret = httpx.post(emulator.base_url + "/_emulator/config", json={"api_keys": ["x"]})
    assert secret.status_code == 400  # credentials cannot be changed through the admin routes
    config = admin(emulator, "GET", "config").text
    assert API_KEY not in config and PAT not in config
