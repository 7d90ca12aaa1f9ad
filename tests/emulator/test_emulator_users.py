"""SCIM user routes: listing, filtering, create, get, PUT modes, PATCH forms, delete."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from emulator_testkit import ATTRS, MakeEmulator, admin, api_client, create_user, patch_body

from omni_provider.emulator import EmulatorServer, EmulatorState

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_paging_clamps_count_and_walks_all_pages(make_emulator: MakeEmulator) -> None:
    state = EmulatorState()
    state.seed_users(250)
    server = make_emulator(state=state)
    seen: list[str] = []
    with api_client(server) as client:
        start = 1
        while True:
            page = client.get("/scim/v2/users", params={"startIndex": start, "count": 1000}).json()
            assert set(page) == {"Resources", "itemsPerPage", "schemas", "startIndex", "totalResults"}
            assert page["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
            assert page["totalResults"] == 250
            assert page["startIndex"] == start
            assert page["itemsPerPage"] == len(page["Resources"]) <= 100
            seen.extend(u["userName"] for u in page["Resources"])
            start += page["itemsPerPage"]
            if start > page["totalResults"]:
                break
    assert seen == [f"user{i:05d}@example.com" for i in range(1, 251)]  # creation order


def test_paging_defaults_and_odd_parameters(make_emulator: MakeEmulator) -> None:
    state = EmulatorState()
    state.seed_users(120)
    server = make_emulator(state=state, max_page_size=50)
    with api_client(server) as client:
        default = client.get("/scim/v2/users").json()
        assert (default["startIndex"], default["itemsPerPage"]) == (1, 50)
        zero = client.get("/scim/v2/users", params={"startIndex": 0, "count": 3}).json()
        assert zero["startIndex"] == 1
        assert zero["Resources"][0]["userName"] == "user00001@example.com"
        tail = client.get("/scim/v2/users", params={"startIndex": 119, "count": 10}).json()
        assert tail["itemsPerPage"] == 2
        past = client.get("/scim/v2/users", params={"startIndex": 500}).json()
        assert past["Resources"] == [] and past["totalResults"] == 120
        for params in ({"count": "ten"}, {"startIndex": "1;drop"}):
            bad = client.get("/scim/v2/users", params=params)
            assert bad.status_code == 400
            assert bad.json()["error"] == "Bad Request"


def test_user_shape(client: httpx.Client) -> None:
    user = create_user(client, "shape@example.com", "Shape", region="eu-west")
    assert user["active"] is True
    assert user["emails"] == [{"primary": True, "value": "shape@example.com"}]
    assert user["groups"] == []
    assert user["schemas"] == [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:omni:params:1.0:UserAttribute",
        "urn:omni:params:scim:schemas:extension:user:2.0",
    ]
    assert user[ATTRS] == {"region": "eu-west"}
    assert user["urn:omni:params:scim:schemas:extension:user:2.0"] == {"lastLogin": None}
    assert user["meta"]["resourceType"] == "User"
    assert _TIMESTAMP.match(user["meta"]["created"]) and _TIMESTAMP.match(user["meta"]["lastModified"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", user["id"])
    assert client.get(f"/scim/v2/users/{user['id']}").json() == user


@pytest.mark.parametrize("collection", ["users", "Users", "USERS"])
def test_collection_path_is_case_insensitive(client: httpx.Client, collection: str) -> None:
    user = create_user(client, f"case-{collection}@example.com")
    assert client.get(f"/scim/v2/{collection}/{user['id']}").status_code == 200
    assert client.get(f"/scim/v2/{collection}").json()["totalResults"] == 1


def test_filter_is_case_insensitive_and_unescapes_quotes(client: httpx.Client) -> None:
    tricky = 'O"Brien\\Smith@Example.com'
    create_user(client, tricky, "Tricky")
    create_user(client, "plain@example.com", "Plain")

    def find(expression: str) -> list[str]:
        page = client.get("/scim/v2/users", params={"filter": expression}).json()
        return [u["userName"] for u in page["Resources"]]

    assert find('userName eq "PLAIN@example.COM"') == ["plain@example.com"]
    assert find('USERNAME EQ "plain@example.com"') == ["plain@example.com"]
    assert find('userName eq "o\\"brien\\\\smith@example.com"') == [tricky]
    assert find('userName eq "nobody@example.com"') == []
    for unsupported in ('displayName eq "Plain"', 'userName co "plain"', "userName eq plain", ""):
        response = client.get("/scim/v2/users", params={"filter": unsupported})
        assert response.status_code == 400
        assert response.json() == {"error": "Bad Request", "message": "Unsupported filter"}


def test_create_conflict_in_other_case(client: httpx.Client) -> None:
    create_user(client, "dup@example.com")
    response = client.post("/scim/v2/users", json={"userName": "DUP@Example.com", "displayName": "Dup"})
    assert response.status_code == 409
    assert response.json() == {"error": "Conflict", "message": "User with this email already exists"}


@pytest.mark.parametrize(
    "body",
    [
        {"displayName": "No email"},
        {"userName": "not-an-email", "displayName": "X"},
        {"userName": "ok@example.com"},
        {"userName": "ok@example.com", "displayName": "X", ATTRS: ["region"]},
        ["not", "an", "object"],
    ],
)
def test_create_rejects_bad_bodies(client: httpx.Client, body: Any) -> None:
    response = client.post("/scim/v2/users", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert client.get("/scim/v2/users").json()["totalResults"] == 0


def test_malformed_json(client: httpx.Client) -> None:
    response = client.post("/scim/v2/users", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def _user_with_everything(client: httpx.Client) -> dict[str, Any]:
    user = create_user(client, "put@example.com", "Original Name", region="us-east", department="Sales")
    deactivated = client.patch(
        f"/scim/v2/users/{user['id']}", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert deactivated.json()["active"] is False
    return user


def test_put_replace_resets_omitted_fields(emulator: EmulatorServer, client: httpx.Client) -> None:
    admin(emulator, "POST", "config", json={"put_mode": "replace"})
    user = _user_with_everything(client)
    response = client.put(
        f"/scim/v2/users/{user['id']}", json={"userName": "PUT@example.com", ATTRS: {"region": "eu-west"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["displayName"] == "put@example.com"  # reset to the userName
    assert body["active"] is True  # reset to the default
    assert body[ATTRS] == {"region": "eu-west"}  # department dropped
    assert body["userName"] == "put@example.com"
    bare = client.put(f"/scim/v2/users/{user['id']}", json={"userName": "put@example.com"}).json()
    assert bare[ATTRS] == {}


def test_put_merge_keeps_omitted_fields(emulator: EmulatorServer, client: httpx.Client) -> None:
    admin(emulator, "POST", "config", json={"put_mode": "merge"})
    user = _user_with_everything(client)
    response = client.put(
        f"/scim/v2/users/{user['id']}",
        json={"userName": "put@example.com", ATTRS: {"region": "eu-west", "seat_tier": "pro"}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["displayName"] == "Original Name"
    assert body["active"] is False
    assert body[ATTRS] == {"region": "eu-west", "department": "Sales", "seat_tier": "pro"}
    renamed = client.put(
        f"/scim/v2/users/{user['id']}",
        json={"userName": "put@example.com", "displayName": "New", "active": True, ATTRS: {"region": None}},
    ).json()
    assert (renamed["displayName"], renamed["active"]) == ("New", True)
    assert renamed[ATTRS] == {"department": "Sales", "seat_tier": "pro"}


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_put_requires_matching_user_name(make_emulator: MakeEmulator, mode: str) -> None:
    server = make_emulator(put_mode=mode)
    with api_client(server) as client:
        user = create_user(client, "who@example.com")
        url = f"/scim/v2/users/{user['id']}"
        assert client.put(url, json={"displayName": "X"}).status_code == 400
        assert client.put(url, json={"userName": "other@example.com"}).status_code == 400
        missing = client.put(
            "/scim/v2/users/00000000-0000-4000-8000-000000000000", json={"userName": "a@b.c"}
        )
        assert missing.status_code == 404
        assert missing.json() == {"error": "Not Found", "message": "User not found"}


def test_patch_no_path_value_object(client: httpx.Client) -> None:
    user = create_user(client, "p@example.com", "P", region="us-east", department="Sales")
    response = client.patch(
        f"/scim/v2/users/{user['id']}",
        json=patch_body(
            {
                "op": "replace",
                "value": {
                    "displayName": "Patched",
                    "active": False,
                    "userName": "P@EXAMPLE.COM",
                    ATTRS: {"region": "eu-west", "department": None, "seat_tier": "pro"},
                },
            }
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["displayName"], body["active"]) == ("Patched", False)
    assert body[ATTRS] == {"region": "eu-west", "seat_tier": "pro"}  # merged, null cleared
    assert body["meta"]["lastModified"] >= user["meta"]["lastModified"]


def test_patch_paths(client: httpx.Client) -> None:
    user = create_user(client, "paths@example.com", "Paths", region="us-east", department="Sales")
    url = f"/scim/v2/users/{user['id']}"

    def patch(*ops: dict[str, Any]) -> dict[str, Any]:
        response = client.patch(url, json=patch_body(*ops))
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert patch({"op": "Replace", "path": "active", "value": False})["active"] is False
    assert patch({"op": "ADD", "path": "displayName", "value": "Renamed"})["displayName"] == "Renamed"
    colon = patch({"op": "replace", "path": f"{ATTRS}:seat_tier", "value": "pro"})
    assert colon[ATTRS]["seat_tier"] == "pro"
    dotted = patch({"op": "replace", "path": f"{ATTRS}.region", "value": "eu-west"})
    assert dotted[ATTRS]["region"] == "eu-west"
    removed = patch(
        {"op": "remove", "path": f"{ATTRS}:seat_tier"},
        {"op": "Remove", "path": f"{ATTRS}.department", "value": None},
    )
    assert removed[ATTRS] == {"region": "eu-west"}
    nulled = patch({"op": "replace", "path": f"{ATTRS}:region", "value": None})
    assert nulled[ATTRS] == {}


@pytest.mark.parametrize(
    "body",
    [
        {"Operations": [{"op": "replace", "path": "active", "value": False}]},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add"}]},
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []},
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]},
    ],
)
def test_patch_envelope_errors(client: httpx.Client, body: dict[str, Any]) -> None:
    user = create_user(client, "env@example.com")
    response = client.patch(f"/scim/v2/users/{user['id']}", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "Bad Request", "message": "Invalid patch operations"}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "move", "path": "active", "value": False},
        {"op": "replace", "path": "active", "value": "false"},
        {"op": "replace", "path": "emails", "value": []},
        {"op": "replace", "value": {"userName": "someone-else@example.com"}},
        {"op": "replace", "value": "not-an-object"},
        {"op": "remove"},
        {"op": "replace", "path": "active"},
    ],
)
def test_patch_operation_errors_change_nothing(client: httpx.Client, operation: dict[str, Any]) -> None:
    user = create_user(client, "atomic@example.com", "Atomic", region="us-east")
    first = {"op": "replace", "path": "displayName", "value": "Should not stick"}
    response = client.patch(f"/scim/v2/users/{user['id']}", json=patch_body(first, operation))
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid patch operations")
    after = client.get(f"/scim/v2/users/{user['id']}").json()
    assert after["displayName"] == "Atomic" and after[ATTRS] == {"region": "us-east"}


def test_patch_unknown_user(client: httpx.Client) -> None:
    response = client.patch(
        "/scim/v2/users/nope", json=patch_body({"op": "replace", "path": "active", "value": False})
    )
    assert response.status_code == 404


def test_delete(client: httpx.Client) -> None:
    user = create_user(client, "gone@example.com")
    response = client.delete(f"/scim/v2/users/{user['id']}")
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/scim/v2/users/{user['id']}").status_code == 404
    again = client.delete(f"/scim/v2/users/{user['id']}")
    assert again.status_code == 404
    assert again.json() == {"error": "Not Found", "message": "User not found"}
    create_user(client, "gone@example.com")  # the email is free again


def test_embed_users(emulator: EmulatorServer, client: httpx.Client) -> None:
    first = emulator.state.add_embed_user("Sales-42", email="Buyer@Example.com")
    emulator.state.add_embed_user("ops-7")
    listing = client.get("/scim/v2/embed/Users").json()
    assert listing["totalResults"] == 2
    assert {"embedEmail", "embedEntity", "embedExternalId"} <= set(listing["Resources"][0])
    by_id = client.get("/scim/v2/embed/users", params={"filter": 'embedExternalId co "Sales"'}).json()
    assert [u["id"] for u in by_id["Resources"]] == [first.id]
    wrong_case = client.get("/scim/v2/embed/users", params={"filter": 'embedExternalId eq "sales-42"'})
    assert wrong_case.json()["totalResults"] == 0
    by_name = client.get(
        "/scim/v2/embed/users", params={"filter": f'USERNAME eq "{first.user_name.upper()}"'}
    )
    assert by_name.json()["totalResults"] == 1
    assert client.get(f"/scim/v2/embed/users/{first.id}").json()["embedExternalId"] == "Sales-42"
    assert client.delete(f"/scim/v2/embed/users/{first.id}").status_code == 204
    missing = client.get(f"/scim/v2/embed/users/{first.id}")
    assert missing.json() == {"error": "Not Found", "message": "Embed user not found"}
    # Embed users are not standard users.
    assert client.get("/scim/v2/users").json()["totalResults"] == 0


def test_admin_users_dump_and_reset(emulator: EmulatorServer, client: httpx.Client) -> None:
    create_user(client, "dump@example.com")
    dump = admin(emulator, "GET", "users").json()
    assert [u["userName"] for u in dump["users"]] == ["dump@example.com"]
    reset = admin(emulator, "POST", "reset", json={"seed_users": 7, "seed": 3}).json()
    assert reset == {"users": 7, "seeded": 7}
    assert client.get("/scim/v2/users").json()["totalResults"] == 7
    assert admin(emulator, "GET", "stats").json()["requests_total"] == 1


def test_seeding_is_deterministic() -> None:
    first, second = EmulatorState(), EmulatorState()
    first.seed_users(30, seed=5)
    second.seed_users(30, seed=5)
    assert [u.to_json() for u in first.users()] == [u.to_json() for u in second.users()]
    assert first.users()[0].user_name == "user00001@example.com"
    assert all("region" in u.attributes for u in first.users())
