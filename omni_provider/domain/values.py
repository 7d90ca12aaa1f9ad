"""Attribute values: from what warehouse drivers and templates give to what Omni accepts.

Two steps, so callers without attribute definitions still get safe values:

* ``coerce_value``: type level (Decimal, datetime, numpy scalars, sets...), no definition needed;
* ``conform_value``: applies one ``AttributeDefinition`` (String/Number, multiple values, read-only system).

``values_equal`` is the diff comparison; it tolerates Omni storing Number values as strings and treats every
unset form (``None``, missing, ``""``, ``[]``) alike, so an unchanged value never causes a write.
Nothing here does I/O or imports Airflow.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from omni_provider.domain.models import AttributeDefinition, AttributeScalar, AttributeValue, is_unset
from omni_provider.errors import AttributeValueError, InvalidAttributesError, OmniValidationError

MAX_STRING_LENGTH = 10_000
MAX_LIST_LENGTH = 1_000
#: Integers this large are refused: no attribute needs them, and Python refuses to print ints of more than
#: 4300 digits, so JSON encoding would fail later, far from the bad row.
MAX_INT_DIGITS = 100
_INT_LIMIT = 10**MAX_INT_DIGITS
#: Attribute reference names as Omni's UI generates them; also keeps `/`, spaces and dots out of payloads.
ATTRIBUTE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
#: The only system attribute Omni lets clients set (omni-api.md section 9).
WRITABLE_SYSTEM_ATTRIBUTES = frozenset({"omni_user_timezone"})

_BOOL_REASON = "booleans are ambiguous for Omni attributes (String or Number); send 'true'/'false' or 1/0"
# Plain decimal notation only: float() would also take "nan", "inf", "1_000" and surrounding junk.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d+")
_LIST_TYPES = (list, tuple, set, frozenset)
_PLAIN_LIST_TYPES = frozenset(_LIST_TYPES)  # exactly these classes (subclasses take the general path)
_BAD_NAME_REASON = "not a valid attribute reference name (letters, digits, _; not starting with a digit)"
_MAX_SHOWN_CHARS = 40


def is_valid_attribute_name(name: object) -> bool:
    return isinstance(name, str) and ATTRIBUTE_NAME_RE.fullmatch(name) is not None


def _show(value: object) -> str:
    """A short repr for messages: the value may be long or personal, so only its start is repeated."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN_CHARS else text[: _MAX_SHOWN_CHARS - 1] + "…"


def _error(reason: str, attribute: str, user: str | None, where: str = "") -> AttributeValueError:
    return AttributeValueError(f"{where}: {reason}" if where else reason, user=user, attribute=attribute)


def _is_numpy(value: object) -> bool:
    # Detected by module so numpy stays an optional, never-imported dependency.
    return type(value).__module__ == "numpy" and hasattr(value, "item")


def _is_pandas_missing(value: object) -> bool:
    # pd.NA / pd.NaT mean SQL NULL; pd.NaT is even a datetime whose isoformat() is "NaT".
    cls = type(value)
    return cls.__module__.startswith("pandas") and cls.__name__ in {"NAType", "NaTType"}


def _from_numpy(value: object) -> object:
    if getattr(value, "ndim", 0):  # an array (e.g. a Postgres array column via pandas), not a scalar
        return value.tolist()  # type: ignore[attr-defined]
    return value.item()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- coercion


def coerce_value(value: object, *, attribute: str, user: str | None = None) -> AttributeValue:
    """What a driver or template gives -> a value Omni accepts; raises ``AttributeValueError``."""
    cls = type(value)
    if cls is str or cls is int or cls is float:  # fast path for the common plain types (sync hot loop)
        return _coerce_scalar(value, attribute, user)
    if _is_numpy(value):
        value = _from_numpy(value)
    if value is None or _is_pandas_missing(value):
        return None
    if isinstance(value, _LIST_TYPES):
        return _coerce_list(value, attribute, user)
    return _coerce_scalar(value, attribute, user)


def _coerce_list(
    values: Sequence[object] | set[object] | frozenset[object], attribute: str, user: str | None
) -> list[AttributeScalar]:
    if len(values) > MAX_LIST_LENGTH:
        raise _error(f"list has {len(values)} items; at most {MAX_LIST_LENGTH} are allowed", attribute, user)
    items: list[AttributeScalar] = []
    for index, item in enumerate(values):
        cls = type(item)
        if cls is str and _is_sendable_text(item):  # type: ignore[arg-type]
            items.append(item)  # type: ignore[arg-type]  # the common case; its place is named only on error
            continue
        where = f"list item {index}"
        if _is_numpy(item):
            item = _from_numpy(item)
        if item is None or _is_pandas_missing(item):
            raise _error("null inside a list; remove it (send None or [] to unset)", attribute, user, where)
        if isinstance(item, (*_LIST_TYPES, dict)):
            kind = type(item).__name__
            raise _error(f"nested {kind} inside a list is not supported", attribute, user, where)
        items.append(_coerce_scalar(item, attribute, user, where))
    if isinstance(values, set | frozenset):  # set order is arbitrary; sort so plans are deterministic
        items.sort(key=_sort_key)
    return items


def _sort_key(item: AttributeScalar) -> tuple[int, float | str]:
    return (1, item) if isinstance(item, str) else (0, item)


def _coerce_scalar(value: object, attribute: str, user: str | None, where: str = "") -> AttributeScalar:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        raise _error(_BOOL_REASON, attribute, user, where)
    if isinstance(value, str):
        return _check_string(str.__str__(value), attribute, user, where)  # drops str subclasses/enums
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise _error(f"integer has more than {MAX_INT_DIGITS} digits", attribute, user, where)
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _error(
                f"{value!r} is not a finite number (if it stands for a missing value, send None)",
                attribute,
                user,
                where,
            )
        return float(value)
    if isinstance(value, Decimal):
        return _coerce_decimal(value, attribute, user, where)
    # datetime before date: datetime is a date subclass.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise _error(f"unsupported value type {type(value).__name__}", attribute, user, where)


def _is_sendable_text(value: str) -> bool:
    """The string rule (see ``_check_string``) as a cheap test for the common case."""
    return len(value) <= MAX_STRING_LENGTH and "\x00" not in value


def _check_string(value: str, attribute: str, user: str | None, where: str) -> str:
    if _is_sendable_text(value):
        return value
    if len(value) > MAX_STRING_LENGTH:
        raise _error(
            f"string of {len(value)} characters is longer than {MAX_STRING_LENGTH}", attribute, user, where
        )
    if "\x00" in value:
        raise _error("string contains a NUL character", attribute, user, where)
    return value


def _coerce_decimal(value: Decimal, attribute: str, user: str | None, where: str) -> int | float:
    if not value.is_finite():
        raise _error(f"{value} is not a finite number", attribute, user, where)
    # adjusted() reads the exponent without arithmetic: abs() or int() of 1E+999999999 would overflow or hang.
    if value.adjusted() >= MAX_INT_DIGITS:
        raise _error(f"number has more than {MAX_INT_DIGITS} digits", attribute, user, where)
    try:
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        # repr(float) is the shortest text reading back as the same float: this is the exact round trip.
        if math.isfinite(as_float) and Decimal(repr(as_float)) == value:
            return as_float
    except ArithmeticError:  # decimal context traps (Overflow, InvalidOperation) on extreme exponents
        pass
    raise _error(
        f"Decimal {_show(str(value))} cannot be sent as a JSON number without losing precision",
        attribute,
        user,
        where,
    )


# --------------------------------------------------------------------------------------------- conforming


def conform_value(
    value: AttributeValue, definition: AttributeDefinition, *, user: str | None = None
) -> AttributeValue:
    """Apply ``definition`` to an already coerced value (type, multiplicity, read-only system attributes).

    ``None``, ``""`` and ``[]`` all come back as ``None``: Omni treats each as "unset", and one spelling keeps
    plans and diffs simple.
    """
    return _conform(value, definition, _scalar_rule(definition), user)


#: Applies a definition's type to one coerced scalar: (value, attribute, user, where) -> scalar.
_ScalarRule = Callable[[object, str, "str | None", str], AttributeScalar]


def _conform(
    value: AttributeValue, definition: AttributeDefinition, rule: _ScalarRule, user: str | None
) -> AttributeValue:
    name = definition.name
    if definition.system and name not in WRITABLE_SYSTEM_ATTRIBUTES:
        raise _error("is a read-only system attribute", name, user)
    if value is None or (isinstance(value, str) and value == ""):
        return None
    if isinstance(value, list | tuple):
        if not value:  # [] unsets any attribute, like "" (no data can be lost by accepting it)
            return None
        if not definition.multiple_values:
            raise _error(f"is single-valued; got a list of {len(value)}", name, user)
        return _conform_items(value, name, rule, user)
    scalar = rule(value, name, user, "")
    return [scalar] if definition.multiple_values else scalar


def _conform_items(
    values: Sequence[object], name: str, rule: _ScalarRule, user: str | None
) -> list[AttributeScalar]:
    items: list[AttributeScalar] = []
    for index, item in enumerate(values):
        if item is None or (isinstance(item, str) and item == ""):
            # Inside a list there is no "unset" meaning; dropping it silently would change the data.
            raise _error("empty value inside a list", name, user, f"list item {index}")
        try:
            items.append(rule(item, name, user, ""))
        except AttributeValueError as exc:  # the item's place is spelled out only when it is needed
            raise _error(exc.reason, name, user, f"list item {index}") from None
    return items


def _scalar_rule(definition: AttributeDefinition) -> _ScalarRule:
    """The rule for the definition's type, chosen once (not per value)."""
    if definition.is_number:
        return _conform_number
    if definition.type.lower() == "string":
        return _conform_string
    return _conform_untyped


def _conform_scalar(
    value: object, definition: AttributeDefinition, user: str | None, where: str = ""
) -> AttributeScalar:
    return _scalar_rule(definition)(value, definition.name, user, where)


def _conform_number(value: object, name: str, user: str | None, where: str) -> AttributeScalar:
    cls = type(value)
    if cls is int:
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        raise _error(_BOOL_REASON, name, user, where)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _error(f"{value!r} is not a finite number", name, user, where)
        return value
    if isinstance(value, str):
        number = parse_number_text(value)
        if number is None:
            raise _error(f"is a Number attribute; {_show(value)} is not a number", name, user, where)
        return number
    raise _error(f"is a Number attribute; got {type(value).__name__}", name, user, where)


def _conform_string(value: object, name: str, user: str | None, where: str) -> AttributeScalar:
    if type(value) is str:
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        raise _error(_BOOL_REASON, name, user, where)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return number_text(value)
    raise _error(f"is a String attribute; got {type(value).__name__}", name, user, where)


def _conform_untyped(value: object, name: str, user: str | None, where: str) -> AttributeScalar:
    # A type this code does not know yet: pass coerced values through rather than guess a conversion.
    if isinstance(value, bool):
        raise _error(_BOOL_REASON, name, user, where)
    if isinstance(value, str | int | float):
        return value
    raise _error(f"unsupported value type {type(value).__name__}", name, user, where)


# --------------------------------------------------------------------------------------------- converters

#: Raw value (as a driver gives it) -> the value to hold (``None`` = unset); raises ``AttributeValueError``.
Converter = Callable[[object], AttributeValue]
#: (what Omni holds, raw value) -> True only if the raw value is valid and converts to what Omni holds.
HeldCheck = Callable[[object, object], bool]
#: The same test for a whole column: (held values, raw values), row by row -> one such answer per row.
HeldColumnCheck = Callable[[Sequence[object], Sequence[object]], list[bool]]


def already_held_check(definition: AttributeDefinition | None) -> HeldCheck:
    """``already_held_column`` for one value."""
    column = already_held_column(definition)
    return lambda held, raw: column((held,), (raw,))[0]


def already_held_column(definition: AttributeDefinition | None) -> HeldColumnCheck:
    """A cheap test for the common unchanged case, run on a whole column before any conversion: per row,
    True only when the raw value passes every rule above and
    ``values_equal(held, attribute_converter(...)(raw))``; False means "not known", and the value takes the
    full path. It answers True for plain, valid, non-empty text equal to the held text (single-valued
    String or untyped attributes), for an integer (int or integral Decimal) whose digits are the held text
    or equal the held int (single-valued Number), and for a list or set of plain texts holding the same
    texts as the held list (multi-valued String).

    A column at a time, not a value at a time: the test is a few comparisons, and a function call per
    value would cost more than the test itself."""
    if definition is not None and definition.system and definition.name not in WRITABLE_SYSTEM_ATTRIBUTES:
        return _never_held
    if definition is not None and definition.multiple_values:
        return _texts_held if definition.type.lower() == "string" else _never_held
    if definition is not None and definition.is_number:
        return _integer_held
    return _text_held


def _never_held(helds: Sequence[object], raws: Sequence[object]) -> list[bool]:
    return [False] * len(raws)


#: Distinct texts a column's held test remembers as plain (beyond that it keeps asking the rule).
_PLAIN_TEXTS_REMEMBERED = 4096


def _is_plain_text(text: str, plain: set[str]) -> bool:
    """Non-empty, sendable text (``_is_sendable_text``), remembered in ``plain``: a column repeats the same
    few texts, and a set look-up costs less than a call. ``text`` must be exactly a ``str`` (a subclass
    could equal a remembered text without being one)."""
    if text in plain:
        return True
    if text == "" or not _is_sendable_text(text):
        return False
    if len(plain) < _PLAIN_TEXTS_REMEMBERED:
        plain.add(text)
    return True


def _text_held(helds: Sequence[object], raws: Sequence[object]) -> list[bool]:
    plain: set[str] = set()
    return [
        type(raw) is str
        and type(held) is str
        and raw == held
        and (raw in plain or _is_plain_text(raw, plain))
        for held, raw in zip(helds, raws, strict=True)
    ]


def _integer_held(helds: Sequence[object], raws: Sequence[object]) -> list[bool]:
    answers: list[bool] = []
    add = answers.append
    for held, raw in zip(helds, raws, strict=True):
        cls = type(raw)
        if cls is Decimal or (cls is int and abs(raw) < _INT_LIMIT):  # type: ignore[arg-type]  # (str() of a huge int raises)
            if type(held) is str:  # Omni stores Number values as text
                text = str(raw)  # plain digits only for a non-negative integral int or Decimal
                add(text == held and len(text) < MAX_INT_DIGITS and text.isdigit())
            else:
                add(type(held) is int and cls is int and raw == held)
        else:
            add(False)
    return answers


#: Longest list the multi-valued check looks at (it compares item by item); longer ones take the full path.
_HELD_LIST_CHECKED = 16


def _texts_held(helds: Sequence[object], raws: Sequence[object]) -> list[bool]:
    answers: list[bool] = []
    add = answers.append
    plain: set[str] = set()
    for held, raw in zip(helds, raws, strict=True):
        if type(held) is not list or not 0 < len(held) <= _HELD_LIST_CHECKED:
            add(False)
            continue
        cls = type(raw)
        if cls is set or cls is frozenset:
            # n distinct texts, each in a held list of n: the held list holds exactly them, once each.
            same, among = len(raw) == len(held), held  # type: ignore[arg-type]
        else:
            same, among = cls is list and raw == held, None
        if same:
            for item in raw:  # type: ignore[attr-defined]
                # Plain, non-empty, sendable text (what a String list keeps as it is), and for a set one of
                # the held texts.
                if (
                    type(item) is not str
                    or (item not in plain and not _is_plain_text(item, plain))
                    or (among is not None and item not in among)
                ):
                    same = False
                    break
        add(same)
    return answers


def attribute_converter(attribute: str, definition: AttributeDefinition | None) -> Converter:
    """``conform_value(coerce_value(raw))`` for one attribute (without a definition: ``coerce_value``, the
    unset forms read as ``None``), built once per attribute for the sync's hot loop.

    Not a second set of rules: the definition's branch is chosen here once, and the common driver types
    (str, int, float, Decimal, None, lists and sets) go straight to the same rule functions that
    ``coerce_value`` and ``conform_value`` would reach through their general type checks; anything else
    goes through those two functions themselves.
    """
    if definition is None:

        def untyped(raw: object) -> AttributeValue:
            value = coerce_value(raw, attribute=attribute)
            return None if is_unset(value) else value

        return untyped
    rule = _scalar_rule(definition)

    def convert(raw: object) -> AttributeValue:
        cls = type(raw)
        if cls is str:
            value: AttributeValue = _check_string(raw, attribute, None, "")  # type: ignore[arg-type]
        elif cls is int or cls is float:
            value = _coerce_scalar(raw, attribute, None)
        elif cls is Decimal:
            value = _coerce_decimal(raw, attribute, None, "")  # type: ignore[arg-type]
        elif raw is None:
            value = None
        elif cls in _PLAIN_LIST_TYPES:
            value = _coerce_list(raw, attribute, None)  # type: ignore[arg-type]
        else:
            value = coerce_value(raw, attribute=attribute)
        return _conform(value, definition, rule, None)

    return convert


def parse_number_text(text: str) -> int | float | None:
    """``"12"`` -> 12, ``" 1.5 "`` -> 1.5; None when not plain decimal text or not exactly representable."""
    text = text.strip()
    if len(text) > MAX_INT_DIGITS + 20 or not _NUMBER_RE.fullmatch(text):
        return None
    if _INTEGER_RE.fullmatch(text):
        number = int(text)
        return number if abs(number) < _INT_LIMIT else None
    as_float = float(text)
    if not math.isfinite(as_float) or Decimal(repr(as_float)) != Decimal(text):
        return None  # would silently lose precision or overflow
    return as_float


def number_text(value: int | float) -> str:
    """A number as String-attribute text; integral floats drop ``.0`` (12.0 from a FLOAT column -> "12")."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------- whole maps


def normalize_attributes(
    raw: Mapping[str, object],
    *,
    definitions: Mapping[str, AttributeDefinition] | None = None,
    user: str | None = None,
) -> dict[str, AttributeValue]:
    """Validate a whole attribute map; one InvalidAttributesError lists every problem."""
    mapping = _parse_mapping(raw, user)
    problems: list[tuple[str, str]] = []
    result: dict[str, AttributeValue] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not is_valid_attribute_name(key):
            problems.append((_show(key), _BAD_NAME_REASON))
            continue
        definition = None
        if definitions is not None:
            definition = definitions.get(key)
            if definition is None:
                problems.append((key, unknown_attribute_reason(key, definitions)))
                continue
        try:
            coerced = coerce_value(value, attribute=key, user=user)
            result[key] = conform_value(coerced, definition, user=user) if definition else coerced
        except AttributeValueError as exc:
            problems.append((key, exc.reason))
    if problems:
        raise InvalidAttributesError(problems, user=user)
    return result


def unknown_attribute_reason(name: str, known: Mapping[str, object] | Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown attribute (not defined in Omni){hint}"


def _parse_mapping(raw: object, user: str | None) -> Mapping[Any, object]:
    # Template text (JSON rendered by Jinja) is parsed by the Airflow layer, never here.
    if not isinstance(raw, Mapping):
        raise OmniValidationError(f"attributes must be a mapping, got {type(raw).__name__}", user=user)
    return raw


# --------------------------------------------------------------------------------------------- comparison


def values_equal(
    current: object, desired: AttributeValue, definition: AttributeDefinition | None = None
) -> bool:
    """Would sending ``desired`` leave the stored ``current`` value as it is?"""
    if _plainly_equal(current, desired):
        return True
    if type(current) is str and type(desired) is str and (definition is None or not definition.is_number):
        # Two different texts (a changed value, the planner's usual write): only a Number attribute reads
        # texts as numbers ("1.0" = "1"); every other comparison below would find them different too.
        return False
    return _values_equal_in_full(current, desired, definition)


def _values_equal_in_full(
    current: object, desired: AttributeValue, definition: AttributeDefinition | None
) -> bool:
    current_unset, desired_unset = is_unset(current), is_unset(desired)
    if current_unset or desired_unset:
        return current_unset and desired_unset
    many = isinstance(current, list | tuple) or isinstance(desired, list | tuple)
    if many or (definition is not None and definition.multiple_values):
        left = list(current) if isinstance(current, list | tuple) else [current]
        right: list[object] = list(desired) if isinstance(desired, list | tuple) else [desired]
        return len(left) == len(right) and _multisets_equal(left, right, definition)
    return _multisets_equal([current], [desired], definition)


def _plainly_equal(current: object, desired: object) -> bool:
    """Cheap sufficient test for the common unchanged case: true only when equal under every rule below."""
    cls = type(current)
    if cls is type(desired):
        if cls is str or cls is int or cls is float:
            return current == desired
        if cls is list:
            # List == compares items with ==, where True == 1; so only when no item is a bool.
            return current == desired and not any(type(item) is bool for item in current)  # type: ignore[attr-defined]
        return False
    # Omni's Number-as-text: "12" against 12 is the same in Number, String and untyped comparisons.
    if cls is str and type(desired) is int:
        return current == str(desired)
    return False


def _multisets_equal(left: list[object], right: list[object], definition: AttributeDefinition | None) -> bool:
    if definition is not None and definition.is_number:
        return _same_keys(_numeric_key, left, right)
    if definition is not None and definition.type.lower() == "string":
        return _same_keys(_string_key, left, right)
    if _same_keys(_exact_key, left, right):
        return True
    # No definition: numeric text matches a number only when one side actually holds a number.
    if any(map(_is_number, left)) or any(map(_is_number, right)):
        return _same_keys(_numeric_key, left, right)
    return False


def _same_keys(key: Callable[[object], Hashable], left: list[object], right: list[object]) -> bool:
    """Do ``left`` and ``right`` hold the same keys, as many times each (in any order)?"""
    if len(left) == 1 == len(right):  # a single value (the usual case): no counting needed
        return key(left[0]) == key(right[0])
    return Counter(map(key, left)) == Counter(map(key, right))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _exact_key(value: object) -> Hashable:
    if isinstance(value, bool):
        return ("bool", value)  # True == 1 in Python, but not for Omni
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))  # dicts and other unhashable JSON from Omni: compare by content
    return ("value", value)


def _numeric_key(value: object) -> Hashable:
    # Numerically equal Decimals hash equally, so "1.50", 1.5 and Decimal("1.5") share one key.
    if _is_number(value):
        if isinstance(value, float):
            return Decimal(repr(value)) if math.isfinite(value) else _exact_key(value)
        return Decimal(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= MAX_INT_DIGITS + 20 and _NUMBER_RE.fullmatch(text):
            try:
                return Decimal(text)
            except InvalidOperation:  # pragma: no cover - the pattern only admits valid literals
                pass
    return _exact_key(value)


def _string_key(value: object) -> Hashable:
    # What Omni would store for a number sent to a String attribute (see conform_value).
    return _exact_key(number_text(value) if _is_number(value) else value)  # type: ignore[arg-type]
