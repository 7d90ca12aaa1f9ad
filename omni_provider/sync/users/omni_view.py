"""What a run takes Omni to hold before it plans: a live listing, or the snapshot the last run left.

``diff_against="omni"`` (the default) lists every user each run (about N/100 requests). With a snapshot
(``SnapshotSettings``) a run lists no users: it plans against the snapshot, looks up only the rows whose
key the snapshot does not know (new hires, users created by SSO meanwhile: one request each), and reads
only the users the snapshot marks uncertain that the plan depends on. It diffs against live Omni instead,
and says why, when there is no usable snapshot (none yet, unreadable, made for other attributes or another
Omni), on every ``full_resync_every``-th run, or when looking up the unknown rows would cost more requests
than a listing. A live run that had a usable snapshot reports the users whose managed values drifted from
it outside the sync.

Either way, the attribute map is optional in SCIM list responses, and a listed user without one is not a
user without attributes (read that way, a row of NULLs would never clear a value and a mirror would unset
nobody): each such user the plan depends on is read on its own before the plan is built again
(``plan_on_complete_users``).

Mirror mode stays as safe as with a live listing: the key checks run before any request either way, and
the blast-radius limit counts the users the plan was built on. Users created in Omni outside the sync since
the snapshot are left alone until the next full resync (the safe direction).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from omni_provider.client import OmniScimClient, OmniUser
from omni_provider.client.client import listing_page_count
from omni_provider.domain.models import AttributeDefinition
from omni_provider.domain.values import values_equal
from omni_provider.errors import AmbiguousUserError, OmniNotFoundError
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.snapshot.format import (
    Snapshot,
    SnapshotSettings,
    SnapshotTarget,
    SnapshotUnusableError,
    parse_snapshot,
    snapshot_writer,
)
from omni_provider.sync.users.apply import workers_for
from omni_provider.sync.users.keys import KeyProblem, UserIndex
from omni_provider.sync.users.plan import SyncPlan, build_plan
from omni_provider.sync.users.spec import SyncMode, SyncSpec

_log = logging.getLogger("omni_provider.sync")
#: Drifted users named in the summary and the log (all of them are counted).
DRIFT_SAMPLE_SIZE = 20


@dataclass
class OmniView:
    """The plan and the users it was built on, and where their state came from."""

    plan: SyncPlan
    users: list[OmniUser]
    #: "omni" (a live listing) or "snapshot".
    source: str
    #: Why this source, for the summary and the log.
    reason: str
    #: Users whose state comes from the snapshot rather than a read of Omni (their writes are judged so).
    stale_ids: frozenset[str] = frozenset()
    #: Rows looked up one by one because the snapshot did not know their key.
    lookups: int = 0
    #: Users the snapshot knows read one by one before planning (the email-only recipients target reads
    #: each recipient it writes, so a body never carries attributes older than the run).
    reads: int = 0
    #: The counter the next snapshot records (0 after a live listing).
    runs_since_full_resync: int = 0
    #: On a live run with a usable snapshot: how far Omni had drifted from it.
    drift: dict[str, Any] | None = None
    prior: Snapshot | None = field(default=None, repr=False)
    #: The ``written_by`` token of the file at ``snapshot_path`` when this run read it ("" when it had none
    #: or could not be read; None when there was no file): how the run notices another run writing it.
    stored_writer: str | None = None


def read_omni_view(
    client: OmniScimClient,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    settings: SnapshotSettings | None,
    log: RunLog,
    keys: Sequence[str | KeyProblem],
) -> OmniView:
    """The plan, and the users it was built on, from a live listing or from the snapshot. ``keys`` are the
    rows' keys as ``read_keys`` read them."""
    if settings is None:
        return _live(client, rows, spec, definitions, "diff_against='omni'", None, log)
    prior, unusable, writer = read_snapshot(client.base_url, spec, settings)
    view = _view(client, rows, spec, definitions, settings, prior, unusable, log, keys)
    view.stored_writer = writer
    return view


def _view(
    client: OmniScimClient,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    settings: SnapshotSettings,
    prior: Snapshot | None,
    unusable: str | None,
    log: RunLog,
    keys: Sequence[str | KeyProblem],
) -> OmniView:
    live = live_reason(prior, unusable, settings, log)
    if live is not None:
        reason, kept = live
        return _live(client, rows, spec, definitions, reason, kept, log)
    assert prior is not None
    return _from_snapshot(client, rows, spec, definitions, prior, settings.full_resync_every, log, keys)


def live_reason(
    prior: Snapshot | None, unusable: str | None, settings: SnapshotSettings, log: RunLog
) -> tuple[str, Snapshot | None] | None:
    """Why this run diffs against live Omni rather than the snapshot (said in the log), and the snapshot to
    report drift against (on a full resync); None when the snapshot serves."""
    if prior is None:
        reason = unusable or "no snapshot yet"
        log.warning("Diffing against live Omni: %s snapshot at %s", reason, settings.store.label)
        return reason, None
    if prior.overlapping_runs:
        reason = "two runs of this sync overlapped and both wrote the snapshot"
        log.warning("Diffing against live Omni: %s (allow one run at a time: max_active_runs=1)", reason)
        return reason, None
    if prior.runs_since_full_resync + 1 >= settings.full_resync_every:
        reason = f"full resync (every {settings.full_resync_every} runs)"
        log.info("Diffing against live Omni: %s", reason)
        return reason, prior
    return None


def read_snapshot(
    omni: str, spec: SyncSpec, settings: SnapshotSettings, target: SnapshotTarget = "user_attributes"
) -> tuple[Snapshot | None, str | None, str | None]:
    """The snapshot if usable, else why not (None: there is none), and the stored file's writer token."""
    try:
        data = settings.store.read()
    except Exception as exc:  # any storage error: the live diff is always correct
        return None, f"unreadable ({type(exc).__name__}: {exc})", ""
    if data is None:
        return None, None, None
    try:
        snapshot = parse_snapshot(
            data, omni=omni, attributes=spec.managed_attributes, match_on=spec.match_on, target=target
        )
    except SnapshotUnusableError as exc:
        return None, f"unusable ({exc})", snapshot_writer(data)
    return snapshot, None, snapshot.written_by


def _live(
    client: OmniScimClient,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    reason: str,
    prior: Snapshot | None,
    log: RunLog,
) -> OmniView:
    listed = client.list_users()
    log.info("Omni has %d users", len(listed))
    plan, users = plan_on_complete_users(client, rows, listed, spec, definitions)
    drift = report_drift(prior, users, spec, definitions, log) if prior is not None else None
    return OmniView(plan, users, "omni", reason, drift=drift, prior=prior)


def _from_snapshot(
    client: OmniScimClient,
    rows: Sequence[Mapping[str, Any]],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    prior: Snapshot,
    full_resync_every: int,
    log: RunLog,
    keys: Sequence[str | KeyProblem],
) -> OmniView:
    known = UserIndex(prior.users, spec.match_on)
    unknown = sorted({k for k in keys if isinstance(k, str) and not known.get(k)})
    # A listing brings 99 users per request; one lookup per unknown row must not cost more than that.
    listing_cost = listing_page_count(len(prior.users) + len(unknown), client.page_size)
    if len(unknown) > listing_cost:
        reason = (
            f"{len(unknown)} rows are not in the snapshot; listing Omni ({listing_cost} requests) costs less "
            "than looking each up"
        )
        log.info("Diffing against live Omni: %s", reason)
        return _live(client, rows, spec, definitions, reason, prior, log)
    try:
        found = _look_up(client, unknown, spec)
    except AmbiguousUserError as exc:
        reason = f"a lookup found several users for one row ({exc}); the listing decides"
        log.warning("Diffing against live Omni: %s", reason)
        return _live(client, rows, spec, definitions, reason, prior, log)
    fresh = {user.id: user for user in found}
    users = [*fresh.values(), *(u for u in prior.users if u.id not in fresh)]
    log.info(
        "Diffing against the snapshot of %s (%d users, %d uncertain); %d rows not in it looked up, %d found",
        prior.written_at or "an earlier run",
        len(prior.users),
        prior.uncertain,
        len(unknown),
        len(fresh),
    )
    plan, users = plan_on_complete_users(client, rows, users, spec, definitions)
    stale = frozenset(u.id for u in prior.users if u.attributes_present and u.id not in fresh)
    counter = prior.runs_since_full_resync + 1
    reason = (
        f"snapshot of {prior.written_at or 'the last run'}, {len(prior.users)} users; Omni is read in full "
        f"in {full_resync_every - counter} run{'s' if full_resync_every - counter != 1 else ''}"
    )
    return OmniView(
        plan,
        users,
        "snapshot",
        reason,
        stale_ids=stale,
        lookups=len(unknown),
        runs_since_full_resync=counter,
        prior=prior,
    )


def _look_up(client: OmniScimClient, keys: Sequence[str], spec: SyncSpec) -> list[OmniUser]:
    """The Omni users behind keys the snapshot does not know (paced over the client's keys)."""

    def find(key: str) -> OmniUser | None:
        if spec.match_on == "userName":
            return client.find_user_by_email(key)
        try:
            return client.get_user(key)
        except OmniNotFoundError:
            return None

    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=workers_for(client), thread_name_prefix="omni-lookup") as pool:
        return [user for user in pool.map(find, keys) if user is not None]


def report_drift(
    prior: Snapshot,
    users: Sequence[OmniUser],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    log: RunLog,
) -> dict[str, Any]:
    """Users whose managed values in Omni differ from what the snapshot says the last sync left."""
    live = {user.id: user for user in users}
    managed = spec.managed_attributes
    drifted: list[dict[str, Any]] = []
    deleted = 0
    for before in prior.users:
        if not before.attributes_present:
            continue  # uncertain: the snapshot claims nothing
        now = live.get(before.id)
        if now is None:
            deleted += 1
            continue
        if not now.attributes_present:
            continue  # listed without its map and not read: nothing to compare
        for name in managed:
            definition = definitions.get(name) if definitions else None
            old, new = before.attributes.get(name), now.attributes.get(name)
            if not values_equal(new, old, definition):
                drifted.append({"user": now.user_name, "attribute": name, "snapshot": old, "omni": new})
    known = {user.id for user in prior.users}
    drift: dict[str, Any] = {
        "users": len({d["user"] for d in drifted}),
        "values": len(drifted),
        "deleted_since_snapshot": deleted,
        "new_since_snapshot": sum(1 for user_id in live if user_id not in known),
        "sample": drifted[:DRIFT_SAMPLE_SIZE],
    }
    if drifted or deleted:
        log.warning(
            "Drift since the snapshot, outside this sync: %d users with %d changed values, %d users deleted; "
            "this run repairs the values the rows still want",
            drift["users"],
            drift["values"],
            deleted,
        )
        for change in drift["sample"]:
            log.warning(
                "Drifted: %s %s: %r in the snapshot, %r in Omni",
                change["user"],
                change["attribute"],
                change["snapshot"],
                change["omni"],
            )
    return drift


def describe_view(summary: dict[str, Any], view: OmniView, settings: SnapshotSettings | None) -> None:
    """What the run's summary says of where its picture of Omni came from."""
    summary["diff_against"] = view.source
    if settings is None:
        return
    summary["diff_reason"] = view.reason
    summary["snapshot"] = {"path": settings.store.path}
    if view.source == "snapshot":
        summary["snapshot"]["lookups"] = view.lookups
        if view.reads:
            summary["snapshot"]["reads"] = view.reads
    if view.drift is not None:
        summary["drift"] = view.drift


# -- listed users without their attribute map ---------------------------------------------------------


def users_needing_a_read(plan: SyncPlan, users: Iterable[OmniUser]) -> list[str]:
    """Ids of listed users without an attribute map whose values the plan depends on: those a row matched
    (to diff them) and, in mirror mode, every one of them (any may hold values to unset)."""
    bare = [u.id for u in users if not u.attributes_present]
    if not bare or plan.mode is SyncMode.MIRROR:
        return bare
    referenced = {item.user_id for item in plan.items if item.user_id is not None}
    return [user_id for user_id in bare if user_id in referenced]


def plan_on_complete_users(
    client: OmniScimClient,
    rows: Sequence[Mapping[str, Any]],
    users: list[OmniUser],
    spec: SyncSpec,
    definitions: Mapping[str, AttributeDefinition] | None,
    *,
    max_workers: int = 4,
) -> tuple[SyncPlan, list[OmniUser]]:
    """The plan, built on users whose attribute maps are all known, and those users.

    Costs one GET per listed user without a map that the plan depends on (none when the listing carries
    the maps); a user deleted since the listing (404) is left out, so its row is planned as missing.
    """
    plan = build_plan(rows, users, spec, definitions)
    needed = users_needing_a_read(plan, users)
    if not needed:
        return plan, users
    _log.warning(
        "%d of %d listed users came without their attribute map; reading the %d the plan depends on "
        "one by one (one GET each)",
        sum(1 for u in users if not u.attributes_present),
        len(users),
        len(needed),
    )

    def read(user_id: str) -> OmniUser | None:
        try:
            return client.get_user(user_id)
        except OmniNotFoundError:
            _log.warning("User %s was deleted since the listing; planned as absent", user_id)
            return None

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="omni-read") as pool:
        fresh = dict(zip(needed, pool.map(read, needed), strict=True))
    complete: list[OmniUser] = []
    for user in users:
        if user.id not in fresh:
            complete.append(user)
        elif (read_user := fresh[user.id]) is not None:
            complete.append(read_user)
    return build_plan(rows, complete, spec, definitions), complete
