"""Keeping a run's snapshot true: before the writes, the users about to be written are marked uncertain;
after them (also when the run was stopped or interrupted), every state Omni confirmed is recorded.

So a crash at any point leaves a snapshot that claims nothing it does not know: the next run reads the
uncertain users from Omni before planning. A failed write stays uncertain too (it may have landed).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from omni_provider.client import OmniUser
from omni_provider.errors import SnapshotWriteError
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.run import short
from omni_provider.sync.snapshot.format import (
    SnapshotSettings,
    SnapshotTarget,
    holds_every_attribute,
    merged_entries,
    render_snapshot,
    snapshot_writer,
)
from omni_provider.sync.users.omni_view import OmniView
from omni_provider.sync.users.outcome import RowOutcome, RowStatus
from omni_provider.sync.users.plan import SyncPlan
from omni_provider.sync.users.spec import SyncSpec


class SnapshotKeeper:
    """The snapshot of one run that writes (never used by a dry run)."""

    def __init__(
        self,
        settings: SnapshotSettings,
        omni: str,
        spec: SyncSpec,
        view: OmniView,
        run_id: str,
        log: RunLog,
        target: SnapshotTarget = "user_attributes",
    ) -> None:
        self.settings = settings
        self.target = target
        self.omni = omni
        self.spec = spec
        self.run_id = run_id
        self.log = log
        self.counter = view.runs_since_full_resync
        self._base = {user.id: user for user in view.users}
        self._planned: set[str] = set()
        #: Filled by the writes (``apply_plan``): user id -> the state Omni confirmed, None when it is gone.
        self.confirmed: dict[str, OmniUser | None] = {}
        self.token = uuid.uuid4().hex
        #: Who wrote the stored snapshot last, as far as this run knows (None: there was none).
        self._expected: str | None = view.stored_writer
        self.overlapping = False

    def _stored_writer(self) -> str | None:
        try:
            data = self.settings.store.read()
        except Exception:
            return ""  # unreadable now: the final write replaces it
        return None if data is None else snapshot_writer(data)

    def _notice_overlap(self) -> None:
        """Another run of this sync wrote the snapshot since this run read it: neither can vouch for it."""
        if not self.overlapping and self._stored_writer() != self._expected:
            self.overlapping = True
            self.log.warning(
                "Another run of this sync wrote the snapshot at %s meanwhile (overlapping runs); the next "
                "run reads Omni in full. Allow one run at a time (max_active_runs=1)",
                self.settings.store.label,
            )

    def _write(self, uncertain: set[str], confirmed: dict[str, OmniUser | None]) -> dict[str, Any]:
        entries = merged_entries(
            self._base,
            confirmed,
            uncertain,
            self.spec.managed_attributes,
            every=holds_every_attribute(self.target),
        )
        self.settings.store.write(
            render_snapshot(
                entries,
                omni=self.omni,
                attributes=self.spec.managed_attributes,
                match_on=self.spec.match_on,
                runs_since_full_resync=self.counter,
                run_id=self.run_id,
                written_by=self.token,
                overlapping_runs=self.overlapping,
                target=self.target,
            )
        )
        self._expected = self.token
        doubtful = sum(1 for entry in entries if entry["values"] is None)
        return {"users": len(entries), "uncertain": doubtful}

    def distrust(self) -> None:
        """A write found the snapshot pairing an id with another user (a restored backup, an Omni
        re-created at the same URL): it does not describe this Omni, so the next run reads Omni in full."""
        self.counter = max(self.counter, self.settings.full_resync_every)
        self.log.error(
            "The snapshot at %s pairs user ids with other users than Omni does; the next run reads Omni in "
            "full and rebuilds it",
            self.settings.store.label,
        )

    def before_writes(self, plan: SyncPlan) -> None:
        """Mark the users about to be written uncertain; raises ``SnapshotWriteError`` (nothing sent)."""
        self._planned = {item.user_id for item in plan.writes() if item.user_id is not None}
        if not self._planned:
            return  # nothing will be written: the snapshot stays true until the end of the run
        try:
            self._notice_overlap()
            self._write(self._planned, {})
        except Exception as exc:
            raise SnapshotWriteError(
                f"Could not write the snapshot at {self.settings.store.label} before the writes "
                f"({type(exc).__name__}: {exc}); nothing was sent to Omni"
            ) from None

    def after_writes(self, outcomes: Sequence[RowOutcome] | None) -> dict[str, Any]:
        """Record every confirmed state; returns what the summary says about the snapshot. A planned write
        that never left (its row "not attempted") keeps the user's state; without the outcomes (the run was
        interrupted) every planned write not confirmed stays uncertain."""
        unsent = {
            o.user_id
            for o in outcomes or ()
            if o.status is RowStatus.FAILED and o.user_id is not None and o.never_sent
        }
        self._notice_overlap()
        part = self._write(self._planned - unsent, dict(self.confirmed))
        part.update(written=True, runs_since_full_resync=self.counter)
        if self.overlapping:
            part["overlapping_runs"] = True
        self.log.info(
            "Snapshot written to %s: %d users, %d uncertain (read again next run)",
            self.settings.store.label,
            part["users"],
            part["uncertain"],
        )
        return part


def keep_snapshot(
    keeper: SnapshotKeeper | None,
    outcomes: Sequence[RowOutcome] | None,
    summary: dict[str, Any],
    log: RunLog,
) -> None:
    """The snapshot with every state Omni confirmed, said in ``summary["snapshot"]``; a failure is reported,
    never fatal: the snapshot written before the writes marks their users uncertain, so the next run reads
    them again."""
    if keeper is None:
        return
    try:
        summary["snapshot"].update(keeper.after_writes(outcomes))
    except Exception as exc:
        summary["snapshot"]["error"] = short(exc)
        log.error(
            "Could not update the snapshot at %s (%s); the next run reads the users written now from "
            "Omni again",
            keeper.settings.store.label,
            short(exc),
        )
