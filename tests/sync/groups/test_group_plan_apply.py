"""Plan, then apply exactly the plan, for the group target: the plan's items are the member adds and
removes per group; the apply re-reads the planned groups and skips what changed in Omni since."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY

from omni_provider.client import GroupsApi, OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncFailedError
from omni_provider.sync.engine.plan_artifact import CHANGED_SINCE_PLAN, PlanStore
from omni_provider.sync.groups.options import GroupSyncSpec
from omni_provider.sync.groups.plan import GroupSyncMode
from omni_provider.sync.groups.plan_file import group_plan_artifact, group_review
from omni_provider.sync.groups.run import GroupSyncRun
from omni_provider.sync.planned import load_planned_run


def members(emu: EmulatorServer, name: str) -> set[str]:
    (group,) = emu.state.groups.named(name)
    ids = {m["value"] if isinstance(m, dict) else m for m in group.members}
    return {u.user_name for u in emu.state.users() if u.id in ids}


@pytest.fixture
def client(omni_emulator: EmulatorServer) -> Any:
    with OmniScimClient(
        omni_emulator.api_url,
        TEST_API_KEY,
        rate_limit_per_minute=1e6,
        retry_policy=RetryPolicy(max_attempts=1),
    ) as omni:
        yield omni


def test_plan_then_apply_the_group_plan(omni_emulator: EmulatorServer, client: Any, tmp_path: Path) -> None:
    emu = omni_emulator
    users = emu.state.seed_users(6)
    emails = [u.user_name for u in users]
    emu.state.groups.add_group("Sales", [users[0].id, users[5].id])
    emu.state.groups.add_group("Ops", [])
    rows = [
        {"email": emails[0], "group": "Sales"},
        {"email": emails[1], "group": "Sales"},
        {"email": emails[2], "group": "Sales"},
        {"email": emails[3], "group": "Ops"},
        {"email": emails[4], "group": "Ops"},
    ]
    spec = GroupSyncSpec(groups=("Sales", "Ops"), mode=GroupSyncMode.MIRROR)
    run = GroupSyncRun(client, spec, plan_only=True, max_changes=10)
    assert run.run(rows)["stage"] == "planned"
    assert run.plan is not None
    store = PlanStore(tmp_path / "groups.plan.json")
    digest = store.save(group_plan_artifact(run.plan, omni=client.base_url))
    artifact = store.load()
    sales = next(item for item in artifact.items if item["group"] == "Sales")
    assert {m["email"] for m in sales["add"]} == {emails[1], emails[2]}
    assert [m["email"] for m in sales["remove"]] == [emails[5]]
    assert "PATCH" not in emu.stats.snapshot()["requests_by_method"]
    text = group_review(artifact)
    assert "Mirror: 1 member(s) absent from the input are removed" in text
    assert f"| Sales | add | {emails[1]} |" in text

    # After the review someone adds emails[2] to Sales (as planned: nothing left to do for it) and deletes
    # Ops (its planned members cannot be added: rejected); the warehouse moves too (never read again).
    GroupsApi(client).update_members(sales["group_id"], add=[users[2].id], remove=[])
    (ops,) = emu.state.groups.named("Ops")
    emu.state.groups.delete(ops.id)
    emu.stats.reset()
    planned = load_planned_run(client, store, plan_digest=digest)
    with pytest.raises(SyncFailedError) as failed:
        planned.run()
    summary = failed.value.summary
    assert summary["outcomes"] == {
        "added": 1, "removed": 1, "unchanged": 1, "rejected": 2, "failed": 0, "planned": 0
    }  # fmt: skip
    assert summary["changed_since_plan"] == 2
    assert {s["error"] for s in summary["errors_sample"]} == {
        f"{CHANGED_SINCE_PLAN}: the group is no longer in Omni"
    }
    assert members(emu, "Sales") == {emails[0], emails[1], emails[2]}
    # One write (Sales); the reads are one GET per planned group (few groups planned).
    by_route = emu.stats.snapshot()["requests_by_route"]
    assert sum(n for route, n in by_route.items() if route.startswith("PATCH")) == 1
    assert sum(n for route, n in by_route.items() if route.startswith("GET /scim/v2/groups/")) == 2
    assert "GET /scim/v2/users" not in by_route


def test_a_group_to_create_is_created_unless_it_exists_by_then(
    omni_emulator: EmulatorServer, client: Any, tmp_path: Path
) -> None:
    emu = omni_emulator
    users = emu.state.seed_users(2)
    rows = [{"email": users[0].user_name, "group": "Ops"}, {"email": users[1].user_name, "group": "Audit"}]
    spec = GroupSyncSpec(groups=("Ops", "Audit"), create_missing_groups=True)
    run = GroupSyncRun(client, spec, plan_only=True)
    run.run(rows)
    store = PlanStore(tmp_path / "plan.json")
    digest = store.save(run.plan_artifact())
    assert {item["group"]: item["group_id"] for item in store.load().items} == {"Ops": None, "Audit": None}
    emu.state.groups.add_group("Audit", [])  # created by hand after the review
    with pytest.raises(SyncFailedError) as failed:
        load_planned_run(client, store, plan_digest=digest).run()
    summary = failed.value.summary
    assert summary["outcomes"]["added"] == 1
    assert summary["errors_sample"][0]["error"] == f"{CHANGED_SINCE_PLAN}: the group exists now"
    assert members(emu, "Ops") == {users[0].user_name}
    assert members(emu, "Audit") == set()
