"""The emulator is a server on a developer's laptop: a web page must not steer it, and one request must not
crash or stall it.

* Admin routes take only ``application/json`` POSTs (a cross-site ``text/plain`` or body-less POST is a
  "simple request" a browser sends without asking) and only loopback ``Host`` headers (DNS rebinding).
* Bodies are bounded: deep nesting is a 400 (was a 500 from ``RecursionError``), over 1 MiB a 413.
* Admin parameters are capped (``seed_users``, ``slow_seconds``, ``fail_next``...).
* Attribute values larger than the documented limits are refused with a 400.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from emulator_testkit import ATTRS, PATCH_SCHEMA, admin, create_user, patch_body

from omni_provider.emulator import EmulatorServer
from omni_provider.emulator.attributes import MAX_VALUE_CHARS, MAX_VALUES
from omni_provider.emulator.bodies import MAX_BODY_BYTES, MAX_JSON_DEPTH
from omni_provider.emulator.routes_admin import MAX_SEED_USERS, is_loopback_host_header

# ============================================================================ admin routes: who may call


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"seed_users": 0}'),
        ("application/x-www-form-urlencoded", b"seed_users=0"),
        ("multipart/form-data; boundary=x", b"--x--"),
        (None, b""),  # fetch(url, {method: "POST", mode: "no-cors"}) sends no Content-Type at all
    ],
)
def test_cross_site_style_post_cannot_reset(
    emulator: EmulatorServer, content_type: str | None, body: bytes
) -> None:
    emulator.state.seed_users(3)
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(f"{emulator.base_url}/_emulator/reset", content=body, headers=headers)
    assert response.status_code == 415
    assert emulator.state.user_count() == 3
    assert (
        httpx.post(f"{emulator.base_url}/_emulator/config", content=body, headers=headers).status_code == 415
    )


def test_json_post_still_works(emulator: EmulatorServer) -> None:
    emulator.state.seed_users(3)
    response = httpx.post(
        f"{emulator.base_url}/_emulator/reset",
        content=b"{}",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200 and emulator.state.user_count() == 0


@pytest.mark.parametrize(
    "host", ["rebind.evil.example", "rebind.evil.example:8765", "10.0.0.7", "localhost.evil.example"]
)
@pytest.mark.parametrize(("method", "path"), [("GET", "users"), ("GET", "config"), ("POST", "reset")])
def test_rebound_host_header_cannot_use_admin_routes(
    emulator: EmulatorServer, host: str, method: str, path: str
) -> None:
    emulator.state.seed_users(2)
    response = httpx.request(method, f"{emulator.base_url}/_emulator/{path}", headers={"Host": host}, json={})
    assert response.status_code == 403
    assert "example.com" not in response.text  # no user data
    assert emulator.state.user_count() == 2


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8765", "127.0.0.1:1", "127.3.4.5", "[::1]:8765", "[::1]"]
)
def test_loopback_host_headers_are_accepted(host: str) -> None:
    assert is_loopback_host_header(host)


@pytest.mark.parametrize(
    "host", ["", "evil.example", "127.0.0.1.nip.io", "[2001:db8::1]:80", "0.0.0.0:80", "[::1"]
)
def test_other_host_headers_are_not(host: str) -> None:
    assert not is_loopback_host_header(host)


def test_api_routes_are_unaffected_by_the_host_rule(emulator: EmulatorServer, client: httpx.Client) -> None:
    response = client.get("/scim/v2/users", headers={"Host": "acme.omniapp.co"})
    assert response.status_code == 200


# ============================================================================ bodies


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2_000, 100_000])
def test_deeply_nested_body_is_a_400_not_a_500(
    emulator: EmulatorServer, client: httpx.Client, depth: int
) -> None:
    nested = b"[" * depth + b"]" * depth
    create = {"userName": "deep@example.com", "displayName": "Deep", ATTRS: {"region": None}}
    text = json.dumps(create).encode().replace(b"null", nested)
    for response in (
        client.post("/scim/v2/users", content=text, headers={"Content-Type": "application/json"}),
        httpx.post(
            f"{emulator.base_url}/_emulator/config",
            content=nested,
            headers={"Content-Type": "application/json"},
        ),
    ):
        assert response.status_code == 400, response.text
        assert "nested deeper" in response.json()["message"]
    user = create_user(client, "shallow@example.com")
    patch = client.patch(
        f"/scim/v2/users/{user['id']}",
        content=b'{"schemas": ["' + PATCH_SCHEMA.encode() + b'"], "Operations": ' + nested + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert patch.status_code == 400
    assert client.get("/scim/v2/users").status_code == 200  # and the emulator is fine


def test_nesting_within_the_limit_is_parsed(client: httpx.Client) -> None:
    value = json.loads("[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2))
    response = client.post(
        "/scim/v2/users", json={"userName": "ok@example.com", "displayName": "x", ATTRS: {"region": value}}
    )
    assert response.status_code == 400  # refused for its type: a list in a single-valued attribute
    assert "does not take multiple values" in response.json()["message"]


def test_oversized_body_is_a_413(emulator: EmulatorServer, client: httpx.Client) -> None:
    big = {"userName": "big@example.com", "displayName": "x" * (MAX_BODY_BYTES + 1)}
    assert client.post("/scim/v2/users", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        yield b'{"seed_users": 0, "pad": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(
        f"{emulator.base_url}/_emulator/reset", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


# ============================================================================ admin parameters


def test_seed_users_is_capped(emulator: EmulatorServer) -> None:
    # Just over the cap: without one, 10**9 would be seeded on the event loop (and fill memory) instead.
    started = time.monotonic()
    response = httpx.post(f"{emulator.base_url}/_emulator/reset", json={"seed_users": MAX_SEED_USERS + 1})
    assert response.status_code == 400 and str(MAX_SEED_USERS) in response.text
    assert time.monotonic() - started < 2
    assert httpx.get(f"{emulator.base_url}/_emulator/health").status_code == 200
    for bad in ({"seed_users": True}, {"seed_users": -1}, {"seed_users": 1.5}, {"keep_users": "yes"}):
        assert httpx.post(f"{emulator.base_url}/_emulator/reset", json=bad).status_code == 400


def test_seeding_the_cap_keeps_health_answering_quickly(emulator: EmulatorServer) -> None:
    started = time.monotonic()
    assert (
        admin(emulator, "POST", "reset", json={"seed_users": MAX_SEED_USERS}).json()["seeded"]
        == MAX_SEED_USERS
    )
    seconds = time.monotonic() - started
    print(f"\nseed cap FIGURES {json.dumps({'seed_users': MAX_SEED_USERS, 'seconds': round(seconds, 2)})}")
    assert seconds < 5


@pytest.mark.parametrize(
    "patch",
    [
        {"slow_seconds": 1e9},
        {"slow_seconds": float("nan")},
        {"max_page_size": 10**9},
        {"burst_429_length": 10**9},
        {"rate_window": 1e12},
        {"fail_next": [{"status": 503}] * 1000},
    ],
    ids=["slow_seconds", "slow_nan", "max_page_size", "burst_429_length", "rate_window", "fail_next"],
)
def test_admin_settings_have_upper_bounds(emulator: EmulatorServer, patch: dict[str, object]) -> None:
    before = admin(emulator, "GET", "config").json()
    body = json.dumps(patch, allow_nan=True)
    response = httpx.post(
        f"{emulator.base_url}/_emulator/config", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert admin(emulator, "GET", "config").json() == before


# ============================================================================ attribute values


def test_attribute_values_larger_than_allowed_are_refused(client: httpx.Client) -> None:
    too_long = "x" * (MAX_VALUE_CHARS + 1)
    response = client.post(
        "/scim/v2/users",
        json={"userName": "long@example.com", "displayName": "Long", ATTRS: {"region": too_long}},
    )
    assert response.status_code == 400 and f"longer than {MAX_VALUE_CHARS}" in response.json()["message"]
    user = create_user(client, "fits@example.com", region="x" * MAX_VALUE_CHARS)  # the limit itself fits
    for operation in (
        {"op": "replace", "path": f"{ATTRS}:region", "value": too_long},
        {"op": "replace", "value": {ATTRS: {"regions": ["a"] * (MAX_VALUES + 1)}}},
        {"op": "replace", "value": {ATTRS: {"regions": ["a", too_long]}}},
    ):
        answer = client.patch(f"/scim/v2/users/{user['id']}", json=patch_body(operation))
        assert answer.status_code == 400, operation
    assert client.get(f"/scim/v2/users/{user['id']}").json()[ATTRS]["region"] == "x" * MAX_VALUE_CHARS


def test_size_limits_hold_in_lenient_mode_too(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.config.apply_patch({"strict_attributes": False})
    response = client.post(
        "/scim/v2/users",
        json={
            "userName": "lenient@example.com",
            "displayName": "L",
            ATTRS: {"anything": "x" * (MAX_VALUE_CHARS + 1)},
        },
    )
    assert response.status_code == 400
