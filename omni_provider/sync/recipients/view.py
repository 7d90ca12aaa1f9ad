"""What a recipients run takes Omni to hold before it plans: every recipient listed, or the snapshot the
last run left (``diff_against="snapshot"``, on the attribute sync's snapshot machinery).

With a snapshot a run lists no recipients. The snapshot holds every attribute of each recipient (not only
the managed ones: a body carries them all). The run looks up the rows whose email the snapshot does not
know (one filtered read each; the listing's ``email`` filter matches partially, so the exact match is taken
out of the page), plans against the snapshot, then reads again, one filtered read each, every recipient
the plan writes and every uncertain one it depends on, and plans again on those fresh states.

Why read what it writes: an upsert body carries the recipient's current attributes, and a snapshot may be
days old. Built from the snapshot, a body would put back a value someone changed in Omni since (under
either upsert meaning) or, under replace, drop an attribute added since: unmanaged attributes lost. So a
body is never older than the run, as with a live listing; an unchanged recipient costs no request.

The run lists every recipient instead, and says why, on the attribute sync's rules (``live_reason``: no
usable snapshot, overlapping runs, every ``full_resync_every``-th run, when it also reports drift), and
when the reads one by one would cost more requests than the listing (``ceil(recipients / 20)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omni_provider.client.email_only import MAX_PAGE_SIZE, EmailOnlyApi
from omni_provider.domain.models import AttributeDefinition, OmniUser
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.recipients.plan import as_user, build_recipient_plan
from omni_provider.sync.snapshot.format import Snapshot, SnapshotSettings, SnapshotTarget
from omni_provider.sync.users.apply import workers_for
from omni_provider.sync.users.keys import KeyProblem, UserIndex
from omni_provider.sync.users.omni_view import (
    OmniView,
    live_reason,
    read_snapshot,
    report_drift,
    users_needing_a_read,
)
from omni_provider.sync.users.spec import SyncSpec

#: The snapshot of this target holds every attribute of each recipient.
TARGET: SnapshotTarget = "email_recipients"

Definitions = Mapping[str, AttributeDefinition] | None


def listing_cost(recipients: int) -> int:
    """Requests the listing of ``recipients`` takes (one when there are none)."""
    return max(1, math.ceil(recipients / MAX_PAGE_SIZE))


def read_recipient_view(
    api: EmailOnlyApi,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Definitions,
    settings: SnapshotSettings | None,
    log: RunLog,
    keys: Sequence[str | KeyProblem],
) -> OmniView:
    """The plan and the recipients it was built on, from a live listing or from the snapshot. ``keys`` are
    the rows' keys as ``read_keys`` read them."""
    if settings is None:
        return _live(api, rows, spec, definitions, "diff_against='omni'", None, log)
    prior, unusable, writer = read_snapshot(api.client.base_url, spec, settings, TARGET)
    live = live_reason(prior, unusable, settings, log)
    if live is not None:
        view = _live(api, rows, spec, definitions, live[0], live[1], log)
    else:
        assert prior is not None
        view = _from_snapshot(api, rows, spec, definitions, prior, settings.full_resync_every, log, keys)
    view.stored_writer = writer
    return view


def _live(
    api: EmailOnlyApi,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Definitions,
    reason: str,
    prior: Snapshot | None,
    log: RunLog,
) -> OmniView:
    recipients = [as_user(record, definitions) for record in api.list_recipients()]
    log.info("Omni has %d email-only recipients", len(recipients))
    plan = build_recipient_plan(rows, recipients, spec, definitions)
    drift = report_drift(prior, recipients, spec, definitions, log) if prior is not None else None
    return OmniView(plan, recipients, "omni", reason, drift=drift, prior=prior)


def _from_snapshot(
    api: EmailOnlyApi,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Definitions,
    prior: Snapshot,
    full_resync_every: int,
    log: RunLog,
    keys: Sequence[str | KeyProblem],
) -> OmniView:
    known = UserIndex(prior.users, spec.match_on)
    unknown = sorted({k for k in keys if isinstance(k, str) and not known.get(k)})
    cost = listing_cost(len(prior.users) + len(unknown))

    def too_dear(reads: int) -> OmniView | None:
        if reads <= cost:
            return None
        reason = f"{reads} recipients to read one by one; listing Omni ({cost} requests) costs less"
        log.info("Diffing against live Omni: %s", reason)
        return _live(api, rows, spec, definitions, reason, prior, log)

    if (instead := too_dear(len(unknown))) is not None:
        return instead
    found = [user for user in _read(api, unknown, definitions) if user is not None]
    fresh = {user.id: user for user in found}
    users = [*found, *(u for u in prior.users if u.id not in fresh)]
    plan = build_recipient_plan(rows, users, spec, definitions)
    # Every recipient written (its body carries its current attributes) and every uncertain one the plan
    # depends on, read again.
    wanted = {item.user_id for item in plan.writes() if item.user_id is not None}
    wanted.update(users_needing_a_read(plan, users))
    stale = [u for u in users if u.id in wanted and u.id not in fresh]
    if (instead := too_dear(len(unknown) + len(stale))) is not None:
        return instead
    reread = dict(
        zip((u.id for u in stale), _read(api, [u.user_name for u in stale], definitions), strict=True)
    )
    if stale:
        users = [
            *(u for u in users if u.id not in reread),
            *(r for r in reread.values() if r is not None and r.id not in fresh),
        ]
        plan = build_recipient_plan(rows, users, spec, definitions)
    log.info(
        "Diffing against the snapshot of %s (%d recipients, %d uncertain); %d rows not in it looked up, %d "
        "found; %d recipients read again before planning",
        prior.written_at or "an earlier run",
        len(prior.users),
        prior.uncertain,
        len(unknown),
        len(found),
        len(stale),
    )
    counter = prior.runs_since_full_resync + 1
    left = full_resync_every - counter
    reason = (
        f"snapshot of {prior.written_at or 'the last run'}, {len(prior.users)} recipients; Omni is listed in "
        f"full in {left} run{'s' if left != 1 else ''}"
    )
    return OmniView(
        plan,
        users,
        "snapshot",
        reason,
        lookups=len(unknown),
        reads=len(stale),
        runs_since_full_resync=counter,
        prior=prior,
    )


def _read(api: EmailOnlyApi, emails: Iterable[str], definitions: Definitions) -> list[OmniUser | None]:
    """The recipients with these emails, in order (None: no such recipient), paced over the client's
    keys; each a filtered read whose page's exact match is kept (``find_recipient``)."""

    def read(email: str) -> OmniUser | None:
        record = api.find_recipient(email)
        return None if record is None else as_user(record, definitions)

    emails = list(emails)
    if not emails:
        return []
    with ThreadPoolExecutor(max_workers=workers_for(api.client), thread_name_prefix="omni-read") as pool:
        return list(pool.map(read, emails))


__all__ = ["TARGET", "listing_cost", "read_recipient_view"]
