"""Property tests: applying a plan reaches the desired state, touches nothing else, and is idempotent."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_provider.domain.models import (
    USER_ATTRIBUTES_URN,
    AttributeDefinition,
    AttributeValue,
    OmniUser,
    is_unset,
)
from omni_provider.domain.values import coerce_value, conform_value, values_equal
from omni_provider.sync import RowAction, SyncMode, SyncPlan, SyncSpec, build_plan, definitions_by_name

DEFS = definitions_by_name(
    [
        AttributeDefinition(name="region", type="String"),
        AttributeDefinition(name="level", type="Number"),
        AttributeDefinition(name="tags", type="String", multiple_values=True),
        AttributeDefinition(name="nums", type="Number", multiple_values=True),
        AttributeDefinition(name="other", type="String"),
    ]
)
MANAGED = ("region", "level", "tags", "nums")
UNMANAGED = ("other", "extra")
POOL = 6  # emails u0..u5@x.co; small so that rows, users and duplicates overlap often
#: A value the planner must reject (NaN for every attribute type), to exercise all-or-nothing rows.
BAD = float("nan")

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def uid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def email(i: int) -> str:
    return f"u{i}@x.co"


# ------------------------------------------------------------------------------------------------ strategies

words = st.sampled_from(["eu", "us", "apac", "a", "b", "12", "x y"])
ints = st.integers(-5, 20)
UNSET_FORMS: list[Any] = [None, "", []]


@st.composite
def stored_value(draw: st.DrawFn, attribute: str) -> Any:
    """A value as Omni might hold it (Numbers sometimes as text, lists in any order, any unset form)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(UNSET_FORMS))
    if attribute == "region":
        return draw(words)
    if attribute == "level":
        return draw(st.one_of(ints, ints.map(str), st.sampled_from([1.5, "1.50", "2.0", 0.25])))
    if attribute == "tags":
        return draw(st.lists(words, min_size=1, max_size=3))
    return draw(st.lists(st.one_of(ints, ints.map(str)), min_size=1, max_size=3))


@st.composite
def row_value(draw: st.DrawFn, attribute: str) -> Any:
    """A value as a warehouse driver might give it."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(st.sampled_from([None, "", []]))
    if roll == 1 and draw(st.integers(0, 2)) == 0:
        return BAD
    if attribute == "region":
        return draw(st.one_of(words, ints))
    if attribute == "level":
        return draw(
            st.one_of(ints, ints.map(Decimal), ints.map(str), st.sampled_from([1.5, Decimal("0.25")]))
        )
    if attribute == "tags":
        return draw(
            st.one_of(words, st.lists(words, min_size=1, max_size=3), st.frozensets(words, min_size=1))
        )
    return draw(st.lists(st.one_of(ints, ints.map(Decimal)), min_size=1, max_size=3).map(tuple))


@st.composite
def omni_state(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """id -> {userName, displayName, attributes}: a subset of the email pool, unique emails."""
    present = draw(st.lists(st.integers(0, POOL - 1), unique=True, max_size=POOL))
    state: dict[str, dict[str, Any]] = {}
    for i in present:
        attributes: dict[str, Any] = {}
        for attribute in (*MANAGED, *UNMANAGED):
            if draw(st.booleans()):  # absent keys and present-but-unset keys both occur
                attributes[attribute] = draw(stored_value("region" if attribute in UNMANAGED else attribute))
        shown = draw(st.sampled_from([email(i), email(i).upper()]))
        state[uid(i)] = {"userName": shown, "displayName": f"User {i}", "attributes": attributes}
    return state


@st.composite
def input_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for _ in range(draw(st.integers(0, POOL + 2))):
        i = draw(st.integers(0, POOL - 1))
        key = draw(st.sampled_from([email(i), email(i).upper(), f"  {email(i)} ", email(i).title()]))
        row: dict[str, Any] = {"userName": key, "name": f"New {i}", "other": "never written"}
        for attribute in MANAGED:
            row[attribute] = draw(row_value(attribute))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ helpers


def to_users(state: dict[str, dict[str, Any]]) -> list[OmniUser]:
    return [
        OmniUser.model_validate(
            {
                "id": i,
                "userName": u["userName"],
                "displayName": u["displayName"],
                USER_ATTRIBUTES_URN: u["attributes"],
            }
        )
        for i, u in state.items()
    ]


def apply_plan_to_state(state: dict[str, dict[str, Any]], plan: SyncPlan) -> dict[str, dict[str, Any]]:
    """What Omni does with the plan's writes: merge key by key, ``null`` clears (PATCH), POST creates."""
    result = copy.deepcopy(state)
    for n, item in enumerate(plan.writes()):
        if item.action is RowAction.CREATE:
            assert item.user_name and item.display_name
            result[f"created-{n}"] = {
                "userName": item.user_name,
                "displayName": item.display_name,
                "attributes": dict(item.attributes),
            }
            continue
        assert item.user_id is not None
        attributes = result[item.user_id]["attributes"]
        for key, value in item.attributes.items():
            if value is None:
                attributes.pop(key, None)
            else:
                attributes[key] = value
    return result


def desired_of(row: dict[str, Any], definitions: dict[str, AttributeDefinition] | None) -> dict[str, Any]:
    out: dict[str, AttributeValue] = {}
    for attribute in MANAGED:
        value = coerce_value(row[attribute], attribute=attribute)
        if definitions:
            out[attribute] = conform_value(value, definitions[attribute])
        else:
            out[attribute] = None if is_unset(value) else value  # the planner's one spelling of "unset"
    return out


def has_bad_value(row: dict[str, Any]) -> bool:
    return any(row[a] is BAD for a in MANAGED)


@dataclass
class Case:
    state: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    mode: SyncMode
    definitions: dict[str, AttributeDefinition] | None

    @property
    def spec(self) -> SyncSpec:
        name = "name" if self.mode is SyncMode.UPSERT else None
        return SyncSpec(attributes={a: a for a in MANAGED}, mode=self.mode, display_name_column=name)

    def plan(self, state: dict[str, dict[str, Any]] | None = None) -> SyncPlan:
        return build_plan(
            self.rows, to_users(self.state if state is None else state), self.spec, self.definitions
        )


cases = st.builds(
    Case,
    state=omni_state(),
    rows=input_rows(),
    mode=st.sampled_from(list(SyncMode)),
    definitions=st.sampled_from([DEFS, None]),
)


def norm(key: str) -> str:
    return key.strip().casefold()


# ------------------------------------------------------------------------------------------------ properties


@SETTINGS
@given(cases)
def test_every_row_appears_exactly_once(case: Case) -> None:
    plan = case.plan()
    numbers = [item.row_number for item in plan.items if item.row_number is not None]
    assert numbers == list(range(1, len(case.rows) + 1))
    extra = [item for item in plan.items if item.row_number is None]
    assert all(item.action is RowAction.UNSET for item in extra)
    if case.mode is not SyncMode.MIRROR:
        assert not extra
    assert sum(plan.counts().values()) == len(plan.items)


@SETTINGS
@given(cases)
def test_applying_the_plan_reaches_the_desired_state(case: Case) -> None:
    plan = case.plan()
    after = apply_plan_to_state(case.state, plan)
    definitions = case.definitions
    key_counts = Counter(norm(row["userName"]) for row in case.rows)
    by_email = {norm(u["userName"]): i for i, u in case.state.items()}
    rows_by_key = {norm(row["userName"]): row for row in case.rows}

    # Rejections are exactly the predictable ones.
    for item, row in zip(plan.items, case.rows, strict=False):
        key = norm(row["userName"])
        expect_rejected = (
            key_counts[key] > 1
            or has_bad_value(row)
            or (key not in by_email and case.mode is not SyncMode.UPSERT)
        )
        assert (item.action is RowAction.REJECTED) == expect_rejected, (item, row)

    for user_id, before in case.state.items():
        now = after[user_id]
        key = norm(before["userName"])
        # Unmanaged keys: untouched, present or not.
        for attribute in UNMANAGED:
            assert now["attributes"].get(attribute, "<absent>") == before["attributes"].get(
                attribute, "<absent>"
            )
        match = rows_by_key.get(key)
        if match is not None and key_counts[key] == 1 and not has_bad_value(match):
            for attribute, value in desired_of(match, definitions).items():
                definition = definitions[attribute] if definitions else None
                assert values_equal(now["attributes"].get(attribute), value, definition), attribute
        elif match is None and case.mode is SyncMode.MIRROR:
            assert not any(now["attributes"].get(a) not in (None, "", []) for a in MANAGED)
        else:
            assert now == before  # a rejected row never partially writes its user

    created = [u for i, u in after.items() if i not in case.state]
    for new in created:
        row = rows_by_key[norm(new["userName"])]
        assert new["userName"] == row["userName"].strip()
        desired = {a: v for a, v in desired_of(row, definitions).items() if v is not None}
        assert new["attributes"] == desired


@SETTINGS
@given(cases)
def test_replanning_after_applying_writes_nothing(case: Case) -> None:
    after = apply_plan_to_state(case.state, case.plan())
    second = case.plan(after)
    assert second.writes() == []
    # Rows rejected for their own reasons stay rejected; nothing new gets rejected.
    assert second.counts()["rejected"] == case.plan().counts()["rejected"]


@SETTINGS
@given(omni_state(), st.sampled_from([DEFS, None]), st.sampled_from([SyncMode.UPDATE, SyncMode.MIRROR]))
def test_no_writes_when_rows_equal_the_current_state(
    state: dict[str, dict[str, Any]], definitions: dict[str, AttributeDefinition] | None, mode: SyncMode
) -> None:
    # Rows read back from Omni's own values (Numbers as text, lists in stored order, any unset spelling).
    rows = [
        {"userName": u["userName"], **{a: u["attributes"].get(a) for a in MANAGED}} for u in state.values()
    ]
    spec = SyncSpec(attributes={a: a for a in MANAGED}, mode=mode)
    plan = build_plan(rows, to_users(state), spec, definitions)
    assert plan.writes() == []
    assert plan.counts()["unchanged"] == len(rows)
