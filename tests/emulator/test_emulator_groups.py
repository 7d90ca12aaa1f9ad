"""The emulator's SCIM groups: paging and clamp, filter, 409 on a duplicate name, the 64-character limit,
the documented PATCH forms, members referencing users, PUT, DELETE, auth, rate limit, faults, persistence."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_testkit import PAT, MakeEmulator, admin, api_client, patch_body

from omni_provider.emulator import EmulatorServer, EmulatorState

GROUPS = "/scim/v2/groups"


def _users(emulator: EmulatorServer, n: int = 4) -> list[str]:
    return [u.id for u in emulator.state.seed_users(n)]


def _create(client: httpx.Client, name: str, members: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"displayName": name}
    if members is not None:
        body["members"] = [{"value": m} for m in members]
    response = client.post(GROUPS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _members(group: dict[str, Any]) -> list[str]:
    return [m["value"] for m in group["members"]]


def _remove(user_id: str) -> dict[str, Any]:
    return {"op": "remove", "path": f'members[value eq "{user_id}"]'}


def test_create_answers_with_members_showing_emails(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 2)
    group = _create(client, "Finance", ids)
    assert group["displayName"] == "Finance"
    assert group["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:Group"]
    assert group["members"] == [
        {"display": "user00001@example.com", "value": ids[0]},
        {"display": "user00002@example.com", "value": ids[1]},
    ]
    assert group["meta"]["resourceType"] == "Group"
    assert client.get(f"{GROUPS}/{group['id']}").json() == group


def test_duplicate_name_is_409_in_any_case(client: httpx.Client) -> None:
    _create(client, "Finance")
    response = client.post(GROUPS, json={"displayName": "FINANCE"})
    assert response.status_code == 409
    assert response.json()["message"] == "Group with this name already exists"


def test_display_name_limit_is_64_characters(client: httpx.Client) -> None:
    _create(client, "x" * 64)
    response = client.post(GROUPS, json={"displayName": "y" * 65})
    assert response.status_code == 400
    assert client.post(GROUPS, json={"displayName": "  "}).status_code == 400


def test_members_must_reference_existing_users(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 1)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.post(GROUPS, json={"displayName": "A", "members": [{"value": unknown}]}).status_code == 400
    group = _create(client, "A", ids)
    add = {"op": "add", "path": "members", "value": [{"value": unknown}]}
    assert client.patch(f"{GROUPS}/{group['id']}", json=patch_body(add)).status_code == 400


def test_deleted_user_is_no_longer_a_member(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 2)
    group = _create(client, "A", ids)
    assert client.delete(f"/scim/v2/users/{ids[0]}").status_code == 204
    assert _members(client.get(f"{GROUPS}/{group['id']}").json()) == [ids[1]]


def test_list_pages_with_clamp_filter_and_excluded_members(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    ids = _users(emulator, 1)
    for i in range(7):
        _create(client, f"Team {i}", ids)
    emulator.config.apply_patch({"max_page_size": 3})
    page = client.get(GROUPS, params={"count": 50, "startIndex": 4}).json()
    assert page["totalResults"] == 7
    assert page["itemsPerPage"] == 3
    assert [g["displayName"] for g in page["Resources"]] == ["Team 3", "Team 4", "Team 5"]
    found = client.get(GROUPS, params={"filter": 'displayName eq "team 2"'}).json()
    assert [g["displayName"] for g in found["Resources"]] == ["Team 2"]
    bare = client.get(GROUPS, params={"excludedAttributes": "members"}).json()
    assert all("members" not in g for g in bare["Resources"])
    assert client.get(GROUPS, params={"filter": 'userName eq "x"'}).status_code == 400


def test_capitalised_collection_path(client: httpx.Client) -> None:
    group = _create(client, "A")
    assert client.get(f"/scim/v2/Groups/{group['id']}").status_code == 200


def test_patch_add_and_remove_in_one_request(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 4)
    group = _create(client, "A", ids[:2])
    add = {"op": "Add", "path": "members", "value": [{"value": ids[2]}, {"value": ids[3]}, {"value": ids[1]}]}
    response = client.patch(f"{GROUPS}/{group['id']}", json=patch_body(add, _remove(ids[0])))
    assert response.status_code == 200
    assert _members(response.json()) == [ids[1], ids[2], ids[3]]
    # Removing an absent member or adding a present one changes nothing.
    again = client.patch(f"{GROUPS}/{group['id']}", json=patch_body(add, _remove(ids[0])))
    assert _members(again.json()) == [ids[1], ids[2], ids[3]]


def test_patch_replace_forms(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 3)
    group = _create(client, "A", ids[:2])
    url = f"{GROUPS}/{group['id']}"
    body = patch_body({"op": "replace", "path": "members", "value": [{"value": ids[2]}]})
    assert _members(client.patch(url, json=body).json()) == [ids[2]]
    renamed = client.patch(url, json=patch_body({"op": "replace", "path": "displayName", "value": "B"}))
    assert renamed.json()["displayName"] == "B"
    no_path = client.patch(url, json=patch_body({"op": "Replace", "value": {"displayName": "C", "id": "x"}}))
    assert no_path.json()["displayName"] == "C"
    assert _members(no_path.json()) == [ids[2]]


def test_patch_is_all_or_nothing(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 2)
    group = _create(client, "A", ids[:1])
    url = f"{GROUPS}/{group['id']}"
    add = {"op": "add", "path": "members", "value": [{"value": ids[1]}]}
    bad = {"op": "remove", "path": "members"}
    response = client.patch(url, json=patch_body(add, bad))
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid patch operations")
    assert _members(client.get(url).json()) == ids[:1]
    assert client.patch(url, json={"Operations": [add]}).status_code == 400
    assert client.patch(url, json=patch_body()).status_code == 400


def test_patch_rename_to_a_taken_name_is_409(client: httpx.Client) -> None:
    _create(client, "A")
    group = _create(client, "B")
    body = patch_body({"op": "replace", "path": "displayName", "value": "a"})
    assert client.patch(f"{GROUPS}/{group['id']}", json=body).status_code == 409


def test_put_replaces_the_whole_membership(emulator: EmulatorServer, client: httpx.Client) -> None:
    ids = _users(emulator, 3)
    group = _create(client, "A", ids[:2])
    url = f"{GROUPS}/{group['id']}"
    assert client.put(url, json={"displayName": "A", "members": [{"value": ids[2]}]}).status_code == 400
    body = {"displayName": "A", "members": [{"display": "user00003@example.com", "value": ids[2]}]}
    assert _members(client.put(url, json=body).json()) == [ids[2]]


def test_delete_then_404(client: httpx.Client) -> None:
    group = _create(client, "A")
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 204
    response = client.get(f"{GROUPS}/{group['id']}")
    assert response.status_code == 404
    assert response.json()["message"] == "Group not found"
    assert client.delete(f"{GROUPS}/{group['id']}").status_code == 404


def test_replace_members_mode_plays_the_other_semantics(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    ids = _users(emulator, 3)
    group = _create(client, "A", ids[:2])
    emulator.config.apply_patch({"group_patch_mode": "replace_members"})
    add = {"op": "add", "path": "members", "value": [{"value": ids[2]}]}
    assert _members(client.patch(f"{GROUPS}/{group['id']}", json=patch_body(add)).json()) == [ids[2]]


def test_same_auth_as_users(emulator: EmulatorServer) -> None:
    with api_client(emulator, token=None) as anonymous, api_client(emulator, token=PAT) as personal:
        assert anonymous.get(GROUPS).status_code == 401
        assert personal.get(GROUPS).status_code == 401


def test_rate_limit_and_faults_apply(make_emulator: MakeEmulator) -> None:
    server = make_emulator(rate_limit_enabled=True, rate_limit=2, rate_window=60.0)
    with api_client(server) as c:
        assert [c.get(GROUPS).status_code for _ in range(3)] == [200, 200, 429]
    server.config.apply_patch({"rate_limit_enabled": False})
    admin(server, "POST", "config", json={"fail_next": [{"status": 503, "count": 1, "methods": ["POST"]}]})
    with api_client(server) as c:
        assert c.post(GROUPS, json={"displayName": "A"}).status_code == 503
        assert c.post(GROUPS, json={"displayName": "A"}).status_code == 201


def test_groups_survive_a_save_and_load(
    tmp_path: Any, emulator: EmulatorServer, client: httpx.Client
) -> None:
    ids = _users(emulator, 2)
    group = _create(client, "A", ids)
    emulator.state.save(tmp_path / "state.json")
    loaded = EmulatorState.load(tmp_path / "state.json")
    record = loaded.groups.get(group["id"])
    assert record is not None
    assert (record.display_name, list(record.members)) == ("A", ids)


def test_admin_view_and_reset(emulator: EmulatorServer, client: httpx.Client) -> None:
    _create(client, "A")
    assert [g["displayName"] for g in admin(emulator, "GET", "groups").json()["groups"]] == ["A"]
    admin(emulator, "POST", "reset", json={})
    assert admin(emulator, "GET", "groups").json()["groups"] == []


@pytest.mark.parametrize("mode", ["bogus", 3])
def test_group_patch_mode_is_validated(emulator: EmulatorServer, mode: object) -> None:
    with pytest.raises(ValueError, match="group_patch_mode"):
        emulator.config.apply_patch({"group_patch_mode": mode})
