"""Attribute values are checked against the definitions as Omni documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_testkit import ATTRS, PAT, MakeEmulator, api_client, create_user, patch_body

from omni_provider.emulator import EmulatorServer


def _set(client: httpx.Client, user_id: str, attrs: dict[str, Any]) -> httpx.Response:
    return client.patch(
        f"/scim/v2/users/{user_id}", json=patch_body({"op": "replace", "value": {ATTRS: attrs}})
    )


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"nope": "x"}, "Unknown user attribute: nope"),
        ({"omni_user_email": "x@example.com"}, "omni_user_email is a system attribute"),
        ({"omni_is_org_admin": "true"}, "read-only"),
        ({"cost_centre": "12"}, "cost_centre expects a Number"),
        ({"cost_centre": True}, "cost_centre expects a Number"),
        ({"cost_centre": [1]}, "does not take multiple values"),
        ({"region": ["us-east"]}, "does not take multiple values"),
        ({"region": 5}, "region expects a String"),
        ({"regions": "us-east"}, "regions takes multiple values"),
        ({"regions": ["us-east", 1]}, "regions takes multiple values"),
        ({"allowed_ids": ["1"]}, "allowed_ids takes multiple values"),
        ({"allowed_ids": [True]}, "allowed_ids takes multiple values"),
    ],
)
def test_invalid_values_are_rejected(client: httpx.Client, attrs: dict[str, Any], message: str) -> None:
    user = create_user(client, "typed@example.com", region="us-east")
    response = _set(client, user["id"], attrs)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert message in response.json()["message"]
    assert client.get(f"/scim/v2/users/{user['id']}").json()[ATTRS] == {"region": "us-east"}


def test_valid_values_and_unset_forms(client: httpx.Client) -> None:
    user = create_user(client, "valid@example.com")
    good = {
        "region": "eu-west",
        "cost_centre": 12.5,
        "regions": ["us-east", "eu-west"],
        "allowed_ids": [1, 10],
        "omni_user_timezone": "Europe/London",
    }
    response = _set(client, user["id"], good)
    assert response.status_code == 200, response.text
    assert response.json()[ATTRS] == good  # numbers stay JSON numbers
    unset = _set(client, user["id"], {"region": "", "regions": [], "allowed_ids": None, "cost_centre": None})
    assert unset.json()[ATTRS] == {"omni_user_timezone": "Europe/London"}


def test_create_and_put_are_checked_too(client: httpx.Client) -> None:
    bad = client.post(
        "/scim/v2/users", json={"userName": "c@example.com", "displayName": "C", ATTRS: {"cost_centre": "x"}}
    )
    assert bad.status_code == 400
    assert client.get("/scim/v2/users").json()["totalResults"] == 0
    user = create_user(client, "c@example.com", cost_centre=3, region="")
    assert user[ATTRS] == {"cost_centre": 3}
    put = client.put(f"/scim/v2/users/{user['id']}", json={"userName": "c@example.com", ATTRS: {"bogus": 1}})
    assert put.status_code == 400
    assert put.json()["message"] == "Unknown user attribute: bogus"


def test_lenient_mode_skips_checks(make_emulator: MakeEmulator) -> None:
    server = make_emulator(strict_attributes=False)
    with api_client(server) as client:
        user = create_user(client, "lenient@example.com", anything=[1, "a"], cost_centre="12")
        assert user[ATTRS] == {"anything": [1, "a"], "cost_centre": "12"}
        assert _set(client, user["id"], {"anything": None}).json()[ATTRS] == {"cost_centre": "12"}


def test_attribute_definitions_endpoint(emulator: EmulatorServer) -> None:
    # Org keys and personal access tokens both work on /api/v1.
    with api_client(emulator) as org, api_client(emulator, PAT) as pat:
        records = org.get("/v1/user-attributes").json()["records"]
        assert pat.get("/v1/user-attributes").json()["records"] == records
    by_name = {r["name"]: r for r in records}
    for record in records:
        assert set(record) == {
            "name",
            "label",
            "id",
            "type",
            "multiple_values",
            "default_value",
            "description",
            "system",
        }
    assert by_name["cost_centre"]["type"] == "Number"
    assert by_name["regions"]["multiple_values"] is True
    assert by_name["allowed_ids"]["type"] == "Number" and by_name["allowed_ids"]["multiple_values"]
    for name in (
        "omni_is_org_admin",
        "omni_user_email",
        "omni_user_embed_entity",
        "omni_user_groups",
        "omni_user_id",
        "omni_user_name",
        "omni_user_timezone",
    ):
        assert by_name[name]["system"] is True and by_name[name]["id"] == ""
    assert by_name["region"]["system"] is False and len(by_name["region"]["id"]) == 36
