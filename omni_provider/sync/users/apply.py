"""Apply a sync plan through the client: paced (the client's per-key pacer), concurrent, and loss-free.

Every plan item ends as exactly one ``RowOutcome``; a stop request (task killed, SIGTERM) leaves the
remaining writes as ``failed`` ("not attempted") so the report is complete and a re-run picks them up.

Two safety nets guard against Omni applying a write differently than this client assumes (its docs do not
say how a PATCH of the attribute map is applied):

- **Canary.** A write whose kind of change (setting an attribute, unsetting one) has not yet been seen to
  work in this run is sent alone: no other write is on the wire, none starts until it is judged on a
  fresh read of the user. Only then do writes of that kind run at full pace. So at most one user can be
  damaged by a surprise, whatever the concurrency, the number of keys and the mix of creates and updates.
- **Circuit breaker.** Any write whose answer shows a change it did not ask for (``OmniWriteSemanticsError``),
  or a 400 to a canary (the form is refused), stops the run: no new write starts, writes in flight finish,
  every other row is reported ``failed: not attempted (stopped: <reason>)``, and ``apply_plan`` raises
  ``WritesHaltedError`` (never retryable).

The loop itself (settle once, the first write alone, stop and interrupt) is the engine's one write loop,
``omni_provider.sync.engine.pool``, shared with the group sync; this module is the attribute target's writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, MutableMapping

from omni_provider.client import OmniError, OmniScimClient, OmniUser, UpdateResult
from omni_provider.domain.diff import ChangeSet, check_same_user, compute_changes
from omni_provider.domain.models import AttributeDefinition, AttributeValue, is_unset
from omni_provider.errors import (
    OmniBadRequestError,
    OmniConflictError,
    OmniNotFoundError,
    OmniWriteSemanticsError,
)

# The shared gate and wording; re-exported so ``omni_provider.sync.users.apply`` keeps its public names.
from omni_provider.sync.engine.breaker import HALTED_PREFIX as HALTED_PREFIX
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED as NOT_ATTEMPTED
from omni_provider.sync.engine.breaker import STOPPED_ERRORS as STOPPED_ERRORS
from omni_provider.sync.engine.breaker import STOPPED_PENDING as STOPPED_PENDING
from omni_provider.sync.engine.breaker import WriteGate, canary_line, canary_verified_line
from omni_provider.sync.engine.breaker import halted_error as halted_error
from omni_provider.sync.engine.breaker import is_stopped_error as is_stopped_error
from omni_provider.sync.engine.breaker import was_never_sent as was_never_sent
from omni_provider.sync.engine.pause import PauseRule

# The engine's write loop; ``Progress`` and ``workers_for`` re-exported under their old home.
from omni_provider.sync.engine.pool import Progress as Progress
from omni_provider.sync.engine.pool import WriteRun, run_writes
from omni_provider.sync.engine.pool import workers_for as workers_for
from omni_provider.sync.users.outcome import RowOutcome, RowStatus
from omni_provider.sync.users.plan import WRITE_ACTIONS, PlanItem, RowAction, SyncPlan

log = logging.getLogger("omni_provider.sync")


class WritesHaltedError(OmniError):
    """The circuit breaker stopped the run: Omni applied a write differently than assumed, or refused the
    form of the first write. Raised after every row has its outcome; never worth an automatic retry."""

    def __init__(self, reason: str, cause: OmniError, outcomes: list[RowOutcome]) -> None:
        self.reason = reason
        self.cause = cause
        self.outcomes = outcomes
        counts = {status: sum(1 for o in outcomes if o.status is status) for status in RowStatus}
        not_sent = sum(1 for o in outcomes if o.status is RowStatus.FAILED and o.stopped)
        super().__init__(
            f"Sync stopped by its circuit breaker: {cause} | Run so far: "
            f"{counts[RowStatus.APPLIED]} applied, {counts[RowStatus.UNCHANGED]} unchanged, "
            f"{not_sent} not attempted (stopped). Do not re-run until this is understood: a re-run would "
            "send the same kind of write again"
        )


def change_kinds(changes: ChangeSet, base: OmniUser, *, others_unknown: bool = False) -> frozenset[str]:
    """What a write must have seen verified before it may run alongside others.

    Each kind of change (setting an attribute, unsetting one, a user field) is verified on its own. And a
    write to a user holding attributes it does not send needs its kinds verified by a canary that also
    held some (``<kind>+others``): only such a canary can show whether those survive. A canary whose user
    had nothing else to lose proves less, so it does not open the gate for users who have.
    ``others_unknown``: ``base`` is a snapshot holding only the managed attributes; the user may hold
    others, so the write needs the ``+others`` kinds verified.
    """
    kinds = {"unset" if is_unset(new) else "set" for _old, new in changes.attributes.values()}
    if changes.display_name is not None:
        kinds.add("displayName")
    if changes.active is not None:
        kinds.add("active")
    sent = changes.attributes
    if others_unknown or any(
        not is_unset(value) for name, value in base.attributes.items() if name not in sent
    ):
        kinds |= {f"{kind}+others" for kind in kinds}
    return frozenset(kinds)


class _Writer:
    """The writes of one run, through the gate.

    ``stale_bases``: ids of users whose state comes from a snapshot (what an earlier sync left), not from
    a read of Omni. A canary to such a user is re-read first and judged in full; other writes to them are
    judged on what they sent. ``confirmed`` collects, by user id, the state Omni confirmed for each user
    written (its answer or a fresh read; None when Omni says the user no longer exists).
    """

    def __init__(
        self,
        client: OmniScimClient,
        gate: WriteGate,
        definitions: Mapping[str, AttributeDefinition] | None,
        managed: tuple[str, ...],
        *,
        stale_bases: Collection[str] = frozenset(),
        confirmed: MutableMapping[str, OmniUser | None] | None = None,
    ) -> None:
        self.client = client
        self.gate = gate
        self.definitions = definitions
        self.managed = managed
        self.stale_bases = stale_bases
        self.confirmed = confirmed
        self._lock = threading.Lock()

    def confirm(self, user_id: str, state: OmniUser | None) -> None:
        if self.confirmed is not None:
            with self._lock:
                self.confirmed[user_id] = state

    def update(self, user: OmniUser | str, attributes: Mapping[str, AttributeValue]) -> UpdateResult:
        """``update_user`` behind the gate. The base state is read first when the user carries no attribute
        map, so the kinds of change (and so whether this is a canary) are known before anything is sent."""
        user_id = user.id if isinstance(user, OmniUser) else user
        try:
            return self._update(user, attributes)
        except OmniNotFoundError:
            self.confirm(user_id, None)
            raise

    def _update(self, user: OmniUser | str, attributes: Mapping[str, AttributeValue]) -> UpdateResult:
        base = user if isinstance(user, OmniUser) and user.attributes_present else None
        stale = base is not None and base.id in self.stale_bases
        if base is None:
            base = self.client.get_user(user.id if isinstance(user, OmniUser) else user)
        changes = compute_changes(base, attributes=attributes, definitions=self.definitions)
        if not changes:
            if not stale:
                self.confirm(base.id, base)
            return UpdateResult(user=base, action="unchanged", changes=changes)
        kinds = change_kinds(changes, base, others_unknown=stale)
        with self.gate.hold(kinds) as canary:
            who = base.user_name or base.id
            try:
                if canary:
                    log.info("%s", canary_line(who, kinds, "checked on a fresh read"))
                    if stale:
                        # A canary is judged against Omni's state, never a snapshot's: read the user first,
                        # and send nothing when the snapshot's id now belongs to another user.
                        fresh = self.client.get_user(base.id)
                        check_same_user(base, fresh, what="a fresh read of the snapshot's user id")
                        base, stale = fresh, False
                # A canary is judged on a fresh read; later writes of verified kinds on Omni's answer.
                result = self.client.update_user(
                    base,
                    attributes=attributes,
                    definitions=self.definitions,
                    confirm_with_read=canary,
                    base_is_stale=stale,
                )
            except OmniWriteSemanticsError as exc:
                self.gate.trip(f"user {exc.user}, {exc.field!r}: {exc.problem}", exc)
                raise
            except OmniBadRequestError as exc:
                if canary:
                    reason = f"Omni refused the first {self.client.patch_form!r} write (HTTP 400)"
                    self.gate.trip(
                        reason,
                        OmniError(
                            f"{exc} | {reason}: this Omni may not accept that PATCH form. What to check: "
                            "set the connection extra 'patch_form' to the other form and try one user first"
                        ),
                    )
                raise
            if canary and result.action == "updated":
                # The kinds this write proved (a re-read snapshot user may hold nothing else after all).
                self.gate.verified(change_kinds(result.changes, base))
                log.info("%s", canary_verified_line(who))
        self.confirm(base.id, _state_after(base, result))
        for change in result.concurrent_changes:
            if stale:
                log.warning(
                    "User %s: %r changed outside the sync since the snapshot (left as it is; the snapshot "
                    "now records Omni's value)",
                    who,
                    change.attribute,
                )
            else:
                log.warning(
                    "User %s: another writer changed %r meanwhile (left as it is)", who, change.attribute
                )
        return result

    def is_stale(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.stale_bases

    def desired_of_create(self, item: PlanItem) -> dict[str, AttributeValue]:
        """Every managed value a create row wants, unsets included (a create item lists only the set ones)."""
        return {attribute: item.attributes.get(attribute) for attribute in self.managed}


def _state_after(base: OmniUser, result: UpdateResult) -> OmniUser:
    """The user as Omni confirmed it: its answer (or fresh read) when that carries the attribute map, else
    the state the write was based on with what was sent."""
    if result.user.attributes_present:
        return result.user
    values = {**base.attributes, **result.changes.new_attributes()}
    return base.model_copy(update={"attributes": values})


def apply_plan(
    client: OmniScimClient,
    plan: SyncPlan,
    users_by_id: Mapping[str, OmniUser],
    *,
    definitions: Mapping[str, AttributeDefinition] | None = None,
    dry_run: bool = False,
    max_workers: int | None = None,
    stop: threading.Event | None = None,
    on_outcome: Callable[[int, RowOutcome], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: float = 30.0,
    gate: WriteGate | None = None,
    stale_bases: Collection[str] = frozenset(),
    confirmed: MutableMapping[str, OmniUser | None] | None = None,
    pause: PauseRule | None = None,
    settled: Mapping[int, RowOutcome] | None = None,
) -> list[RowOutcome]:
    """Send the plan's writes (one unit per user) through the engine's one write loop
    (``pool.run_writes``: settle once, first write alone, breaker, stop); one outcome per plan item.

    ``on_outcome(index, outcome)`` is called as each item settles, so a caller interrupted mid-run still
    knows which items were written. When the circuit breaker trips every item is still settled, then
    ``WritesHaltedError`` is raised. ``stale_bases`` and ``confirmed``: see ``_Writer`` (snapshot diffing).
    ``pause`` and ``settled``: a deferrable run's (``pool.run_writes``).
    """
    gate = gate or WriteGate()
    writer = _Writer(
        client,
        gate,
        definitions,
        plan.managed_attributes,
        stale_bases=stale_bases,
        confirmed=confirmed,
    )
    items = plan.items

    def write(index: int, run: WriteRun[RowOutcome]) -> None:
        run.settle(index, _apply_item(writer, items[index], users_by_id))

    units = [((i,), i) for i, item in enumerate(items) if item.action in WRITE_ACTIONS]
    outcomes, gate = run_writes(
        client,
        items,
        units,
        write,
        RowOutcome,
        dry_run=dry_run,
        gate=gate,
        stop=stop,
        max_workers=max_workers,
        on_outcome=on_outcome,
        on_progress=on_progress,
        progress_every=progress_every,
        pause=pause,
        settled=settled,
    )
    if gate.reason is not None and gate.error is not None:
        raise WritesHaltedError(gate.reason, gate.error, outcomes)
    return outcomes


def _apply_item(writer: _Writer, item: PlanItem, users_by_id: Mapping[str, OmniUser]) -> RowOutcome:
    """One row's write. ``applied`` only when a write was sent and confirmed; a write found unnecessary
    (Omni already holds the values) is ``unchanged``."""
    client = writer.client
    if item.action is RowAction.CREATE:
        if not item.user_name or not item.display_name:
            raise OmniError("create without an email or display name")  # the planner rejects these
        try:
            created = client.create_user(item.user_name, item.display_name, item.attributes or None)
        except OmniConflictError:
            return _update_racing_create(writer, item)
        except OmniWriteSemanticsError as exc:
            writer.gate.trip(f"user {exc.user}, {exc.field!r}: {exc.problem}", exc)
            raise
        # If an earlier, lost attempt already created the user, its attributes may still be missing.
        if item.attributes:
            writer.update(created, item.attributes)
        elif created.attributes_present:
            writer.confirm(created.id, created)
        return RowOutcome.from_item(item, RowStatus.APPLIED, user_id=created.id)
    if item.user_id is None:
        raise OmniError("update without a user id")  # the planner always sets it
    current = users_by_id.get(item.user_id)
    result = writer.update(current if current is not None else item.user_id, item.attributes)
    return RowOutcome.from_result(
        item, result, note=_concurrent_note(result, since_snapshot=writer.is_stale(item.user_id))
    )


def _update_racing_create(writer: _Writer, item: PlanItem) -> RowOutcome:
    """A 409 on create: another writer created this user since the listing. Update it instead, to the
    row's whole desired state (unsets included); never a second user."""
    assert item.user_name is not None
    existing = writer.client.find_user_by_email(item.user_name)
    if existing is None:
        raise OmniError(
            f"user {item.user_name}: Omni answered 409 (exists) to the create, but no user with this email "
            "can be found; check the user in Omni (it may be deactivated or pending)"
        )
    log.warning("User %s was created by someone else since the listing; updating it instead", item.user_name)
    result = writer.update(existing, writer.desired_of_create(item))
    note = "created meanwhile by another writer; updated instead"
    extra = _concurrent_note(result)
    return RowOutcome.from_result(item, result, note=f"{note}; {extra}" if extra else note)


def _concurrent_note(result: UpdateResult, *, since_snapshot: bool = False) -> str | None:
    if not result.concurrent_changes:
        return None
    names = ", ".join(sorted(c.attribute for c in result.concurrent_changes))
    if since_snapshot:
        return f"{names} changed outside the sync since the snapshot (left as it is)"
    return f"another writer changed {names} meanwhile (left as it is)"
