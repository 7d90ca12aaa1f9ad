"""The planner's safety rules: mirror never on a broken input, a default mirror limit, one identity rule.

Pure tests (no I/O); the same behaviours are checked end to end against the emulator in
``tests/operators/test_sync_safety.py``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_provider.domain.identity import email_key, validate_email, validate_user_id
from omni_provider.domain.models import USER_ATTRIBUTES_URN, AttributeDefinition, OmniUser
from omni_provider.errors import OmniValidationError, PlanTooLargeError
from omni_provider.sync import RowAction, SyncSpec, build_plan, check_max_changes, definitions_by_name
from omni_provider.sync.users.guards import DEFAULT_MIRROR_UNSET_LIMIT
from omni_provider.sync.users.keys import KeyProblem, UnreadableKeysError, normalize_email, normalize_id

DEFS = definitions_by_name(
    [AttributeDefinition(name="region", type="String"), AttributeDefinition(name="level", type="Number")]
)
#: "zoë" composed (NFC) and decomposed (NFD): one person, two byte sequences.
ZOE_NFC = unicodedata.normalize("NFC", "zoë@exämple.com")
ZOE_NFD = unicodedata.normalize("NFD", ZOE_NFC)


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def user(n: int, email: str, **attributes: Any) -> OmniUser:
    return OmniUser.model_validate(
        {"id": uid(n), "userName": email, "displayName": email, USER_ATTRIBUTES_URN: attributes}
    )


def spec(mode: str = "mirror", **kwargs: Any) -> SyncSpec:
    return SyncSpec.from_user_args({"region": "region", "level": "level"}, mode=mode, **kwargs)


def people(n: int) -> list[OmniUser]:
    return [user(i, f"user{i:03d}@x.co", region="eu", level=1) for i in range(1, n + 1)]


def row(email: object, region: object = "eu", **extra: Any) -> dict[str, Any]:
    return {"userName": email, "region": region, "level": 1, **extra}


# ------------------------------------------------------------------ item 1: mirror never on unreadable keys


@pytest.mark.parametrize(
    ("bad_key", "reason"),
    [
        (None, "empty match key"),
        ("  ", "empty match key"),
        (b"user002@x.co", "match key must be text (an email), got bytes"),
        (42, "got int"),
        ("not-an-email", "not an email"),
        ("user002@localhost", "not an email"),
        ("MISSING", "missing column 'userName'"),
    ],
)
def test_mirror_with_an_unreadable_key_plans_no_unset_and_names_the_column(
    bad_key: object, reason: str
) -> None:
    users = people(5)
    rows = [row("user001@x.co"), row(bad_key), row("user003@x.co")]
    if bad_key == "MISSING":
        del rows[1]["userName"]
    with pytest.raises(UnreadableKeysError) as info:
        build_plan(rows, users, spec(), DEFS)
    message = str(info.value)
    assert "1 of 3 input rows have an unreadable key in column 'userName'" in message
    assert reason in message and "rows 2)" in message and "no user was unset" in message
    assert (info.value.column, info.value.unreadable, info.value.rows) == ("userName", 1, 3)


def test_mirror_refusal_counts_every_unreadable_row_by_reason() -> None:
    rows = [row("user001@x.co"), row(None), row(None), row(b"x@x.co"), row("bad"), row("user002@x.co")]
    with pytest.raises(UnreadableKeysError, match=r"4 of 6 input rows .* \(2 empty match key; ") as info:
        build_plan(rows, people(3), spec(), DEFS)
    assert "rows 2, 3, 4, 5)" in str(info.value)


def test_mirror_by_id_refuses_an_unparseable_id() -> None:
    users = people(3)
    rows = [{"id": uid(1), "region": "eu", "level": 1}, {"id": uid(2) + "/..", "region": "eu", "level": 1}]
    with pytest.raises(UnreadableKeysError, match=r"column 'id'.*not an Omni user id"):
        build_plan(rows, users, spec(match_on="id"), DEFS)


@pytest.mark.parametrize("mode", ["update", "upsert", "mirror"])
def test_a_renamed_key_column_is_a_configuration_error_in_every_mode(mode: str) -> None:
    kwargs = {"display_name_column": "name"} if mode == "upsert" else {}
    rows = [{"mail": "user001@x.co", "region": "eu", "level": 1, "name": "A"}]
    with pytest.raises(
        OmniValidationError, match=r"key column 'userName' is not in the input \(its columns:"
    ):
        build_plan(rows, people(3), spec(mode, **kwargs), DEFS)


def test_update_mode_still_rejects_unreadable_rows_one_by_one() -> None:
    plan = build_plan([row("user001@x.co", "us"), row(None), row(b"x@x.co")], people(2), spec("update"), DEFS)
    assert [item.action for item in plan.items] == [RowAction.UPDATE, RowAction.REJECTED, RowAction.REJECTED]


def test_mirror_with_readable_keys_still_protects_users_whose_row_was_rejected_for_a_value() -> None:
    # The key is readable, so the user is present: a bad value rejects the row but never unsets the user.
    plan = build_plan([row("user001@x.co", ["a", "list"]), row("user002@x.co")], people(2), spec(), DEFS)
    assert [item.action for item in plan.items] == [RowAction.REJECTED, RowAction.UNCHANGED]


# ------------------------------------------------------------------ item 2: default mirror blast radius


def test_default_mirror_limit_refuses_unsetting_most_users_and_says_who_loses_what() -> None:
    users = people(40)
    plan = build_plan([row(f"user{i:03d}@x.co") for i in (1, 2, 3)], users, spec(), DEFS)
    assert plan.counts()["unset"] == 37
    with pytest.raises(PlanTooLargeError) as info:
        check_max_changes(plan, None, total_users=40)
    message = str(info.value)
    assert "mirror mode would unset attributes of 37 of 40 Omni users" in message
    assert "region on 37 users, level on 37 users" in message
    assert "37 users absent from the input" in message
    assert f"default limit for mirror runs ({DEFAULT_MIRROR_UNSET_LIMIT} = 4 users)" in message
    assert "max_changes=37" in message and "Nothing was sent" in message
    assert (info.value.changes, info.value.limit) == (37, 4)


def test_default_mirror_limit_allows_up_to_ten_percent_and_counts_empty_values_too() -> None:
    users = people(40)
    present = [row(f"user{i:03d}@x.co") for i in range(1, 37)]  # 4 absent = 10%: allowed
    check_max_changes(build_plan(present, users, spec(), DEFS), None, total_users=40)
    # One more user losing a value through an empty cell in its row crosses the limit.
    present[0] = row("user001@x.co", None)
    plan = build_plan(present, users, spec(), DEFS)
    with pytest.raises(
        PlanTooLargeError, match=r"5 of 40 .* 4 users absent from the input, 1 through empty values"
    ):
        check_max_changes(plan, None, total_users=40)


def test_explicit_max_changes_replaces_the_default_mirror_limit() -> None:
    users = people(40)
    plan = build_plan([row("user001@x.co")], users, spec(), DEFS)
    check_max_changes(plan, 39, total_users=40)
    check_max_changes(plan, "100%", total_users=40)
    with pytest.raises(PlanTooLargeError, match="more than max_changes=10"):
        check_max_changes(plan, 10, total_users=40)


def test_default_mirror_limit_does_not_apply_to_update_mode() -> None:
    users = people(10)
    rows = [row(f"user{i:03d}@x.co", None) for i in range(1, 11)]  # explicit NULLs for everyone
    check_max_changes(build_plan(rows, users, spec("update"), DEFS), None, total_users=10)


# ------------------------------------------------------------------ item 8: one email rule, NFC included


def test_email_key_equates_nfc_and_nfd_but_not_case_folding() -> None:
    assert ZOE_NFC != ZOE_NFD and email_key(ZOE_NFC) == email_key(ZOE_NFD.upper())
    assert email_key("straße@x.co") != email_key("strasse@x.co")


def test_nfd_in_omni_and_nfc_in_the_warehouse_is_one_user_in_every_mode() -> None:
    omni = [user(1, ZOE_NFD.title(), region="eu", level=1), user(2, "other@x.co", region="us", level=2)]
    upsert = build_plan(
        [row(ZOE_NFC, "apac", name="Zoë")], omni, spec("upsert", display_name_column="name"), DEFS
    )
    (item,) = upsert.items
    assert item.action is RowAction.UPDATE and item.user_id == uid(1)  # never a second user
    mirror = build_plan([row(ZOE_NFC), row("other@x.co", "us", level=2)], omni, spec(), DEFS)
    assert [i.action for i in mirror.items] == [RowAction.UNCHANGED, RowAction.UNCHANGED]  # never "absent"


def test_nfc_and_nfd_users_both_in_omni_are_ambiguous_not_guessed() -> None:
    omni = [user(1, ZOE_NFD), user(2, ZOE_NFC)]
    (item,) = build_plan([row(ZOE_NFC)], omni, spec("update"), DEFS).items
    assert item.action is RowAction.REJECTED and "ambiguous: 2 Omni users" in (item.reason or "")


def test_created_users_are_sent_in_nfc() -> None:
    plan = build_plan([row(ZOE_NFD, name="Zoë")], [], spec("upsert", display_name_column="name"), DEFS)
    assert plan.items[0].action is RowAction.CREATE and plan.items[0].user_name == ZOE_NFC


# ------------------------------------------------------------------ item 9: planner and client agree


@pytest.mark.parametrize(
    "key",
    ["ada@localhost", "ada@example.", "ada@.example.com", "a@b@example.com", "ada@", "ada@exa mple.com"],
)
def test_keys_the_client_refuses_are_rejected_at_plan_time(key: str) -> None:
    with pytest.raises(OmniValidationError):
        validate_email(key)
    plan = build_plan([row(key, name="Ada")], [], spec("upsert", display_name_column="name"), DEFS)
    assert plan.items[0].action is RowAction.REJECTED and "not an email" in (plan.items[0].reason or "")


_PIECES = [*'ab.@ -\t\x00"\\', "\u00e9", "e\u0301", "\u00df"]  # é composed and decomposed, sharp s
_EMAILISH = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_EMAILISH, _EMAILISH.map(lambda t: t + "@example.com"), _EMAILISH.map(lambda t: "a@" + t)))
def test_planner_accepts_an_email_exactly_when_the_client_does(text: str) -> None:
    planned = normalize_email(text)
    try:
        sent = validate_email(text)
    except OmniValidationError:
        assert isinstance(planned, KeyProblem), text
    else:
        assert planned == email_key(sent), text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.text(max_size=40)))
def test_planner_accepts_a_user_id_exactly_when_the_client_does(text: str) -> None:
    planned = normalize_id(text)
    try:
        sent = validate_user_id(text)
    except OmniValidationError:
        assert isinstance(planned, KeyProblem), text
    else:
        assert planned == sent, text
