"""The switches that let the emulator play an Omni that moves or writes differently than assumed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_testkit import ATTRS, admin, patch_body

from omni_provider.emulator import EmulatorConfig, EmulatorServer


def _user(emulator: EmulatorServer, email: str = "ada@example.com") -> Any:
    return emulator.state.add_user(email, "Ada", {"region": "us", "department": "Sales"})


@pytest.mark.parametrize("semantics", ["assumed", "other"])
def test_map_replace_merges_or_replaces_the_whole_map(
    emulator: EmulatorServer, client: httpx.Client, semantics: str
) -> None:
    user = _user(emulator)
    admin(emulator, "POST", "config", json={"patch_semantics": semantics})
    answer = client.patch(
        f"/scim/v2/users/{user.id}", json=patch_body({"op": "replace", "value": {ATTRS: {"region": "eu"}}})
    )
    assert answer.status_code == 200
    expected = {"region": "eu"} if semantics == "other" else {"region": "eu", "department": "Sales"}
    assert answer.json()[ATTRS] == expected
    assert dict(emulator.state.get_user(user.id).attributes) == expected  # type: ignore[union-attr]


@pytest.mark.parametrize("semantics", ["assumed", "other"])
def test_attribute_paths_work_or_are_refused(
    emulator: EmulatorServer, client: httpx.Client, semantics: str
) -> None:
    user = _user(emulator)
    emulator.config.apply_patch({"patch_semantics": semantics})
    answer = client.patch(
        f"/scim/v2/users/{user.id}",
        json=patch_body(
            {"op": "replace", "path": f"{ATTRS}:region", "value": "eu"},
            {"op": "remove", "path": f"{ATTRS}:department", "value": None},
        ),
    )
    if semantics == "other":
        assert answer.status_code == 400 and "unsupported path" in answer.json()["message"]
        assert dict(emulator.state.get_user(user.id).attributes) == {"region": "us", "department": "Sales"}  # type: ignore[union-attr]
    else:
        assert answer.status_code == 200 and answer.json()[ATTRS] == {"region": "eu"}
    # The documented deactivation path works under both.
    assert (
        client.patch(
            f"/scim/v2/users/{user.id}", json=patch_body({"op": "replace", "path": "active", "value": False})
        ).json()["active"]
        is False
    )


def test_list_without_attribute_maps(emulator: EmulatorServer, client: httpx.Client) -> None:
    user = _user(emulator)
    emulator.config.apply_patch({"list_attribute_maps": False})
    listed = client.get("/scim/v2/users").json()["Resources"]
    assert [ATTRS in u for u in listed] == [False]
    assert client.get(f"/scim/v2/users/{user.id}").json()[ATTRS] == {"region": "us", "department": "Sales"}


def test_list_churn_fires_once_after_its_page(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.reset(seed_users=10)
    first = [u.id for u in emulator.state.users()]
    emulator.config.apply_patch({"list_churn": {"after_page": 2, "delete": 2, "create": 1}})
    client.get("/scim/v2/users", params={"count": 3})
    assert emulator.state.user_count() == 10
    client.get("/scim/v2/users", params={"startIndex": 4, "count": 3})  # page 2: churn after it
    assert emulator.state.user_count() == 9
    assert [u.id for u in emulator.state.users()][:8] == first[2:]
    for _ in range(3):
        client.get("/scim/v2/users")
    assert emulator.state.user_count() == 9  # once only
    stats = emulator.stats.snapshot()
    assert stats["users_deleted"] == 2 and stats["users_created"] == 1


def test_list_churn_can_repeat(emulator: EmulatorServer, client: httpx.Client) -> None:
    emulator.reset(seed_users=10)
    emulator.config.apply_patch({"list_churn": {"after_page": 2, "delete": 1, "create": 1, "repeat": True}})
    for _ in range(5):
        client.get("/scim/v2/users", params={"count": 3})
    stats = emulator.stats.snapshot()
    assert stats["users_deleted"] == stats["users_created"] == 2  # after pages 2 and 4
    assert emulator.state.user_count() == 10


def test_group_list_churn_fires_after_its_group_page_only(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    names = [emulator.state.groups.add_group(f"Team {i}").display_name for i in range(6)]
    emulator.config.apply_patch({"group_list_churn": {"after_page": 2, "delete": 2, "create": 1}})
    client.get("/scim/v2/users")  # user pages and filtered group pages do not count
    client.get("/scim/v2/groups", params={"filter": 'displayName eq "Team 1"'})
    client.get("/scim/v2/groups", params={"count": 3})
    assert [g.display_name for g in emulator.state.groups.groups()] == names
    client.get("/scim/v2/groups", params={"startIndex": 4, "count": 3})  # page 2: churn after it
    after = [g.display_name for g in emulator.state.groups.groups()]
    assert after == [*names[2:], "Churn group 00001"]
    for _ in range(3):
        client.get("/scim/v2/groups")
    assert [g.display_name for g in emulator.state.groups.groups()] == after  # once only
    emulator.config.apply_patch({"group_list_churn": {"after_page": 1, "delete": 1, "repeat": True}})
    emulator.context.reset(keep_users=True)  # the page count starts again
    for _ in range(2):
        client.get("/scim/v2/groups")
    assert [g.display_name for g in emulator.state.groups.groups()] == after[2:]


@pytest.mark.parametrize("when", ["before", "after"])
def test_concurrent_writer(emulator: EmulatorServer, client: httpx.Client, when: str) -> None:
    user = _user(emulator)
    emulator.config.apply_patch({"concurrent_writer": {"attribute": "region", "value": "mars", "when": when}})
    answer = client.patch(
        f"/scim/v2/users/{user.id}",
        json=patch_body({"op": "replace", "path": f"{ATTRS}:region", "value": "eu"}),
    )
    # Before: our write lands on top of the other one; after: the other writer wins (the answer shows it).
    assert answer.json()[ATTRS]["region"] == ("eu" if when == "before" else "mars")


@pytest.mark.parametrize(
    "bad",
    [
        {"patch_semantics": "merge"},
        {"list_churn": {"after_page": 0}},
        {"list_churn": {"after_page": 1, "drop": 1}},
        {"list_churn": {"after_page": 1, "repeat": "yes"}},
        {"group_list_churn": {"after_page": 0}},
        {"group_list_churn": {"after_page": 1, "delete": -1}},
        {"concurrent_writer": {"value": 1}},
        {"concurrent_writer": {"attribute": "x", "when": "later"}},
        {"list_attribute_maps": "no"},
    ],
)
def test_bad_switch_values_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**bad)
