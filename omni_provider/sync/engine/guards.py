"""Run guards every target shares: the write limit (``max_changes``: a count or a percentage of the
target's base) and the verdict on rejected and failed items (``max_failed_rows``, ``max_failed_pct``).

Both exist because the worst sync failures are silent: a broken upstream query that blanks everyone, or a
green task that quietly skipped half the items. The user-attribute target's own guards (the plan's write
count, the default mirror limit) are in ``sync.users.guards``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from omni_provider.errors import OmniValidationError

_PERCENT_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")
_INTEGER_RE = re.compile(r"\s*\d+\s*")


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


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    should_fail: bool
    reason: str | None
    failed: int
    total: int


def judge_failures(
    rejected: int,
    total: int,
    *,
    failed_writes: int = 0,
    max_failed_rows: int | None = None,
    max_failed_pct: float | str | None = None,
    noun: str = "items",
) -> FailureVerdict:
    """Whether ``rejected`` items plus failed writes exceed either threshold (``None`` = not checked).

    ``total`` is the plan's items, the denominator of ``max_failed_pct`` (in percent: 5, 2.5 or "5%");
    ``noun`` names them in the reason ("rows", "memberships").
    """
    failed = rejected + failed_writes
    what = f"{failed} of {total} {noun} did not sync ({rejected} rejected, {failed_writes} failed writes)"
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
