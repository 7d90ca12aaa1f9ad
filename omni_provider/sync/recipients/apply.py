"""Apply a recipients plan: bulk upserts of up to 20 recipients, paced like every request, through the
engine's one write loop (``sync.engine.pool.run_writes``: settle once, the first write alone, circuit
breaker, stop) and its canary gate (``sync.engine.breaker.WriteGate``).

- **Bodies right under both meanings.** Omni does not say whether an upsert merges ``userAttributes`` into
  the recipient's or replaces them, so each body carries the recipient's current custom attributes (from
  the listing) plus the managed changes (``plan.upsert_attributes``): the same end state either way.
- **Canary.** The run's first write is one recipient alone (the most telling one: an update of a recipient
  holding attributes the sync does not manage), judged on a fresh read by the attribute sync's judge
  (``domain.diff.judge_write``) before any other write starts. A surprise trips the breaker: nothing else
  is sent, every other row is reported not attempted.
- **Split on 400.** Omni refuses a whole bulk request for one bad entry. The batch is split in halves until
  the offending rows are alone; each is rejected with Omni's message, its neighbours are applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from omni_provider.client.email_only import MAX_BULK, EmailOnlyApi, UpsertEntry
from omni_provider.domain.diff import ChangeSet, judge_write
from omni_provider.domain.identity import email_key
from omni_provider.domain.models import AttributeDefinition, OmniUser, is_unset
from omni_provider.errors import OmniBadRequestError, OmniError, OmniWriteSemanticsError
from omni_provider.sync.engine.breaker import WriteGate
from omni_provider.sync.engine.pool import WriteRun, run_writes
from omni_provider.sync.recipients.plan import as_user, recipient_user, upsert_attributes, written_state
from omni_provider.sync.users.outcome import RowOutcome, RowStatus
from omni_provider.sync.users.plan import SyncPlan

log = logging.getLogger("omni_provider.sync")

#: The one kind of write of this target: every upsert carries the recipient's whole state.
KINDS = frozenset({"email-only-upsert"})
#: Canaries refused one after the other before the run concludes Omni refuses the form of the writes.
CANARY_REFUSALS = 3
LOST_HINT = (
    "Omni's email-only upsert did not keep what its body carried (the recipient's attributes plus the "
    "managed changes). Restore this recipient from the report's old values; nothing else was sent"
)


@dataclass
class RecipientApplyResult:
    outcomes: list[RowOutcome]
    #: Why the run stopped early (the circuit breaker or a stop request); None when it ran to the end.
    stopped: str | None = None
    #: What tripped the circuit breaker.
    breaker: OmniError | None = None
    #: Bulk upserts sent (a split batch counts each of its requests).
    write_requests: int = 0


def write_order(plan: SyncPlan, bases: Mapping[str, OmniUser]) -> list[int]:
    """The plan's writes, the canary first: an update of a recipient holding unmanaged attributes (only it
    shows that those survive), else any update, else a create; the rest in plan order."""
    writes = [i for i, item in enumerate(plan.items) if item.is_write]

    def telling(i: int) -> int:
        item = plan.items[i]
        base = bases.get(item.user_id or "")
        if base is None:
            return 2
        managed = plan.managed_attributes
        others = any(not is_unset(v) for name, v in base.attributes.items() if name not in managed)
        return 0 if others else 1

    if not writes:
        return writes
    first = min(writes, key=telling)
    return [first, *(i for i in writes if i != first)]


def batches(order: Sequence[int]) -> list[list[int]]:
    """The canary alone, then bulk batches of up to ``MAX_BULK``."""
    if not order:
        return []
    rest = order[1:]
    return [[order[0]], *(list(rest[i : i + MAX_BULK]) for i in range(0, len(rest), MAX_BULK))]


def apply_recipient_plan(
    api: EmailOnlyApi,
    plan: SyncPlan,
    bases: Mapping[str, OmniUser],
    definitions: Mapping[str, AttributeDefinition] | None,
    *,
    dry_run: bool = False,
    max_workers: int | None = None,
    stop: threading.Event | None = None,
    on_outcome: Callable[[int, RowOutcome], None] | None = None,
    gate: WriteGate | None = None,
    confirmed: dict[str, OmniUser | None] | None = None,
) -> RecipientApplyResult:
    """Send the plan's upserts; one outcome per plan item. ``bases``: the listed recipients by id.
    ``confirmed`` (a snapshot's) is filled with the state of each recipient Omni accepted: what its body
    carried, the canary's as read back."""
    items = plan.items
    result = RecipientApplyResult(outcomes=[])
    lock = threading.Lock()
    refusals = [0]  # canaries refused in a row

    def body(i: int) -> UpsertEntry:
        item = items[i]
        base = bases.get(item.user_id or "")
        return (item.user_name or item.key), upsert_attributes(item, base, definitions)

    def send(
        indexes: Sequence[int], run: WriteRun[RowOutcome], *, settle: bool = True
    ) -> dict[int, str | None]:
        """Upsert ``indexes`` in one request; on a 400, in halves until each offending row is alone and
        rejected with Omni's message. The indexes applied, with the ids Omni answered (settled as applied
        unless ``settle`` is false: a canary is settled once judged)."""
        with lock:
            result.write_requests += 1
        try:
            answers = api.upsert_bulk([body(i) for i in indexes])
        except OmniBadRequestError as exc:
            if len(indexes) == 1:
                why = exc.omni_message or str(exc)
                outcome = RowOutcome.from_item(
                    items[indexes[0]], RowStatus.REJECTED, error=f"Omni refused: {why}"
                )
                run.settle(indexes[0], outcome)
                return {}
            half = len(indexes) // 2
            return {**send(indexes[:half], run, settle=settle), **send(indexes[half:], run, settle=settle)}
        ids = {email_key(a.email): a.user_id for a in answers}
        applied: dict[int, str | None] = {}
        for i in indexes:
            item = items[i]
            email = item.user_name or item.key
            user_id = applied[i] = ids.get(email_key(email)) or item.user_id
            if settle:
                if confirmed is not None and user_id:
                    base = bases.get(item.user_id or "")
                    sent = upsert_attributes(item, base, definitions)
                    confirmed[user_id] = written_state(user_id, email, base, sent)
                run.settle(i, RowOutcome.from_item(item, RowStatus.APPLIED, user_id=user_id))
        return applied

    def judge(i: int, user_id: str) -> OmniUser:
        """The canary on a fresh read: the managed values hold what was sent, nothing else was lost; its
        state as read."""
        item = items[i]
        email = item.user_name or item.key
        fresh = api.find_recipient(email)
        if fresh is None:
            raise OmniWriteSemanticsError(
                user=email,
                field="email",
                old=email,
                new=None,
                problem="the recipient written is not in Omni's email-only listing",
                hint="whether Omni stored this email as an email-only user (it may be a full Omni user)",
            )
        before = bases.get(item.user_id or "") or recipient_user(user_id, email, {})
        changes = ChangeSet(attributes={c.attribute: (c.old, c.new) for c in item.changes})
        after = as_user(fresh, definitions)
        try:
            concurrent = judge_write(before, after, changes, definitions=definitions)
        except OmniWriteSemanticsError as exc:
            # The judge's hint speaks of SCIM PATCH forms; this write is an upsert carrying the whole state.
            raise OmniWriteSemanticsError(
                user=exc.user,
                field=exc.field,
                old=exc.old,
                new=exc.new,
                problem=exc.problem,
                hint=LOST_HINT,
            ) from None
        for change in concurrent:  # another writer between the listing and now: kept, said
            log.warning(
                "Recipient %s: attribute %r changed outside this run between the listing and the canary's "
                "read (kept)",
                email,
                change.attribute,
            )
        return after

    def write(indexes: list[int], run: WriteRun[RowOutcome]) -> None:
        pending = list(indexes)
        with run.gate.hold(KINDS) as canary:
            while canary and pending:
                first = pending.pop(0)
                log.info("Canary upsert of one recipient, sent alone and checked before any other write")
                applied = send([first], run, settle=False)
                if not applied:
                    refusals[0] += 1
                    if refusals[0] >= CANARY_REFUSALS:
                        error = OmniBadRequestError(400, f"Omni refused the first {CANARY_REFUSALS} upserts")
                        run.gate.trip(f"Omni refused the first {CANARY_REFUSALS} upserts one by one", error)
                        raise error
                    continue
                user_id = applied[first] or ""
                try:
                    after = judge(first, user_id)
                except OmniWriteSemanticsError as exc:
                    run.gate.trip(f"recipient {exc.user}: Omni reports {exc.problem}", exc)
                    run.settle(first, RowOutcome.failed(items[first], str(exc)))
                    raise
                if confirmed is not None:
                    confirmed[after.id] = after
                run.settle(first, RowOutcome.from_item(items[first], RowStatus.APPLIED, user_id=user_id))
                run.gate.verified(KINDS)
                log.info("Canary upsert verified on a fresh read; continuing in bulk")
                canary = False
            if pending:
                send(pending, run)

    units = [] if dry_run else [(b, b) for b in batches(write_order(plan, bases))]
    caller_stop = stop or threading.Event()
    outcomes, gate = run_writes(
        api.client,
        items,
        units,
        write,
        RowOutcome,
        dry_run=dry_run,
        gate=gate,
        stop=caller_stop,
        max_workers=max_workers,
        on_outcome=on_outcome,
    )
    result.outcomes = outcomes
    result.stopped = gate.reason or ("the task was stopped" if caller_stop.is_set() else None)
    result.breaker = gate.error
    return result


__all__ = ["RecipientApplyResult", "apply_recipient_plan", "batches", "write_order"]
