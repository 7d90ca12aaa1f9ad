"""Issue 13 item 4: the planner's fast paths give exactly the results of the full rules they shortcut.

* the email shape checked with str methods for ASCII text is the regex's answer (and every email rule's
  answer is as before: NFC/NFD, odd case, surrounding spaces, invalid addresses);
* ``values_equal``'s early answer for two different texts is the full comparison's answer, and a single
  value compared without counting is the counted comparison;
* the already-held test run a column at a time answers each row on its own;
* a whole plan built with every fast path (column-wise held test, compact unchanged rows, one-pass
  duplicate detection, one user per index key) is the plan the general per-row path gives.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from omni_provider.domain.identity import (
    MAX_EMAIL_LENGTH,
    email_key,
    email_problem,
    validate_email,
)
from omni_provider.domain.models import USER_ATTRIBUTES_URN, AttributeDefinition, OmniUser
from omni_provider.domain.values import (
    _PLAIN_TEXTS_REMEMBERED,
    MAX_STRING_LENGTH,
    _exact_key,
    _numeric_key,
    _same_keys,
    _string_key,
    _values_equal_in_full,
    already_held_check,
    already_held_column,
    values_equal,
)
from omni_provider.errors import OmniValidationError
from omni_provider.sync import RowAction, SyncMode, SyncSpec, build_plan, definitions_by_name
from omni_provider.sync.users.keys import (
    KeyProblem,
    UnreadableKeysError,
    UserIndex,
    normalize_email,
    read_keys,
)
from omni_provider.sync.users.plan import (
    PlanItem,
    _mirror_unsets,
    _plan_row,
    check_managed_attributes,
)
from omni_provider.sync.users.rows import RowReader

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ emails

#: The shape rule as a regex, as email_problem applied it to every email before the ASCII fast path.
_SHAPE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")


def _email_problem_by_regex(text: str) -> str | None:
    """email_problem as it was before the fast path: the reference the fast path must agree with."""
    if len(text) > MAX_EMAIL_LENGTH:
        return f"longer than {MAX_EMAIL_LENGTH} characters"
    if _SHAPE.fullmatch(text) is None:
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
            return "contains whitespace or control characters"
        return "needs exactly one @ with text on both sides"
    domain = text.partition("@")[2]
    if "." not in domain.strip(".") or domain.startswith("."):
        return f"the domain {domain!r} has no dot (Omni needs a full address like ada@example.com)"
    return None


_ASCII = st.characters(max_codepoint=127)
_PIECES = st.one_of(
    _ASCII,
    st.sampled_from(["@", ".", "a", "Z", " ", "\t", "\x1f", "\x7f", "\x00", "\u00e9", "e\u0301", "\u00df"]),
    st.sampled_from(["\u00a0", "\u2003", "\u200d", "\u0085", "\u2028"]),  # non-ASCII spaces, ZWJ, NEL
)
_TEXTS = st.lists(_PIECES, max_size=14).map("".join)
_EMAILISH = st.one_of(
    _TEXTS,
    st.text(_ASCII, max_size=30),
    st.tuples(_TEXTS, _TEXTS).map("@".join),
    st.tuples(_TEXTS, _TEXTS).map(lambda p: f"{p[0]}@{p[1]}.com"),
    st.tuples(_TEXTS, _TEXTS, _TEXTS).map("@".join),
)


@SETTINGS
@given(text=_EMAILISH)
@example(text="ada@example.com")
@example(text="ada@exa mple.com")
@example(text="ada@exa\x7fmple.com")
@example(text="a@b@example.com")
@example(text="@example.com")
@example(text="ada@")
@example(text="ada@.example.com")
@example(text="ada@example.")
@example(text="ada@localhost")
@example(text='"a b"@example.com')
@example(text="zo\u00eb@ex\u00e4mple.com")
@example(text="ada@exa\u00a0mple.com")
@example(text="ada@exa\u200dmple.com")
@example(text="a" * 310 + "@example.com")
def test_the_email_shape_by_str_methods_is_the_regex(text: str) -> None:
    assert email_problem(text) == _email_problem_by_regex(text), repr(text)


ZOE_NFC = unicodedata.normalize("NFC", "zoë@exämple.com")
ZOE_NFD = unicodedata.normalize("NFD", ZOE_NFC)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
        ("  ada@example.com\t", "ada@example.com"),
        (ZOE_NFC, ZOE_NFC),
        (ZOE_NFD, ZOE_NFC),
        (ZOE_NFD.upper(), ZOE_NFC),
        (" " + ZOE_NFD + " ", ZOE_NFC),
        ("STRAßE@x.co", "straße@x.co"),  # lower, not casefold: never "strasse"
    ],
)
def test_valid_emails_normalise_to_one_key(raw: str, key: str) -> None:
    assert normalize_email(raw) == key == email_key(validate_email(raw))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("ada@exa mple.com", "whitespace or control"),
        ("ada@exa\u00a0mple.com", "whitespace or control"),
        ("ada\x00@example.com", "whitespace or control"),
        ("a@b@example.com", "exactly one @"),
        ("ada@", "exactly one @"),
        ("@example.com", "exactly one @"),
        ("ada.example.com", "exactly one @"),
        ("ada@localhost", "has no dot"),
        ("ada@.example.com", "has no dot"),
        ("a" * 320 + "@x.co", "longer than 320"),
    ],
)
def test_invalid_emails_are_refused_with_their_reason(raw: str, reason: str) -> None:
    problem = normalize_email(raw)
    assert isinstance(problem, KeyProblem) and reason in problem.reason
    with pytest.raises(OmniValidationError, match=re.escape(reason)):
        validate_email(raw)


# ------------------------------------------------------------------------------------------------ values

DEFINITIONS: list[AttributeDefinition | None] = [
    None,
    AttributeDefinition(name="a", type="String"),
    AttributeDefinition(name="a", type="Number"),
    AttributeDefinition(name="a", type="String", multiple_values=True),
    AttributeDefinition(name="a", type="Number", multiple_values=True),
    AttributeDefinition(name="a", type="Boolean"),
]
_SCALARS = st.one_of(
    st.sampled_from(["", "eu", "EU", "12", "12.0", "1.5", "1E+1", " 7 ", "true", "nan"]),
    st.text(max_size=4),
    st.integers(-20, 20),
    st.integers(-20, 20).map(Decimal),
    st.sampled_from([Decimal("1.50"), Decimal("1E+1"), 1.5, 12.0, float("nan"), float("inf")]),
    st.booleans(),
    st.none(),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.lists(_SCALARS, max_size=3).map(tuple),
    st.sets(st.one_of(st.text(max_size=3), st.integers(-3, 3)), max_size=3),
)
#: What values_equal compares: a converted value (no Decimal, sets or tuples) against what Omni's JSON holds.
_JSON_SCALARS = st.one_of(
    st.sampled_from(["", "eu", "EU", "12", "12.0", "1.5", "1E+1", " 7 ", "true", "nan"]),
    st.text(max_size=4),
    st.integers(-20, 20),
    st.sampled_from([1.5, 12.0, float("nan"), float("inf")]),
    st.booleans(),
    st.none(),
)
_JSON_VALUES = st.one_of(_JSON_SCALARS, st.lists(_JSON_SCALARS, max_size=3))


@SETTINGS
@given(current=_JSON_VALUES, desired=_JSON_VALUES, definition=st.sampled_from(DEFINITIONS))
@example(current="eu", desired="us", definition=DEFINITIONS[1])
@example(current="12", desired="12.0", definition=DEFINITIONS[2])
@example(current="12", desired="12.0", definition=DEFINITIONS[4])
@example(current="12", desired="12.0", definition=None)
@example(current="", desired="eu", definition=DEFINITIONS[3])
@example(current="EU", desired="eu", definition=DEFINITIONS[5])
def test_values_equal_answers_as_the_full_comparison(
    current: Any, desired: Any, definition: AttributeDefinition | None
) -> None:
    assert values_equal(current, desired, definition) == _values_equal_in_full(current, desired, definition)


@SETTINGS
@given(left=_SCALARS, right=_SCALARS, key=st.sampled_from([_exact_key, _numeric_key, _string_key]))
@example(left=float("nan"), right=float("nan"), key=_exact_key)
@example(left=Decimal("1.50"), right=1.5, key=_numeric_key)
@example(left=True, right=1, key=_exact_key)
def test_one_value_each_compares_as_counting_would(left: Any, right: Any, key: Any) -> None:
    counted = Counter(map(key, [left])) == Counter(map(key, [right]))
    assert _same_keys(key, [left], [right]) == counted


_HELDS = st.one_of(
    st.none(), _SCALARS, st.lists(st.one_of(st.text(max_size=3), st.integers(-3, 3)), max_size=4)
)


@SETTINGS
@given(pairs=st.lists(st.tuples(_HELDS, _VALUES), max_size=8), definition=st.sampled_from(DEFINITIONS))
def test_the_held_test_on_a_column_answers_each_row_on_its_own(
    pairs: list[tuple[Any, Any]], definition: AttributeDefinition | None
) -> None:
    helds, raws = [h for h, _ in pairs], [r for _, r in pairs]
    answers = already_held_column(definition)(helds, raws)
    assert answers == [already_held_check(definition)(h, r) for h, r in pairs]
    assert all(type(answer) is bool for answer in answers)


def test_the_held_test_on_a_column_knows_the_usual_unchanged_shapes() -> None:
    string, number, tags = DEFINITIONS[1], DEFINITIONS[2], DEFINITIONS[3]
    assert already_held_column(string)(["eu", "eu", "eu", None], ["eu", "us", "", None]) == [
        True,
        False,
        False,
        False,
    ]
    assert already_held_column(number)(["3", "3", 3, "3"], [Decimal("3"), 3, 3, Decimal("3.0")]) == [
        True,
        True,
        True,
        False,
    ]
    assert already_held_column(tags)(
        [["eu", "us"], ["eu", "us"], ["eu", "eu"], ["eu", "us"]],
        [{"us", "eu"}, ["eu", "us"], {"eu", "us"}, ["us", "eu"]],
    ) == [True, True, False, False]  # a list in another order is compared in full, not here
    with pytest.raises(ValueError):  # a column and its held values must line up row by row
        already_held_column(string)(["eu"], ["eu", "eu"])


def test_texts_remembered_as_plain_are_only_exact_valid_texts() -> None:
    """The held test remembers texts it found plain (a pure rule's result, kept per column): the answers
    stay the rule's for empty, NUL, overlong and str-subclass values, and past the remembered limit."""

    class Text(str):
        pass

    string, tags = DEFINITIONS[1], DEFINITIONS[3]
    long = "x" * (MAX_STRING_LENGTH + 1)
    raws: list[Any] = ["eu", "eu", "", "a\x00b", "a\x00b", long, long, Text("eu"), "eu"]
    assert already_held_column(string)(raws, raws) == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    many = [f"t{n}" for n in range(_PLAIN_TEXTS_REMEMBERED + 10)] * 2
    assert all(already_held_column(string)(many, many))
    lists = [["eu", "us"], ["eu", "us"], ["eu", "a\x00b"], ["eu", Text("us")]]
    sets = [{"us", "eu"}, {"eu", "us"}, {"eu", "a\x00b"}, {"eu", Text("us")}]
    assert already_held_column(tags)(lists, sets) == [True, True, False, False]
    assert already_held_column(tags)(lists, lists) == [True, True, False, False]


# ------------------------------------------------------------------------------------------------ plans

PLAN_DEFS = definitions_by_name(
    [
        AttributeDefinition(name="region", type="String"),
        AttributeDefinition(name="level", type="Number"),
        AttributeDefinition(name="tags", type="String", multiple_values=True),
        AttributeDefinition(name="nums", type="Number", multiple_values=True),
    ]
)
ATTRIBUTES = {"REGION": "region", "LEVEL": "level", "TAGS": "tags", "NUMS": "nums"}
EMAILS = ["ada@x.co", "bob@x.co", ZOE_NFC, "cy@x.co"]
_WORDS = st.sampled_from(["eu", "us", "12", "", "a\x00b"])
_NUMBERS = st.one_of(
    st.integers(-3, 12),
    st.integers(-3, 12).map(Decimal),
    st.integers(0, 12).map(str),
    st.sampled_from([1.5, Decimal("1.50"), Decimal("3.0"), float("nan"), True]),
)


def _raw(attribute: str) -> st.SearchStrategy[Any]:
    words, numbers = _WORDS, _NUMBERS
    return {
        "region": st.one_of(words, numbers, st.none()),
        "level": st.one_of(numbers, words, st.none()),
        "tags": st.one_of(
            words, st.lists(words, max_size=3), st.sets(words, max_size=3), st.frozensets(words, max_size=3)
        ),
        "nums": st.one_of(numbers, st.lists(numbers, max_size=3).map(tuple), st.sets(st.integers(0, 3))),
    }[attribute]


def _held(attribute: str) -> st.SearchStrategy[Any]:
    words = st.sampled_from(["eu", "us", "12", "", "a\x00b"])
    numbers = st.one_of(st.integers(-3, 12), st.integers(0, 12).map(str), st.sampled_from([1.5, "1.50"]))
    return {
        "region": st.one_of(words, st.none()),
        "level": st.one_of(numbers, st.none()),
        "tags": st.one_of(st.lists(words, max_size=3), st.none()),
        "nums": st.one_of(st.lists(numbers, max_size=3), st.none()),
    }[attribute]


@st.composite
def _users(draw: st.DrawFn) -> list[OmniUser]:
    users = []
    for n in range(draw(st.integers(0, 5))):
        email = draw(st.sampled_from(EMAILS))
        spelled = draw(st.sampled_from([email, email.upper(), unicodedata.normalize("NFD", email)]))
        attributes = {a: draw(_held(a)) for a in ATTRIBUTES.values() if draw(st.booleans())}
        users.append(
            OmniUser.model_validate(
                {
                    "id": f"00000000-0000-4000-8000-{draw(st.integers(0, 3)) if n > 2 else n:012d}",
                    "userName": spelled,
                    "displayName": f"User {n}",
                    USER_ATTRIBUTES_URN: attributes,
                }
            )
        )
    return users


@st.composite
def _rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        email = draw(st.sampled_from(EMAILS))
        key = draw(
            st.sampled_from(
                [
                    email,
                    email.title(),
                    f"  {email} ",
                    unicodedata.normalize("NFD", email),
                    "not-an-email",
                    None,
                ]
            )
        )
        row: dict[str, Any] = {"EMAIL": key, "NAME": "New"}
        for column, attribute in ATTRIBUTES.items():
            if draw(st.integers(0, 9)):  # now and then the column is missing
                row[column] = draw(_raw(attribute))
        rows.append(row)
    return rows


def _general_path_items(rows: list[dict[str, Any]], users: list[OmniUser], spec: SyncSpec) -> list[PlanItem]:
    """Every row through ``_plan_row`` (the general path, converting every value), shared keys by a plain
    loop: the plan the planner made before its fast paths."""
    managed = check_managed_attributes(spec, PLAN_DEFS)
    index = UserIndex(users, spec.match_on)
    keys = read_keys(rows, spec)
    first_rows: dict[str, int] = {}
    shared: dict[str, list[int]] = {}
    for number, key in enumerate(keys, start=1):
        if isinstance(key, str):
            if key in first_rows:
                shared.setdefault(key, [first_rows[key]]).append(number)
            else:
                first_rows[key] = number
    reader = RowReader(spec, managed)
    items: list[PlanItem] = []
    for number, (row, key) in enumerate(zip(rows, keys, strict=True), start=1):
        entry = _plan_row(number, row, key, shared, index, spec, reader)
        if isinstance(entry, OmniUser):
            assert isinstance(key, str)
            entry = PlanItem(
                number, key, RowAction.UNCHANGED, entry.id, entry.user_name, entry.display_name, {}, ()
            )
        items.append(entry)
    if spec.mode is SyncMode.MIRROR:
        items.extend(_mirror_unsets(index, first_rows.keys(), managed))
    return items


def _held_user(region: str) -> OmniUser:
    return OmniUser.model_validate(
        {
            "id": "00000000-0000-4000-8000-000000000000",
            "userName": "Ada@x.co",
            "displayName": "Ada",
            USER_ATTRIBUTES_URN: {"region": region, "level": "3", "tags": ["us", "eu"], "nums": [1]},
        }
    )


def _held_row(region: str, **more: Any) -> dict[str, Any]:
    return {
        "EMAIL": "ada@X.co",
        "REGION": region,
        "LEVEL": Decimal(3),
        "TAGS": {"eu", "us"},
        "NUMS": (1,),
    } | more


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_rows(), users=_users(), mode=st.sampled_from(["update", "upsert", "mirror"]))
@example(rows=[_held_row("eu")], users=[_held_user("eu")], mode="update")  # every column held
@example(rows=[_held_row("a\x00b")], users=[_held_user("a\x00b")], mode="update")  # held, yet invalid
@example(rows=[_held_row("eu", TAGS={"eu"})], users=[_held_user("eu")], mode="update")
@example(rows=[_held_row("eu"), _held_row("eu")], users=[_held_user("eu")], mode="mirror")  # duplicates
def test_the_fast_planner_makes_the_general_paths_plan(
    rows: list[dict[str, Any]], users: list[OmniUser], mode: str
) -> None:
    spec = SyncSpec(
        attributes=ATTRIBUTES,
        key_column="EMAIL",
        mode=mode,  # type: ignore[arg-type]
        display_name_column="NAME" if mode == "upsert" else None,
    )
    try:
        expected = _general_path_items(rows, users, spec)
    except UnreadableKeysError:
        with pytest.raises(UnreadableKeysError):
            build_plan(rows, users, spec, PLAN_DEFS)
        return
    plan = build_plan(rows, users, spec, PLAN_DEFS)
    assert list(plan.items) == expected
    assert plan.items.unchanged_count == sum(1 for item in expected if item.action is RowAction.UNCHANGED)


# ------------------------------------------------------------------------------------------------ structures


def _user(n: int, email: str) -> OmniUser:
    return OmniUser.model_validate(
        {"id": f"00000000-0000-4000-8000-{n:012d}", "userName": email, "displayName": f"U {n}"}
    )


def test_the_index_keeps_one_user_as_is_and_several_as_ambiguous() -> None:
    ada, ada_again, bob1, bob2 = (
        _user(1, "ada@x.co"),
        _user(1, "ADA@x.co"),
        _user(2, "bob@x.co"),
        _user(3, "Bob@x.co"),
    )
    index = UserIndex([ada, bob1, ada_again, bob2], "userName")
    assert list(index.get("ada@x.co")) == [ada]  # the same user listed twice is one user
    assert list(index.get("bob@x.co")) == [bob1, bob2] and index.get("cy@x.co") == ()
    assert index.single("ada@x.co") is ada and index.single("bob@x.co") is None and index.single("x") is None
    assert index.singles(["bob@x.co", "ada@x.co", "cy@x.co", KeyProblem("bad", "")]) == [
        None,
        ada,
        None,
        None,
    ]
    assert [(key, list(users)) for key, users in index.items()] == [
        ("ada@x.co", [ada]),
        ("bob@x.co", [bob1, bob2]),
    ]
    assert index.user_count == 3
    unique = UserIndex(iter([bob1, ada]), "userName")  # any iterable; no key shared: indexed in one step
    assert unique.single("bob@x.co") is bob1 and unique.get("ada@x.co") == (ada,) and unique.user_count == 2
    by_id = UserIndex([ada, bob1], "id")
    assert by_id.single(ada.id) is ada and by_id.single("ada@x.co") is None and by_id.user_count == 2


def test_plan_items_read_compact_rows_by_position_like_a_list() -> None:
    users = [_user(n, f"u{n}@x.co") for n in range(4)]
    rows = [{"EMAIL": f"U{n}@x.co", "REGION": "us" if n == 2 else None} for n in range(4)]
    spec = SyncSpec(attributes={"REGION": "region"}, key_column="EMAIL", mode="update")
    plan = build_plan(
        rows, users, spec, definitions_by_name([AttributeDefinition(name="region", type="String")])
    )
    items = list(plan.items)
    assert [item.action for item in items] == [RowAction.UNCHANGED] * 2 + [
        RowAction.UPDATE,
        RowAction.UNCHANGED,
    ]
    assert [item.key for item in items] == [f"u{n}@x.co" for n in range(4)]
    assert plan.items[-1] == items[3] and plan.items[1:3] == items[1:3] and plan.items[::-1] == items[::-1]
    assert plan.items == items and plan.items != items[:3]
    with pytest.raises(IndexError):
        plan.items[4]
    assert "UNCHANGED" in repr(plan.items) or "unchanged" in repr(plan.items)
