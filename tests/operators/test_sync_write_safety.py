"""The sync against an Omni that moves or behaves unexpectedly (issue 8 items 3-7, issue 15).

Each test drives the operator (or ``apply_plan``) against the emulator with one of its switches:
listing without attribute maps, users deleted between pages, another writer, and the PATCH semantics the
client does not assume. Most would fail on the code before these issues; the docstrings say how.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY
from test_sync_operator import UNMANAGED, attrs, method_count, read_report, run_sync, seed

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.client import OmniScimClient
from omni_provider.emulator import EmulatorServer
from omni_provider.sync import SyncMode, SyncSpec, build_plan
from omni_provider.sync.users.apply import apply_plan

MANAGED = ["region", "cost_centre"]


def print_figures(title: str, figures: dict[str, Any]) -> None:
    """One greppable line for ``pytest -s`` (the README's Reliability figures come from these)."""
    print(f"\n{title} FIGURES " + json.dumps(figures, sort_keys=True, default=str))


@pytest.fixture
def emu(omni_connection: EmulatorServer) -> EmulatorServer:
    return omni_connection


def _client(emu: EmulatorServer, **kwargs: Any) -> OmniScimClient:
    return OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1_000_000, **kwargs)


# -- item 3: a listing without attribute maps --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["update", "mirror"])
def test_listing_without_attribute_maps_is_never_read_as_no_attributes(
    emu: EmulatorServer, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code: NULL rows never cleared values, mirror unset nobody, a GET was sent per planned row and
    rows were reported applied although no PATCH was sent."""
    emails = seed(emu, 6)
    emu.state.add_user("absent@example.com", "Absent", {"region": "us-east", **UNMANAGED})
    emu.config.apply_patch({"list_attribute_maps": False})
    rows = [
        {"userName": emails[0], "region": None, "cost_centre": None},  # must clear region
        {"userName": emails[1], "region": "us-east", "cost_centre": None},  # already so: no write
        {"userName": emails[2], "region": "eu-west", "cost_centre": 7},
    ]
    report = tmp_path / "bare.jsonl"
    run = run_sync(rows=rows, mode=mode, max_changes=10, report_path=str(report))

    assert attrs(emu, emails[0]) == UNMANAGED
    assert attrs(emu, emails[1]) == {**UNMANAGED, "region": "us-east"}
    assert attrs(emu, emails[2]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 7}
    unsets = 4 if mode == "mirror" else 0  # emails[3:6] and absent@ lose region in a mirror
    if mode == "mirror":
        assert attrs(emu, "absent@example.com") == UNMANAGED
    else:
        assert attrs(emu, "absent@example.com")["region"] == "us-east"
    by_key = {r["key"]: r for r in read_report(report)}
    assert by_key[emails[0]]["status"] == "applied" and by_key[emails[0]]["changed"] == ["region"]
    assert by_key[emails[1]]["status"] == "unchanged"
    assert method_count(emu, "PATCH") == 2 + unsets
    # One GET per user the plan depends on (3 matched; a mirror needs all 7), none per write.
    gets = method_count(emu, "GET") - 1 - 1  # minus the definitions and the one listing page
    assert gets == (7 if mode == "mirror" else 3) + 2  # + the fresh reads of two canaries (set, unset)
    assert run.summary is not None and run.summary["outcomes"]["applied"] == 2 + unsets
    assert "came without their attribute map" in caplog.text
    print_figures(
        f"bare listing[{mode}]",
        {
            "users": 7,
            "rows": 3,
            "GETs of bare users": gets - 2,
            "canary reads": 2,
            "PATCHes": 2 + unsets,
            "outcomes": run.summary["outcomes"],
        },
    )


# -- item 4: applied only when a write was sent --------------------------------------------------------------


def test_a_write_found_unnecessary_is_unchanged_not_applied(emu: EmulatorServer) -> None:
    """Old code reported these rows ``applied`` although the client sent no PATCH."""
    emails = seed(emu, 3)
    with _client(emu) as client:
        users = client.list_users()
        plan = build_plan(
            [{"userName": e, "region": "eu-west"} for e in emails],
            users,
            SyncSpec(attributes={"region": "region"}),
        )
        for email in emails[:2]:  # someone else already did the work since the listing
            user = emu.state.find_by_email(email)
            assert user is not None
            emu.state.replace_user(user.evolve(attributes={**user.attributes, "region": "eu-west"}))
        outcomes = apply_plan(client, plan, {})  # no listed users: the client reads each one fresh
    assert [o.status.value for o in outcomes] == ["unchanged", "unchanged", "applied"]
    assert [o.changed for o in outcomes] == [(), (), ("region",)]
    assert method_count(emu, "PATCH") == 1


# -- item 5: users deleted between pages ---------------------------------------------------------------------


@pytest.mark.parametrize("create", [0, 1])
def test_user_deleted_between_pages_does_not_hide_another(
    emu: EmulatorServer, create: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code: user 101 was skipped by the shifted offset and its row rejected "no Omni user"."""
    emails = seed(emu, 250)
    emu.config.apply_patch({"list_churn": {"after_page": 1, "delete": 1, "create": create}})
    rows = [{"userName": e, "region": "eu-west", "cost_centre": None} for e in emails[95:110]]
    run = run_sync(rows=rows)
    assert run.summary is not None
    assert run.summary["outcomes"]["applied"] == 15 and run.summary["outcomes"]["rejected"] == 0
    assert all(attrs(emu, e)["region"] == "eu-west" for e in emails[95:110])
    assert "shifted while it was read" in caplog.text
    print_figures(
        f"churn[create={create}]",
        {
            "users": 250,
            "deleted after page 1": 1,
            "created": create,
            "rows": 15,
            "list GETs": method_count(emu, "GET") - 2,
            "outcomes": run.summary["outcomes"],
        },
    )


def test_upsert_across_a_shifted_listing_creates_nobody_twice(emu: EmulatorServer) -> None:
    """Old code POSTed the skipped user into a 409 and reported the row failed."""
    emails = seed(emu, 150)
    emu.config.apply_patch({"list_churn": {"after_page": 1, "delete": 2, "create": 0}})
    rows = [{"userName": e, "name": "X", "region": "eu-west", "cost_centre": None} for e in emails[98:103]]
    run = run_sync(rows=rows, mode="upsert", display_name_column="name")
    assert run.summary is not None and run.summary["outcomes"]["applied"] == 5
    assert run.summary["plan"]["create"] == 0
    assert emu.stats.snapshot()["users_created"] == 0


# -- item 6: another writer ----------------------------------------------------------------------------------


def test_another_writer_changing_an_unmanaged_attribute_leaves_rows_applied(
    emu: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code: every row ``failed`` with OmniUnexpectedStateError ("changed attributes we did not
    touch")."""
    emails = seed(emu, 5)
    emu.config.apply_patch({"concurrent_writer": {"attribute": "department", "value": "Legal"}})
    run = run_sync(rows=[{"userName": e, "region": "eu-west", "cost_centre": 3} for e in emails])
    assert run.summary is not None and run.summary["outcomes"]["applied"] == 5
    assert all(
        attrs(emu, e) == {**UNMANAGED, "department": "Legal", "region": "eu-west", "cost_centre": 3}
        for e in emails
    )
    assert "another writer changed 'department' meanwhile" in caplog.text
    print_figures("another writer", {"rows": 5, "outcomes": run.summary["outcomes"]})


def test_a_managed_key_other_than_sent_still_stops_the_run(emu: EmulatorServer) -> None:
    seed(emu, 5)
    emu.config.apply_patch({"concurrent_writer": {"attribute": "region", "value": "mars", "when": "after"}})
    rows = [
        {"userName": f"user00{i}@example.com", "region": "eu-west", "cost_centre": 3} for i in range(1, 6)
    ]
    run = run_sync(rows=rows, raises=AirflowFailException)
    assert "did not store the value sent for attribute 'region'" in str(run.error)
    assert method_count(emu, "PATCH") == 1  # the canary; nothing after it


# -- item 7: two upserts racing ---------------------------------------------------------------------------


def test_a_409_on_create_updates_the_user_another_writer_created(emu: EmulatorServer) -> None:
    """Old code: the row ended ``failed`` with the 409."""
    seed(emu, 1)
    with _client(emu) as client:
        users = client.list_users()
        spec = SyncSpec(attributes={a: a for a in MANAGED}, mode=SyncMode.UPSERT, display_name_column="name")
        rows = [{"userName": "race@example.com", "name": "Race", "region": "eu-west", "cost_centre": None}]
        plan = build_plan(rows, users, spec)
        # Created by someone else after our listing, with a value our row wants cleared.
        emu.state.add_user("Race@Example.com", "Race", {"cost_centre": 5, "department": "Ops"})
        (outcome,) = apply_plan(client, plan, {u.id: u for u in users})
    assert outcome.status.value == "applied" and outcome.action == "create"
    assert "created meanwhile by another writer" in (outcome.note or "")
    assert attrs(emu, "race@example.com") == {"region": "eu-west", "department": "Ops"}
    assert len(emu.state.users()) == 2 and emu.stats.snapshot()["users_created"] == 0


def test_two_upserts_racing_create_one_user_and_neither_fails(emu: EmulatorServer) -> None:
    seed(emu, 1)
    spec = SyncSpec(attributes={a: a for a in MANAGED}, mode=SyncMode.UPSERT, display_name_column="name")
    rows = [
        {"userName": f"new{i}@example.com", "name": f"New {i}", "region": "eu-west", "cost_centre": i}
        for i in range(20)
    ]
    with _client(emu) as first, _client(emu) as second:
        users = first.list_users()
        plans = [build_plan(rows, users, spec) for _ in range(2)]  # both planned before either wrote
        results: list[Any] = [None, None]
        barrier = threading.Barrier(2)

        def run(i: int, client: OmniScimClient) -> None:
            barrier.wait()
            results[i] = apply_plan(client, plans[i], {u.id: u for u in users}, max_workers=4)

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate((first, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    statuses = [o.status.value for result in results for o in result]
    assert set(statuses) <= {"applied", "unchanged"} and len(statuses) == 40
    assert len(emu.state.users()) == 21 and emu.stats.snapshot()["users_created"] == 20
    assert all(
        attrs(emu, f"new{i}@example.com") == {"region": "eu-west", "cost_centre": i} for i in range(20)
    )
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    stats = emu.stats.snapshot()
    print_figures(
        "racing upserts",
        {
            "runs": 2,
            "rows each": 20,
            "users created": stats["users_created"],
            "POSTs": method_count(emu, "POST"),
            "409s": stats["responses_by_status"].get("409", 0),
            "outcomes": counts,
        },
    )


def test_a_listing_that_keeps_shifting_fails_the_task_retryably_before_any_write() -> None:
    """Users being deleted right now: a later try reads a settled list; nothing was written."""
    from omni_provider.client import OmniListingDriftError
    from omni_provider.errors import OmniWriteSemanticsError
    from omni_provider.operators.common import fail_or_retry

    assert type(fail_or_retry(OmniListingDriftError("kept shifting"))) is AirflowException
    damage = OmniWriteSemanticsError(user="a@x.io", field="f", old=1, new=None, problem="p", hint="h")
    assert type(fail_or_retry(damage)) is AirflowFailException
