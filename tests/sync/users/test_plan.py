"""The pure sync planner, its spec and its guards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from omni_provider.domain.models import USER_ATTRIBUTES_URN, AttributeDefinition, OmniUser
from omni_provider.errors import (
    InvalidAttributesError,
    OmniError,
    OmniValidationError,
    PlanTooLargeError,
)
from omni_provider.sync import (
    RowAction,
    SyncMode,
    SyncPlan,
    SyncSpec,
    build_plan,
    check_max_changes,
    definitions_by_name,
    evaluate_failures,
    resolve_max_changes,
)

ID1 = "9e8719d9-276a-4964-9395-a493189a247c"
ID2 = "1b7c7f52-9a3e-4c55-8f27-0d1d9b0e8a11"
ID3 = "5f0c2d7e-3b1a-4f4e-9c6d-2a8b7e1f0c33"

DEFS = definitions_by_name(
    [
        AttributeDefinition(name="region", type="String"),
        AttributeDefinition(name="level", type="Number"),
        AttributeDefinition(name="tags", type="String", multiple_values=True),
        AttributeDefinition(name="omni_user_email", system=True),
        AttributeDefinition(name="omni_user_timezone", system=True),
    ]
)


def user(uid: str, email: str, display: str | None = None, **attributes: Any) -> OmniUser:
    return OmniUser.model_validate(
        {"id": uid, "userName": email, "displayName": display or email, USER_ATTRIBUTES_URN: attributes}
    )


def spec(mode: str = "update", **kwargs: Any) -> SyncSpec:
    attributes = kwargs.pop("attributes", {"region": "region", "level": "level"})
    return SyncSpec.from_user_args(attributes, mode=mode, **kwargs)


def by_row(plan: SyncPlan) -> dict[int | None, Any]:
    return {item.row_number: item for item in plan.items if item.row_number is not None}


# ------------------------------------------------------------------------------------------------ update


def test_update_sends_only_changed_managed_keys() -> None:
    users = [
        user(ID1, "ann@x.co", region="eu", level="3", secret="keep"),
        user(ID2, "bob@x.co", region="us", level=1),
    ]
    rows: list[dict[str, Any]] = [
        {"userName": "ann@x.co", "region": "us", "level": 3},  # level "3" == 3: not a change
        {"userName": "bob@x.co", "region": "us", "level": "1"},
    ]
    plan = build_plan(rows, users, spec(), DEFS)
    ann, bob = plan.items
    assert ann.action is RowAction.UPDATE
    assert ann.attributes == {"region": "us"}
    assert [(c.attribute, c.old, c.new) for c in ann.changes] == [("region", "eu", "us")]
    assert ann.user_id == ID1 and ann.user_name == "ann@x.co"
    assert bob.action is RowAction.UNCHANGED and bob.attributes == {} and bob.changes == ()
    assert plan.counts() == {"create": 0, "update": 1, "unset": 0, "unchanged": 1, "rejected": 0}
    assert plan.change_count == 1 and plan.attribute_change_count == 1
    assert plan.writes() == [ann]


def test_null_in_row_unsets_only_when_currently_set() -> None:
    users = [user(ID1, "ann@x.co", region="eu", level=2), user(ID2, "bob@x.co", level=2)]
    rows = [
        {"userName": "ann@x.co", "region": None, "level": 2},
        {"userName": "bob@x.co", "region": None, "level": 2},
    ]
    ann, bob = build_plan(rows, users, spec(), DEFS).items
    assert ann.action is RowAction.UNSET and ann.attributes == {"region": None}
    assert bob.action is RowAction.UNCHANGED


def test_empty_string_and_empty_list_mean_unset() -> None:
    users = [user(ID1, "ann@x.co", region="eu", tags=["a"])]
    rows = [{"userName": "ann@x.co", "region": "", "tags": []}]
    s = spec(attributes=["region", "tags"])
    for definitions in (DEFS, None):
        (item,) = build_plan(rows, users, s, definitions).items
        assert item.attributes == {"region": None, "tags": None}


def test_matching_is_case_insensitive_and_strips_whitespace() -> None:
    users = [user(ID1, "Ann.Lee@Example.COM", region="eu")]
    rows = [{"userName": "  ann.lee@example.com ", "region": "us", "level": None}]
    (item,) = build_plan(rows, users, spec(), DEFS).items
    assert item.action is RowAction.UPDATE
    assert item.key == "ann.lee@example.com"
    assert item.user_id == ID1


def test_update_mode_rejects_unknown_users() -> None:
    plan = build_plan([{"userName": "nobody@x.co", "region": "eu", "level": 1}], [], spec(), DEFS)
    (item,) = plan.items
    assert item.action is RowAction.REJECTED
    assert item.reason == "no Omni user with this email"


def test_unmanaged_attributes_are_never_in_the_plan() -> None:
    users = [user(ID1, "ann@x.co", region="eu", other="x", omni_user_email="ann@x.co")]
    rows = [{"userName": "ann@x.co", "region": "us", "level": 5, "other": "ignored column"}]
    (item,) = build_plan(rows, users, spec(), DEFS).items
    assert set(item.attributes) <= {"region", "level"}


def test_column_renaming() -> None:
    users = [user(ID1, "ann@x.co", region="eu")]
    rows = [{"email": "ann@x.co", "REGION_CODE": "us"}]
    s = SyncSpec(attributes={"REGION_CODE": "region"}, key_column="email")
    (item,) = build_plan(rows, users, s, DEFS).items
    assert item.attributes == {"region": "us"}


def test_multi_valued_is_order_insensitive() -> None:
    users = [user(ID1, "ann@x.co", tags=["b", "a"])]
    rows = [{"userName": "ann@x.co", "tags": {"a", "b"}}]
    (item,) = build_plan(rows, users, spec(attributes=["tags"]), DEFS).items
    assert item.action is RowAction.UNCHANGED


def test_missing_attribute_map_on_user_reads_as_unset() -> None:
    bare = OmniUser.model_validate({"id": ID1, "userName": "ann@x.co"})
    (item,) = build_plan(
        [{"userName": "ann@x.co", "region": "eu", "level": None}], [bare], spec(), DEFS
    ).items
    assert item.action is RowAction.UPDATE and item.attributes == {"region": "eu"}


# ------------------------------------------------------------------------------------------------ rejections


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "empty match key"),
        ("", "empty match key"),
        ("   ", "empty match key"),
        ("no-at-sign", "exactly one @"),
        ("a@@x.co", "exactly one @"),
        ("a@b@x.co", "exactly one @"),
        ("@x.co", "exactly one @"),
        ("ann@", "exactly one @"),
        ("ann lee@x.co", "whitespace"),
        ("ann\x01@x.co", "control characters"),
        ("ann\n@x.co", "control characters"),
        ("a" * 400 + "@x.co", "longer than 320"),
        (42, "must be text"),
    ],
)
def test_bad_email_keys_are_rejected(key: object, reason: str) -> None:
    (item,) = build_plan([{"userName": key, "region": "eu", "level": 1}], [], spec(), DEFS).items
    assert item.action is RowAction.REJECTED
    assert reason in (item.reason or "")


def test_quoted_local_part_is_accepted() -> None:
    users = [user(ID1, '"ann"@x.co')]
    (item,) = build_plan([{"userName": '"Ann"@x.co', "region": "eu", "level": 1}], users, spec(), DEFS).items
    assert item.action is RowAction.UPDATE


def test_key_column_missing_from_every_row_is_a_configuration_error() -> None:
    expected = r"key column 'userName' is not in the input \(its columns: level, region\)"
    with pytest.raises(OmniValidationError, match=expected):
        build_plan([{"region": "eu", "level": 1}], [], spec(), DEFS)


def test_key_column_missing_from_some_rows_rejects_those_rows() -> None:
    rows = [{"region": "eu", "level": 1}, {"userName": "ann@x.co", "region": "eu", "level": 1}]
    items = by_row(build_plan(rows, [user(ID1, "ann@x.co")], spec(), DEFS))
    assert items[1].reason == "missing column 'userName'"
    assert items[2].action is RowAction.UPDATE


def test_duplicate_keys_reject_every_copy() -> None:
    users = [user(ID1, "ann@x.co"), user(ID2, "bob@x.co")]
    rows = [
        {"userName": "ann@x.co", "region": "a", "level": 1},
        {"userName": "bob@x.co", "region": "b", "level": 1},
        {"userName": "ANN@x.co", "region": "c", "level": 1},
        {"userName": " ann@X.CO", "region": "d", "level": 1},
    ]
    items = by_row(build_plan(rows, users, spec(), DEFS))
    assert items[1].reason == "duplicate key, also in rows 3, 4"
    assert items[3].reason == "duplicate key, also in rows 1, 4"
    assert items[4].reason == "duplicate key, also in rows 1, 3"
    assert items[2].action is RowAction.UPDATE


def test_many_duplicates_are_listed_briefly() -> None:
    rows = [{"userName": "ann@x.co", "region": "a", "level": 1}] * 15
    first = build_plan(rows, [], spec(), DEFS).items[0]
    assert first.reason == "duplicate key, also in rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 4 more"


def test_ambiguous_omni_users_reject_the_row() -> None:
    users = [user(ID1, "ann@x.co"), user(ID2, "ANN@x.co"), user(ID3, "bob@x.co")]
    rows = [{"userName": "Ann@X.co", "region": "eu", "level": 1}]
    (item,) = build_plan(rows, users, spec(), DEFS).items
    assert item.action is RowAction.REJECTED
    assert "ambiguous: 2 Omni users" in (item.reason or "")


def test_same_user_listed_twice_is_not_ambiguous() -> None:
    # Paging over a list that shifts can return one user twice; it is still one user.
    users = [user(ID1, "ann@x.co"), user(ID1, "ann@x.co")]
    plan = build_plan([{"userName": "ann@x.co", "region": "eu", "level": 1}], users, spec(), DEFS)
    assert plan.items[0].action is RowAction.UPDATE
    assert plan.user_count == 1


def test_bad_value_rejects_the_whole_row_and_lists_every_problem() -> None:
    users = [user(ID1, "ann@x.co", region="eu", level=1)]
    rows = [{"userName": "ann@x.co", "region": ["a", "b"], "level": "high"}]
    (item,) = build_plan(rows, users, spec(), DEFS).items
    assert item.action is RowAction.REJECTED
    assert item.attributes == {}
    assert "column 'region': is single-valued; got a list of 2" in (item.reason or "")
    assert "column 'level': is a Number attribute; 'high' is not a number" in (item.reason or "")


def test_bad_value_without_definitions() -> None:
    rows = [{"userName": "ann@x.co", "region": float("nan"), "level": True}]
    (item,) = build_plan(rows, [user(ID1, "ann@x.co")], spec(), None).items
    assert "column 'region': nan is not a finite number" in (item.reason or "")
    assert "booleans are ambiguous" in (item.reason or "")


def test_missing_attribute_column_rejects_the_row() -> None:
    (item,) = build_plan(
        [{"userName": "ann@x.co", "region": "eu"}], [user(ID1, "ann@x.co")], spec(), DEFS
    ).items
    assert item.reason == "missing column 'level'"


def test_renamed_column_is_named_in_reason() -> None:
    s = SyncSpec(attributes={"lvl": "level"})
    (item,) = build_plan([{"userName": "ann@x.co", "lvl": "x"}], [user(ID1, "ann@x.co")], s, DEFS).items
    assert (item.reason or "").startswith("column 'lvl' (level):")


# ------------------------------------------------------------------------------------------------ definitions


def test_unknown_mapped_attribute_is_a_config_error() -> None:
    with pytest.raises(InvalidAttributesError) as info:
        build_plan([], [], spec(attributes=["regoin", "level"]), DEFS)
    assert "did you mean 'region'" in str(info.value)


def test_read_only_system_attribute_is_a_config_error() -> None:
    with pytest.raises(OmniValidationError, match="read-only system attribute"):
        build_plan([], [], spec(attributes=["omni_user_email"]), DEFS)


def test_timezone_system_attribute_is_writable() -> None:
    users = [user(ID1, "ann@x.co")]
    rows = [{"userName": "ann@x.co", "omni_user_timezone": "Europe/Paris"}]
    (item,) = build_plan(rows, users, spec(attributes=["omni_user_timezone"]), DEFS).items
    assert item.attributes == {"omni_user_timezone": "Europe/Paris"}


# ------------------------------------------------------------------------------------------------ match on id


def test_match_on_id() -> None:
    users = [user(ID1, "ann@x.co", region="eu")]
    rows = [{"id": ID1.upper(), "region": "us", "level": None}]
    (item,) = build_plan(rows, users, spec(match_on="id"), DEFS).items
    assert item.action is RowAction.UPDATE and item.user_id == ID1 and item.key == ID1


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "../" + ID1,
        ID1 + "/..",
        ID1 + "?x=1",
        ID1 + "#",
        "..",
        "/",
        ID1.replace("-", ""),
        "{" + ID1 + "}",
    ],
)
def test_match_on_id_rejects_non_uuids(bad: str) -> None:
    (item,) = build_plan([{"id": bad, "region": "eu", "level": 1}], [], spec(match_on="id"), DEFS).items
    assert item.action is RowAction.REJECTED
    assert "not an Omni user id" in (item.reason or "")


def test_match_on_id_unknown_id() -> None:
    (item,) = build_plan([{"id": ID2, "region": "eu", "level": 1}], [], spec(match_on="id"), DEFS).items
    assert item.reason == "no Omni user with this id"


# ------------------------------------------------------------------------------------------------ upsert


def test_upsert_creates_missing_users_with_non_null_values() -> None:
    s = spec("upsert", display_name_column="name")
    rows: list[dict[str, Any]] = [
        {"userName": " New.Person@X.co ", "name": " New Person ", "region": "eu", "level": None},
        {"userName": "other@x.co", "name": "", "region": "eu", "level": 1},
        {"userName": "third@x.co", "region": "eu", "level": 1},
        {"userName": "ann@x.co", "name": "ignored", "region": "us", "level": 1},
    ]
    items = by_row(build_plan(rows, [user(ID1, "ann@x.co", region="eu", level=1)], s, DEFS))
    new = items[1]
    assert new.action is RowAction.CREATE
    assert new.user_name == "New.Person@X.co" and new.display_name == "New Person"
    assert new.attributes == {"region": "eu"}
    assert [(c.attribute, c.old, c.new) for c in new.changes] == [("region", None, "eu")]
    assert new.user_id is None
    assert items[2].action is RowAction.REJECTED and "display name" in (items[2].reason or "")
    assert items[3].reason == "missing column 'name'"
    assert items[4].action is RowAction.UPDATE and items[4].attributes == {"region": "us"}


# ------------------------------------------------------------------------------------------------ mirror


def test_mirror_unsets_absent_users_on_managed_keys_only() -> None:
    users = [
        user(ID1, "ann@x.co", region="eu", level=1),
        user(ID2, "bob@x.co", region="us", other="keep"),
        user(ID3, "cy@x.co", other="only unmanaged"),
    ]
    plan = build_plan([{"userName": "ann@x.co", "region": "eu", "level": 1}], users, spec("mirror"), DEFS)
    assert len(plan.items) == 2
    ann, bob = plan.items
    assert ann.action is RowAction.UNCHANGED
    assert bob.row_number is None and bob.action is RowAction.UNSET
    assert bob.attributes == {"region": None}
    assert bob.user_id == ID2 and bob.key == "bob@x.co"
    assert plan.empty_input is False


def test_mirror_does_not_unset_users_whose_row_was_rejected() -> None:
    users = [user(ID1, "ann@x.co", region="eu"), user(ID2, "bob@x.co", region="us")]
    rows = [
        {"userName": "ANN@x.co", "region": ["bad"], "level": 1},
        {"userName": "bob@x.co", "region": "x", "level": 1},
        {"userName": "bob@x.co", "region": "y", "level": 1},
    ]
    plan = build_plan(rows, users, spec("mirror"), DEFS)
    assert [item.action for item in plan.items] == [RowAction.REJECTED] * 3


def test_mirror_does_not_create() -> None:
    (item,) = build_plan(
        [{"userName": "new@x.co", "region": "eu", "level": 1}], [], spec("mirror"), DEFS
    ).items
    assert item.action is RowAction.REJECTED


def test_mirror_with_empty_input_is_flagged_and_guarded() -> None:
    users = [user(ID1, "ann@x.co", region="eu"), user(ID2, "bob@x.co")]
    plan = build_plan([], users, spec("mirror"), DEFS)
    assert plan.empty_input is True
    assert plan.counts()["unset"] == 1
    with pytest.raises(PlanTooLargeError, match="input has no rows"):
        check_max_changes(plan, None, total_users=2)
    check_max_changes(plan, None, total_users=2, allow_empty_input=True)


def test_empty_input_in_update_mode_is_not_flagged() -> None:
    plan = build_plan([], [user(ID1, "ann@x.co", region="eu")], spec(), DEFS)
    assert plan.items == () and plan.empty_input is False


# ------------------------------------------------------------------------------------------------ plan shape


def test_every_row_appears_once_in_order_and_summary_has_no_personal_data() -> None:
    users = [user(ID1, "ann@x.co", region="eu")]
    rows: list[dict[str, Any]] = [
        {"userName": "ann@x.co", "region": "zz-secret", "level": 1},
        {"userName": "nobody@x.co", "region": "zz-secret", "level": 1},
        {"userName": None, "region": "zz-secret", "level": 1},
    ]
    plan = build_plan(iter(rows), users, spec(), DEFS)  # any iterable, consumed once
    assert [item.row_number for item in plan.items] == [1, 2, 3]
    summary = plan.to_summary()
    text = json.dumps(summary)
    assert "@" not in text and "zz-secret" not in text
    assert summary["counts"] == {"create": 0, "update": 1, "unset": 0, "unchanged": 0, "rejected": 2}
    assert summary["changes_by_attribute"] == {
        "region": {"set": 1, "unset": 0},
        "level": {"set": 1, "unset": 0},
    }
    assert summary["rejected_sample"][1] == {"row": 3, "reason": "empty match key"}


# ------------------------------------------------------------------------------------------------ spec


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"attributes": {}}, "empty"),
        ({"attributes": []}, "empty"),
        ({"attributes": {"a": "x", "b": "x"}}, "both map to attribute 'x'"),
        ({"attributes": {"userName": "email_attr"}}, "match column 'userName' is also mapped"),
        ({"attributes": {"a": "bad name"}}, "not a valid attribute reference name"),
        ({"attributes": {"": "a"}}, "non-empty"),
        ({"attributes": ["a", "a"]}, "more than once"),
        ({"attributes": '{"col": "attr"}'}, "mapping or a list"),  # template text: the adapter parses it
        ({"attributes": 5}, "mapping or a list"),
        ({"mode": "upsert"}, "needs display_name_column"),
        ({"mode": "upsert", "match_on": "id", "display_name_column": "n"}, "needs match_on='userName'"),
        ({"mode": "sideways"}, "mode must be one of update, upsert, mirror"),
        ({"match_on": "email"}, "match_on must be one of"),
    ],
)
def test_spec_validation(kwargs: dict[str, Any], fragment: str) -> None:
    attributes = kwargs.pop("attributes", ["region"])
    with pytest.raises(OmniValidationError, match=None) as info:
        SyncSpec.from_user_args(attributes, **kwargs)
    assert fragment in str(info.value)


def test_spec_from_mapping_and_list() -> None:
    assert SyncSpec.from_user_args({"col": "attr"}).attributes == {"col": "attr"}
    listed = SyncSpec.from_user_args(["a", "b"], mode="mirror")
    assert listed.attributes == {"a": "a", "b": "b"}
    assert listed.mode is SyncMode.MIRROR
    assert listed.managed_attributes == ("a", "b")


def test_spec_copies_its_mapping() -> None:
    mapping = {"a": "a"}
    s = SyncSpec(attributes=mapping)
    mapping["b"] = "b"
    assert s.attributes == {"a": "a"}


# ------------------------------------------------------------------------------------------------ guards


def _plan_with_writes(count: int, total: int) -> SyncPlan:
    users = [user(f"00000000-0000-4000-8000-{i:012d}", f"u{i}@x.co", region="old") for i in range(total)]
    rows = [{"userName": f"u{i}@x.co", "region": "new"} for i in range(count)]
    return build_plan(rows, users, spec(attributes=["region"]), DEFS)


@pytest.mark.parametrize(
    ("max_changes", "total", "limit"),
    [
        (None, 10, None),
        (5, 10, 5),
        ("5", 10, 5),
        ("10%", 100, 10),
        ("10%", 5, 0),
        ("12.5%", 8, 1),
        ("100%", 3, 3),
    ],
)
def test_resolve_max_changes(max_changes: Any, total: int, limit: int | None) -> None:
    assert resolve_max_changes(max_changes, total) == limit


@pytest.mark.parametrize("bad", [-1, True, "ten", "101%", "-5%", "5 %%", 1.5])
def test_resolve_max_changes_rejects(bad: Any) -> None:
    with pytest.raises(OmniValidationError):
        resolve_max_changes(bad, 10)


def test_check_max_changes() -> None:
    plan = _plan_with_writes(3, 20)
    check_max_changes(plan, 3, 20)
    check_max_changes(plan, "15%", 20)
    with pytest.raises(PlanTooLargeError) as info:
        check_max_changes(plan, "10%", 20)
    assert info.value.changes == 3 and info.value.limit == 2 and info.value.total_users == 20
    assert "3 users (0 create, 3 update, 0 unset)" in str(info.value)
    assert "max_changes='10%'" in str(info.value) and "2 of 20" in str(info.value)
    assert isinstance(info.value, OmniError)


@pytest.mark.parametrize(
    ("counts", "kwargs", "should_fail", "fragment"),
    [
        ({"update": 10, "rejected": 0}, {"max_failed_rows": 0}, False, None),
        ({"update": 9, "rejected": 1}, {"max_failed_rows": 0}, True, "over max_failed_rows=0"),
        ({"update": 9, "rejected": 1}, {"max_failed_rows": 1}, False, None),
        ({"update": 9, "rejected": 1}, {"failed_writes": 1, "max_failed_rows": 1}, True, "1 failed writes"),
        ({"update": 90, "rejected": 10}, {"max_failed_pct": 10}, False, None),
        ({"update": 89, "rejected": 11}, {"max_failed_pct": "10%"}, True, "over max_failed_pct=10%"),
        ({"update": 89, "rejected": 11}, {"max_failed_pct": 12.5}, False, None),
        ({"update": 5, "rejected": 5}, {}, False, None),
        ({}, {"max_failed_pct": 0}, False, None),
        ({"rejected": 1, "bogus": 1000}, {"max_failed_pct": 50}, True, "1 of 1 items"),
    ],
)
def test_evaluate_failures(
    counts: dict[str, int], kwargs: dict[str, Any], should_fail: bool, fragment: str | None
) -> None:
    verdict = evaluate_failures(counts, **kwargs)
    assert verdict.should_fail is should_fail
    if fragment:
        assert fragment in (verdict.reason or "")
    else:
        assert verdict.reason is None


@pytest.mark.parametrize(
    "kwargs", [{"max_failed_pct": 101}, {"max_failed_pct": "x"}, {"max_failed_rows": -1}]
)
def test_evaluate_failures_rejects_bad_thresholds(kwargs: dict[str, Any]) -> None:
    with pytest.raises(OmniValidationError):
        evaluate_failures({"update": 1}, **kwargs)
