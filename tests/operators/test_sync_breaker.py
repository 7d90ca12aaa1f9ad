"""Issue 15: the canary write and the circuit breaker, against the emulator playing the PATCH semantics
the client does not assume (``patch_semantics="other"``): a no-path map replace that replaces the whole
map, and per-attribute paths refused with 400."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY, TEST_API_KEY_2, omni_connection_json
from test_sync_operator import UNMANAGED, attrs, method_count, read_report, run_sync, seed

from omni_provider import UpdateOmniUserOperator
from omni_provider._compat import AirflowFailException
from omni_provider.client import OmniScimClient, UpdateResult
from omni_provider.emulator import EmulatorServer
from omni_provider.sync import SyncMode, SyncSpec, build_plan
from omni_provider.sync.users.apply import WriteGate, WritesHaltedError, apply_plan

USERS, CHANGED, CREATES = 300, 40, 10


def print_figures(title: str, figures: dict[str, Any]) -> None:
    """One greppable line for ``pytest -s`` (the README's Reliability figures come from these)."""
    print(f"\n{title} FIGURES " + json.dumps(figures, sort_keys=True, default=str))


@pytest.fixture
def emu(omni_connection: EmulatorServer) -> EmulatorServer:
    return omni_connection


def _connect(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    """Three keys and the given PATCH form (connection extras)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_connection_json(
            emu.base_url,
            additional_api_keys=f"{TEST_API_KEY_2},{TEST_API_KEY}-third",
            patch_form=form,
        ),
    )
    emu.config.api_keys = [TEST_API_KEY, TEST_API_KEY_2, f"{TEST_API_KEY}-third"]


def _damaged(emu: EmulatorServer, emails: list[str], before: dict[str, dict[str, Any]]) -> list[str]:
    """Users that lost or changed anything the sync did not mean to change (unmanaged keys, the name)."""
    out = []
    for email in emails:
        now = attrs(emu, email)
        if any(now.get(k) != v for k, v in before[email].items() if k not in ("region", "cost_centre")):
            out.append(email)
    return out


@pytest.mark.parametrize("form", ["map_replace", "attribute_path"])
@pytest.mark.parametrize("mode", ["update", "upsert"])
def test_surprising_semantics_damage_at_most_one_user_and_stop_the_run(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, form: str, mode: str
) -> None:
    emails = seed(emu, USERS)
    _connect(emu, monkeypatch, form)
    emu.config.apply_patch({"patch_semantics": "other"})
    before = {e: attrs(emu, e) for e in emails}
    changed = set(range(0, USERS, USERS // CHANGED))
    rows: list[dict[str, Any]] = [
        {"userName": e, "name": "N", "region": "eu-west" if i in changed else "us-east", "cost_centre": None}
        for i, e in enumerate(emails)
    ]
    if mode == "upsert":  # creates first: they must not open the gate for the updates
        rows = [
            {"userName": f"new{i}@example.com", "name": f"New {i}", "region": "ap", "cost_centre": i}
            for i in range(CREATES)
        ] + rows
    report = tmp_path / "halted.jsonl"
    run = run_sync(
        rows=rows,
        mode=mode,
        display_name_column="name" if mode == "upsert" else None,
        max_workers=16,
        report_path=str(report),
        raises=AirflowFailException,  # never retried by Airflow
    )

    damaged = _damaged(emu, emails, before)
    assert len(damaged) == (1 if form == "map_replace" else 0)
    patches = method_count(emu, "PATCH")
    assert patches == 1  # the canary, and nothing after it
    message = str(run.error)
    if form == "map_replace":
        user = damaged[0]
        assert f"user {user}" in message and "vanished" in message
        assert "'department' was \"Sales\", Omni now reports absent" in message or "'regions'" in message
        assert "What to check" in message and "patch_form" in message
    else:
        assert "HTTP 400" in message and "patch_form" in message

    records = read_report(report)
    assert len(records) == len(rows)  # every row reported
    by_status: dict[str, int] = {}
    for record in records:
        by_status[record["status"]] = by_status.get(record["status"], 0) + 1
    assert by_status.get("applied", 0) == (CREATES if mode == "upsert" else 0)
    stopped = [
        r for r in records if r["status"] == "failed" and r["error"].startswith("not attempted (stopped: ")
    ]
    assert len(stopped) == len(changed) - 1
    assert run.pushed["stopped"] and run.pushed["complete"] is False
    print_figures(
        f"breaker[{form},{mode}]",
        {
            "users": USERS + (CREATES if mode == "upsert" else 0),
            "rows": len(rows),
            "updates planned": len(changed),
            "keys": 3,
            "workers": 16,
            "PATCHes sent": patches,
            "users damaged": len(damaged),
            "rows reported": len(records),
            "not attempted (stopped)": len(stopped),
            "outcomes": by_status,
            "exception": type(run.error).__name__,
        },
    )


def test_canary_goes_alone_then_full_pace(emu: EmulatorServer) -> None:
    """Whatever the concurrency, no other write is in flight while a canary is, and none starts before it
    is verified; after it, writes overlap again."""
    emails = seed(emu, 60)
    emu.config.apply_patch({"faults": {"slow": 1.0}, "fault_methods": ["PATCH"], "slow_seconds": 0.02})
    lock = threading.Lock()
    in_flight: list[int] = [0]
    seen: list[tuple[bool, int]] = []  # (canary, writes in flight when it started)
    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1_000_000) as client:
        real = client.update_user

        def tracked(*args: Any, **kwargs: Any) -> UpdateResult:
            with lock:
                in_flight[0] += 1
                seen.append((bool(kwargs.get("confirm_with_read")), in_flight[0] - 1))
            try:
                return real(*args, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        client.update_user = tracked  # type: ignore[method-assign]
        users = client.list_users()
        rows = [{"userName": e, "region": None if i % 2 else "eu-west"} for i, e in enumerate(emails)]
        plan = build_plan(rows, users, SyncSpec(attributes={"region": "region"}))
        gate = WriteGate()
        outcomes = apply_plan(client, plan, {u.id: u for u in users}, max_workers=16, gate=gate)
    assert all(o.status.value == "applied" for o in outcomes)
    canaries = [others for canary, others in seen if canary]
    assert gate.canaries == len(canaries) == 2  # one per kind of change: set, unset
    assert canaries == [0, 0]
    assert seen[0][0]  # the run's first write is a canary
    assert max(others for _canary, others in seen) > 1  # then full pace
    print_figures(
        "canary",
        {
            "writes": len(seen),
            "canaries": gate.canaries,
            "writes in flight beside a canary": canaries,
            "max writes in flight after": max(others for _canary, others in seen) + 1,
        },
    )


def test_the_canary_costs_about_one_request_not_a_window(emu: EmulatorServer) -> None:
    """With the switch off, a rate-limited run with the canary against the same run with the gate told in
    advance that the kind of change is verified: the difference is about one request, far from a window."""
    window, limit, n = 1.0, 24, 60
    # The emulator allows a fifth more than the client is paced to, so a busy machine's jitter cannot
    # turn into 429s (whose back-off would swamp what is measured).
    emu.config.apply_patch({"rate_limit_enabled": True, "rate_limit": 30, "rate_window": window})
    walls: dict[str, float] = {}
    for label in ("with canary", "without canary"):
        emu.reset()
        emails = seed(emu, n)
        with OmniScimClient(
            emu.api_url, TEST_API_KEY, rate_limit_per_minute=limit, rate_window_seconds=window
        ) as client:
            users = client.list_users()
            rows = [{"userName": e, "region": "eu-west"} for e in emails]
            plan = build_plan(rows, users, SyncSpec(attributes={"region": "region"}))
            gate = WriteGate()
            if label == "without canary":
                gate.verified(frozenset({"set", "set+others"}))
            started = time.monotonic()
            outcomes = apply_plan(client, plan, {u.id: u for u in users}, gate=gate)
            walls[label] = time.monotonic() - started
        assert all(o.status.value == "applied" for o in outcomes)
        assert emu.stats.snapshot()["responses_429"] == 0
    cost = walls["with canary"] - walls["without canary"]
    figures = {k: round(v, 3) for k, v in walls.items()}
    print_figures(
        "canary cost",
        {
            "writes": n,
            "limit": f"{limit}/{window:g}s",
            "slot s": round(window / limit, 3),
            **figures,
            "cost s": round(cost, 3),
        },
    )
    assert cost < window / 3  # one request (a paced slot plus its round trip), not a window


def test_single_user_operator_stops_with_a_clear_message(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.state.add_user("ada@example.com", "Ada", {"region": "us-east", **UNMANAGED})
    _connect(emu, monkeypatch, "map_replace")
    emu.config.apply_patch({"patch_semantics": "other"})
    op = UpdateOmniUserOperator(task_id="one", user_name="ada@example.com", attributes={"region": "EMEA"})
    with pytest.raises(AirflowFailException) as info:
        op.execute({})
    message = str(info.value)
    assert "user ada@example.com" in message and "vanished" in message
    assert ("'department'" in message or "'regions'" in message) and "What to check" in message


def test_single_user_operator_another_writer_is_not_a_failure(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 6: old code raised AirflowFailException for this write, which had landed."""
    emu.state.add_user("ada@example.com", "Ada", {"region": "us-east", **UNMANAGED})
    emu.config.apply_patch({"concurrent_writer": {"attribute": "department", "value": "Legal"}})
    result = UpdateOmniUserOperator(
        task_id="one", user_name="ada@example.com", attributes={"region": "EMEA"}
    ).execute({})
    assert result["action"] == "updated"
    assert attrs(emu, "ada@example.com") == {**UNMANAGED, "department": "Legal", "region": "EMEA"}


def test_apply_plan_raises_after_settling_every_row(emu: EmulatorServer) -> None:
    emails = seed(emu, 30)
    emu.config.apply_patch({"patch_semantics": "other"})
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, patch_form="map_replace"
    ) as client:
        users = client.list_users()
        rows = [{"userName": e, "region": "eu-west"} for e in emails]
        plan = build_plan(rows, users, SyncSpec(attributes={"region": "region"}, mode=SyncMode.UPDATE))
        settled: dict[int, Any] = {}
        started = time.monotonic()
        with pytest.raises(WritesHaltedError) as info:
            apply_plan(client, plan, {u.id: u for u in users}, max_workers=8, on_outcome=settled.__setitem__)
    assert time.monotonic() - started < 10
    assert sorted(settled) == list(range(30)) and len(info.value.outcomes) == 30
    assert "circuit breaker" in str(info.value) and "29 not attempted" in str(info.value)


def test_a_canary_with_nothing_else_to_lose_does_not_open_the_gate(emu: EmulatorServer) -> None:
    """The first user holds only the managed attribute: its write cannot show a whole-map replace. The next
    user holding other attributes must go alone too; otherwise many would be damaged at full pace."""
    emu.state.add_user("bare@example.com", "Bare", {"region": "us-east"})
    emails = ["bare@example.com", *seed(emu, 40)[:40]]
    emu.config.apply_patch({"patch_semantics": "other"})
    before = {e: attrs(emu, e) for e in emails}
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, patch_form="map_replace"
    ) as client:
        users = {u.user_name: u for u in client.list_users()}
        ordered = [users[e] for e in emails]
        rows = [{"userName": e, "region": "eu-west"} for e in emails]
        plan = build_plan(rows, ordered, SyncSpec(attributes={"region": "region"}))
        with pytest.raises(WritesHaltedError):
            apply_plan(client, plan, {u.id: u for u in ordered}, max_workers=16)
    assert method_count(emu, "PATCH") == 2  # the bare canary, then one canary with something to lose
    assert len(_damaged(emu, emails, before)) == 1
