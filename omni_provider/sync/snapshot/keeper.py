"""Keeping a run's snapshot true: before the writes, the users about to be written are marked uncertain;
after them (also when the run was stopped or interrupted), every state Omni confirmed is recorded.

So a crash at any point leaves a snapshot that claims nothing it does not know: the next run reads the
uncertain users from Omni before planning. A failed write stays uncertain too (it may have landed).

A deferrable run keeps one snapshot over its steps: the first step marks the users to be written uncertain,
each deferral carries what Omni confirmed so far in the run's state (``state``), and the last step's keeper
(``resumed``) records every confirmed state over the file the first step wrote. Between the steps the file
keeps those users uncertain, so a run cancelled while deferred leaves nothing false either.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from omni_provider.client import OmniUser
from omni_provider.errors import SnapshotWriteError
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.engine.run import short
from omni_provider.sync.snapshot.format import (
    SnapshotSettings,
    SnapshotTarget,
    SnapshotUnusableError,
    holds_every_attribute,
    merged_entries,
    parse_snapshot,
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
        view: OmniView | None,
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
        self.counter = view.runs_since_full_resync if view is not None else 0
        #: The users' states the run started from (a resumed keeper reads them back from the file: None).
        self._base: dict[str, OmniUser] | None = (
            {user.id: user for user in view.users} if view is not None else None
        )
        #: A resumed keeper: the base states of the users it planned to write (the file holds them uncertain).
        self._planned_bases: Mapping[str, OmniUser] = {}
        self._planned: set[str] = set()
        #: Filled by the writes (``apply_plan``): user id -> the state Omni confirmed, None when it is gone.
        self.confirmed: dict[str, OmniUser | None] = {}
        self.token = uuid.uuid4().hex
        #: Who wrote the stored snapshot last, as far as this run knows (None: there was none).
        self._expected: str | None = view.stored_writer if view is not None else None
        self.overlapping = False

    def state(self) -> dict[str, Any]:
        """What the keeper of a later step of this run needs (``resumed``), JSON-ready: the users planned,
        the states Omni confirmed so far, the counter, and whose file the snapshot is."""
        return {
            "planned": sorted(self._planned),
            "confirmed": {
                user_id: None
                if user is None
                else user.model_dump(mode="json", by_alias=True, exclude_unset=True)
                for user_id, user in self.confirmed.items()
            },
            "counter": self.counter,
            "token": self.token,
            "expected": self._expected,
            "overlapping": self.overlapping,
        }

    @classmethod
    def resumed(
        cls,
        settings: SnapshotSettings,
        omni: str,
        spec: SyncSpec,
        run_id: str,
        log: RunLog,
        state: Mapping[str, Any],
        planned_bases: Mapping[str, OmniUser],
    ) -> SnapshotKeeper:
        """The keeper of a resumed step (``state`` from ``state()``); ``planned_bases``: the states the
        planned writes were based on (the run's state holds them)."""
        keeper = cls(settings, omni, spec, None, run_id, log)
        keeper._planned = set(state["planned"])
        keeper.confirmed = {
            user_id: None if user is None else OmniUser.model_validate(user)
            for user_id, user in state["confirmed"].items()
        }
        keeper.counter = int(state["counter"])
        keeper.token = str(state["token"])
        keeper._expected = state["expected"]
        keeper.overlapping = bool(state["overlapping"])
        keeper._planned_bases = planned_bases
        return keeper

    def _base_states(self) -> dict[str, OmniUser]:
        """The run's base states; a resumed keeper's from the file its first step wrote (the planned users
        from the run's state). A file it cannot read back makes the next run read Omni in full."""
        if self._base is not None:
            return self._base
        base: dict[str, OmniUser] = {}
        try:
            data = self.settings.store.read()
            if data is None:
                raise SnapshotUnusableError("it is gone")
            snapshot = parse_snapshot(
                data,
                omni=self.omni,
                attributes=self.spec.managed_attributes,
                match_on=self.spec.match_on,
                target=self.target,
            )
            base = {user.id: user for user in snapshot.users}
        except Exception as exc:
            self.overlapping = True
            self.log.warning(
                "Could not read back the snapshot at %s written before the writes (%s); the next run reads "
                "Omni in full",
                self.settings.store.label,
                short(exc),
            )
        for user_id in self._planned:
            if user_id in self._planned_bases:
                base[user_id] = self._planned_bases[user_id]
        self._base = base
        return base

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
            self._base_states(),
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
