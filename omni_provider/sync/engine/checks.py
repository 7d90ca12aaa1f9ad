"""The checks of the options every target's run takes (``RunOptions``), in one place.

The targets' options objects (``SyncOptions``, ``GroupSyncOptions``) call ``check_run_options`` when
they are built, ``EngineRun.check`` before any request: a bad value gets the same message, naming the
option, whichever adapter it came through.
"""

from __future__ import annotations

from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.guards import judge_failures, resolve_max_changes


def check_flag(name: str, value: object) -> None:
    """``value`` is true or false (not a string or a number that looks like one)."""
    if not isinstance(value, bool):
        raise OmniValidationError(f"{name} must be true or false, got {value!r}")


def check_count(name: str, value: object) -> None:
    """``value`` is None or a whole number >= 1 (a thread count, a batch size)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise OmniValidationError(f"{name} must be a whole number >= 1, got {value!r}")


def check_run_options(
    *,
    dry_run: object,
    max_changes: int | str | None,
    max_failed_rows: int | None,
    max_failed_pct: float | str | None = None,
    max_workers: object = None,
    report_path: object = None,
) -> None:
    """The run options every target shares, checked (``OmniValidationError`` naming the option)."""
    check_flag("dry_run", dry_run)
    resolve_max_changes(max_changes, 0)
    judge_failures(0, 0, max_failed_rows=max_failed_rows, max_failed_pct=max_failed_pct)
    check_count("max_workers", max_workers)
    if report_path is not None and (not isinstance(report_path, str) or not report_path):
        raise OmniValidationError(f"report_path must be a path or URL when given, got {report_path!r}")
