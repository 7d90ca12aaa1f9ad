"""Benchmark of the group-membership sync: requests sent vs the least possible and vs read-modify-PUT.

Run:  .venv/bin/python bench/bench_groups.py [--users 2000] [--groups 50] [--changed 100]
      .venv/bin/python bench/bench_groups.py --quick

The emulator (in-process, loopback, no rate limit) starts from N seeded users and G groups of N/G members
each. The warehouse's truth differs from Omni in c memberships: half are additions, half removals, spread
over a few groups. Two cases, each from the same starting state, must end in the same state:

* sync: what SyncOmniGroupMembershipOperator does in mirror mode: every page of users and of groups, the
  plan, then one PATCH per changed group carrying all its adds and removes.
* read-modify-PUT: what Omni's SDK examples do: read the users (to learn ids), then per group GET it,
  compute the member list, PUT the whole group (Omni documents PUT as a replace of the membership).

The least possible is the user listing + the group listing (both drift-checked: each page after the first
overlaps the one before by one entry) + changed groups: the reads needed to know the state, and one write
per group that must change. Minutes at Omni's documented 60 requests per minute per key are shown for
scale.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from omni_provider.client import GroupsApi, OmniScimClient, RetryPolicy
from omni_provider.client.client import listing_page_count
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.sync.groups.apply import apply_group_plan
from omni_provider.sync.groups.plan import build_group_plan, check_group_plan

KEY = "bench-groups-key-51e0c2"
PAGE = 100


@dataclass
class Case:
    label: str
    requests: int
    by_method: dict[str, int]
    seconds: float

    @property
    def minutes_at_60(self) -> float:
        return self.requests / 60


def setup(emu: EmulatorServer, n: int, g: int, c: int, seed: int) -> tuple[list[dict[str, str]], int]:
    """Seed Omni; return the warehouse rows (desired memberships) and the number of groups that differ."""
    emu.reset(seed_users=n, seed=seed)
    users = emu.state.users()
    rng = random.Random(seed)
    size = max(2, n // g)
    current = {f"Group {i:03d}": users[i * size % n : i * size % n + size] for i in range(g)}
    for name, members in current.items():
        emu.state.groups.add_group(name, [u.id for u in members])
    desired = {name: {u.user_name for u in members} for name, members in current.items()}
    changed_groups = rng.sample(sorted(desired), k=min(g, max(1, c // 4)))
    for i in range(c):
        name = changed_groups[i % len(changed_groups)]
        if i % 2 == 0:  # an addition: someone not yet a member
            outsider = next(
                u.user_name for u in rng.sample(users, len(users)) if u.user_name not in desired[name]
            )
            desired[name].add(outsider)
        else:  # a removal
            desired[name].discard(sorted(desired[name])[0])
    rows = [{"email": email, "group": name} for name, emails in desired.items() for email in sorted(emails)]
    # An addition and a removal can cancel out; count the groups that really differ.
    differing = sum(1 for name, members in current.items() if {u.user_name for u in members} != desired[name])
    return rows, differing


def state_of(emu: EmulatorServer) -> dict[str, set[str]]:
    email = {u.id: u.user_name for u in emu.state.users()}
    return {g.display_name: {email[m] for m in g.members} for g in emu.state.groups.groups()}


def desired_state(rows: list[dict[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["group"], set()).add(row["email"])
    return out


def client_for(emu: EmulatorServer) -> OmniScimClient:
    return OmniScimClient(
        emu.api_url,
        KEY,
        rate_limit_per_minute=1_000_000,
        retry_policy=RetryPolicy(max_attempts=1),
        page_size=PAGE,
    )


def run_sync(emu: EmulatorServer, rows: list[dict[str, str]]) -> Case:
    started = time.monotonic()
    with client_for(emu) as client:
        api = GroupsApi(client)
        users, groups = client.list_users(), api.list_groups()
        plan = build_group_plan(rows, users, groups, mode="mirror")
        check_group_plan(plan, max_changes=len(rows))
        result = apply_group_plan(api, plan, {g.id: g for g in groups})
        assert not result.stopped, result.stopped
        stats = client.stats.snapshot()
    return Case(
        "sync (one PATCH per changed group)",
        stats["requests"],
        stats["by_method"],
        time.monotonic() - started,
    )


def run_put_baseline(emu: EmulatorServer, rows: list[dict[str, str]]) -> Case:
    started = time.monotonic()
    wanted = desired_state(rows)
    with client_for(emu) as client:
        ids = {u.user_name.lower(): u.id for u in client.list_users()}
        api = GroupsApi(client)
        for group in api.list_groups_page(1, PAGE, exclude_members=True).resources:  # G <= 100 here
            current = api.get_group(group.id)  # read ...
            members = [
                {"display": e, "value": ids[e.lower()]} for e in sorted(wanted.get(group.display_name, ()))
            ]
            body: dict[str, Any] = {"displayName": current.display_name, "members": members}  # ... modify ...
            client.request("PUT", f"/scim/v2/groups/{group.id}", body=body)  # ... PUT the whole group
        stats = client.stats.snapshot()
    return Case(
        "read-modify-PUT per group", stats["requests"], stats["by_method"], time.monotonic() - started
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds: 300 users, 20 groups, 20 changes"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.groups, args.changed = 300, 20, 20
    if args.groups > PAGE:
        parser.error(f"--groups at most {PAGE} (the baseline reads one page of groups)")
    n, g, c = args.users, args.groups, args.changed
    config = EmulatorConfig(api_keys=[KEY], rate_limit_enabled=False, max_page_size=PAGE)
    with EmulatorServer(config) as emu:
        rows, changed_groups = setup(emu, n, g, c, args.seed)
        start = state_of(emu)
        sync = run_sync(emu, rows)
        after_sync = state_of(emu)
        # The baseline starts from the same state.
        emu.reset()
        setup(emu, n, g, c, args.seed)
        assert state_of(emu) == start
        put = run_put_baseline(emu, rows)
        after_put = state_of(emu)
        puts_accepted = emu.stats.snapshot()["requests_by_method"].get("PUT", 0)
    want = desired_state(rows)
    assert after_sync == want, "the sync did not reach the warehouse's state"
    assert after_put == want, "the baseline did not reach the warehouse's state"
    least = listing_page_count(n, PAGE) + listing_page_count(g, PAGE) + changed_groups
    print(f"N={n} users, G={g} groups, c={c} changed memberships in {changed_groups} groups")
    print(
        "least possible: user and group pages (drift-checked: each overlaps the last by one) + "
        f"changed groups = {least} requests\n"
    )
    print(f"{'case':<38}{'requests':>9}{'vs least':>10}{'min @60/min':>13}{'seconds':>9}  by method")
    for case in (sync, put):
        print(
            f"{case.label:<38}{case.requests:>9}{case.requests / least:>9.2f}x{case.minutes_at_60:>13.1f}"
            f"{case.seconds:>9.2f}  {case.by_method}"
        )
    print(
        f"\nbaseline PUTs accepted by the emulator: {puts_accepted}; both cases end in the warehouse's state"
    )
    ok = sync.requests == least
    print("target (sync sends exactly the least possible):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
