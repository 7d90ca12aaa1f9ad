"""Per-row outcomes of a sync run and their tally: what the report file and the XCom summary are made of."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

from omni_provider.client.client import UpdateResult
from omni_provider.sync.engine.outcome import Change, ItemOutcome
from omni_provider.sync.users.plan import PlanItem


class RowStatus(StrEnum):
    #: The write was sent and Omni confirmed it.
    APPLIED = "applied"
    #: Nothing differed (in the plan, or on the client's fresh look); nothing was sent.
    UNCHANGED = "unchanged"
    #: Refused before sending (bad key, bad value, duplicate, user missing in update mode...).
    REJECTED = "rejected"
    #: Sent (or due to be sent) and not confirmed: an error, or the run was stopped first. A re-run retries.
    FAILED = "failed"
    #: Dry run: would be written.
    PLANNED = "planned"


@dataclass(frozen=True, slots=True)
class RowOutcome(ItemOutcome):
    statuses: ClassVar[type[StrEnum]] = RowStatus

    row: int | None
    key: str
    action: str
    status: RowStatus
    user_id: str | None = None
    changed: tuple[str, ...] = ()
    #: Why the row did not sync (rejected or failed rows only).
    error: str | None = None
    changes: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    #: The planner's remark on a row that is not an error (e.g. "absent from the input (mirror)").
    note: str | None = None
    #: A failed write that never left (the run stopped, or the breaker tripped, before it): Omni is as
    #: it was for this row.
    never_sent: bool = False
    #: The run was stopped before this write was confirmed (never sent, or cut short while pending).
    stopped: bool = False

    @classmethod
    def from_item(
        cls,
        item: PlanItem,
        status: RowStatus,
        *,
        error: str | None = None,
        user_id: str | None = None,
        never_sent: bool = False,
        stopped: bool = False,
    ) -> RowOutcome:
        return cls(
            **cls.settled_fields(item, status, error=error, never_sent=never_sent, stopped=stopped),
            key=item.key,
            user_id=user_id or item.user_id,
            changed=tuple(c.attribute for c in item.changes),
            changes=tuple({"attribute": c.attribute, "old": c.old, "new": c.new} for c in item.changes),
        )

    @classmethod
    def from_result(cls, item: PlanItem, result: UpdateResult, *, note: str | None = None) -> RowOutcome:
        """The outcome of a write the client decided on: ``applied`` only when a PATCH was sent and
        confirmed; ``unchanged`` when Omni already held the values (nothing was sent). The changes are the
        ones really sent, old values from the state the write was based on."""
        if result.action != "updated":
            return cls(
                row=item.row_number,
                key=item.key,
                action=item.action.value,
                status=RowStatus.UNCHANGED,
                user_id=result.user.id,
                note=note or "no write needed: Omni already holds these values",
            )
        sent = result.changes.attributes
        return cls(
            row=item.row_number,
            key=item.key,
            action=item.action.value,
            status=RowStatus.APPLIED,
            user_id=result.user.id,
            changed=tuple(sent),
            changes=tuple({"attribute": a, "old": old, "new": new} for a, (old, new) in sent.items()),
            note=note if note is not None else item.reason,
        )

    def change_lines(self) -> tuple[Change, ...]:
        if self.status not in (RowStatus.APPLIED, RowStatus.PLANNED):
            return ()
        status = self.status.value
        return tuple(Change(self.key, c["attribute"], c["old"], c["new"], status) for c in self.changes)

    def to_record(self) -> dict[str, Any]:
        # Field by field: ``asdict`` deep-copies every value, which costs a whole report of a large sync.
        record = {name: getattr(self, name) for name in _FIELDS}
        record["status"] = self.status.value
        record["changed"] = list(self.changed)
        record["changes"] = [dict(change) for change in self.changes]
        return record


_FIELDS = tuple(f.name for f in fields(RowOutcome))
