"""Soak: a few thousand users synced through ``SyncOmniUserAttributesOperator`` while the emulator injects
every fault it knows, over loopback. Afterwards Omni must equal the desired state exactly.

Size and rates (printed with the figures; ``pytest -s`` shows them):

* ``OMNI_SOAK_USERS`` rows (default 1500, CI-sized: about 30-60 s here); ``OMNI_SOAK_USERS=10000`` for a
  longer local run. A fifth of the rows are new users (creates, upsert mode), the rest existing users.
* ``OMNI_SOAK_FAULT_RATE`` per request and per kind (default 0.02 = 2 %) for each of ``burst_429`` (3 in a
  row per key), ``error_500``, ``error_502``, ``error_503``, ``error_504``, ``drop_connection``, ``slow``
  (``SLOW_SECONDS`` > the client's ``timeout`` extra, so the client times out) and ``lost_response`` (the
  write is applied, the answer is cut: POSTs and PATCHes).

Guarantees checked after every run: the report holds every input row exactly once; every row reported
``applied`` or ``unchanged`` really holds the desired values in Omni ("rows lost" counts those that do not
and must be 0); no user is created twice. A run may leave rows ``failed`` when faults outlast a row's
retries; they are reported as failed and the next run (an Airflow task retry re-plans against live state)
fixes them. After at most ``MAX_RUNS`` runs Omni equals the desired state exactly, unmanaged keys
untouched, and one more run sends no write at all.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import omni_connection_json
from reliability_kit import RecordingTI, delta, emulator_writes, print_figures, read_report

from omni_provider._compat import AirflowException
from omni_provider.emulator import EmulatorServer
from omni_provider.emulator.config import FAULT_KINDS
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

SOAK_USERS = int(os.environ.get("OMNI_SOAK_USERS", "1500"))
FAULT_RATE = float(os.environ.get("OMNI_SOAK_FAULT_RATE", "0.02"))
FAULT_SEED = int(os.environ.get("OMNI_SOAK_SEED", "20260601"))
CLIENT_TIMEOUT = 1.0
SLOW_SECONDS = 1.6  # > CLIENT_TIMEOUT: a slow answer is a client-side timeout
#: Client attempts per request = MAX_RETRIES + 1; at 2 % per kind, 9 failures running is ~1e-8 per request.
MAX_RETRIES = int(os.environ.get("OMNI_SOAK_CLIENT_RETRIES", "8"))
MAX_RUNS = int(os.environ.get("OMNI_SOAK_MAX_RUNS", "3"))
WORKERS = 16
#: The client's rate window, scaled down like the benchmark's: a 429 rests its key one window.
RATE_WINDOW = 0.5
MANAGED = ("region", "seat_tier", "cost_centre")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
TIERS = ("pro", "standard", "viewer", None)


def desired_for(i: int) -> dict[str, Any]:
    """Managed values of row i; about a quarter keep the seeded region, some unset tier or cost centre."""
    return {
        "region": REGIONS[(i * 7) % len(REGIONS)],
        "seat_tier": TIERS[i % len(TIERS)],
        "cost_centre": None if i % 9 == 0 else 4000 + i % 50,
    }


def build_world(emu: EmulatorServer, n_existing: int, n_new: int) -> tuple[list[dict[str, Any]], dict]:
    """Seed Omni and build the input rows; returns (rows, expected attributes by casefolded email)."""
    emu.state.seed_users(n_existing)  # user00001@example.com..., region + (70 %) department
    expected: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for n, user in enumerate(emu.state.users(), start=1):
        attributes = dict(user.attributes)
        if n % 3 == 0:  # unmanaged keys the sync must never touch
            attributes["regions"] = ["EU", "US"]
        if n % 5 == 0:
            attributes["seat_tier"] = "legacy"  # managed: overwritten or unset
        emu.state.replace_user(user.evolve(attributes=attributes))
        want = desired_for(n)
        shown = user.user_name.upper() if n % 4 == 0 else user.user_name  # Omni matches case-insensitively
        rows.append({"email": f" {shown} " if n % 11 == 0 else shown, "name": user.display_name, **want})
        merged = {k: v for k, v in attributes.items() if k not in MANAGED}
        merged.update({k: v for k, v in want.items() if v is not None})
        expected[user.user_name.casefold()] = merged
    for j in range(1, n_new + 1):
        email = f"New.User{j:05d}@Example.com"
        want = desired_for(n_existing + j)
        rows.append({"email": email, "name": f"New User {j}", **want})
        expected[email.casefold()] = {k: v for k, v in want.items() if v is not None}
    return rows, expected


def mismatches(emu: EmulatorServer, expected: dict[str, dict[str, Any]], keys: list[str]) -> list[str]:
    out = []
    for key in keys:
        user = emu.state.find_by_email(key)
        if user is None or dict(user.attributes) != expected[key]:
            out.append(key)
    return out


@pytest.mark.timeout(max(600, SOAK_USERS // 10))  # ~40 s per 1000 rows here, with room to spare
def test_soak_sync_under_faults_converges_exactly(
    omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    emu = omni_emulator
    n_new = SOAK_USERS // 5
    n_existing = SOAK_USERS - n_new
    rows, expected = build_world(emu, n_existing, n_new)
    assert len(rows) == SOAK_USERS
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_connection_json(
            emu.base_url, timeout=CLIENT_TIMEOUT, max_retries=MAX_RETRIES, rate_window_seconds=RATE_WINDOW
        ),
    )
    rates = dict.fromkeys(FAULT_KINDS, FAULT_RATE)
    emu.config.apply_patch({"faults": rates, "fault_seed": FAULT_SEED, "slow_seconds": SLOW_SECONDS})
    emu.context.faults.reseed(FAULT_SEED)
    emu.stats.reset()

    figures: dict[str, Any] = {
        "rows": SOAK_USERS,
        "existing_users": n_existing,
        "new_users": n_new,
        "fault_rate_per_kind": FAULT_RATE,
        "client_timeout_s": CLIENT_TIMEOUT,
        "slow_s": SLOW_SECONDS,
        "client_attempts": MAX_RETRIES + 1,
    }
    client_requests = client_retries = 0
    rows_lost = 0
    statuses_by_run: list[dict[str, int]] = []
    started = time.monotonic()
    runs = 0
    for run in range(1, MAX_RUNS + 1):
        runs = run
        ti = RecordingTI()
        report = tmp_path / f"soak-run{run}.jsonl"
        op = SyncOmniUserAttributesOperator(
            task_id="soak",
            rows=rows,
            match_on="userName",
            key_column="email",
            display_name_column="name",
            attributes=list(MANAGED),
            mode="upsert",
            max_workers=WORKERS,
            report_path=str(report),
            progress_every=3600,
        )
        writes_before = emulator_writes(emu)
        try:
            op.execute({"ti": ti, "run_id": f"soak-{run}"})  # type: ignore[arg-type]
            failed_run = False
        except AirflowException:
            failed_run = True  # Airflow would retry the task; the next loop turn is that retry
        summary = ti.pushed.get("sync_summary")
        if summary is None:
            # Failed while reading (definitions or user list) after all retries: no plan, so no write.
            assert failed_run and not report.exists()
            assert emulator_writes(emu) == writes_before
            statuses_by_run.append({"failed_before_plan": SOAK_USERS})
            continue
        client_requests += summary["requests"]
        client_retries += summary["retries"]

        # Every input row is in the report exactly once, in order, with a status.
        records = read_report(report)
        assert [r["row"] for r in records] == list(range(1, SOAK_USERS + 1))
        statuses = Counter(r["status"] for r in records)
        statuses_by_run.append(dict(statuses))
        assert set(statuses) <= {"applied", "unchanged", "failed"}, statuses  # nothing rejected here
        assert failed_run == (statuses["failed"] > 0)
        # A row reported done really is done (lost = reported done but not in Omni).
        done = [r["key"] for r in records if r["status"] in ("applied", "unchanged")]
        rows_lost += len(mismatches(emu, expected, done))
        assert all(r["error"] for r in records if r["status"] == "failed")
        if not failed_run:
            break

    assert set(statuses_by_run[-1]) <= {"applied", "unchanged"}, f"not converged after {MAX_RUNS} runs"
    stats = emu.stats.snapshot()
    # Converged: Omni equals the desired state exactly, unmanaged keys included; nobody created twice.
    users = emu.state.users()
    emails = Counter(u.user_name.casefold() for u in users)
    assert len(users) == SOAK_USERS and max(emails.values()) == 1
    assert set(emails) == set(expected)
    assert mismatches(emu, expected, sorted(expected)) == []
    assert stats["users_created"] == n_new
    assert rows_lost == 0

    # One more run, faults still on: nothing differs, so no write is sent.
    writes_before = emulator_writes(emu)
    ti = RecordingTI()
    SyncOmniUserAttributesOperator(
        task_id="soak_again",
        rows=rows,
        key_column="email",
        display_name_column="name",
        attributes=list(MANAGED),
        mode="upsert",
        max_workers=WORKERS,
    ).execute({"ti": ti, "run_id": "soak-again"})  # type: ignore[arg-type]
    assert emulator_writes(emu) == writes_before
    assert ti.pushed["sync_summary"]["plan"]["unchanged"] == SOAK_USERS

    figures.update(
        {
            "runs_to_converge": runs,
            "seconds": round(time.monotonic() - started, 1),
            "client_requests": client_requests,
            "client_retries": client_retries,
            "server_requests": stats["requests_total"],
            "server_requests_by_method": stats["requests_by_method"],
            "faults_injected": dict(sorted(stats["faults_injected"].items())),
            "faults_injected_total": sum(stats["faults_injected"].values()),
            "responses_409": int(stats["responses_by_status"].get("409", 0)),
            "row_statuses_by_run": statuses_by_run,
            "rows_applied": sum(s.get("applied", 0) for s in statuses_by_run),
            "users_created": stats["users_created"],
            "rows_lost": rows_lost,
            "second_run_writes": emulator_writes(emu) - writes_before,
            "second_run_server_requests": delta(
                emu.stats.snapshot()["requests_by_method"], stats["requests_by_method"]
            ),
        }
    )
    print_figures("SOAK", figures)
