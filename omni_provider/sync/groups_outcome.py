"""Per-membership outcomes of a group sync: what its report file, XCom counts and log table are made of."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from omni_provider.sync.groups_plan import MembershipAction, MembershipItem


class MembershipStatus(StrEnum):
    #: Omni confirmed the user is now a member.
    ADDED = "added"
    #: Omni confirmed the user is no longer a member.
    REMOVED = "removed"
    #: Nothing to do; nothing sent.
    UNCHANGED = "unchanged"
    #: Refused before sending (unknown user or group, unmanaged group, bad input).
    REJECTED = "rejected"
    #: Not confirmed (an error, or the run stopped first); a re-run applies what is still different.
    FAILED = "failed"
    #: Dry run: would be added or removed.
    PLANNED = "planned"


@dataclass(frozen=True, slots=True)
class MembershipOutcome:
    row: int | None
    user: str
    group: str
    action: str
    status: MembershipStatus
    user_id: str | None = None
    group_id: str | None = None
    error: str | None = None
    note: str | None = None

    @classmethod
    def from_item(
        cls,
        item: MembershipItem,
        status: MembershipStatus,
        *,
        error: str | None = None,
        group_id: str | None = None,
    ) -> MembershipOutcome:
        is_error = status in (MembershipStatus.REJECTED, MembershipStatus.FAILED)
        return cls(
            row=item.row_number,
            user=item.user,
            group=item.group,
            action=item.action.value,
            status=status,
            user_id=item.user_id,
            group_id=group_id or item.group_id,
            error=error if error is not None else (item.reason if is_error else None),
            note=None if is_error and error is None else item.reason,
        )

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["status"] = self.status.value
        return record


def outcome_without_write(item: MembershipItem, *, dry_run: bool) -> MembershipOutcome | None:
    """The outcome of an item that needs no request, or None when it must be written."""
    if item.action is MembershipAction.REJECTED:
        return MembershipOutcome.from_item(item, MembershipStatus.REJECTED)
    if item.action is MembershipAction.UNCHANGED:
        return MembershipOutcome.from_item(item, MembershipStatus.UNCHANGED)
    if dry_run:
        return MembershipOutcome.from_item(item, MembershipStatus.PLANNED)
    return None


def done_status(item: MembershipItem) -> MembershipStatus:
    return MembershipStatus.ADDED if item.action is MembershipAction.ADD else MembershipStatus.REMOVED


def tally_memberships(outcomes: Iterable[MembershipOutcome]) -> dict[str, int]:
    counts = Counter(o.status for o in outcomes)
    return {status.value: counts.get(status, 0) for status in MembershipStatus}


def tally_by_group(outcomes: Iterable[MembershipOutcome]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for o in outcomes:
        table.setdefault(o.group, Counter())[o.status.value] += 1
    return {group: dict(counter) for group, counter in sorted(table.items())}
