"""The run's log as an Omni admin reads it: each change ``key: attribute old -> new`` (the first 200, then
how many more and where), every item that did not sync by its key and reason at ERROR, plain counts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import MANAGED, seed

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncFailedError
from omni_provider.sync import SyncSpec
from omni_provider.sync.engine.outcome import CHANGES_SHOWN
from omni_provider.sync.engine.report import JsonlFileSink
from omni_provider.sync.groups.run import GroupSyncRun, GroupSyncSpec
from omni_provider.sync.users.run import SyncRun


def spec() -> SyncSpec:
    return SyncSpec.from_user_args(MANAGED, key_column="email", mode="update")


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def block(caplog: pytest.LogCaptureFixture, level: int, heading: str) -> list[str]:
    """The lines under the one log message starting with ``heading``."""
    (message,) = [m for m in messages(caplog, level) if m.startswith(heading)]
    return message.splitlines()[1:]


def test_every_change_and_every_rejected_row_is_logged_by_its_email(
    emu: EmulatorServer, client: OmniScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    seed(emu, 2)
    rows = [
        {"email": "user001@example.com", "region": "eu-west", "cost_centre": 4100},
        {"email": "user002@example.com", "region": "us-east", "cost_centre": None},  # already so
        {"email": "nobody@example.com", "region": "eu-west", "cost_centre": 1},
    ]
    caplog.set_level(logging.INFO, "omni_provider.sync")
    with pytest.raises(SyncFailedError):
        SyncRun(client, spec()).run(rows)

    assert block(caplog, logging.INFO, "Changes written to Omni, 2:") == [
        '  user001@example.com: region "us-east" -> "eu-west"',
        "  user001@example.com: cost_centre (unset) -> 4100",
    ]
    assert block(caplog, logging.ERROR, "Rejected before sending, 1") == [
        "  nobody@example.com: no Omni user with this email"
    ]
    assert "1 of 3 rows did not sync: 1 rejected, 0 failed writes (each listed above)" in messages(
        caplog, logging.ERROR
    )
    # Counts as aligned text, never a Python dict; the canary named in plain words first.
    assert block(caplog, logging.INFO, "Plan:") == [
        "  create     0",
        "  update     1",
        "  unset      0",
        "  unchanged  1",
        "  rejected   1",
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "{" not in text and "[" not in text
    (canary,) = [m for m in messages(caplog, logging.INFO) if "canary" in m.lower()]
    assert canary.startswith("First write of its kind to user001@example.com (sets attributes")
    assert canary.endswith("(canary)")


def test_a_dry_run_logs_its_planned_changes(
    emu: EmulatorServer, client: OmniScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    seed(emu, 1)
    caplog.set_level(logging.INFO, "omni_provider.sync")
    rows = [{"email": "user001@example.com", "region": "", "cost_centre": 7}]
    summary = SyncRun(client, spec(), dry_run=True).run(rows)
    assert summary["outcomes"]["planned"] == 1 and summary["verdict"] == "passed"
    assert block(caplog, logging.INFO, "Planned changes (dry run: nothing was written), 2:") == [
        '  user001@example.com: region "us-east" -> (unset)',  # an empty cell unsets
        "  user001@example.com: cost_centre (unset) -> 7",
    ]
    assert "All 1 rows would sync (dry run): 1 planned" in messages(caplog, logging.INFO)


def test_the_first_200_changes_are_listed_then_a_count_and_the_report(
    emu: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, CHANGES_SHOWN + 30)
    report = tmp_path / "run.jsonl"
    caplog.set_level(logging.INFO, "omni_provider.sync")
    rows = [{"email": e, "region": "eu-west", "cost_centre": None} for e in emails]
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=1)
    ) as client:
        SyncRun(client, spec(), dry_run=True, sinks=[JsonlFileSink(report)]).run(rows)
    lines = block(caplog, logging.INFO, f"Planned changes (dry run: nothing was written), {len(emails)}:")
    assert len(lines) == CHANGES_SHOWN + 1
    assert lines[0] == '  user001@example.com: region "us-east" -> "eu-west"'
    assert lines[CHANGES_SHOWN - 1] == f'  user{CHANGES_SHOWN:03d}@example.com: region "us-east" -> "eu-west"'
    assert lines[-1] == f"  ... and 30 more, in the report {report.resolve()}"


def test_group_changes_and_rejected_memberships_are_logged_by_group_and_email(
    emu: EmulatorServer, client: OmniScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    users = {u.user_name: u.id for u in emu.state.seed_users(3)}
    emu.state.groups.add_group("Sales", [users["user00003@example.com"]])
    caplog.set_level(logging.INFO, "omni_provider.sync")
    rows: list[dict[str, Any]] = [
        {"email": "user00001@example.com", "team": "Sales"},
        {"email": "ghost@example.com", "team": "Sales"},
    ]
    run = GroupSyncRun(
        client,
        GroupSyncSpec.from_user_args(user_column="email", group_column="team", mode="mirror"),
        max_changes=10,
    )
    with pytest.raises(SyncFailedError):
        run.run(rows)
    assert block(caplog, logging.INFO, "Changes written to Omni, 2:") == [
        "  Sales: + user00001@example.com",
        "  Sales: - user00003@example.com",
    ]
    assert block(caplog, logging.ERROR, "Rejected before sending, 1") == [
        "  ghost@example.com in Sales: no Omni user has this email"
    ]
    assert run.summary["errors_sample"][0]["key"] == "ghost@example.com in Sales"
    assert "1 of 3 memberships did not sync: 1 rejected, 0 failed writes (each listed above)" in messages(
        caplog, logging.ERROR
    )
    (table,) = [m for m in messages(caplog, logging.INFO) if m.startswith("Group sync outcome by group")]
    assert table.splitlines()[1].startswith("group ")


def test_failed_writes_are_logged_by_email_and_error(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, 3)
    emu.context.faults.set_fail_next([{"status": 503, "count": 1, "methods": ["PATCH"]}])
    caplog.set_level(logging.INFO, "omni_provider.sync")
    rows = [{"email": e, "region": "eu-west", "cost_centre": None} for e in emails]
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=1)
    ) as client:
        run = SyncRun(client, spec())
        with pytest.raises(SyncFailedError):
            run.run(rows)
    (failed,) = block(
        caplog, logging.ERROR, "Failed writes, 1 (not confirmed by Omni; a re-run retries them)"
    )
    (sample,) = run.summary["errors_sample"]
    assert failed.startswith(f"  {sample['key']}: ") and "503" in failed
    assert sample["key"] in emails and sample["status"] == "failed"
    assert "1 of 3 rows did not sync: 0 rejected, 1 failed writes" in messages(caplog, logging.ERROR)[-1]
