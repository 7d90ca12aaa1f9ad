"""Issue 13 item 4: the planner's per-attribute converters and its cheap "already held" test are the value
rules of ``domain/values.py``, not a second copy of them.

* ``attribute_converter(a, d)(raw)`` is exactly ``conform_value(coerce_value(raw), d)`` (without a
  definition: ``coerce_value`` with unset forms as ``None``): same value, or the same error.
* ``already_held_check(d)(held, raw)`` is only ever True when that conversion succeeds and the result
  equals what Omni holds (``values_equal``): it may say "don't know", never a wrong "unchanged".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from omni_provider.domain.models import AttributeDefinition, AttributeValue, is_unset
from omni_provider.domain.values import (
    MAX_STRING_LENGTH,
    already_held_check,
    attribute_converter,
    coerce_value,
    conform_value,
    values_equal,
)
from omni_provider.errors import AttributeValueError

DEFINITIONS: list[AttributeDefinition | None] = [
    None,
    AttributeDefinition(name="a", type="String"),
    AttributeDefinition(name="a", type="Number"),
    AttributeDefinition(name="a", type="String", multiple_values=True),
    AttributeDefinition(name="a", type="Number", multiple_values=True),
    AttributeDefinition(name="a", type="Boolean"),
    AttributeDefinition(name="a", type="String", system=True),
]

texts = st.one_of(
    st.sampled_from(
        ["", "eu", "us", "12", "-3", "0", "1.5", " 7 ", "1E+2", "a\x00b", "x" * (MAX_STRING_LENGTH + 1)]
    ),
    st.text(max_size=6),
)
numbers = st.one_of(
    st.integers(-(10**101), 10**101),
    st.integers(-20, 20),
    st.integers(-20, 20).map(Decimal),
    st.sampled_from([Decimal("3.0"), Decimal("1E+2"), Decimal("0.25"), Decimal("1E+200"), Decimal("NaN")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
scalars = st.one_of(texts, numbers, st.none())
raws = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.lists(scalars, max_size=4).map(tuple),
    st.frozensets(st.one_of(texts, st.integers(-3, 3)), max_size=4),
    st.sets(texts, max_size=4),
)
helds = st.one_of(
    st.none(),
    texts,
    st.integers(-20, 20),
    st.integers(-20, 20).map(str),
    st.lists(st.one_of(texts, st.integers(-3, 3)), max_size=4),
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _full_path(raw: Any, definition: AttributeDefinition | None) -> AttributeValue:
    value = coerce_value(raw, attribute="a")
    if definition is None:
        return None if is_unset(value) else value
    return conform_value(value, definition)


def _outcome(convert: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", convert(*args)
    except AttributeValueError as exc:
        return "error", str(exc)


@SETTINGS
@given(raw=raws, definition=st.sampled_from(DEFINITIONS))
@example(raw={"eu", "us"}, definition=DEFINITIONS[3])
@example(raw=Decimal("3"), definition=DEFINITIONS[2])
@example(raw=["a", None], definition=DEFINITIONS[3])
def test_a_converter_is_coerce_then_conform(raw: Any, definition: AttributeDefinition | None) -> None:
    fast = _outcome(attribute_converter("a", definition), raw)
    full = _outcome(_full_path, raw, definition)
    assert fast == full
    assert type(fast[1]) is type(full[1])


@SETTINGS
@given(held=helds, raw=raws, definition=st.sampled_from(DEFINITIONS))
@example(held="eu", raw="eu", definition=DEFINITIONS[1])
@example(held="3", raw=Decimal("3"), definition=DEFINITIONS[2])
@example(held="3", raw=3, definition=DEFINITIONS[2])
@example(held=["eu", "us"], raw={"us", "eu"}, definition=DEFINITIONS[3])
@example(held=["eu", "eu"], raw={"eu", "us"}, definition=DEFINITIONS[3])
@example(held="a\x00b", raw="a\x00b", definition=DEFINITIONS[1])
@example(held="abc", raw="abc", definition=DEFINITIONS[2])
def test_already_held_is_never_a_wrong_unchanged(
    held: Any, raw: Any, definition: AttributeDefinition | None
) -> None:
    if not already_held_check(definition)(held, raw):
        return
    value = attribute_converter("a", definition)(raw)  # must not raise: a held value is a valid one
    assert values_equal(held, value, definition)


def test_the_common_unchanged_values_are_recognised_without_converting() -> None:
    """What makes planning cheap: the usual shapes of an unchanged value take the short path."""
    string, number, tags = DEFINITIONS[1], DEFINITIONS[2], DEFINITIONS[3]
    assert already_held_check(string)("eu", "eu")
    assert already_held_check(number)("3", Decimal("3"))
    assert already_held_check(number)("3", 3)
    assert already_held_check(tags)(["eu", "us"], {"us", "eu"})
    assert already_held_check(tags)(["eu", "us"], ["eu", "us"])
    assert already_held_check(None)("eu", "eu")
    # ...and the unsure ones take the full path.
    assert not already_held_check(number)("3", Decimal("3.0"))
    assert not already_held_check(tags)(["eu", "eu"], {"eu", "us"})
    assert not already_held_check(string)("a\x00b", "a\x00b")
    assert not already_held_check(number)("abc", "abc")
