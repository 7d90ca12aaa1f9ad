"""Run guards: refuse a plan whose blast radius is too big, and decide when rejected/failed rows fail a run.

Both exist because the worst sync failures are silent: a broken upstream query that blanks everyone, or a
green task that quietly skipped half the rows.

Mirror mode has a limit even when ``max_changes`` is not given: a mirror run that would unset managed
attributes of more than ``DEFAULT_MIRROR_UNSET_LIMIT`` of Omni's users is refused, because a short or
half-broken input (a filter too narrow, a join that lost rows) looks exactly like "these users left".
Giving ``max_changes`` explicitly replaces this default with the caller's own limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from omni_provider.errors import OmniValidationError, PlanTooLargeError
from omni_provider.sync.users.plan import RowAction, SyncPlan
from omni_provider.sync.users.spec import SyncMode

_PERCENT_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
_INTEGER_RE = re.compile(r"\s*\d+\s*")

#: The share of Omni's users a mirror run may unset attributes on when ``max_changes`` is not given.
DEFAULT_MIRROR_UNSET_LIMIT = "10%"


def _percent(value: str) -> Fraction | None:
    match = _PERCENT_RE.fullmatch(value)
    if match is None:
        return None
    pct = Fraction(match.group(1))
    return pct if pct <= 100 else None


def resolve_max_changes(max_changes: int | str | None, total_users: int) -> int | None:
    """The absolute write limit: an int, "25", or a percentage like "10%" of total_users (rounded down)."""
    if max_changes is None:
        return None
    if isinstance(max_changes, bool):
        raise OmniValidationError(
            f"max_changes must be a count or a percentage like '10%', got {max_changes!r}"
        )
    if isinstance(max_changes, int):
        if max_changes < 0:
            raise OmniValidationError(f"max_changes must not be negative, got {max_changes}")
        return max_changes
    if isinstance(max_changes, str):
        if _INTEGER_RE.fullmatch(max_changes):
            return int(max_changes)
        pct = _percent(max_changes)
        if pct is not None:
            # Rounded down: "no more than 10%" must hold for the actual count.
            return math.floor(pct * total_users / 100)
    raise OmniValidationError(
        f"max_changes must be a count or a percentage between 0% and 100% like '10%', got {max_changes!r}"
    )


def check_max_changes(
    plan: SyncPlan, max_changes: int | str | None, total_users: int, *, allow_empty_input: bool = False
) -> None:
    """Raise ``PlanTooLargeError`` when the plan writes more users than allowed, or empties a mirror."""
    changes = plan.change_count
    limit = resolve_max_changes(max_changes, total_users)
    counts = plan.counts()
    detail = ", ".join(
        f"{counts[a.value]} {a.value}" for a in (RowAction.CREATE, RowAction.UPDATE, RowAction.UNSET)
    )
    if plan.empty_input and changes and not allow_empty_input:
        raise PlanTooLargeError(
            f"the input has no rows, so mirror mode would unset managed attributes on {changes} of "
            f"{total_users} Omni users; refusing (an empty source is usually a broken query). "
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
            f"the plan writes {changes} users ({detail}), more than max_changes={max_changes!r} allows "
            f"({limit} of {total_users} Omni users); refusing. Check the source query, or raise max_changes.",
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
    lost = ", ".join(f"{a} on {n} users" for a, n in per_attribute.items() if n)
    absent = sum(1 for item in losing if item.row_number is None)
    share = math.ceil(len(losing) * 100 / total_users) if total_users else 100
    raise PlanTooLargeError(
        f"mirror mode would unset attributes of {len(losing)} of {total_users} Omni users ({lost}; "
        f"{absent} users absent from the input, {len(losing) - absent} through empty values in their "
        f"rows), more than the default limit for mirror runs ({DEFAULT_MIRROR_UNSET_LIMIT} = {limit} users). "
        "Nothing was sent. Check that the input holds every user; if this is intended, give max_changes "
        f'explicitly (e.g. max_changes={len(losing)} or "{share}%").',
        changes=len(losing),
        limit=limit,
        total_users=total_users,
    )


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    should_fail: bool
    reason: str | None
    failed: int
    total: int


def evaluate_failures(
    counts: Mapping[str, int],
    *,
    failed_writes: int = 0,
    max_failed_rows: int | None = None,
    max_failed_pct: float | str | None = None,
) -> FailureVerdict:
    """Whether rejected rows plus failed writes exceed either threshold (``None`` = not checked).

    ``counts`` is ``SyncPlan.counts()``; its items (rows plus mirror unsets) are the denominator, and keys
    that are not plan actions are ignored. ``max_failed_pct`` is in percent: 5, 2.5 or "5%".
    """
    rejected = counts.get(RowAction.REJECTED.value, 0)
    failed = rejected + failed_writes
    total = sum(counts.get(action.value, 0) for action in RowAction)
    what = f"{failed} of {total} items failed ({rejected} rejected, {failed_writes} failed writes)"
    if max_failed_rows is not None:
        if isinstance(max_failed_rows, bool) or max_failed_rows < 0:
            raise OmniValidationError(f"max_failed_rows must be a non-negative int, got {max_failed_rows!r}")
        if failed > max_failed_rows:
            return FailureVerdict(True, f"{what}, over max_failed_rows={max_failed_rows}", failed, total)
    if max_failed_pct is not None:
        pct = _failure_percent(max_failed_pct)
        if total and failed * 100 > pct * total:
            return FailureVerdict(True, f"{what}, over max_failed_pct={float(pct):g}%", failed, total)
    return FailureVerdict(False, None, failed, total)


def _failure_percent(value: float | str) -> Fraction:
    pct: Fraction | None
    if isinstance(value, str):
        text = value.strip()
        pct = _percent(text if text.endswith("%") else text + "%")
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        pct = Fraction(value) if 0 <= value <= 100 else None
    else:
        pct = None
    if pct is None:
        raise OmniValidationError(f"max_failed_pct must be a percentage between 0 and 100, got {value!r}")
    return pct
