"""Errors only the sync engine raises (client errors live in ``omni_provider.client.errors``), and the one
rule of which errors a later run may cure."""

from __future__ import annotations

from typing import Any

from omni_provider.client.errors import OmniApiError, OmniError, OmniListingDriftError, OmniTransportError


class PlanTooLargeError(OmniError):
    """A sync plan would write more users than the configured blast-radius guard allows."""

    def __init__(self, message: str, *, changes: int, limit: int | None, total_users: int) -> None:
        self.changes = changes
        self.limit = limit
        self.total_users = total_users
        super().__init__(message)


class SnapshotWriteError(OmniError):
    """The snapshot could not be written before the writes (to mark the users about to be written
    uncertain); nothing was sent. Worth a retry: storage trouble is often passing."""


class SyncRunError(OmniError):
    """A sync run that ended badly after it started writing; ``summary`` is the run's full summary (the
    same dict a successful run returns), so the numbers can be shown with the failure."""

    #: True when a re-run may fix it (it re-plans against live state).
    retryable: bool = False

    def __init__(self, message: str, *, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(message)


class SyncFailedError(SyncRunError):
    """The run finished, but more rows did not sync than the thresholds allow.

    ``retryable`` is true when some writes failed: a re-run re-plans against live state and may apply them;
    rows rejected by the planner need a fix in the input instead.
    """

    def __init__(self, reason: str, *, summary: dict[str, Any], retryable: bool) -> None:
        super().__init__(f"Omni sync failed: {reason}", summary=summary)
        self.retryable = retryable


class SyncHaltedError(SyncRunError):
    """The circuit breaker stopped the writes (Omni applied one differently than assumed, or refused the
    form of the first); every row is reported. Never worth an automatic retry: it would send the same kind
    of write again."""


class SyncReportLostError(SyncRunError):
    """The writes are done but a report sink failed; the outcomes went to the fallback (or the log). A
    re-run would only re-diff and report "unchanged", so it is no remedy."""


#: Answers a re-run cannot change (bad input, bad key, missing user, conflict).
_PERMANENT_STATUS = frozenset({400, 401, 403, 404, 409, 422})


def rerun_may_help(exc: OmniError) -> bool:
    """Whether running the same task again later could succeed: 429, 5xx and network trouble, or a sync
    whose failed writes a re-plan may apply. The orchestrator adapters map this to retry or fail."""
    if isinstance(exc, SyncRunError):
        return exc.retryable
    if isinstance(exc, SnapshotWriteError):
        return True
    if isinstance(exc, OmniListingDriftError):
        return True  # users were being added or removed while listing; a later read settles
    if isinstance(exc, OmniTransportError):
        # A certificate the worker does not trust needs a configuration change, not another try.
        return not exc.tls_verification_failed
    return isinstance(exc, OmniApiError) and exc.status_code not in _PERMANENT_STATUS
