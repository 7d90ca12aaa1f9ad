"""The user-attribute target's guards: refuse a plan whose blast radius is too big, and read its counts
for the failure verdict (``sync.engine.guards.judge_failures``).

Mirror mode has a limit even when ``max_changes`` is not given: a mirror run that would unset managed
attributes of more than ``DEFAULT_MIRROR_UNSET_LIMIT`` of Omni's users is refused, because a short or
half-broken input (a filter too narrow, a join that lost rows) looks exactly like "these users left".
Giving ``max_changes`` explicitly replaces this default with the caller's own limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from omni_provider.errors import PlanTooLargeError
from omni_provider.sync.engine.guards import FailureVerdict, judge_failures, resolve_max_changes
from omni_provider.sync.users.plan import RowAction, SyncPlan
from omni_provider.sync.users.spec import SyncMode

#: The share of Omni's users a mirror run may unset attributes on when ``max_changes`` is not given.
DEFAULT_MIRROR_UNSET_LIMIT = "10%"


def check_max_changes(
    plan: SyncPlan, max_changes: int | str | None, total_users: int, *, allow_empty_input: bool = False
) -> None:
    """Raise ``PlanTooLargeError`` when the plan writes more users than allowed, or empties a mirror."""
    changes = plan.change_count
    everyone, short = plan.nouns
    limit = resolve_max_changes(max_changes, total_users)
    counts = plan.counts()
    detail = ", ".join(
        f"{counts[a.value]} {a.value}" for a in (RowAction.CREATE, RowAction.UPDATE, RowAction.UNSET)
    )
    if plan.empty_input and changes and not allow_empty_input:
        raise PlanTooLargeError(
            f"the input has no rows, so mirror mode would unset managed attributes on {changes} of "
            f"{total_users} {everyone}; refusing (an empty source is usually a broken query). "
            "Allow empty input explicitly if this is intended.",
            changes=changes,
            limit=limit,
            total_users=total_users,
        )
    # An allowed empty input is an explicit "unset everyone"; the default limit is for partial inputs.
    if max_changes is None and plan.mode is SyncMode.MIRROR and not (plan.empty_input and allow_empty_input):
        check_default_mirror_limit(plan, total_users)
    if limit is not None and changes > limit:
        raise PlanTooLargeError(
            f"the plan writes {changes} {short} ({detail}), more than max_changes={max_changes!r} allows "
            f"({limit} of {total_users} {everyone}); refusing. Check the source query, or raise max_changes.",
            changes=changes,
            limit=limit,
            total_users=total_users,
        )


def check_default_mirror_limit(plan: SyncPlan, total_users: int) -> None:
    """Refuse a mirror plan that unsets values of more than ``DEFAULT_MIRROR_UNSET_LIMIT`` of the users.

    Counted: users the plan would clear at least one managed value of, whether absent from the input or
    given empty values in their row; the error says how many users lose each attribute.
    """
    losing = [item for item in plan.writes() if any(c.new is None for c in item.changes)]
    limit = resolve_max_changes(DEFAULT_MIRROR_UNSET_LIMIT, total_users)
    assert limit is not None
    if len(losing) <= limit:
        return
    per_attribute = {a: 0 for a in plan.managed_attributes}
    for item in losing:
        for change in item.changes:
            if change.new is None:
                per_attribute[change.attribute] += 1
    everyone, short = plan.nouns
    lost = ", ".join(f"{a} on {n} {short}" for a, n in per_attribute.items() if n)
    absent = sum(1 for item in losing if item.row_number is None)
    share = math.ceil(len(losing) * 100 / total_users) if total_users else 100
    raise PlanTooLargeError(
        f"mirror mode would unset attributes of {len(losing)} of {total_users} {everyone} ({lost}; "
        f"{absent} {short} absent from the input, {len(losing) - absent} through empty values in their "
        f"rows), more than the default limit for mirror runs ({DEFAULT_MIRROR_UNSET_LIMIT} = {limit} "
        f"{short}). Nothing was sent. Check that the input holds every {short[:-1]}; if this is intended, "
        f'give max_changes explicitly (e.g. max_changes={len(losing)} or "{share}%").',
        changes=len(losing),
        limit=limit,
        total_users=total_users,
    )


def failure_base(counts: Mapping[str, int]) -> tuple[int, int]:
    """``(rejected, total)`` of a plan's ``counts()``: its items (rows plus mirror unsets) are the total, and
    keys that are not plan actions are ignored."""
    return counts.get(RowAction.REJECTED.value, 0), sum(counts.get(action.value, 0) for action in RowAction)


def evaluate_failures(
    counts: Mapping[str, int],
    *,
    failed_writes: int = 0,
    max_failed_rows: int | None = None,
    max_failed_pct: float | str | None = None,
) -> FailureVerdict:
    """``judge_failures`` for ``SyncPlan.counts()`` (see ``failure_base``)."""
    rejected, total = failure_base(counts)
    return judge_failures(
        rejected,
        total,
        failed_writes=failed_writes,
        max_failed_rows=max_failed_rows,
        max_failed_pct=max_failed_pct,
    )
