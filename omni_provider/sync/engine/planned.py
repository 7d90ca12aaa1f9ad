"""What every target's apply of a stored plan shares: the fresh read before its writes (the planned items
as Omni holds them now: one listing when many are planned, ``LISTING_FROM``, else one GET each,
concurrently), and the summary and log lines of the plan applied and of what changed since it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from omni_provider.client import OmniScimClient
from omni_provider.errors import OmniNotFoundError
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.plan_artifact import CHANGED_SINCE_PLAN, PlanArtifact

#: From this many planned users (groups) on, one listing of Omni is cheaper than one GET each.
LISTING_FROM = 20

ItemT = TypeVar("ItemT")


def read_each(
    ids: Sequence[str], read: Callable[[str], ItemT], *, max_workers: int = 4
) -> dict[str, ItemT | None]:
    """``read(id)`` for every id (None when Omni answers 404: gone since the plan)."""

    def one(item_id: str) -> ItemT | None:
        try:
            return read(item_id)
        except OmniNotFoundError:
            return None

    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="omni-read") as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


class AppliesPlan:
    """Mixed into a target's planned run (before the target's run class): the summary of the plan applied
    and the report of what changed in Omni since it."""

    artifact: PlanArtifact
    summary: dict[str, Any]
    client: OmniScimClient
    log: RunLog

    def _start_applying(self) -> dict[str, Any]:
        """The plan in the summary and the log; returns the client's counters before the first request."""
        header = self.artifact.header
        self.summary.update(
            plan_digest=self.artifact.digest,
            planned_at=header.created_at,
            rows=header.rows,
            applying_plan=True,
        )
        self.log.info(
            "Applying plan %s (made %s, %d planned writes)",
            self.artifact.digest,
            header.created_at,
            len(self.artifact.items),
        )
        return self.client.stats.snapshot()

    def _report_changed(self, changed: Sequence[tuple[str, str | None]], total: int) -> None:
        """``changed``: (who, why) of every planned item Omni no longer holds as planned, of ``total``."""
        self.summary["changed_since_plan"] = len(changed)
        for who, why in changed:
            self.log.warning("%s: %s; not written", who, why)
        if changed:
            self.log.warning(
                "%d of %d planned items %s; the rest goes on", len(changed), total, CHANGED_SINCE_PLAN
            )
