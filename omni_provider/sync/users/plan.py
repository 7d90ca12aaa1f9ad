"""The sync plan: warehouse rows + current Omni users -> one item per row (plus mirror unsets). No I/O.

Target-state semantics: each item says what to send so the user ends up with the row's values; an unchanged
user gets no write, so a crashed run is simply re-run (the diff against live state picks up what is left).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import compress, repeat
from operator import and_, is_not, not_
from typing import Any, overload

from omni_provider.domain.identity import normalize_email_text
from omni_provider.domain.models import AttributeDefinition, AttributeValue, OmniUser, is_unset
from omni_provider.domain.values import WRITABLE_SYSTEM_ATTRIBUTES, unknown_attribute_reason
from omni_provider.errors import InvalidAttributesError
from omni_provider.sync.users.keys import KeyProblem, UserIndex, read_keys
from omni_provider.sync.users.rows import RowReader, display_name_of
from omni_provider.sync.users.spec import SyncMode, SyncSpec, item_nouns

#: Rejected-row reasons repeated in a summary (XCom): enough to act on, small enough to keep XCom light.
SUMMARY_SAMPLE_SIZE = 20
_MAX_ROWS_LISTED = 10


class RowAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    #: Every change clears an attribute (a row of NULLs, or a mirror user absent from the input).
    UNSET = "unset"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


WRITE_ACTIONS = frozenset({RowAction.CREATE, RowAction.UPDATE, RowAction.UNSET})


@dataclass(frozen=True, slots=True)
class AttributeChange:
    attribute: str
    old: Any
    new: AttributeValue


@dataclass(frozen=True, slots=True)
class PlanItem:
    #: 1-based position of the input row; None for mirror unsets of users absent from the input.
    row_number: int | None
    #: The normalised match key (lower-cased email or id); the raw text when it was invalid.
    key: str
    action: RowAction
    user_id: str | None = None
    user_name: str | None = None
    display_name: str | None = None
    #: Exactly what to send: changed keys for update/unset, all non-null managed values for create.
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    changes: tuple[AttributeChange, ...] = ()
    reason: str | None = None

    @property
    def is_write(self) -> bool:
        return self.action in WRITE_ACTIONS


class PlanItems(Sequence[PlanItem]):
    """The plan's items, one per input row in input order, then the mirror unsets.

    An unchanged row, usually the great majority, is kept as nothing but the Omni user it matched (an
    object the input already holds) beside its key; its ``PlanItem`` is made only when read, so planning a
    large input allocates nothing for it. Every row still has its item: reports and apply read them by
    position as before.
    """

    __slots__ = ("_entries", "_keys", "_stored", "unchanged_count")

    def __init__(self, entries: Sequence[PlanItem | OmniUser] = (), keys: Sequence[object] = ()) -> None:
        """``entries``: per row, its item or (unchanged) the user it matched; ``keys``: per row, its key."""
        self._entries = entries
        self._keys = keys
        #: The items that are not unchanged (writes and rejections): what counts and summaries walk.
        self._stored = [entry for entry in entries if type(entry) is PlanItem]
        self.unchanged_count = len(entries) - len(self._stored)

    def stored(self) -> list[PlanItem]:
        """Every item that is not ``unchanged``, in order."""
        return self._stored  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> PlanItem: ...
    @overload
    def __getitem__(self, index: slice) -> list[PlanItem]: ...
    def __getitem__(self, index: int | slice) -> PlanItem | list[PlanItem]:
        if isinstance(index, slice):
            return [self._item(position) for position in range(len(self._entries))[index]]
        return self._item(range(len(self._entries))[index])  # negative positions and IndexError as a list

    def __iter__(self) -> Iterator[PlanItem]:
        return map(self._item, range(len(self._entries)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PlanItems({list(self)!r})"

    def _item(self, position: int) -> PlanItem:
        entry = self._entries[position]
        if type(entry) is PlanItem:
            return entry
        user: OmniUser = entry  # type: ignore[assignment]
        key: str = self._keys[position]  # type: ignore[assignment]
        return PlanItem(
            position + 1, key, RowAction.UNCHANGED, user.id, user.user_name, user.display_name, {}, ()
        )


@dataclass(frozen=True, slots=True)
class SyncPlan:
    items: PlanItems
    mode: SyncMode
    managed_attributes: tuple[str, ...]
    row_count: int
    #: Mirror mode with no input rows: the plan unsets everyone's managed attributes. Callers must refuse
    #: unless explicitly allowed; an empty source table is far more often a broken query than intent.
    empty_input: bool = False
    #: Distinct current Omni users the plan was built against (the base of a "10%" max_changes).
    user_count: int = 0
    #: What the plan's items are (``SyncSpec.item_noun``), for the guards' messages.
    item_noun: str = "Omni user"

    @property
    def nouns(self) -> tuple[str, str]:
        """The items' plural, long and short (``item_nouns``)."""
        return item_nouns(self.item_noun)

    def counts(self) -> dict[str, int]:
        """Items per action, every action present (zeros included) so reports have a stable shape."""
        tally = Counter(item.action for item in self.items.stored())
        tally[RowAction.UNCHANGED] += self.items.unchanged_count
        return {action.value: tally.get(action, 0) for action in RowAction}

    def writes(self) -> list[PlanItem]:
        return [item for item in self.items.stored() if item.action in WRITE_ACTIONS]

    def rejected(self) -> list[PlanItem]:
        return [item for item in self.items.stored() if item.action is RowAction.REJECTED]

    @property
    def change_count(self) -> int:
        """Users to be written (one request each); what the max_changes guard limits."""
        return sum(1 for item in self.items.stored() if item.action in WRITE_ACTIONS)

    @property
    def attribute_change_count(self) -> int:
        return sum(len(item.changes) for item in self.items.stored() if item.action in WRITE_ACTIONS)

    def to_summary(self, *, sample_size: int = SUMMARY_SAMPLE_SIZE) -> dict[str, Any]:
        """A JSON-ready summary (for XCom and logs): counts and reasons, never emails or attribute values."""
        by_attribute: dict[str, dict[str, int]] = {a: {"set": 0, "unset": 0} for a in self.managed_attributes}
        for item in self.items.stored():
            if item.action in WRITE_ACTIONS:
                for change in item.changes:
                    by_attribute[change.attribute]["unset" if change.new is None else "set"] += 1
        rejected = self.rejected()
        return {
            "mode": self.mode.value,
            "rows": self.row_count,
            "counts": self.counts(),
            "writes": self.change_count,
            "attribute_changes": self.attribute_change_count,
            "changes_by_attribute": by_attribute,
            "empty_input": self.empty_input,
            "omni_users": self.user_count,
            "rejected_sample": [
                {"row": item.row_number, "reason": item.reason} for item in rejected[:sample_size]
            ],
        }


def definitions_by_name(definitions: Iterable[AttributeDefinition]) -> dict[str, AttributeDefinition]:
    return {definition.name: definition for definition in definitions}


def check_managed_attributes(
    spec: SyncSpec, definitions: Mapping[str, AttributeDefinition] | None
) -> dict[str, AttributeDefinition | None]:
    """Managed attribute -> its definition; unknown or read-only ones are a config error, raised at once."""
    if definitions is None:
        return dict.fromkeys(spec.managed_attributes)
    problems: list[tuple[str, str]] = []
    found: dict[str, AttributeDefinition | None] = {}
    for attribute in spec.managed_attributes:
        definition = definitions.get(attribute)
        if definition is None:
            problems.append((attribute, unknown_attribute_reason(attribute, definitions)))
        elif definition.system and attribute not in WRITABLE_SYSTEM_ATTRIBUTES:
            problems.append((attribute, "is a read-only system attribute"))
        found[attribute] = definition
    if problems:
        raise InvalidAttributesError(problems)
    return found


def build_plan(
    rows: Iterable[Mapping[str, Any]],
    current_users: Iterable[OmniUser],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None = None,
) -> SyncPlan:
    """One PlanItem per input row, in input order, then (mirror) one unset per absent user with values."""
    managed = check_managed_attributes(spec, definitions)
    # The inputs are large and long-lived, and planning allocates a lot: the cyclic GC would walk all of
    # them again and again for nothing (planning makes no cycles), so it pauses while the plan is built.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _build_plan(rows, current_users, spec, managed)
    finally:
        if gc_was_on:
            gc.enable()


def _build_plan(
    rows: Iterable[Mapping[str, Any]],
    current_users: Iterable[OmniUser],
    spec: SyncSpec,
    managed: Mapping[str, AttributeDefinition | None],
) -> SyncPlan:
    index = UserIndex(current_users, spec.match_on)
    row_list = rows if isinstance(rows, Sequence) else list(rows)
    # Raises before anything is planned: a missing key column (any mode), an unreadable key (mirror).
    keys = read_keys(row_list, spec)

    # Keys first, so duplicates are known before any row is planned.
    distinct_keys, shared = _distinct_and_shared(keys)

    # Each row's one matching user (None: no match, several, a bad or duplicated key: see _plan_row).
    matched = index.singles(keys)
    for numbers in shared.values():
        for number in numbers:
            matched[number - 1] = None
    reader = RowReader(spec, managed)
    # Column by column, the cheap test whether Omni already holds each value (values.already_held_column);
    # a row held in every column matched its user and is unchanged, with nothing converted.
    held_columns = reader.held_columns(row_list, matched)
    all_held: Iterable[bool] = map(is_not, matched, repeat(None))
    for held in held_columns:
        all_held = map(and_, all_held, held)
    # An unchanged row's entry is the user it matched (see PlanItems): the matches become the entries, and
    # only the other rows are planned one by one.
    entries: list[PlanItem | OmniUser | None] = matched  # type: ignore[assignment]
    for position in compress(range(len(keys)), map(not_, all_held)):
        number, row, key, user = position + 1, row_list[position], keys[position], matched[position]
        if user is not None:  # one user: diff, converting only the values not already known held
            known = [held[position] for held in held_columns]
            differ, problems = reader.differences(row, user.attributes, known)
            if differ or problems:
                entries[position] = _update_item(number, key, user, differ, problems)  # type: ignore[arg-type]
        else:
            entries[position] = _plan_row(number, row, key, shared, index, spec, reader)
    if spec.mode is SyncMode.MIRROR:
        # Every key was read (read_keys refuses otherwise), so "absent" is known for every user.
        entries.extend(_mirror_unsets(index, distinct_keys, managed))
    return SyncPlan(
        items=PlanItems(entries, keys),  # type: ignore[arg-type]  # every None was replaced
        mode=spec.mode,
        managed_attributes=spec.managed_attributes,
        row_count=len(keys),
        empty_input=spec.mode is SyncMode.MIRROR and not keys,
        user_count=index.user_count,
        item_noun=spec.item_noun,
    )


def _distinct_and_shared(keys: Sequence[str | KeyProblem]) -> tuple[set[str], dict[str, list[int]]]:
    """The distinct keys, and for keys in several rows only, every row holding them."""
    distinct: set[str] = set(keys)  # type: ignore[arg-type]  # (KeyProblems too; they never match a user)
    shared: dict[str, list[int]] = {}
    if len(distinct) < len(keys):  # some key is in several rows (or several KeyProblems are alike): rare
        first_rows: dict[str, int] = {}
        for number, key in enumerate(keys, start=1):
            if type(key) is str:
                if key in first_rows:
                    shared.setdefault(key, [first_rows[key]]).append(number)
                else:
                    first_rows[key] = number
    return distinct, shared


def _plan_row(
    number: int,
    row: Mapping[str, Any],
    key: str | KeyProblem,
    shared: Mapping[str, list[int]],
    index: UserIndex,
    spec: SyncSpec,
    reader: RowReader,
) -> PlanItem | OmniUser:
    if isinstance(key, KeyProblem):
        return PlanItem(number, key.shown, RowAction.REJECTED, reason=key.reason)
    if key in shared:
        return PlanItem(number, key, RowAction.REJECTED, reason=_duplicate_reason(number, shared[key]))
    users = index.get(key)
    if len(users) == 1:  # diff against the user, converting only what is not held
        user = users[0]
        differ, problems = reader.differences(row, user.attributes)
        if not differ and not problems:
            return user  # unchanged (see PlanItems)
        return _update_item(number, key, user, differ, problems)
    desired, problems = reader.desired_values(row)
    if problems:
        # A user is never partially written: one bad value rejects the whole row.
        return PlanItem(number, key, RowAction.REJECTED, reason="; ".join(problems))
    what = "email" if spec.match_on == "userName" else "id"
    if len(users) > 1:
        reason = (
            f"ambiguous: {len(users)} {spec.item_noun}s have this {what} (case-insensitively); not guessing"
        )
        return PlanItem(number, key, RowAction.REJECTED, reason=reason)
    if not users and not spec.creates_missing:
        return PlanItem(number, key, RowAction.REJECTED, reason=f"no {spec.item_noun} with this {what}")
    return _create_item(number, key, row, spec, desired)


def _duplicate_reason(number: int, same_key: list[int]) -> str:
    others = [n for n in same_key if n != number]
    listed = ", ".join(map(str, others[:_MAX_ROWS_LISTED]))
    more = f" and {len(others) - _MAX_ROWS_LISTED} more" if len(others) > _MAX_ROWS_LISTED else ""
    return f"duplicate key, also in row{'s' if len(others) > 1 else ''} {listed}{more}"


def _create_item(
    number: int, key: str, row: Mapping[str, Any], spec: SyncSpec, desired: Mapping[str, AttributeValue]
) -> PlanItem:
    display_name, problem = display_name_of(row, spec) if spec.display_name_required else (None, None)
    if problem is not None:
        return PlanItem(number, key, RowAction.REJECTED, reason=problem)
    send: dict[str, AttributeValue] = {a: value for a, value in desired.items() if value is not None}
    changes = tuple(AttributeChange(a, None, value) for a, value in send.items())
    # As written (Omni keeps the case given), in NFC like every email the client sends; matched by key.
    user_name = normalize_email_text(str(row[spec.key]))
    return PlanItem(
        number, key, RowAction.CREATE, None, user_name, display_name, send, changes, "not in Omni; create"
    )


def _update_item(
    number: int,
    key: str,
    user: OmniUser,
    differ: Sequence[tuple[str, Any, AttributeValue]],
    problems: Sequence[str],
) -> PlanItem:
    if problems:
        # A user is never partially written: one bad value rejects the whole row.
        return PlanItem(number, key, RowAction.REJECTED, reason="; ".join(problems))
    send: dict[str, AttributeValue] = {}
    changes: list[AttributeChange] = []
    action = RowAction.UNSET  # unless some value is set
    for attribute, old, value in differ:
        send[attribute] = value
        changes.append(AttributeChange(attribute, old, value))
        if value is not None:
            action = RowAction.UPDATE
    return PlanItem(
        number, key, action, user.id, user.user_name, user.display_name, send, tuple(changes), None
    )


def _mirror_unsets(
    index: UserIndex, seen_keys: Collection[str], managed: Mapping[str, AttributeDefinition | None]
) -> list[PlanItem]:
    items: list[PlanItem] = []
    for key, users in index.items():
        if key in seen_keys:
            continue
        for user in users:
            current = user.attributes
            # Only managed keys that are set; unmanaged keys are never touched.
            cleared = [a for a in managed if not is_unset(current.get(a))]
            if not cleared:
                continue
            items.append(
                PlanItem(
                    None,
                    key,
                    RowAction.UNSET,
                    user.id,
                    user.user_name,
                    user.display_name,
                    dict.fromkeys(cleared),
                    tuple(AttributeChange(a, current.get(a), None) for a in cleared),
                    "absent from the input (mirror)",
                )
            )
    return items
