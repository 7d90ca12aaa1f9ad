"""The pure group-membership planner and its guards: no I/O, so every rule is checked on plain objects."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from omni_provider.client import OmniGroup, OmniUser, OmniValidationError
from omni_provider.errors import PlanTooLargeError
from omni_provider.sync.groups.plan import (
    GroupSyncMode,
    MembershipAction,
    build_group_plan,
    check_group_plan,
)


def uid(n: int) -> str:
    return str(uuid.UUID(int=n, version=4))


USERS = [OmniUser(id=uid(i), userName=f"user{i}@example.com") for i in range(1, 21)]


def group(name: str, members: list[int], gid: str | None = None) -> OmniGroup:
    body: dict[str, Any] = {
        "id": gid or name.replace(" ", "_")[:8] + "id",
        "displayName": name,
        "schemas": [],
        "members": [{"value": uid(i), "display": f"user{i}@example.com"} for i in members],
    }
    return OmniGroup.model_validate(body)


def row(user: int | str, grp: str) -> dict[str, Any]:
    return {"email": f"user{user}@example.com" if isinstance(user, int) else user, "group": grp}


def actions(plan: Any) -> list[tuple[int | None, str, str]]:
    return [(i.row_number, i.group, i.action.value) for i in plan.items]


def test_add_mode_adds_missing_members_in_one_change_per_group() -> None:
    groups = [group("Sales", [1, 2]), group("Finance", [3])]
    rows = [row(1, "Sales"), row(4, "Sales"), row(5, "Sales"), row(3, "Finance"), row(6, "Finance")]
    plan = build_group_plan(rows, USERS, groups)
    assert actions(plan) == [
        (1, "Sales", "unchanged"),
        (2, "Sales", "add"),
        (3, "Sales", "add"),
        (4, "Finance", "unchanged"),
        (5, "Finance", "add"),
    ]
    assert [(c.group, c.add, c.remove) for c in plan.changes] == [
        ("Sales", (uid(4), uid(5)), ()),
        ("Finance", (uid(6),), ()),
    ]
    assert plan.managed_memberships == 3  # member 2 is kept in add mode
    assert plan.counts()["groups_changed"] == 2


def test_users_match_case_insensitively_through_the_shared_identity_rule() -> None:
    plan = build_group_plan([row("  USER4@Example.COM ", "Sales")], USERS, [group("Sales", [])])
    assert plan.items[0].action is MembershipAction.ADD
    assert plan.items[0].user == "user4@example.com"
    assert plan.items[0].user_id == uid(4)


def test_unknown_users_and_bad_rows_are_rejected() -> None:
    rows = [
        row("ghost@example.com", "Sales"),
        row("not-an-email", "Sales"),
        {"email": "user1@example.com"},
        row(1, "x" * 65),
        row(1, "  "),
    ]
    plan = build_group_plan(rows, USERS, [group("Sales", [])])
    reasons = [i.reason for i in plan.items]
    assert all(i.action is MembershipAction.REJECTED for i in plan.items)
    assert reasons[0] == "no Omni user has this email"
    assert reasons[1] is not None and reasons[1].startswith("user: not an email")
    assert reasons[2] == "missing column 'group'"
    assert "64 characters" in str(reasons[3])
    assert reasons[4] == "group name is empty"
    assert plan.changes == ()


def test_unknown_groups_are_rejected_or_created_on_opt_in() -> None:
    rows = [row(1, "New team"), row(2, "New team")]
    refused = build_group_plan(rows, USERS, [])
    assert {i.action for i in refused.items} == {MembershipAction.REJECTED}
    assert "create_missing_groups=True" in str(refused.items[0].reason)
    created = build_group_plan(rows, USERS, [], create_missing_groups=True)
    assert [(c.group, c.group_id, c.add) for c in created.changes] == [("New team", None, (uid(1), uid(2)))]
    assert created.counts()["groups_created"] == 1


def test_a_group_differing_only_in_case_is_never_guessed_nor_created_beside() -> None:
    plan = build_group_plan([row(1, "sales")], USERS, [group("Sales", [])], create_missing_groups=True)
    assert plan.items[0].action is MembershipAction.REJECTED
    assert "Omni has ['Sales']" in str(plan.items[0].reason)
    assert plan.changes == ()


def test_two_groups_with_one_name_are_refused() -> None:
    groups = [group("Sales", [], "a1"), group("Sales", [], "b2")]
    plan = build_group_plan([row(1, "Sales")], USERS, groups)
    assert plan.items[0].action is MembershipAction.REJECTED
    assert "2 Omni groups" in str(plan.items[0].reason)


def test_only_managed_groups_are_planned() -> None:
    groups = [group("Sales", [1]), group("Finance", [2])]
    rows = [row(3, "Sales"), row(4, "Finance")]
    plan = build_group_plan(rows, USERS, groups, managed_groups=["Sales"], mode="mirror")
    assert actions(plan) == [(1, "Sales", "add"), (2, "Finance", "rejected"), (None, "Sales", "remove")]
    assert "not one of the managed groups" in str(plan.items[1].reason)
    assert [c.group for c in plan.changes] == ["Sales"]
    assert plan.managed_memberships == 1  # Finance is not counted: it is not managed


def test_mirror_removes_absent_members_in_the_same_change() -> None:
    plan = build_group_plan(
        [row(1, "Sales"), row(3, "Sales")], USERS, [group("Sales", [1, 2])], mode="mirror"
    )
    assert actions(plan) == [(1, "Sales", "unchanged"), (2, "Sales", "add"), (None, "Sales", "remove")]
    assert plan.items[2].user == "user2@example.com"
    assert [(c.add, c.remove) for c in plan.changes] == [((uid(3),), (uid(2),))]


def test_mirror_keeps_a_member_whose_row_was_rejected() -> None:
    users = [*USERS, OmniUser(id=uid(99), userName="USER2@example.com")]  # user2 is now ambiguous
    plan = build_group_plan(
        [row(1, "Sales"), row(2, "Sales")], users, [group("Sales", [1, 2])], mode="mirror"
    )
    assert actions(plan) == [
        (1, "Sales", "unchanged"),
        (2, "Sales", "rejected"),
        (None, "Sales", "unchanged"),
    ]
    assert plan.changes == ()


def test_duplicate_rows_are_one_membership() -> None:
    plan = build_group_plan([row(4, "Sales"), row("USER4@example.com", "Sales")], USERS, [group("Sales", [])])
    assert actions(plan) == [(1, "Sales", "add"), (2, "Sales", "unchanged")]
    assert plan.items[1].reason == "duplicate of row 1"
    assert plan.changes[0].add == (uid(4),)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(OmniValidationError, match="mode"):
        build_group_plan([], USERS, [], mode="replace")
    with pytest.raises(OmniValidationError, match="groups"):
        build_group_plan([], USERS, [], managed_groups=["ok", ""])
    with pytest.raises(OmniValidationError, match="different"):
        build_group_plan([], USERS, [], user_column="x", group_column="x")


def _mirror_plan(removed: int, members: int = 20) -> Any:
    keep = list(range(1, members + 1 - removed))
    return build_group_plan(
        [row(i, "Sales") for i in keep], USERS, [group("Sales", list(range(1, members + 1)))], mode="mirror"
    )


def test_mirror_default_guard_allows_up_to_10_percent_of_managed_memberships() -> None:
    check_group_plan(_mirror_plan(2), None)  # 2 of 20
    with pytest.raises(PlanTooLargeError, match="more than 10%"):
        check_group_plan(_mirror_plan(3), None)


def test_an_empty_mirror_input_is_refused_by_default() -> None:
    plan = build_group_plan([], USERS, [group("Sales", [1, 2, 3])], managed_groups=["Sales"], mode="mirror")
    assert plan.removals == 3
    with pytest.raises(PlanTooLargeError):
        check_group_plan(plan, None)


def test_explicit_max_changes_replaces_the_default() -> None:
    check_group_plan(_mirror_plan(5), 5)
    check_group_plan(_mirror_plan(5), "25%")
    with pytest.raises(PlanTooLargeError, match="max_changes=4"):
        check_group_plan(_mirror_plan(5), 4)


def test_add_mode_has_no_default_limit_but_honours_max_changes() -> None:
    plan = build_group_plan([row(i, "Sales") for i in range(1, 11)], USERS, [group("Sales", [])])
    check_group_plan(plan, None)
    with pytest.raises(PlanTooLargeError):
        check_group_plan(plan, 9)
    assert plan.mode is GroupSyncMode.ADD
