"""Attribute value coercion, conforming, normalising and comparison (omni_provider.domain.values)."""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from omni_provider.domain.models import AttributeDefinition
from omni_provider.domain.values import (
    MAX_LIST_LENGTH,
    MAX_STRING_LENGTH,
    coerce_value,
    conform_value,
    normalize_attributes,
    values_equal,
)
from omni_provider.errors import AttributeValueError, InvalidAttributesError, OmniValidationError


class _FakeNumpyScalar:
    """Looks like a numpy scalar to the duck-typed detection (numpy is not installed in tests)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def item(self) -> Any:
        return self._value


_FakeNumpyScalar.__module__ = "numpy"


class _FakeNumpyArray(_FakeNumpyScalar):
    ndim = 1

    def tolist(self) -> Any:
        return list(self._value)


_FakeNumpyArray.__module__ = "numpy"


class _NaTType:
    pass


_NaTType.__module__ = "pandas._libs.tslibs.nattype"
_NaTType.__name__ = "NaTType"


class Color(str, enum.Enum):  # noqa: UP042 - deliberately not StrEnum: str() of this gives "Color.RED"
    RED = "red"


def d(name: str, type_: str = "String", multi: bool = False, system: bool = False) -> AttributeDefinition:
    return AttributeDefinition(name=name, type=type_, multiple_values=multi, system=system)


STRING = d("s")
NUMBER = d("n", "Number")
MULTI_STRING = d("ms", multi=True)
MULTI_NUMBER = d("mn", "Number", multi=True)

# ------------------------------------------------------------------------------------------------ coerce

COERCE_OK: list[tuple[object, object]] = [
    (None, None),
    ("", ""),
    ("  padded  ", "  padded  "),  # strings are not stripped
    ("x" * MAX_STRING_LENGTH, "x" * MAX_STRING_LENGTH),
    (Color.RED, "red"),
    (0, 0),
    (-12, -12),
    (1.5, 1.5),
    (Decimal("12"), 12),
    (Decimal("12.000"), 12),
    (Decimal("1E+2"), 100),
    (Decimal("1.50"), 1.5),
    (Decimal("0.1"), 0.1),
    (Decimal("-2.25"), -2.25),
    (datetime(2024, 5, 1, 13, 45, 0), "2024-05-01T13:45:00"),
    (datetime(2024, 5, 1, 13, 45, tzinfo=UTC), "2024-05-01T13:45:00+00:00"),
    (datetime(2024, 5, 1, 13, 45, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T13:45:00+02:00"),
    (date(2024, 5, 1), "2024-05-01"),
    (time(7, 30), "07:30:00"),
    (_FakeNumpyScalar(7), 7),
    (_FakeNumpyScalar(2.5), 2.5),
    (_FakeNumpyScalar("eu"), "eu"),
    (_FakeNumpyScalar(None), None),
    (_FakeNumpyArray([1, 2]), [1, 2]),
    (_NaTType(), None),
    (["a", "b"], ["a", "b"]),
    (("b", "a"), ["b", "a"]),  # sequences keep their order
    ({"b", "a", "c"}, ["a", "b", "c"]),  # sets are sorted
    (frozenset({3, 1, 2}), [1, 2, 3]),
    ({"a", 2}, [2, "a"]),  # mixed set: numbers first, deterministic
    ([Decimal("1"), _FakeNumpyScalar(2), date(2024, 1, 2)], [1, 2, "2024-01-02"]),
    ([], []),
    (["x"] * MAX_LIST_LENGTH, ["x"] * MAX_LIST_LENGTH),
]


@pytest.mark.parametrize(("raw", "expected"), COERCE_OK)
def test_coerce_accepts(raw: object, expected: object) -> None:
    result = coerce_value(raw, attribute="attr", user="a@x.co")
    assert result == expected
    assert type(result) is type(expected)


def test_coerce_returns_plain_types() -> None:
    assert type(coerce_value(Color.RED, attribute="a")) is str
    assert type(coerce_value(Decimal("3"), attribute="a")) is int


COERCE_REJECT: list[tuple[object, str]] = [
    (True, "booleans are ambiguous"),
    (False, "booleans are ambiguous"),
    (_FakeNumpyScalar(True), "booleans are ambiguous"),
    ([True], "booleans are ambiguous"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
    (-math.inf, "not a finite number"),
    (_FakeNumpyScalar(float("nan")), "not a finite number"),
    (Decimal("NaN"), "not a finite number"),
    (Decimal("Infinity"), "not a finite number"),
    (Decimal("0.12345678901234567890123"), "losing precision"),
    (Decimal("1E+999999999"), "more than 100 digits"),
    (Decimal("1E-999999999"), "losing precision"),
    (10**120, "more than 100 digits"),
    ("x" * (MAX_STRING_LENGTH + 1), "longer than 10000"),
    ("a\x00b", "NUL"),
    ({"a": 1}, "unsupported value type dict"),
    (b"bytes", "unsupported value type bytes"),
    (object(), "unsupported value type object"),
    (timedelta(days=1), "unsupported value type timedelta"),
    ([["nested"]], "nested list"),
    ([{"a": 1}], "nested dict"),
    ([("t",)], "nested tuple"),
    (["a", None], "null inside a list"),
    ([1, float("nan")], "list item 1"),
    (["x"] * (MAX_LIST_LENGTH + 1), "at most 1000"),
]


@pytest.mark.parametrize(("raw", "fragment"), COERCE_REJECT)
def test_coerce_rejects(raw: object, fragment: str) -> None:
    with pytest.raises(AttributeValueError) as info:
        coerce_value(raw, attribute="region", user="ann@x.co")
    message = str(info.value)
    assert fragment in message
    # The message names who and what, so a report line is actionable on its own.
    assert "ann@x.co" in message
    assert "'region'" in message
    assert info.value.attribute == "region"


def test_coerce_long_string_error_does_not_echo_value() -> None:
    with pytest.raises(AttributeValueError) as info:
        coerce_value("secret" * 5000, attribute="a")
    assert "secret" not in str(info.value)


# ------------------------------------------------------------------------------------------------ conform

CONFORM_OK: list[tuple[object, AttributeDefinition, object]] = [
    (None, STRING, None),
    (None, MULTI_NUMBER, None),
    ("", STRING, None),
    ("", MULTI_STRING, None),
    ([], MULTI_STRING, None),
    ([], STRING, None),
    ("eu", STRING, "eu"),
    (12, STRING, "12"),
    (12.0, STRING, "12"),
    (1.5, STRING, "1.5"),
    (12, NUMBER, 12),
    (1.5, NUMBER, 1.5),
    ("12", NUMBER, 12),
    (" 3 ", NUMBER, 3),
    ("1.5", NUMBER, 1.5),
    ("-0.25", NUMBER, -0.25),
    ("1e3", NUMBER, 1000.0),
    ("eu", MULTI_STRING, ["eu"]),
    (["eu", "us"], MULTI_STRING, ["eu", "us"]),
    ([1, "2"], MULTI_NUMBER, [1, 2]),
    (7, MULTI_STRING, ["7"]),
    ("Europe/Paris", d("omni_user_timezone", system=True), "Europe/Paris"),
    ("anything", d("t", "Date"), "anything"),  # unknown future types pass through
]


@pytest.mark.parametrize(("value", "definition", "expected"), CONFORM_OK)
def test_conform_accepts(value: Any, definition: AttributeDefinition, expected: object) -> None:
    result = conform_value(value, definition, user="u@x.co")
    assert result == expected
    assert type(result) is type(expected)


CONFORM_REJECT: list[tuple[object, AttributeDefinition, str]] = [
    ("abc", NUMBER, "is not a number"),
    ("1_000", NUMBER, "is not a number"),
    ("nan", NUMBER, "is not a number"),
    ("inf", NUMBER, "is not a number"),
    ("0x10", NUMBER, "is not a number"),
    (" ", NUMBER, "is not a number"),
    ("0.12345678901234567890123", NUMBER, "is not a number"),
    (["a", "b"], STRING, "is single-valued; got a list of 2"),
    ([1], NUMBER, "is single-valued; got a list of 1"),
    (["1", "x"], MULTI_NUMBER, "list item 1"),
    (["a", ""], MULTI_STRING, "empty value inside a list"),
    ("x", d("omni_user_email", system=True), "read-only system attribute"),
    (None, d("omni_is_org_admin", system=True), "read-only system attribute"),
    (True, STRING, "booleans are ambiguous"),
    (True, NUMBER, "booleans are ambiguous"),
    (float("nan"), NUMBER, "not a finite number"),
]


@pytest.mark.parametrize(("value", "definition", "fragment"), CONFORM_REJECT)
def test_conform_rejects(value: Any, definition: AttributeDefinition, fragment: str) -> None:
    with pytest.raises(AttributeValueError) as info:
        conform_value(value, definition, user="bob@x.co")
    assert fragment in str(info.value)
    assert "bob@x.co" in str(info.value)
    assert repr(definition.name) in str(info.value)


# ------------------------------------------------------------------------------------------------ normalize

DEFS = {"region": d("region"), "level": d("level", "Number"), "tags": d("tags", multi=True)}


def test_normalize_mapping_with_definitions() -> None:
    raw = {"region": "eu", "level": "3", "tags": "x"}
    assert normalize_attributes(raw, definitions=DEFS) == {"region": "eu", "level": 3, "tags": ["x"]}


def test_normalize_without_definitions() -> None:
    assert normalize_attributes({"region": "eu", "n": 1.5, "t": ("a",), "gone": None}) == {
        "region": "eu",
        "n": 1.5,
        "t": ["a"],
        "gone": None,
    }


def test_normalize_refuses_template_text() -> None:
    # JSON text from a template is the Airflow layer's to parse (airflow_support.templating), never the
    # client's.
    with pytest.raises(OmniValidationError, match="must be a mapping, got str"):
        normalize_attributes('{"region": "eu"}')  # type: ignore[arg-type]


def test_normalize_collects_every_problem() -> None:
    raw = {"region": ["a", "b"], "levle": 1, "tags": [["x"]], "ok_one": 1, "bad key": 1, "": 2}
    with pytest.raises(InvalidAttributesError) as info:
        normalize_attributes(raw, definitions={**DEFS, "ok_one": d("ok_one", "Number")}, user="c@x.co")
    problems = dict(info.value.problems)
    assert set(problems) == {"region", "levle", "tags", "'bad key'", "''"}
    assert "single-valued" in problems["region"]
    assert "did you mean 'level'" in problems["levle"]
    assert "nested list" in problems["tags"]
    assert "not a valid attribute reference name" in problems["'bad key'"]
    assert "5 invalid attributes" in str(info.value)
    assert "c@x.co" in str(info.value)
    assert isinstance(info.value, OmniValidationError)


@pytest.mark.parametrize("key", ["", " ", "a b", "a/b", "a.b", "1abc", "é", "a-b", "x" * 300])
def test_normalize_rejects_bad_names(key: str) -> None:
    with pytest.raises(InvalidAttributesError):
        normalize_attributes({key: 1})


@pytest.mark.parametrize("key", ["a", "_a", "A1", "region_code", "omni_user_timezone"])
def test_normalize_accepts_good_names(key: str) -> None:
    assert normalize_attributes({key: 1}) == {key: 1}


def test_normalize_nan_is_rejected() -> None:
    with pytest.raises(InvalidAttributesError, match="not a finite number"):
        normalize_attributes({"a": float("nan")})


def test_normalize_rejects_non_mapping() -> None:
    with pytest.raises(OmniValidationError, match="got list"):
        normalize_attributes(["a"])  # type: ignore[arg-type]


def test_normalize_json_round_trip_is_serialisable() -> None:
    result = normalize_attributes({"d": Decimal("2.5"), "t": datetime(2024, 1, 1), "s": {"b", "a"}})
    assert json.loads(json.dumps(result)) == {"d": 2.5, "t": "2024-01-01T00:00:00", "s": ["a", "b"]}


# ------------------------------------------------------------------------------------------------ equality

EQUAL: list[tuple[object, object, AttributeDefinition | None]] = [
    (None, None, None),
    (None, "", None),
    ("", [], None),
    ([], None, MULTI_STRING),
    ("eu", "eu", None),
    ("12", 12, NUMBER),
    ("1.50", 1.5, NUMBER),
    ("0.1", 0.1, NUMBER),
    (12.0, 12, NUMBER),
    ("12", 12, None),  # no definition: numeric text equals a number
    (12, "12.0", None),
    ("12", 12, STRING),  # a number sent to a String attribute is stored as its text
    ("1.5", 1.5, STRING),
    (["b", "a"], ["a", "b"], MULTI_STRING),
    (["b", "a", "a"], ["a", "a", "b"], None),
    (["2", "1.0"], [1, 2], MULTI_NUMBER),
    ("eu", ["eu"], MULTI_STRING),
    (["1"], [1], None),
]


@pytest.mark.parametrize(("current", "desired", "definition"), EQUAL)
def test_values_equal(current: object, desired: Any, definition: AttributeDefinition | None) -> None:
    assert values_equal(current, desired, definition)


NOT_EQUAL: list[tuple[object, object, AttributeDefinition | None]] = [
    (None, "eu", None),
    ("eu", None, None),
    ("", 0, None),
    ("eu", "EU", None),
    ("12", "12.0", None),  # two strings: exact
    ("12", 13, NUMBER),
    ("12.0", 12, STRING),  # String: 12 is stored as "12", not "12.0"
    ("abc", 1, NUMBER),
    (["a", "a", "b"], ["a", "b", "b"], MULTI_STRING),
    (["a"], ["a", "b"], None),
    (True, 1, None),
    ("true", True, None),
    ({"a": 1}, "x", None),
]


@pytest.mark.parametrize(("current", "desired", "definition"), NOT_EQUAL)
def test_values_not_equal(current: object, desired: Any, definition: AttributeDefinition | None) -> None:
    assert not values_equal(current, desired, definition)


def test_values_equal_unhashable_current() -> None:
    assert values_equal([{"a": 1}], [{"a": 1}])  # type: ignore[list-item]
    assert not values_equal([{"a": 1}], ["a"])
