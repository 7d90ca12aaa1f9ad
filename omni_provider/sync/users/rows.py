"""Reading one input row: its desired attribute values and, for creates, its display name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from omni_provider.domain.models import AttributeDefinition, AttributeValue, OmniUser
from omni_provider.domain.values import (
    MAX_STRING_LENGTH,
    Converter,
    already_held_column,
    attribute_converter,
    values_equal,
)
from omni_provider.errors import AttributeValueError
from omni_provider.sync.users.spec import SyncSpec

_MISSING = object()
_NOTHING_HELD: Mapping[str, Any] = MappingProxyType({})


class RowReader:
    """Reads the managed values of rows: per attribute its column and its converter (see
    ``values.attribute_converter``), built once for a whole input rather than per value."""

    def __init__(self, spec: SyncSpec, managed: Mapping[str, AttributeDefinition | None]) -> None:
        self.columns: tuple[tuple[str, str, Converter], ...] = tuple(
            (attribute, spec.columns_by_attribute[attribute], attribute_converter(attribute, definition))
            for attribute, definition in managed.items()
        )
        self._definitions = tuple(managed[attribute] for attribute, _, _ in self.columns)
        self._held_checks = tuple(already_held_column(definition) for definition in self._definitions)

    def held_columns(
        self, rows: Sequence[Mapping[str, Any]], users: Sequence[OmniUser | None]
    ) -> list[list[bool]]:
        """Per managed attribute, per row: does the row's value equal what its matched user (one per row;
        None: no user) holds, on the cheap test (``values.already_held_column``)? False means "not
        known": the value is converted and compared in full by ``differences``."""
        answers: list[list[bool]] = []
        held_maps = [_NOTHING_HELD if user is None else user.attributes for user in users]
        for (attribute, column, _), check in zip(self.columns, self._held_checks, strict=True):
            held = [values.get(attribute) for values in held_maps]
            answers.append(check(held, [row.get(column, _MISSING) for row in rows]))
        return answers

    def differences(
        self, row: Mapping[str, Any], held: Mapping[str, Any], known_held: Sequence[bool] = ()
    ) -> tuple[Sequence[tuple[str, Any, AttributeValue]], Sequence[str]]:
        """(attribute, value Omni holds, value to hold) for each managed value that differs from what Omni
        holds, and every problem in the row. A value ``known_held`` (the row's answers from
        ``held_columns``, in the same order) is not converted at all; the others are, and compared in
        full."""
        differ: list[tuple[str, Any, AttributeValue]] | None = None
        problems: list[str] | None = None
        known = len(known_held)
        for position, (attribute, column, convert) in enumerate(self.columns):
            if position < known and known_held[position]:
                continue
            raw = row.get(column, _MISSING)
            old = held.get(attribute)
            if raw is _MISSING:
                problems = (problems or []) + [f"missing column {column!r}"]
                continue
            try:
                value = convert(raw)
            except AttributeValueError as exc:
                problems = (problems or []) + [f"{_where(column, attribute)}: {exc.reason}"]
                continue
            if not values_equal(old, value, self._definitions[position]):
                differ = (differ or []) + [(attribute, old, value)]
        return differ or (), problems or ()

    def desired_values(self, row: Mapping[str, Any]) -> tuple[dict[str, AttributeValue], list[str]]:
        """Managed attribute -> value to hold (``None`` = unset), and every problem found in the row."""
        desired: dict[str, AttributeValue] = {}
        problems: list[str] = []
        for attribute, column, convert in self.columns:
            raw = row.get(column, _MISSING)
            if raw is _MISSING:
                problems.append(f"missing column {column!r}")
                continue
            try:
                desired[attribute] = convert(raw)
            except AttributeValueError as exc:
                problems.append(f"{_where(column, attribute)}: {exc.reason}")
        return desired, problems


def _where(column: str, attribute: str) -> str:
    return f"column {column!r}" if column == attribute else f"column {column!r} ({attribute})"


def desired_values(
    row: Mapping[str, Any], spec: SyncSpec, managed: Mapping[str, AttributeDefinition | None]
) -> tuple[dict[str, AttributeValue], list[str]]:
    """Managed attribute -> value to hold (``None`` = unset), and every problem found in the row."""
    return RowReader(spec, managed).desired_values(row)


def display_name_of(row: Mapping[str, Any], spec: SyncSpec) -> tuple[str | None, str | None]:
    """(display name, None) or (None, why the row cannot create a user)."""
    column = spec.display_name_column
    if column is None:  # SyncSpec refuses upsert without it; kept for type narrowing
        return None, "no display_name_column configured"
    raw = row.get(column, _MISSING)
    if raw is _MISSING:
        return None, f"missing column {column!r}"
    if raw is not None and not isinstance(raw, str):
        return None, f"display name (column {column!r}) must be text, got {type(raw).__name__}"
    text = (raw or "").strip()
    if not text:
        return None, f"display name (column {column!r}) is empty; Omni requires one to create a user"
    if len(text) > MAX_STRING_LENGTH or "\x00" in text:
        return None, f"display name (column {column!r}) is too long or contains NUL"
    return text, None


def align_column_case(rows: list[Mapping[str, Any]], columns: Iterable[str]) -> list[Mapping[str, Any]]:
    """Rename row columns that differ from the configured names only in case.

    Warehouses disagree on identifier case (Snowflake returns ``EMAIL`` for ``email``); a mapping written
    in one case must not reject every row as "missing column". Only unambiguous matches are renamed;
    the columns are read off the first row, as every row of one query has the same columns.
    """
    if not rows:
        return rows
    present = list(rows[0].keys())
    by_fold: dict[str, list[str]] = {}
    for name in present:
        by_fold.setdefault(str(name).casefold(), []).append(name)
    rename: dict[str, str] = {}
    for wanted in columns:
        if wanted in rows[0]:
            continue
        candidates = by_fold.get(wanted.casefold(), [])
        if len(candidates) == 1:
            rename[candidates[0]] = wanted
    if not rename:
        return rows
    return [{rename.get(k, k): v for k, v in row.items()} for row in rows]
