"""``diff_against="snapshot"`` for the email-only recipients target, against the emulator under each upsert
meaning: the first run lists and writes the snapshot (every attribute of each recipient); a re-run with
nothing changed reads no recipient and writes nothing; a change is written with the recipient read again
first, so unmanaged attributes changed in Omni since the snapshot are kept; the snapshot stays true after
the writes, after a failed run, and is replaced by a full listing every ``full_resync_every`` runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from recipients_testkit import (
    ROUTE,
    UNMANAGED,
    bulk_writes,
    listing_pages,
    recipient_state,
    route_count,
    seed_recipients,
    writes,
)

from omni_provider.client import OmniScimClient, OmniValidationError
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncFailedError
from omni_provider.sync.recipients.options import RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun
from omni_provider.sync.users.options import SyncOptions
from omni_provider.sync.users.run import SyncRun

MANAGED = ["region", "cost_centre"]
FILTERED = f"GET {ROUTE}?email"


def run(client: OmniScimClient, rows: list[dict[str, Any]], snapshot: Path, **options: Any) -> dict[str, Any]:
    opts = RecipientSyncOptions(
        attributes=MANAGED, diff_against="snapshot", snapshot_path=str(snapshot), **options
    )
    return RecipientSyncRun.from_options(client, opts).run(rows)


def filtered_reads(emu: EmulatorServer) -> int:
    return route_count(emu, FILTERED)


def recipient_requests(emu: EmulatorServer) -> int:
    """Every request to the email-only endpoints (listing pages, filtered reads, writes)."""
    return listing_pages(emu) + filtered_reads(emu) + writes(emu)


def stored(snapshot: Path) -> dict[str, Any]:
    return dict(json.loads(snapshot.read_text()))


def values_by_email(snapshot: Path) -> dict[str, dict[str, Any] | None]:
    return {user["userName"].lower(): user["values"] for user in stored(snapshot)["users"]}


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_a_snapshot_run_reads_only_what_it_needs_and_keeps_unmanaged_attributes(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, meaning: str
) -> None:
    emu.config.apply_patch({"email_only_upsert": meaning})
    snapshot = tmp_path / "recipients.json"
    emails = seed_recipients(emu, 100)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]

    # First run: no snapshot yet, so every recipient is listed; the snapshot holds every attribute.
    emu.stats.reset()
    first = run(client, rows, snapshot)
    assert first["diff_against"] == "omni" and first["diff_reason"] == "no snapshot yet"
    assert listing_pages(emu) == math.ceil(100 / 20) and writes(emu) == 0
    assert first["snapshot"]["written"] is True and first["snapshot"]["users"] == 100
    document = stored(snapshot)
    assert document["target"] == "email_recipients" and document["runs_since_full_resync"] == 0
    values = values_by_email(snapshot)
    assert values["r0003@example.com"] == {"region": "eu", "cost_centre": 1, **UNMANAGED}
    assert values["r0001@example.com"] == {"region": "eu", "cost_centre": 1}

    # Nothing changed: no recipient listed or read, nothing written.
    emu.stats.reset()
    second = run(client, rows, snapshot)
    assert second["diff_against"] == "snapshot"
    assert second["outcomes"]["unchanged"] == 100
    assert recipient_requests(emu) == 0
    assert second["snapshot"]["lookups"] == 0 and "reads" not in second["snapshot"]

    # Outside the sync, between the runs: r0003's unmanaged department changes, r0004 gains an attribute.
    emu.state.recipients.upsert("r0003@example.com", {"department": "Ops"}, "merge")
    emu.state.recipients.upsert("r0004@example.com", {"seat_tier": "gold"}, "merge")
    rows[2] = {"email": "R0003@example.com", "region": "us", "cost_centre": 1}
    rows[3] = {"email": "r0004@example.com", "region": "us", "cost_centre": 2}
    rows.append({"email": "new@example.com", "region": "apac", "cost_centre": 3})
    before = recipient_state(emu)
    emu.stats.reset()
    third = run(client, rows, snapshot)

    assert third["diff_against"] == "snapshot" and third["outcomes"]["applied"] == 3
    # One lookup (the new email), the two recipients written read again, the canary's fresh read; the
    # writes: the canary alone, then one bulk request.
    assert third["snapshot"]["lookups"] == 1 and third["snapshot"]["reads"] == 2
    assert filtered_reads(emu) == 1 + 2 + 1
    assert bulk_writes(emu) == 2 and writes(emu) == 2 and listing_pages(emu) == 0
    state = recipient_state(emu)
    assert state["r0003@example.com"] == {**UNMANAGED, "department": "Ops", "region": "us", "cost_centre": 1}
    assert state["r0004@example.com"] == {"region": "us", "cost_centre": 2, "seat_tier": "gold"}
    assert state["new@example.com"] == {"region": "apac", "cost_centre": 3}
    assert {
        e: v
        for e, v in state.items()
        if e not in ("r0003@example.com", "r0004@example.com", "new@example.com")
    } == {e: v for e, v in before.items() if e not in ("r0003@example.com", "r0004@example.com")}
    # The snapshot is true after the writes: the next run reads and writes nothing.
    values = values_by_email(snapshot)
    assert values["r0003@example.com"] == state["r0003@example.com"]
    assert values["r0004@example.com"] == state["r0004@example.com"]
    assert values["new@example.com"] == state["new@example.com"]
    emu.stats.reset()
    fourth = run(client, rows, snapshot)
    assert fourth["outcomes"]["unchanged"] == 101 and recipient_requests(emu) == 0


def test_every_full_resync_every_runs_lists_and_reports_drift(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    snapshot = tmp_path / "recipients.json"
    emails = seed_recipients(emu, 30)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]
    run(client, rows, snapshot, full_resync_every=2)
    emu.stats.reset()
    assert run(client, rows, snapshot, full_resync_every=2)["diff_against"] == "snapshot"
    assert recipient_requests(emu) == 0
    # A managed value changed outside the sync: the snapshot does not know, the full listing finds it.
    emu.state.recipients.upsert("r0005@example.com", {"region": "us"}, "merge")
    emu.stats.reset()
    third = run(client, rows, snapshot, full_resync_every=2)
    assert third["diff_against"] == "omni" and third["diff_reason"] == "full resync (every 2 runs)"
    assert listing_pages(emu) == math.ceil(30 / 20)
    assert third["drift"]["values"] == 1 and third["drift"]["users"] == 1
    assert third["outcomes"]["applied"] == 1 and recipient_state(emu)["r0005@example.com"]["region"] == "eu"
    assert stored(snapshot)["runs_since_full_resync"] == 0


def test_reads_dearer_than_the_listing_list_instead(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    snapshot = tmp_path / "recipients.json"
    emails = seed_recipients(emu, 20)  # one page
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]
    run(client, rows, snapshot)
    rows = [{"email": e, "region": "us", "cost_centre": 1} for e in emails]
    emu.stats.reset()
    summary = run(client, rows, snapshot)
    assert summary["diff_against"] == "omni" and "costs less" in summary["diff_reason"]
    assert listing_pages(emu) == 1 and filtered_reads(emu) == 1  # the canary's read only
    assert all(v["region"] == "us" for v in recipient_state(emu).values())


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_a_failed_write_leaves_its_recipient_uncertain_and_the_next_run_fixes_it(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, meaning: str
) -> None:
    emu.config.apply_patch({"email_only_upsert": meaning})
    snapshot = tmp_path / "recipients.json"
    emails = seed_recipients(emu, 200)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]
    run(client, rows, snapshot)
    for i in (2, 5, 8):  # three changes, three of them holding unmanaged attributes
        rows[i] = {"email": emails[i], "region": "us", "cost_centre": 9}
    # The canary's write answered 503 twice (the client retries once): it fails, nothing else is sent.
    emu.context.faults.set_fail_next([{"status": 503, "methods": ["POST"]}] * 2)
    with pytest.raises(SyncFailedError) as failed:
        run(client, rows, snapshot)
    summary = failed.value.summary
    assert summary["outcomes"]["failed"] >= 1 and summary["snapshot"]["written"] is True
    uncertain = [email for email, values in values_by_email(snapshot).items() if values is None]
    assert len(uncertain) == summary["outcomes"]["failed"] == summary["snapshot"]["uncertain"]
    emu.stats.reset()
    again = run(client, rows, snapshot)
    assert again["diff_against"] == "snapshot" and listing_pages(emu) == 0
    state = recipient_state(emu)
    for i in (2, 5, 8):
        assert state[emails[i]] == {"region": "us", "cost_centre": 9, **UNMANAGED}
    assert sum(1 for v in state.values() if v.get("department") == "Sales") == 66
    assert all(values is not None for values in values_by_email(snapshot).values())
    emu.stats.reset()
    assert run(client, rows, snapshot)["outcomes"]["unchanged"] == 200 and recipient_requests(emu) == 0


def test_another_targets_snapshot_is_not_used(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    snapshot = tmp_path / "shared.json"
    emu.state.add_user("ada@example.com", "Ada")
    users = SyncOptions(attributes=MANAGED, diff_against="snapshot", snapshot_path=str(snapshot))
    SyncRun.from_options(client, users).run(
        [{"userName": "ada@example.com", "region": "eu", "cost_centre": 1}]
    )
    seed_recipients(emu, 3)
    summary = run(client, [{"email": "r0001@example.com", "region": "eu", "cost_centre": 1}], snapshot)
    assert summary["diff_against"] == "omni" and "another target (user_attributes)" in summary["diff_reason"]
    assert stored(snapshot)["target"] == "email_recipients"


def test_the_snapshot_options_are_checked_as_for_the_attribute_sync() -> None:
    with pytest.raises(OmniValidationError, match="snapshot_path is only used with diff_against='snapshot'"):
        RecipientSyncOptions(attributes=MANAGED, snapshot_path="/tmp/x.json")
    with pytest.raises(OmniValidationError, match="needs snapshot_path"):
        RecipientSyncOptions(attributes=MANAGED, diff_against="snapshot")
    with pytest.raises(OmniValidationError, match="full_resync_every"):
        RecipientSyncOptions(
            attributes=MANAGED, diff_against="snapshot", snapshot_path="x", full_resync_every=0
        )
    with pytest.raises(OmniValidationError, match="diff_against must be one of"):
        RecipientSyncOptions(attributes=MANAGED, diff_against="cache")
