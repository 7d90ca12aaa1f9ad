"""Every safety rule of the engine, for every target (user attributes: ``SyncRun``; group membership:
``GroupSyncRun``), tried against the emulator over loopback: key checks before any write in mirror mode,
members of rejected rows kept, one identity rule for emails and group names, a write judged by Omni's state
(a 2xx without a body is confirmed by a read), every write checked against the user or group it was meant
for, and a report written beside, never over, an earlier attempt's."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import MANAGED, UNMANAGED, attrs, method_count, seed, writes

from omni_provider.client import GroupsApi, OmniGroupWriteSemanticsError, OmniScimClient
from omni_provider.client.groups import verify_member_write
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncHaltedError
from omni_provider.sync import SyncSpec
from omni_provider.sync.engine.report import JsonlFileSink
from omni_provider.sync.groups.options import GroupSyncSpec
from omni_provider.sync.groups.run import GroupSyncRun
from omni_provider.sync.snapshot.format import FileSnapshotStore, SnapshotSettings
from omni_provider.sync.users.keys import UnreadableKeysError
from omni_provider.sync.users.run import SyncRun

CAFE_NFC = unicodedata.normalize("NFC", "Café")
CAFE_NFD = unicodedata.normalize("NFD", "Café")


def members(emu: EmulatorServer, name: str) -> set[str]:
    """The emails of the members of the group named exactly ``name``."""
    found = [g for g in emu.state.groups.groups() if g.display_name == name]
    assert len(found) == 1, [g.display_name for g in emu.state.groups.groups()]
    by_id = {u.id: u.user_name for u in emu.state.users()}
    return {by_id[m] for m in found[0].members}


def user_id(emu: EmulatorServer, email: str) -> str:
    user = emu.state.find_by_email(email)
    assert user is not None
    return user.id


def group_run(client: OmniScimClient, mode: str = "add", **kwargs: Any) -> GroupSyncRun:
    spec_args = {k: kwargs.pop(k) for k in ("groups", "create_missing_groups") if k in kwargs}
    return GroupSyncRun(client, GroupSyncSpec.from_user_args(mode=mode, **spec_args), **kwargs)


def route(emu: EmulatorServer, name: str) -> int:
    return int(emu.stats.snapshot()["requests_by_route"].get(name, 0))


# -- 1. mirror mode: every row's key is read before any write ---------------------------------------------


@pytest.mark.parametrize("bad", [None, "", "   ", 42, "not-an-email"])
def test_group_mirror_with_an_unreadable_email_stops_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, bad: object
) -> None:
    emails = seed(emu, 3)
    emu.state.groups.add_group("Sales", [user_id(emu, e) for e in emails])
    rows = [{"email": emails[0], "group": "Sales"}, {"email": bad, "group": "Sales"}]
    run = group_run(client, "mirror", max_changes=10)
    with pytest.raises(UnreadableKeysError, match="nobody was removed"):
        run.run(rows)
    assert client.stats.requests == 0  # not even a read: the rows are checked first
    assert members(emu, "Sales") == set(emails)
    assert run.summary["stage"] == "reading"


def test_group_mirror_with_an_unreadable_group_stops_before_any_request(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 2)
    emu.state.groups.add_group("Sales", [user_id(emu, e) for e in emails])
    rows = [{"email": emails[0], "group": "Sales"}, {"email": emails[1], "group": None}]
    with pytest.raises(UnreadableKeysError):
        group_run(client, "mirror", max_changes=10).run(rows)
    assert writes(emu) == 0 and members(emu, "Sales") == set(emails)


def test_add_mode_only_rejects_an_unreadable_row(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    rows = [{"email": emails[0], "group": "Sales"}, {"email": None, "group": "Sales"}]
    summary = group_run(client, "add", max_failed_rows=1).run(rows)
    assert summary["outcomes"]["added"] == 1 and summary["outcomes"]["rejected"] == 1
    assert members(emu, "Sales") == {emails[0]}


# -- 2. mirror mode keeps the members of rejected rows --------------------------------------------------


def test_group_mirror_keeps_members_whose_row_was_rejected(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 4)
    emu.state.groups.add_group(CAFE_NFC, [user_id(emu, e) for e in emails])
    rows = [
        {"email": emails[0], "group": CAFE_NFC},
        {"email": emails[1], "group": CAFE_NFD},  # the same name in another Unicode form: matched
        {"email": emails[2], "group": " CAFÉ "},  # a look-alike: rejected, and its member kept
    ]
    summary = group_run(client, "mirror", groups=[CAFE_NFC], max_changes=5, max_failed_rows=1).run(rows)
    assert summary["outcomes"]["rejected"] == 1 and summary["outcomes"]["removed"] == 1
    assert members(emu, CAFE_NFC) == {emails[0], emails[1], emails[2]}  # only emails[3] removed


def test_group_mirror_keeps_a_member_whose_email_matches_several_users(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 1)
    # One email held twice, in two Unicode forms (Omni compares them as two): the row is ambiguous.
    zoe = [
        emu.state.add_user(unicodedata.normalize(form, "zoë@example.com"), "Zoë") for form in ("NFC", "NFD")
    ]
    emu.state.groups.add_group("Sales", [user_id(emu, emails[0]), zoe[0].id, zoe[1].id])
    rows = [{"email": emails[0], "group": "Sales"}, {"email": "zoë@example.com", "group": "Sales"}]
    summary = group_run(client, "mirror", max_changes=5, max_failed_rows=1).run(rows)
    assert summary["outcomes"]["rejected"] == 1 and summary["outcomes"]["removed"] == 0
    assert writes(emu) == 0


# -- 3. one identity rule: no look-alike group is ever created ------------------------------------------


def test_create_missing_groups_never_creates_a_look_alike(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    emu.state.groups.add_group(CAFE_NFC, [])
    rows = [
        {"email": emails[0], "group": CAFE_NFD},  # NFD of an existing NFC name: that group
        {"email": emails[1], "group": f"  {CAFE_NFD}\t"},  # and with surrounding whitespace
        {"email": emails[2], "group": "CAFÉ"},  # case: a look-alike, reported, never created
    ]
    summary = group_run(client, create_missing_groups=True, max_failed_rows=1).run(rows)
    assert [g.display_name for g in emu.state.groups.groups()] == [CAFE_NFC]
    assert method_count(emu, "POST") == 0
    assert members(emu, CAFE_NFC) == {emails[0], emails[1]}
    assert "Omni has ['Café']" in summary["errors_sample"][0]["error"]


def test_one_new_group_spelled_two_ways_is_never_created_twice(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 2)
    rows = [{"email": emails[0], "group": "New team"}, {"email": emails[1], "group": "new TEAM"}]
    summary = group_run(client, create_missing_groups=True, max_failed_rows=2).run(rows)
    assert emu.state.groups.groups() == [] and method_count(emu, "POST") == 0
    assert summary["outcomes"]["rejected"] == 2
    assert "spells this group several ways" in summary["errors_sample"][0]["error"]


# -- 4. a 2xx without a body is judged on Omni's state --------------------------------------------------


def test_a_group_patch_answered_204_is_confirmed_by_a_read(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    emu.state.groups.add_group("Sales", [user_id(emu, emails[0])])
    emu.config.apply_patch({"patch_answer": "no_content"})
    rows = [{"email": e, "group": "Sales"} for e in emails[1:]]
    summary = group_run(client).run(rows)
    assert summary["outcomes"]["added"] == 2 and summary["outcomes"]["failed"] == 0
    assert members(emu, "Sales") == set(emails)
    assert route(emu, "GET /scim/v2/groups/{id}") == 1  # the read that confirmed the 204


def test_a_204_is_never_assumed_applied(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 3)
    emu.state.groups.add_group("Sales", [user_id(emu, emails[0])])
    # This Omni applies an add as a replace of the member list, and answers 204: the read shows it.
    emu.config.apply_patch({"patch_answer": "no_content", "group_patch_mode": "replace_members"})
    with pytest.raises(SyncHaltedError) as raised:
        group_run(client).run([{"email": emails[1], "group": "Sales"}])
    assert raised.value.summary["outcomes"]["added"] == 0
    assert raised.value.summary["outcomes"]["failed"] == 1


def test_a_user_patch_answered_204_is_confirmed_by_a_read(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 2)
    emu.config.apply_patch({"patch_answer": "no_content"})
    spec = SyncSpec.from_user_args(MANAGED, key_column="email")
    summary = SyncRun(client, spec).run([{"email": e, "region": "emea", "cost_centre": 7} for e in emails])
    assert summary["outcomes"]["applied"] == 2
    assert [attrs(emu, e) for e in emails] == [{"region": "emea", "cost_centre": 7, **UNMANAGED}] * 2


# -- 5. every write checked against the user it was meant for -------------------------------------------


def _swap_ids(path: Path, a: str, b: str) -> None:
    """The snapshot pairs ``a``'s email with ``b``'s id and back (a restored backup, a re-created Omni)."""
    document = json.loads(path.read_text())
    by_name = {u["userName"]: u for u in document["users"]}
    by_name[a]["id"], by_name[b]["id"] = by_name[b]["id"], by_name[a]["id"]
    path.write_text(json.dumps(document))


class SnapshotSync:
    """A snapshot-diffing attribute sync of ``n`` seeded users, run once (Omni read in full, the snapshot
    written); then ``swap`` pairs two emails with each other's ids, as a restored backup could."""

    def __init__(self, emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, n: int) -> None:
        self.emu = emu
        self.emails = seed(emu, n)
        self.path = tmp_path / "omni.json"
        self.spec = SyncSpec.from_user_args(MANAGED, key_column="email")
        self.rows = [{"email": e, "region": "us-east", "cost_centre": 1} for e in self.emails]
        self.run(client)

    def run(self, client: OmniScimClient, **options: Any) -> dict[str, Any]:
        snapshot = SnapshotSettings(FileSnapshotStore(self.path), 7)
        return SyncRun(client, self.spec, snapshot=snapshot, **options).run(self.rows)

    def swap(self, a: int, b: int) -> None:
        _swap_ids(self.path, self.emails[a], self.emails[b])

    def regions(self) -> list[str]:
        return [attrs(self.emu, e)["region"] for e in self.emails]


def test_a_snapshot_pairing_emails_with_other_users_ids_writes_to_nobody(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    sync = SnapshotSync(emu, client, tmp_path, 3)
    sync.swap(0, 1)
    sync.rows[0]["region"], sync.rows[1]["region"] = "emea", "apac"
    patches = method_count(emu, "PATCH")
    with pytest.raises(SyncHaltedError, match="names another user") as raised:
        sync.run(client)
    assert method_count(emu, "PATCH") == patches  # the canary's read found it: nothing was sent
    assert sync.regions() == ["us-east"] * 3
    assert raised.value.summary["outcomes"]["applied"] == 0
    # The snapshot is no longer trusted: the next run reads Omni in full and writes each user's own row.
    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6) as fresh_client:
        repaired = sync.run(fresh_client)
    assert repaired["diff_against"] == "omni"
    assert sync.regions() == ["emea", "apac", "us-east"]


def test_an_answer_naming_another_user_stops_the_run_and_is_not_applied(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    sync = SnapshotSync(emu, client, tmp_path, 4)
    sync.swap(2, 3)  # wrong for two users only: the canary (the first row) finds nothing
    for number, row in enumerate(sync.rows):
        row["region"] = f"region-{number}"
    with pytest.raises(SyncHaltedError, match="names another user") as raised:
        sync.run(client, max_workers=1)
    summary = raised.value.summary
    errors = {s["row"]: s["error"] for s in summary["errors_sample"]}
    assert summary["outcomes"]["applied"] == 2 and sorted(errors) == [3, 4]
    assert "names another user" in errors[3]  # the answer named user 4: stopped, not applied
    assert errors[4].startswith("not attempted (stopped: ")  # never sent
    # The one write the snapshot misdirected is the row reported failed; nothing else was sent after it.
    assert sync.regions() == ["region-0", "region-1", "us-east", "region-2"]


def test_a_group_write_based_on_another_group_stops_the_run(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    finance = emu.state.groups.add_group("Finance", [])
    api = GroupsApi(client)
    stale = api.list_groups()[0].model_copy(update={"id": finance.id})  # "Sales" paired with Finance's id
    with pytest.raises(OmniGroupWriteSemanticsError):
        api.update_members(stale, add=[user_id(emu, emails[0])])
    # And an answer carrying another group's id is never taken for this group's.
    sales = api.list_groups()[0]
    with pytest.raises(OmniGroupWriteSemanticsError, match="naming another group"):
        verify_member_write(sales, sales.model_copy(update={"id": "OtherId1"}), [], [])


# -- 6. a report is written beside, never over, an earlier attempt's ------------------------------------


@pytest.mark.parametrize("target", ["attributes", "groups"])
def test_a_second_attempt_writes_its_report_beside_the_first(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, target: str
) -> None:
    emails = seed(emu, 2)
    emu.state.groups.add_group("Sales", [])
    report = tmp_path / "report.jsonl"

    def attempt() -> dict[str, Any]:
        if target == "attributes":
            spec = SyncSpec.from_user_args(MANAGED, key_column="email")
            rows = [{"email": e, "region": "emea", "cost_centre": 1} for e in emails]
            return SyncRun(client, spec, sinks=[JsonlFileSink(report, attempt=".retry1")]).run(rows)
        rows = [{"email": e, "group": "Sales"} for e in emails]
        return group_run(client, sinks=[JsonlFileSink(report, attempt=".retry1")]).run(rows)

    first, second = attempt(), attempt()
    assert first["report_path"] == str(report)
    assert second["report_path"] == str(tmp_path / "report.retry1.jsonl")
    first_lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["status"] for line in first_lines} == {"applied" if target == "attributes" else "added"}
    second_lines = [json.loads(line) for line in Path(second["report_path"]).read_text().splitlines()]
    assert {line["status"] for line in second_lines} == {"unchanged"}
