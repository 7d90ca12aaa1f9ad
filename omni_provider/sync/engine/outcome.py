"""The generic part of every sync target's outcome: what an item that needs no request ends as, a failed
item (never sent or not), whether an outcome carries an error or a remark, and the tallies.

Each target's outcome type (``RowOutcome``: a row of the attribute sync; ``MembershipOutcome``: a
membership of the group sync) derives from ``ItemOutcome`` and names its statuses; the statuses
``unchanged``, ``rejected``, ``failed`` and ``planned`` mean the same for every target.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any, ClassVar, Protocol, Self

#: Statuses whose outcome carries an error (why the item did not sync) rather than a remark.
ERROR_STATUSES = frozenset({"rejected", "failed"})
#: How many changes a run lists one by one in its log and its Dagster metadata (the report has them all).
CHANGES_SHOWN = 200


def show_value(value: object) -> str:
    """An attribute value as the log and the UIs show it: JSON (strings quoted, so an empty string and
    a space are visible), ``(unset)`` for no value."""
    return "(unset)" if value is None else json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one item, as the log and the UIs show it (``key: attribute old -> new``)."""

    #: Whose: the user's email (or match key), the group's name.
    key: str
    attribute: str
    old: object
    new: object
    #: The outcome's status: written (applied, added, removed) or planned (a dry run).
    status: str

    def text(self) -> str:
        return f"{self.key}: {self.attribute} {show_value(self.old)} -> {show_value(self.new)}"


def changes_of(outcomes: Iterable[Any]) -> Iterable[Change]:
    """Every change the outcomes wrote (or planned, in a dry run), in plan order."""
    for outcome in outcomes:
        yield from outcome.change_lines()


def not_synced(outcomes: Iterable[Any]) -> list[Any]:
    """The outcomes of the items that did not sync (rejected, failed), in plan order."""
    return [o for o in outcomes if o.status.value in ERROR_STATUSES]


def error_and_note(status: str, error: str | None, reason: str | None) -> tuple[str | None, str | None]:
    """The outcome's ``error`` and ``note``: the planner's reason is the error of a rejected or failed
    item, and only a remark on any other (an item that synced never carries an error)."""
    is_error = status in ERROR_STATUSES
    return (
        error if error is not None else (reason if is_error else None),
        None if is_error and error is None else reason,
    )


class ItemOutcome:
    """What every target's outcome type provides on top of its fields (``from_item``, ``to_record``)."""

    __slots__ = ()
    #: The target's statuses.
    statuses: ClassVar[type[StrEnum]]
    #: Every outcome type has these fields (declared by its dataclass), and a ``key``: whose outcome it
    #: is in log lines, ``errors_sample`` and the UIs (the user's email, a membership's user and group).
    status: Any
    error: str | None
    never_sent: bool

    def change_lines(self) -> tuple[Change, ...]:
        """What this item changed in Omni (or would, in a dry run), for the log's and the UIs' lines;
        nothing for any other status. A target overrides it (nothing is shown for one that does not)."""
        return ()

    @classmethod
    def from_item(
        cls,
        item: Any,
        status: Any,
        *,
        error: str | None = None,
        never_sent: bool = False,
        stopped: bool = False,
    ) -> Self:
        raise NotImplementedError

    @staticmethod
    def settled_fields(
        item: Any, status: Any, *, error: str | None, never_sent: bool, stopped: bool
    ) -> dict[str, Any]:
        """The fields every target's outcome of ``item`` shares (its ``from_item`` adds its own): the row,
        action and status; the error or remark (``error_and_note``); and a write that never left counts as
        stopped."""
        error, note = error_and_note(status.value, error, item.reason)
        return {
            "row": item.row_number,
            "action": item.action.value,
            "status": status,
            "error": error,
            "note": note,
            "never_sent": never_sent,
            "stopped": stopped or never_sent,
        }

    @classmethod
    def without_write(cls, item: Any, *, dry_run: bool) -> Self | None:
        """The outcome of an item that needs no request, or None when it must be written."""
        action = item.action.value
        if action in ("rejected", "unchanged"):
            return cls.from_item(item, cls.statuses(action))
        return cls.from_item(item, cls.statuses("planned")) if dry_run else None

    @classmethod
    def failed(cls, item: Any, error: str, *, never_sent: bool = False, stopped: bool = False) -> Self:
        """A failed item: ``never_sent`` when its write never left (Omni is as it was for it)."""
        status = cls.statuses("failed")
        return cls.from_item(item, status, error=error, never_sent=never_sent, stopped=stopped)


def tally(outcomes: Iterable[Any], statuses: Iterable[StrEnum]) -> dict[str, int]:
    """How many outcomes ended in each status (every status present, zeros included)."""
    counts = Counter(o.status for o in outcomes)
    return {status.value: counts.get(status, 0) for status in statuses}


def tally_by(outcomes: Iterable[Any], key: Callable[[Any], str]) -> dict[str, dict[str, int]]:
    """Statuses per ``key`` (the action, the group), for the log table and the summary."""
    table: dict[str, Counter[str]] = {}
    for o in outcomes:
        table.setdefault(key(o), Counter())[o.status.value] += 1
    return {name: dict(counter) for name, counter in sorted(table.items())}


def tally_by_action(outcomes: Iterable[Any]) -> dict[str, dict[str, int]]:
    return tally_by(outcomes, lambda o: str(o.action))


class ReportRecord(Protocol):
    """One line of a report file (a row outcome, a membership outcome)."""

    def to_record(self) -> dict[str, Any]: ...


def write_jsonl(outcomes: Iterable[ReportRecord], stream: IO[str]) -> int:
    n = 0
    for outcome in outcomes:
        stream.write(json.dumps(outcome.to_record(), default=str, ensure_ascii=False) + "\n")
        n += 1
    return n


def format_table(
    summary: Mapping[str, Mapping[str, int]], statuses: Iterable[str], *, first: str = "action"
) -> str:
    """A small fixed-width table of counts per action (or group: ``first`` names the first column) and
    status (``statuses`` as columns), for the task log."""
    statuses = list(statuses)
    width = max([10, *(len(name) + 1 for name in summary)])
    lines = [f"{first:<{width}}" + "".join(f"{s:>11}" for s in statuses)]
    for name, counts in summary.items():
        lines.append(f"{name:<{width}}" + "".join(f"{counts.get(s, 0):>11}" for s in statuses))
    return "\n".join(lines)
