"""apply_group_plan on its own: a stop request, the canary order, and the benchmark's quick run."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

from omni_provider.client import GroupsApi, OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.groups_apply import apply_group_plan, not_attempted
from omni_provider.sync.groups_outcome import MembershipStatus
from omni_provider.sync.groups_plan import build_group_plan

ROOT = Path(__file__).resolve().parent.parent.parent


def _setup(emu: EmulatorServer, groups: int) -> tuple[OmniScimClient, Any, Any]:
    users = emu.state.seed_users(groups)
    for i in range(groups):
        emu.state.groups.add_group(f"G{i}", [])
    rows = [{"email": u.user_name, "group": f"G{i}"} for i, u in enumerate(users)]
    client = OmniScimClient(emu.api_url, emu.config.api_keys[0], retry_policy=RetryPolicy(max_attempts=1))
    api = GroupsApi(client)
    omni_groups = api.list_groups()
    plan = build_group_plan(rows, client.list_users(), omni_groups)
    return client, api, (plan, {g.id: g for g in omni_groups})


def test_a_stop_before_the_run_sends_nothing_and_reports_every_membership(
    omni_emulator: EmulatorServer,
) -> None:
    client, api, (plan, groups) = _setup(omni_emulator, 5)
    stop = threading.Event()
    stop.set()
    with client:
        result = apply_group_plan(api, plan, groups, stop=stop)
    assert result.stopped == "the task was stopped"
    assert {o.status for o in result.outcomes} == {MembershipStatus.FAILED}
    assert {o.error for o in result.outcomes} == {not_attempted("the task was stopped")}
    assert "PATCH" not in omni_emulator.stats.snapshot()["requests_by_method"]


def test_the_canary_is_the_first_write_and_the_rest_follow(omni_emulator: EmulatorServer) -> None:
    client, api, (plan, groups) = _setup(omni_emulator, 6)
    seen: list[int] = []
    with client:
        result = apply_group_plan(api, plan, groups, max_workers=4, on_outcome=lambda i, _o: seen.append(i))
    assert seen[0] == 0  # the first group's membership settled before any other
    assert {o.status for o in result.outcomes} == {MembershipStatus.ADDED}
    assert result.stopped is None


def test_benchmark_quick_run_meets_its_target() -> None:
    spec = importlib.util.spec_from_file_location("bench_groups", ROOT / "bench" / "bench_groups.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
