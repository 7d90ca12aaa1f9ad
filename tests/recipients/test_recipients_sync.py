"""The email-only recipients target against the emulator, under each upsert meaning: exact end state,
unmanaged attributes untouched, bulk writes of 20 (plus the canary), a listing of ceil(n / 20) pages, a
re-run sends no write, one bad email is rejected alone, and mirror mode's refusals before any write."""

from __future__ import annotations

import math
from typing import Any

import pytest
from recipients_testkit import (
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
from omni_provider.errors import PlanTooLargeError, SyncFailedError, SyncHaltedError
from omni_provider.sync.recipients.options import RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun
from omni_provider.sync.users.keys import UnreadableKeysError

MANAGED = ["region", "cost_centre"]


def run(client: OmniScimClient, rows: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    opts = RecipientSyncOptions(attributes=options.pop("attributes", MANAGED), **options)
    return RecipientSyncRun.from_options(client, opts).run(rows)


def gets_before_writes(emu: EmulatorServer) -> None:
    """The listing's pages only (every stats counter from zero)."""
    emu.stats.reset()


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_a_few_hundred_recipients_end_exact_with_bulk_writes(
    emu: EmulatorServer, client: OmniScimClient, meaning: str
) -> None:
    emu.config.apply_patch({"email_only_upsert": meaning})
    emails = seed_recipients(emu, 300)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails]
    changed = 0
    for i in range(0, 300, 7):  # 43 changed (some of them with unmanaged attributes)
        rows[i] = {"email": emails[i].upper(), "region": "us", "cost_centre": 7}
        changed += 1
    for i in range(1, 300, 50):  # a managed value unset
        rows[i]["region"] = None
        changed += 1
    new = [{"email": f"new{i:03d}@example.com", "region": "apac", "cost_centre": i} for i in range(57)]
    rows += new
    before = recipient_state(emu)
    gets_before_writes(emu)

    summary = run(client, rows)

    state = recipient_state(emu)
    assert len(state) == 357
    for row in rows:
        held = state[row["email"].lower()]
        expected = {"region": row["region"], "cost_centre": row["cost_centre"]}
        assert {k: held.get(k) for k in MANAGED} == expected, row
    for email, old in before.items():  # unmanaged attributes (custom and the timezone) untouched
        assert {k: v for k, v in state[email].items() if k not in MANAGED} == {
            k: v for k, v in old.items() if k not in MANAGED
        }
    assert sum(1 for v in state.values() if v.get("department") == "Sales") == 100
    sent = changed + len(new)
    assert summary["plan"]["update"] + summary["plan"]["create"] + summary["plan"]["unset"] == sent
    assert summary["outcomes"]["applied"] == sent and summary["outcomes"]["rejected"] == 0
    # The canary goes alone: ceil(sent / 20) bulk requests, plus at most the canary.
    assert math.ceil(sent / 20) <= bulk_writes(emu) <= math.ceil(sent / 20) + 1
    assert writes(emu) == bulk_writes(emu)
    # The listing: ceil(300 / 20) pages; the canary's fresh read is one page filtered by its email.
    assert listing_pages(emu) == math.ceil(300 / 20)
    assert route_count(emu, "GET /v1/users/email-only?email") == 1
    assert summary["requests_by_method"]["POST"] == bulk_writes(emu)

    emu.stats.reset()
    again = run(client, rows)
    assert writes(emu) == 0 and again["outcomes"]["unchanged"] == len(rows)
    assert listing_pages(emu) == math.ceil(357 / 20)
    assert recipient_state(emu) == state


@pytest.mark.parametrize("meaning", ["merge", "replace"])
def test_one_bad_email_in_a_batch_is_rejected_alone(
    emu: EmulatorServer, client: OmniScimClient, meaning: str
) -> None:
    emu.config.apply_patch({"email_only_upsert": meaning})
    emails = seed_recipients(emu, 30)
    rows = [{"email": e, "region": "us", "cost_centre": 2} for e in emails]
    # Valid for the identity rule, refused by Omni's (stricter) check: it reaches Omni in a batch.
    rows.insert(12, {"email": "ada..lovelace@example.com", "region": "us", "cost_centre": 2})

    with pytest.raises(SyncFailedError) as failed:
        run(client, rows)

    summary = failed.value.summary
    assert summary["outcomes"]["applied"] == 30 and summary["outcomes"]["rejected"] == 1
    (sample,) = summary["errors_sample"]
    assert sample["key"] == "ada..lovelace@example.com" and "must provide 1-20 users" in sample["error"]
    assert all(v["region"] == "us" for v in recipient_state(emu).values())
    assert "ada..lovelace@example.com" not in recipient_state(emu)
    # Split in halves: far fewer requests than one per row.
    assert bulk_writes(emu) < 15


def test_a_full_omni_user_is_not_turned_into_a_recipient(emu: EmulatorServer, client: OmniScimClient) -> None:
    emu.state.add_user("grace@example.com", "Grace")
    rows = [{"email": "grace@example.com", "region": "us", "cost_centre": 1}]
    rows += [{"email": f"x{i}@example.com", "region": "us", "cost_centre": 1} for i in range(5)]
    summary = run(client, rows, max_failed_rows=1)
    assert summary["outcomes"] == {"applied": 5, "unchanged": 0, "rejected": 1, "failed": 0, "planned": 0}
    assert "an Omni user has this email" in summary["errors_sample"][0]["error"]
    assert "grace@example.com" not in recipient_state(emu)
    user = emu.state.find_by_email("grace@example.com")
    assert user is not None and dict(user.attributes) == {}


def test_update_mode_rejects_unknown_emails_and_dry_run_writes_nothing(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    seed_recipients(emu, 3)
    rows = [{"email": "r0001@example.com", "region": "us", "cost_centre": 1}]
    rows.append({"email": "nobody@example.com", "region": "us", "cost_centre": 1})
    planned = run(client, rows, mode="update", dry_run=True, max_failed_rows=None)
    assert planned["outcomes"]["planned"] == 1 and planned["outcomes"]["rejected"] == 1
    assert writes(emu) == 0
    summary = run(client, rows, mode="update", max_failed_rows=1)
    assert summary["outcomes"]["applied"] == 1
    assert summary["errors_sample"][0]["error"] == "no email-only recipient with this email"
    assert "nobody@example.com" not in recipient_state(emu)


def test_mirror_unsets_absent_recipients_and_keeps_the_rest(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed_recipients(emu, 20)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails[1:]]
    rows.append({"email": "new@example.com", "region": "us", "cost_centre": 2})
    summary = run(client, rows, mode="mirror")
    assert summary["plan"]["unset"] == 1 and summary["plan"]["create"] == 1  # mirror creates, as upsert
    assert recipient_state(emu)["r0001@example.com"] == {}
    assert recipient_state(emu)["new@example.com"] == {"region": "us", "cost_centre": 2}
    emu.state.recipients.add("r0003@example.com", {"region": "eu", "cost_centre": 1, **UNMANAGED})
    run(client, rows[2:], mode="mirror", max_changes=2)
    assert recipient_state(emu)["r0003@example.com"] == UNMANAGED
    assert recipient_state(emu)["r0002@example.com"] == {}


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([{"mail": "a@example.com", "region": "eu", "cost_centre": 1}], OmniValidationError),
        ([{"email": None, "region": "eu", "cost_centre": 1}], UnreadableKeysError),
        ([{"email": "not-an-email", "region": "eu", "cost_centre": 1}], UnreadableKeysError),
    ],
)
def test_mirror_refuses_broken_keys_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, rows: list[dict[str, Any]], error: type[Exception]
) -> None:
    seed_recipients(emu, 5)
    rows = [*rows, {"email": "r0001@example.com", "region": "eu", "cost_centre": 1}]
    with pytest.raises(error) as refused:
        run(client, rows, mode="mirror")
    assert sum(emu.stats.snapshot()["requests_by_method"].values()) == 0
    if error is UnreadableKeysError:
        assert "A recipient counts as absent" in str(refused.value) and "user" not in str(refused.value)


def test_mirror_refuses_a_plan_over_the_blast_radius_before_any_write(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed_recipients(emu, 40)
    rows = [{"email": e, "region": "eu", "cost_centre": 1} for e in emails[:30]]  # 10 of 40 would lose values
    with pytest.raises(PlanTooLargeError, match="default limit for mirror runs") as refused:
        run(client, rows, mode="mirror")
    assert writes(emu) == 0
    # The guards speak of recipients (the plan's noun), never of users.
    assert "of 40 email-only recipients (region on 10 recipients" in str(refused.value)
    assert "every recipient" in str(refused.value) and "user" not in str(refused.value)
    with pytest.raises(PlanTooLargeError, match="max_changes=2") as refused:
        run(client, rows, mode="mirror", max_changes=2)
    assert writes(emu) == 0
    assert "the plan writes 10 recipients" in str(refused.value) and "user" not in str(refused.value)
    with pytest.raises(PlanTooLargeError, match="the input has no rows") as refused:
        run(client, [], mode="mirror")
    assert writes(emu) == 0
    assert "of 40 email-only recipients" in str(refused.value) and "user" not in str(refused.value)


def test_the_canary_stops_the_run_when_unmanaged_attributes_are_lost(
    emu: EmulatorServer, client: OmniScimClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Omni whose upsert drops attributes the body carried (worse than replace): the canary sees it on
    its fresh read, nothing else is sent."""
    from omni_provider.emulator import recipient_store

    emails = seed_recipients(emu, 60)
    monkeypatch.setattr(
        recipient_store,
        "upserted",
        lambda current, changes, mode: {
            k: v for k, v in (changes or {}).items() if k in ("region", "cost_centre") and v is not None
        },
    )
    rows = [{"email": e, "region": "us", "cost_centre": 1} for e in emails]
    with pytest.raises(SyncHaltedError, match="circuit breaker") as halted:
        run(client, rows)
    assert bulk_writes(emu) == 1
    assert "vanished" in str(halted.value) and "did not keep what its body carried" in str(halted.value)
    summary = halted.value.summary
    assert summary["outcomes"]["applied"] == 0 and summary["outcomes"]["failed"] == 60
    assert sum(1 for v in recipient_state(emu).values() if v.get("region") == "us") == 1


def test_a_bad_mode_is_refused() -> None:
    with pytest.raises(OmniValidationError, match="mode must be one of"):
        RecipientSyncOptions(attributes=MANAGED, mode="add")


def test_faults_on_the_writes_a_failed_row_and_a_rerun_that_fixes_it(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    """A 503 then a lost answer on the same upsert (the client retries once here): that row fails, its
    neighbours are applied, nothing is lost; the re-run sends what is left."""
    emails = seed_recipients(emu, 50)
    faults = [{"status": 503, "methods": ["POST"]}, {"fault": "lost_response", "methods": ["POST"]}]
    emu.context.faults.set_fail_next(faults)
    rows = [{"email": e, "region": "us", "cost_centre": 5} for e in emails]
    with pytest.raises(SyncFailedError) as failed:
        run(client, rows)
    first = failed.value.summary
    assert first["outcomes"]["failed"] >= 1 and first["retries"] >= 1
    assert first["outcomes"]["applied"] + first["outcomes"]["failed"] == 50
    again = run(client, rows)
    assert again["outcomes"]["applied"] <= first["outcomes"]["failed"]
    assert all(v["region"] == "us" and v["cost_centre"] == 5 for v in recipient_state(emu).values())
    assert sum(1 for v in recipient_state(emu).values() if v.get("department") == "Sales") == 16
