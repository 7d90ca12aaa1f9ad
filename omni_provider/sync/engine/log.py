"""What the engine and every target need of a logger, and the run's per-item lines: each change
(``email: attribute old -> new``, ``group: + email``) and each item that did not sync, by its key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Protocol

from omni_provider.sync.engine.outcome import CHANGES_SHOWN, changes_of, not_synced


class RunLog(Protocol):
    """What the engine needs of a logger: ``logging.Logger``, Airflow's task log and Dagster's
    ``context.log`` all fit."""

    def info(self, msg: str, /, *args: object) -> object: ...
    def warning(self, msg: str, /, *args: object) -> object: ...
    def error(self, msg: str, /, *args: object) -> object: ...
    def exception(self, msg: str, /, *args: object) -> object: ...


#: How the log introduces the items of each status that did not sync.
_NOT_SYNCED_HEADINGS = {
    "rejected": "Rejected before sending, %d (nothing was sent for these)",
    "failed": "Failed writes, %d (not confirmed by Omni; a re-run retries them)",
}


def count_lines(counts: Mapping[str, int], *, indent: str = "  ") -> str:
    """Counts as aligned ``name  number`` lines, for the plan and the summaries in the log."""
    width = max((len(name) for name in counts), default=0)
    digits = max((len(str(n)) for n in counts.values()), default=0)
    return "\n".join(f"{indent}{name:<{width}}  {n:>{digits}}" for name, n in counts.items())


def count_phrase(counts: Mapping[str, int]) -> str:
    """The non-zero counts in one phrase: ``5 applied, 3 unchanged`` (``nothing`` when all are zero)."""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "nothing"


def log_outcomes(log: RunLog, outcomes: Sequence[Any], *, where: str | None) -> None:
    """Each change (the first ``CHANGES_SHOWN``, then how many more and where they are) at INFO, and every
    item that did not sync, by its key and why, at ERROR. ``where``: the report holding every item."""
    changes = changes_of(outcomes)
    shown = list(islice(changes, CHANGES_SHOWN))
    if shown:
        planned = shown[0].status == "planned"
        more = sum(1 for _ in changes)
        heading = "Planned changes (dry run: nothing was written)" if planned else "Changes written to Omni"
        lines = [f"  {change.text()}" for change in shown]
        if more:
            kept = f"in the report {where}" if where else "not listed (no report_path was set)"
            lines.append(f"  ... and {more} more, {kept}")
        log.info("%s, %d:\n%s", heading, len(shown) + more, "\n".join(lines))
    for status, items in _by_status(not_synced(outcomes)).items():
        heading = _NOT_SYNCED_HEADINGS.get(status, status + ", %d") % len(items)
        lines = [f"  {o.key}: {o.error}" for o in items]
        log.error("%s:\n%s", heading, "\n".join(lines))


def _by_status(outcomes: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for outcome in outcomes:
        grouped.setdefault(outcome.status.value, []).append(outcome)
    return grouped
