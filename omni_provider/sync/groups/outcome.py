"""Per-membership outcomes of a group sync: what its report file, XCom counts and log table are made of."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, ClassVar

from omni_provider.sync.engine.outcome import Change, ItemOutcome, tally_by
from omni_provider.sync.groups.plan import MembershipAction, MembershipItem


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
class MemberChange(Change):
    """A member added to a group (``new``: the email) or removed (``old``), shown ``group: + email``."""

    def text(self) -> str:
        return f"{self.key}: + {self.new}" if self.new is not None else f"{self.key}: - {self.old}"


@dataclass(frozen=True, slots=True)
class MembershipOutcome(ItemOutcome):
    statuses: ClassVar[type[StrEnum]] = MembershipStatus

    row: int | None
    user: str
    group: str
    action: str
    status: MembershipStatus
    user_id: str | None = None
    group_id: str | None = None
    error: str | None = None
    note: str | None = None
    #: As ``RowOutcome``: a failed write that never left, and a write the run's stop cut short.
    never_sent: bool = False
    stopped: bool = False

    @classmethod
    def from_item(
        cls,
        item: MembershipItem,
        status: MembershipStatus,
        *,
        error: str | None = None,
        group_id: str | None = None,
        never_sent: bool = False,
        stopped: bool = False,
    ) -> MembershipOutcome:
        return cls(
            **cls.settled_fields(item, status, error=error, never_sent=never_sent, stopped=stopped),
            user=item.user,
            group=item.group,
            user_id=item.user_id,
            group_id=group_id or item.group_id,
        )

    @property
    def key(self) -> str:
        """Whose outcome: the member and the group."""
        return f"{self.user} in {self.group}"

    def change_lines(self) -> tuple[Change, ...]:
        if self.status not in (MembershipStatus.ADDED, MembershipStatus.REMOVED, MembershipStatus.PLANNED):
            return ()
        adds = self.action == MembershipAction.ADD.value
        old, new = (None, self.user) if adds else (self.user, None)
        return (MemberChange(self.group, "member", old, new, self.status.value),)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["status"] = self.status.value
        return record


def done_status(item: MembershipItem) -> MembershipStatus:
    return MembershipStatus.ADDED if item.action is MembershipAction.ADD else MembershipStatus.REMOVED


def tally_by_group(outcomes: Iterable[MembershipOutcome]) -> dict[str, dict[str, int]]:
    return tally_by(outcomes, lambda o: str(o.group))
