"""apply_group_plan on its own: a stop request, the canary gate and circuit breaker it shares with the
attribute sync, and the benchmark's quick run."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

from omni_provider.client import GroupsApi, OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import OmniGroupWriteSemanticsError, OmniWriteSemanticsError
from omni_provider.sync.engine.breaker import NOT_ATTEMPTED, WriteGate, halted_error
from omni_provider.sync.groups.apply import apply_group_plan
from omni_provider.sync.groups.outcome import MembershipStatus
from omni_provider.sync.groups.plan import build_group_plan

ROOT = Path(__file__).resolve().parents[3]


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
    # The one wording of every target, and the field a report reader and the snapshot rely on.
    assert {o.error for o in result.outcomes} == {NOT_ATTEMPTED}
    assert all(o.never_sent and o.stopped for o in result.outcomes)
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


class _Recorder:
    """Wraps a GroupsApi's writes: the (kind, start, end) of each, each held a moment so overlaps show."""

    def __init__(self, api: GroupsApi) -> None:
        self.api = api
        self.client = api.client
        self.lock = threading.Lock()
        self.writes: list[tuple[str, float, float]] = []

    def _timed(self, kind: str, call: Any) -> Any:
        start = time.monotonic()
        time.sleep(0.05)
        try:
            return call()
        finally:
            with self.lock:
                self.writes.append((kind, start, time.monotonic()))

    def create_group(self, name: str, members: Any = ()) -> Any:
        return self._timed("create", lambda: self.api.create_group(name, members))

    def update_members(self, group: Any, *, add: Any = (), remove: Any = (), display: Any = None) -> Any:
        kind = "remove" if remove else "add"
        return self._timed(
            kind, lambda: self.api.update_members(group, add=add, remove=remove, display=display)
        )

    def alone(self, write: tuple[str, float, float]) -> bool:
        """No other write overlapped this one."""
        _kind, start, end = write
        return all(e <= start or s >= end for k, s, e in self.writes if (k, s, e) != write)


def test_a_create_canary_does_not_open_the_gate_for_a_member_removal(omni_emulator: EmulatorServer) -> None:
    users = omni_emulator.state.seed_users(14)
    for g in range(6):
        omni_emulator.state.groups.add_group(f"R{g}", [users[2 * g].id, users[2 * g + 1].id])
    rows = [{"email": users[k].user_name, "group": "Fresh"} for k in (12, 13)]
    rows += [{"email": users[2 * g].user_name, "group": f"R{g}"} for g in range(6)]  # drop each 2nd member
    client = OmniScimClient(
        omni_emulator.api_url, omni_emulator.config.api_keys[0], retry_policy=RetryPolicy(max_attempts=1)
    )
    api = GroupsApi(client)
    omni_groups = api.list_groups()
    plan = build_group_plan(rows, client.list_users(), omni_groups, mode="mirror", create_missing_groups=True)
    assert plan.changes[0].creates and all(c.remove for c in plan.changes[1:])
    recorder = _Recorder(api)
    gate = WriteGate()
    with client:
        result = apply_group_plan(
            recorder,  # type: ignore[arg-type]
            plan,
            {g.id: g for g in omni_groups},
            max_workers=6,
            gate=gate,
        )
    assert result.stopped is None and result.groups_created == ["Fresh"]
    statuses = [o.status for o in result.outcomes]
    assert statuses.count(MembershipStatus.ADDED) == 2 and statuses.count(MembershipStatus.REMOVED) == 6
    recorder.writes.sort(key=lambda w: w[1])
    first_removal = next(w for w in recorder.writes if w[0] == "remove")
    assert recorder.alone(first_removal)  # the create did not vouch for it: it went alone
    assert gate.canaries == 2  # the create, then the first removal; the other removals at full pace
    removals = [w for w in recorder.writes if w[0] == "remove"]
    assert not all(recorder.alone(w) for w in removals[1:])  # full pace after the removal canary


def test_an_add_to_an_empty_group_does_not_vouch_for_one_to_a_group_with_members(
    omni_emulator: EmulatorServer,
) -> None:
    """A PATCH applied as a replace of the member list looks right on an empty group; only a canary to a
    group holding other members shows it, so that one goes alone and trips the breaker."""
    users = omni_emulator.state.seed_users(30)
    omni_emulator.state.groups.add_group("T0", [])
    for g in range(1, 6):
        omni_emulator.state.groups.add_group(f"T{g}", [users[g * 5].id, users[g * 5 + 1].id])
    omni_emulator.config.apply_patch({"group_patch_mode": "replace_members"})
    rows = [{"email": users[g * 5 + 3].user_name, "group": f"T{g}"} for g in range(6)]
    client = OmniScimClient(
        omni_emulator.api_url, omni_emulator.config.api_keys[0], retry_policy=RetryPolicy(max_attempts=1)
    )
    api = GroupsApi(client)
    omni_groups = api.list_groups()
    plan = build_group_plan(rows, client.list_users(), omni_groups)
    with client:
        result = apply_group_plan(api, plan, {g.id: g for g in omni_groups}, max_workers=8)
    assert omni_emulator.stats.snapshot()["requests_by_method"]["PATCH"] == 2  # T0, then one canary
    assert isinstance(result.breaker, OmniWriteSemanticsError)
    damaged = [g for g in range(1, 6) if len(omni_emulator.state.groups.named(f"T{g}")[0].members) != 2]
    assert len(damaged) == 1  # at most one group with members damaged, whatever the concurrency


def test_a_breaker_trip_reports_every_other_membership_never_sent(omni_emulator: EmulatorServer) -> None:
    users = omni_emulator.state.seed_users(40)
    for g in range(8):
        omni_emulator.state.groups.add_group(f"Team {g}", [users[g * 5].id, users[g * 5 + 1].id])
    omni_emulator.config.apply_patch({"group_patch_mode": "replace_members"})
    rows = [{"email": users[g * 5 + k].user_name, "group": f"Team {g}"} for g in range(8) for k in (2, 3)]
    client = OmniScimClient(
        omni_emulator.api_url, omni_emulator.config.api_keys[0], retry_policy=RetryPolicy(max_attempts=1)
    )
    api = GroupsApi(client)
    omni_groups = api.list_groups()
    plan = build_group_plan(rows, client.list_users(), omni_groups)
    gate = WriteGate()
    with client:
        result = apply_group_plan(api, plan, {g.id: g for g in omni_groups}, max_workers=8, gate=gate)

    reason = "group 'Team 0': Omni reports members this write did not touch are gone"
    assert gate.tripped and gate.reason == reason == result.stopped
    assert result.breaker is gate.error and isinstance(result.breaker, OmniGroupWriteSemanticsError)
    tripped = [o for o in result.outcomes if o.group == "Team 0"]
    others = [o for o in result.outcomes if o.group != "Team 0"]
    assert len(tripped) == 2 and len(others) == 14
    assert all(o.status is MembershipStatus.FAILED and not o.never_sent for o in tripped)
    assert all(o.status is MembershipStatus.FAILED for o in others)
    assert {o.error for o in others} == {halted_error(reason)}
    assert all(o.never_sent and o.stopped for o in others)
    assert omni_emulator.stats.snapshot()["requests_by_method"]["PATCH"] == 1
