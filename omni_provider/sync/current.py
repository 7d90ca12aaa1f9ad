"""Omni's current users as the planner needs them: every user a plan depends on with its attribute map.

The attribute map is optional in SCIM list responses. A listed user without one is not a user without
attributes: read that way, a row of NULLs would never clear a value, a mirror would unset nobody, and the
writes would each need a GET first. So before planning, each such user the plan depends on is read on its
own (``GET /scim/v2/users/{id}``) and the plan is built again on complete users.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omni_provider.client import OmniScimClient, OmniUser
from omni_provider.client.errors import OmniNotFoundError
from omni_provider.client.models import AttributeDefinition
from omni_provider.sync.plan import SyncPlan, build_plan
from omni_provider.sync.spec import SyncMode, SyncSpec

log = logging.getLogger("omni_provider.sync")


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
    log.warning(
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
            log.warning("User %s was deleted since the listing; planned as absent", user_id)
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
