"""Plan, then apply exactly the plan (issue 23), on the engine against the emulator: the plan writes
nothing, the apply sends only the planned writes, skips the users changed in Omni since the plan, and
refuses an edited, expired or foreign plan before any request."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import UNMANAGED, attrs, requests, rewrite_plan, seed, state_of, writes

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import PlanTooLargeError, SyncFailedError
from omni_provider.sync.engine.plan_artifact import CHANGED_SINCE_PLAN, PlanRefusedError, PlanStore
from omni_provider.sync.planned import load_planned_run
from omni_provider.sync.users.plan_file import plan_artifact, review
from omni_provider.sync.users.run import SyncRun
from omni_provider.sync.users.spec import SyncMode, SyncSpec

SPEC = SyncSpec(attributes={"region": "region"}, mode=SyncMode.UPDATE)
N, CHANGES = 200, 30


def rows_with_changes(emails: list[str], changed: int) -> list[dict[str, Any]]:
    """Every user, the first ``changed`` of them moved to another region."""
    return [{"userName": e, "region": "eu-west" if i < changed else "us-east"} for i, e in enumerate(emails)]


def make_plan(client: OmniScimClient, rows: list[dict[str, Any]], path: Path, **options: Any) -> str:
    run = SyncRun(client, SPEC, plan_only=True, **options)
    summary = run.run(rows)
    assert summary["stage"] == "planned"
    assert run.plan is not None
    return PlanStore(path).save(plan_artifact(run.plan, SPEC, omni=client.base_url))


@pytest.fixture
def small_plan(emu: EmulatorServer, client: OmniScimClient, tmp_path: Path) -> tuple[Path, str]:
    """5 users, a stored plan moving 3 of them: its path and digest."""
    path = tmp_path / "plan.json"
    return path, make_plan(client, rows_with_changes(seed(emu, 5), 3), path)


def test_plan_then_apply_exactly_the_plan(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, N)
    path = tmp_path / "plan.json"
    before = emu.stats.snapshot()
    digest = make_plan(client, rows_with_changes(emails, CHANGES), path)
    # Planning wrote nothing.
    assert writes(emu) == 0
    assert emu.stats.snapshot()["requests_by_method"].keys() == before["requests_by_method"].keys() | {"GET"}
    artifact = PlanStore(path).load()
    assert len(artifact.items) == CHANGES
    assert artifact.items[0]["changes"] == [{"attribute": "region", "old": "us-east", "new": "eu-west"}]

    # Someone else changes 2 of the 30 in Omni after the plan.
    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6) as other:
        for email in emails[:2]:
            user = other.find_user_by_email(email)
            assert user is not None
            other.update_user(user, attributes={"region": "ap-south"})
    # And the warehouse moves too: the apply never reads it.
    untouched = state_of(emu)

    emu.stats.reset()
    run = load_planned_run(client, PlanStore(path), plan_digest=digest)
    with pytest.raises(SyncFailedError) as failed:
        run.run()
    summary = failed.value.summary
    # 28 applied exactly; the 2 changed since the plan rejected with the reason, their new values kept.
    assert summary["outcomes"]["applied"] == CHANGES - 2
    assert summary["outcomes"]["rejected"] == 2
    assert summary["changed_since_plan"] == 2
    assert all(CHANGED_SINCE_PLAN in s["error"] for s in summary["errors_sample"])
    # The run's verdict is the sync's: rejected items over max_failed_rows fail it, and no retry helps.
    assert "2 of 30 rows did not sync (2 rejected, 0 failed writes)" in str(failed.value)
    assert not failed.value.retryable
    for email in emails[:2]:
        assert attrs(emu, email) == {"region": "ap-south", **UNMANAGED}
    for email in emails[2:CHANGES]:
        assert attrs(emu, email) == {"region": "eu-west", **UNMANAGED}
    # No other user written: everyone outside the plan is as they were.
    after = state_of(emu)
    for email in emails[CHANGES:]:
        assert after[email] == untouched[email]
    # Write requests: exactly the 28; the rest are reads (the listing for the check, the canary's read).
    by_method = emu.stats.snapshot()["requests_by_method"]
    assert writes(emu) == CHANGES - 2 == by_method["PATCH"]
    assert emu.stats.snapshot()["requests_by_route"] == {
        "GET /v1/user-attributes": 1,  # the attribute definitions
        "GET /scim/v2/users": 3,  # the check against Omni: one listing (200 users, drift-checked pages)
        "GET /scim/v2/users/{id}": 1,  # the canary's fresh read
        "PATCH /scim/v2/users/{id}": CHANGES - 2,
    }


def test_a_plan_whose_users_all_hold_what_it_saw_applies_cleanly(
    emu: EmulatorServer, client: OmniScimClient, small_plan: tuple[Path, str]
) -> None:
    path, digest = small_plan
    emu.stats.reset()
    summary = load_planned_run(client, PlanStore(path), plan_digest=digest).run()
    assert summary["outcomes"]["applied"] == 3
    assert summary["stage"] == "done"
    assert summary["plan_digest"] == digest
    # Few users: one GET each instead of a listing.
    assert "GET /scim/v2/users" not in emu.stats.snapshot()["requests_by_route"]
    assert writes(emu) == 3


def test_plan_only_checks_the_guards_like_the_sync(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 10)
    with pytest.raises(PlanTooLargeError):
        make_plan(client, rows_with_changes(emails, 5), tmp_path / "plan.json", max_changes=2)
    assert not (tmp_path / "plan.json").exists()
    assert writes(emu) == 0


def edited(path: Path) -> None:
    document = json.loads(path.read_text())
    document["items"][0]["changes"][0]["new"] = "cn-north"
    path.write_text(json.dumps(document))


def reauthored(path: Path) -> str:
    """Edited and its digest recomputed: a valid file, but not the reviewed one (the approved digest is
    the original's)."""
    items = [dict(item) for item in PlanStore(path).load().items]
    items[0]["changes"] = [{"attribute": "region", "old": "us-east", "new": "cn-north"}]
    rewrite_plan(path, items=items)
    return ""


def expired(path: Path) -> str:
    """Made 25 hours ago (and approved: the digest given is this plan's)."""
    return rewrite_plan(path, created_at=datetime.now(UTC) - timedelta(hours=25))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (edited, "changed after it was written"),
        (reauthored, "replaced or edited after review"),
        (expired, "older than max_age"),
    ],
)
def test_a_spoiled_plan_is_refused_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, small_plan: tuple[Path, str], spoil: Any, message: str
) -> None:
    path, digest = small_plan
    digest = spoil(path) or digest
    emu.stats.reset()
    with pytest.raises(PlanRefusedError, match=message):
        load_planned_run(client, PlanStore(path), plan_digest=digest)
    assert requests(emu) == 0


def test_a_plan_for_another_omni_is_refused_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, small_plan: tuple[Path, str]
) -> None:
    path, digest = small_plan
    emu.stats.reset()
    # The same emulator reached under another name is another Omni as far as the plan knows.
    other_host = emu.api_url.replace("127.0.0.1", "localhost")
    with (
        OmniScimClient(other_host, TEST_API_KEY, retry_policy=RetryPolicy(max_attempts=1)) as elsewhere,
        pytest.raises(PlanRefusedError, match="made for Omni"),
    ):
        load_planned_run(elsewhere, PlanStore(path), plan_digest=digest)
    assert requests(emu) == 0


def test_the_review_shows_counts_changes_and_the_digest(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 30)
    path = tmp_path / "plan.json"
    make_plan(client, rows_with_changes(emails, 25), path)
    text = review(PlanStore(path).load(), limit=10)
    assert "| update | 25 |" in text and "| unchanged | 5 |" in text
    assert "| user001@example.com | update | region | us-east | eu-west |" in text
    assert "… and 15 more" in text
    assert PlanStore(path).load().digest in text


def test_the_review_says_what_mirror_would_unset(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 4)
    spec = SyncSpec(attributes={"region": "region"}, mode=SyncMode.MIRROR)
    run = SyncRun(client, spec, plan_only=True, max_changes=2)
    run.run([{"userName": emails[0], "region": "us-east"}, {"userName": emails[1], "region": "us-east"}])
    assert run.plan is not None
    text = review(plan_artifact(run.plan, spec, omni=client.base_url))
    assert "Mirror: 2 user(s) absent from the input get their managed attributes unset" in text
    assert "user003@example.com" in text


def test_a_planned_create_is_sent_unless_the_user_exists_by_then(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    seed(emu, 2)
    spec = SyncSpec(attributes={"region": "region"}, mode=SyncMode.UPSERT, display_name_column="name")
    new = [
        {"userName": "new1@example.com", "name": "New One", "region": "eu-west"},
        {"userName": "new2@example.com", "name": "New Two", "region": "eu-west"},
    ]
    run = SyncRun(client, spec, plan_only=True)
    run.run(new)
    path = tmp_path / "plan.json"
    digest = PlanStore(path).save(run.plan_artifact())
    assert [item["action"] for item in PlanStore(path).load().items] == ["create", "create"]
    # Someone creates new2 by hand after the review.
    emu.state.add_user("New2@example.com", "By Hand", {"region": "us-east"})
    with pytest.raises(SyncFailedError) as failed:
        load_planned_run(client, PlanStore(path), plan_digest=digest, max_age=None).run()
    summary = failed.value.summary
    assert summary["outcomes"]["applied"] == 1
    assert summary["errors_sample"][0]["error"] == f"{CHANGED_SINCE_PLAN}: the user exists now"
    assert attrs(emu, "new1@example.com") == {"region": "eu-west"}
    assert attrs(emu, "new2@example.com") == {"region": "us-east"}


def test_an_apply_run_again_finds_what_it_wrote_unchanged(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 6)
    path = tmp_path / "plan.json"
    digest = make_plan(client, rows_with_changes(emails, 4), path)
    # Another writer set one user exactly as planned: nothing left to do for it.
    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6) as other:
        user = other.find_user_by_email(emails[0])
        assert user is not None
        other.update_user(user, attributes={"region": "eu-west"})
    first = load_planned_run(client, PlanStore(path), plan_digest=digest).run()
    assert first["outcomes"]["applied"] == 3 and first["outcomes"]["unchanged"] == 1
    # A retry of the same apply (e.g. after a crash) rejects nothing and sends nothing.
    emu.stats.reset()
    again = load_planned_run(client, PlanStore(path), plan_digest=digest).run()
    assert again["outcomes"]["unchanged"] == 4 and again["outcomes"]["rejected"] == 0
    assert writes(emu) == 0
