"""Snapshot diffing (``diff_against="snapshot"``): a run diffs against what the last run left and lists no
users; Omni is read in full on the first run, every ``full_resync_every``-th run, or when the snapshot cannot
be used; mirror mode stays as safe; a crash leaves a snapshot that claims nothing it does not know."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import fsspec
import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import MANAGED, UNMANAGED, attrs, requests, seed, writes

from omni_provider.client import OmniScimClient, OmniValidationError, RetryPolicy
from omni_provider.domain.models import USER_ATTRIBUTES_URN
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import PlanTooLargeError, SnapshotWriteError, SyncHaltedError
from omni_provider.sync import SyncSpec
from omni_provider.sync.snapshot.format import FileSnapshotStore, SnapshotSettings, snapshot_settings
from omni_provider.sync.users.keys import UnreadableKeysError
from omni_provider.sync.users.run import SyncRun

LIST = "GET /scim/v2/users"
LOOKUP = "GET /scim/v2/users?filter"
READ = "GET /scim/v2/users/{id}"
PATCH = "PATCH /scim/v2/users/{id}"


def spec(mode: str = "update", **kwargs: Any) -> SyncSpec:
    kwargs.setdefault("key_column", "email")
    return SyncSpec.from_user_args(MANAGED, mode=mode, **kwargs)


def row(email: str, region: str | None = "eu-west", cost_centre: int | None = 4100, **extra: Any) -> dict:
    return {"email": email, "region": region, "cost_centre": cost_centre, **extra}


def routes(emu: EmulatorServer) -> dict[str, int]:
    return dict(emu.stats.snapshot()["requests_by_route"])


def since(emu: EmulatorServer, before: dict[str, int]) -> dict[str, int]:
    now = routes(emu)
    return {route: n - before.get(route, 0) for route, n in now.items() if n - before.get(route, 0)}


def settings(path: Path, every: int = 7) -> SnapshotSettings:
    return SnapshotSettings(FileSnapshotStore(path), every)


def run(client: OmniScimClient, path: Path, rows: list[dict], mode: str = "update", **kw: Any) -> dict:
    every = kw.pop("every", 7)
    return SyncRun(client, spec(mode, **kw.pop("spec", {})), snapshot=settings(path, every), **kw).run(rows)


def saved(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def values_in(path: Path) -> dict[str, Any]:
    return {u["userName"]: u["values"] for u in saved(path)["users"]}


def set_outside(emu: EmulatorServer, email: str, **values: Any) -> None:
    """Another tool (or a person in Omni's UI) changes a user's attributes."""
    user = emu.state.find_by_email(email)
    assert user is not None
    merged = {k: v for k, v in {**user.attributes, **values}.items() if v is not None}
    emu.state.replace_user(dataclasses.replace(user, attributes=merged))


# -- first run, incremental runs ---------------------------------------------------------------------------


def test_first_run_lists_omni_and_writes_the_snapshot(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 5)
    path = tmp_path / "snap" / "omni.json"
    summary = run(client, path, [row(emails[0]), row(emails[1], region="us-east", cost_centre=None)])

    assert summary["diff_against"] == "omni" and summary["diff_reason"] == "no snapshot yet"
    assert summary["outcomes"]["applied"] == 1
    document = saved(path)
    assert document["omni"] == client.base_url and document["attributes"] == sorted(MANAGED)
    assert document["runs_since_full_resync"] == 0 and document["user_count"] == 5
    # Every Omni user, with the managed values Omni holds now (unmanaged ones are never kept).
    assert values_in(path) == {
        emails[0]: {"region": "eu-west", "cost_centre": 4100},
        **{e: {"region": "us-east"} for e in emails[1:]},
    }
    assert summary["snapshot"]["written"] is True and summary["snapshot"]["uncertain"] == 0


def test_incremental_run_lists_no_users_and_writes_only_what_changed(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 300)
    path = tmp_path / "omni.json"
    rows = [row(e, region="us-east", cost_centre=i) for i, e in enumerate(emails)]
    run(client, path, rows)
    before, sent = routes(emu), requests(emu)

    rows[7]["region"], rows[200]["cost_centre"] = "apac", None
    summary = run(client, path, rows)

    assert summary["diff_against"] == "snapshot" and summary["snapshot"]["lookups"] == 0
    assert summary["diff_reason"].endswith("300 users; Omni is read in full in 6 runs")
    assert summary["outcomes"] == {"applied": 2, "unchanged": 298, "rejected": 0, "failed": 0, "planned": 0}
    made = since(emu, before)
    assert LIST not in made and LOOKUP not in made
    # The definitions, one canary read per kind (set, unset) and the two PATCHes (each canary re-read).
    assert made[PATCH] == 2 and requests(emu) - sent == summary["requests"] == 1 + 2 + 2 + 2
    assert attrs(emu, emails[7]) == {**UNMANAGED, "region": "apac", "cost_centre": 7}
    assert attrs(emu, emails[200]) == {**UNMANAGED, "region": "us-east"}
    assert values_in(path)[emails[200]] == {"region": "us-east"}
    assert saved(path)["runs_since_full_resync"] == 1

    # Nothing changed: one request (the definitions), no write.
    before = routes(emu)
    again = run(client, path, rows)
    assert since(emu, before) == {"GET /v1/user-attributes": 1} and again["outcomes"]["unchanged"] == 300


def test_after_the_canaries_writes_go_on_the_snapshot_alone(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 20)
    path = tmp_path / "omni.json"
    rows = [row(e, region="us-east", cost_centre=1) for e in emails]
    run(client, path, rows)
    for r in rows[:10]:
        r["region"] = "emea"
    before = routes(emu)
    summary = run(client, path, rows, max_changes=20)
    made = since(emu, before)
    # One canary read first and one read to confirm it; the other nine PATCHes rest on the snapshot.
    assert made[PATCH] == 10 and made[READ] == 2 and summary["outcomes"]["applied"] == 10


def test_rows_not_in_the_snapshot_are_looked_up(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 300)  # a listing is 4 requests: 2 lookups cost less
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails], max_changes=300)
    # Created in Omni outside the sync (SSO, an admin) since the snapshot; and one nobody created.
    emu.state.add_user("Late.Joiner@example.com", "Late", {"region": "us-east", **UNMANAGED})
    rows = [row(e) for e in emails] + [row("late.joiner@example.com"), row("nobody@example.com")]
    before = routes(emu)
    summary = run(client, path, rows, max_failed_rows=1)

    assert summary["diff_against"] == "snapshot" and summary["snapshot"]["lookups"] == 2
    assert since(emu, before).get(LOOKUP) == 2 and LIST not in since(emu, before)
    assert attrs(emu, "late.joiner@example.com") == {**UNMANAGED, "region": "eu-west", "cost_centre": 4100}
    assert summary["errors_sample"] == [
        {
            "row": 302,
            "key": "nobody@example.com",
            "status": "rejected",
            "error": "no Omni user with this email",
        }
    ]
    assert "Late.Joiner@example.com" in values_in(path)


def test_upsert_looks_the_email_up_before_creating(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 300)
    path = tmp_path / "omni.json"
    up: dict[str, Any] = {"spec": {"display_name_column": "name"}}
    run(client, path, [row(e, name="x") for e in emails], "upsert", max_changes=300, **up)
    emu.state.add_user("exists.now@example.com", "Exists", {**UNMANAGED})
    rows = [row(e, name="x") for e in emails] + [
        row("exists.now@example.com", name="Exists"),
        row("brand.new@example.com", name="Brand New"),
    ]
    before = routes(emu)
    summary = run(client, path, rows, "upsert", **up)
    made = since(emu, before)
    assert made.get("POST /scim/v2/users") == 1 and made.get(LOOKUP) == 2
    assert summary["plan"]["create"] == 1 and summary["outcomes"]["applied"] == 2
    assert len([u for u in emu.state.users() if u.user_name.lower() == "exists.now@example.com"]) == 1
    assert attrs(emu, "brand.new@example.com") == {"region": "eu-west", "cost_centre": 4100}
    assert set(values_in(path)) == {*emails, "exists.now@example.com", "brand.new@example.com"}


def test_many_unknown_rows_list_omni_instead_of_looking_each_up(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 3)
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails])
    ghosts = [row(f"ghost{i}@example.com") for i in range(5)]  # 5 lookups > 1 listing page
    before = routes(emu)
    summary = run(client, path, [row(e) for e in emails] + ghosts, max_failed_rows=5)
    assert summary["diff_against"] == "omni"
    assert "listing Omni (1 requests) costs less" in summary["diff_reason"]
    assert since(emu, before).get(LIST) == 1 and LOOKUP not in since(emu, before)


# -- drift and the full resync -----------------------------------------------------------------------------


def test_drift_outside_the_sync_is_repaired_and_reported_on_the_full_resync(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, 4)
    path = tmp_path / "omni.json"
    rows = [row(e) for e in emails]
    run(client, path, rows, every=3)  # a live run (no snapshot yet)
    set_outside(emu, emails[1], region="changed-in-omni")
    emu.state.delete_user(emu.state.find_by_email(emails[3]).id)  # type: ignore[union-attr]

    for _ in range(2):  # the snapshot does not see the drift
        between = run(client, path, rows[:3], every=3)
        assert between["diff_against"] == "snapshot" and between["outcomes"]["unchanged"] == 3
    assert attrs(emu, emails[1])["region"] == "changed-in-omni"

    caplog.set_level(logging.WARNING, logger="omni_provider.sync")
    before = routes(emu)
    full = run(client, path, rows[:3], every=3)  # runs 1, 4, 7...: a full resync
    assert full["diff_against"] == "omni" and full["diff_reason"] == "full resync (every 3 runs)"
    assert since(emu, before).get(LIST) == 1
    assert full["outcomes"]["applied"] == 1 and attrs(emu, emails[1])["region"] == "eu-west"
    drift = full["drift"]
    assert drift["users"] == 1 and drift["deleted_since_snapshot"] == 1 and drift["new_since_snapshot"] == 0
    assert drift["sample"] == [
        {"user": emails[1], "attribute": "region", "snapshot": "eu-west", "omni": "changed-in-omni"}
    ]
    assert "Drifted: user002@example.com region: 'eu-west' in the snapshot" in caplog.text
    assert saved(path)["runs_since_full_resync"] == 0 and emails[3] not in values_in(path)


def test_a_value_drifted_on_a_written_user_is_left_and_recorded(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, 3)
    path = tmp_path / "omni.json"
    rows = [row(e) for e in emails]
    run(client, path, rows)
    # Omni's cost_centre changes outside; the sync then changes only the region of users 1 and 2.
    set_outside(emu, emails[2], cost_centre=9999)
    rows[0]["region"] = rows[2]["region"] = "apac"
    caplog.set_level(logging.WARNING, logger="omni_provider.sync")
    summary = run(client, path, rows)
    assert summary["outcomes"]["applied"] == 2 and "stopped" not in summary
    assert attrs(emu, emails[2]) == {**UNMANAGED, "region": "apac", "cost_centre": 9999}
    # The PATCH answer told the truth: the snapshot records Omni's value, so the next run repairs it.
    assert values_in(path)[emails[2]] == {"region": "apac", "cost_centre": 9999}
    assert "'cost_centre' changed outside the sync since the snapshot" in caplog.text
    assert "department" not in caplog.text  # unmanaged attributes are not the snapshot's business
    repaired = run(client, path, rows)
    assert repaired["outcomes"]["applied"] == 1 and attrs(emu, emails[2])["cost_centre"] == 4100


def test_a_user_deleted_since_the_snapshot_fails_its_row_and_leaves_the_snapshot(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 3)
    path = tmp_path / "omni.json"
    rows = [row(e) for e in emails]
    run(client, path, rows)
    emu.state.delete_user(emu.state.find_by_email(emails[1]).id)  # type: ignore[union-attr]
    rows[0]["region"] = rows[1]["region"] = "apac"
    summary = run(client, path, rows, max_failed_rows=1)
    assert summary["outcomes"]["failed"] == 1 and summary["outcomes"]["applied"] == 1
    assert emails[1] not in values_in(path)
    # The next run looks the email up, finds nobody, and says so.
    again = run(client, path, rows, max_failed_rows=1)
    assert again["errors_sample"][0]["error"] == "no Omni user with this email"


# -- snapshots that cannot be used -------------------------------------------------------------------------


def _good_snapshot(emu: EmulatorServer, client: OmniScimClient, path: Path) -> list[str]:
    emails = seed(emu, 3)
    run(client, path, [row(e) for e in emails])
    return emails


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: "{not json", "not a valid snapshot"),
        (lambda d: d[: len(d) // 2], "not a valid snapshot"),  # truncated
        (lambda d: "[]", "not a valid snapshot"),
        (lambda d: d.replace('"version":1', '"version":9'), "not a valid snapshot (version"),
        (lambda d: d.replace('["cost_centre","region"]', '["region"]'), "other attributes"),
        (lambda d: d.replace('"omni":"http://127.0.0.1', '"omni":"https://other.omniapp.co'), "another Omni"),
        (lambda d: d.replace('"match_on":"userName"', '"match_on":"id"'), "match_on='id'"),
        (lambda d: d.replace('"user_count":3', '"user_count":4'), "says 4 users but holds 3"),
        (lambda d: d.replace('"id":"', '"id":"../', 1), "not a valid snapshot (users.0.id"),
    ],
)
def test_a_corrupt_or_foreign_snapshot_falls_back_to_a_live_diff(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path, damage: Any, reason: str
) -> None:
    path = tmp_path / "omni.json"
    emails = _good_snapshot(emu, client, path)
    path.write_text(damage(path.read_text()))
    set_outside(emu, emails[0], region="drifted")
    before = routes(emu)
    summary = run(client, path, [row(e) for e in emails])
    assert summary["diff_against"] == "omni" and reason in summary["diff_reason"]
    assert since(emu, before).get(LIST) == 1
    assert attrs(emu, emails[0])["region"] == "eu-west"  # the live diff saw and repaired it
    assert saved(path)["user_count"] == 3 and "drift" not in summary  # replaced by a good one


def test_an_unreadable_snapshot_falls_back_and_an_unwritable_location_fails_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 2)
    folder = tmp_path / "snap"
    folder.mkdir()
    with pytest.raises(OmniValidationError, match="is a directory"):
        run(client, folder, [row(e) for e in emails])
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.raises(OmniValidationError, match="cannot write to directory"):
        run(client, blocked / "omni.json", [row(e) for e in emails])
    assert requests(emu) == 0

    class Unreadable(FileSnapshotStore):
        def read(self) -> bytes | None:
            raise PermissionError("denied")

    store = Unreadable(tmp_path / "omni.json")
    summary = SyncRun(client, spec(), snapshot=SnapshotSettings(store)).run([row(e) for e in emails])
    assert summary["diff_against"] == "omni"
    assert "unreadable (PermissionError: denied)" in summary["diff_reason"]


def test_the_snapshot_arguments_are_checked_in_one_place() -> None:
    assert snapshot_settings("omni", None, 7) is None
    made = snapshot_settings("snapshot", "/tmp/x.json", 3)
    assert made is not None and made.full_resync_every == 3
    for args, message in [
        (("live", None, 7), "diff_against must be one of"),
        (("snapshot", None, 7), "needs snapshot_path"),
        (("snapshot", "  ", 7), "needs snapshot_path"),
        (("omni", "/tmp/x.json", 7), "only used with diff_against='snapshot'"),
        (("snapshot", "/tmp/x.json", 0), "full_resync_every must be"),
        (("snapshot", "/tmp/x.json", True), "full_resync_every must be"),
        (("snapshot", "/tmp/x.json", "7"), "full_resync_every must be"),
    ]:
        with pytest.raises(OmniValidationError, match=message):
            snapshot_settings(*args)


def test_a_dry_run_leaves_the_snapshot_alone(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    path = tmp_path / "omni.json"
    emails = seed(emu, 2)
    run(client, path, [row(e) for e in emails], dry_run=True)
    assert not path.exists()
    run(client, path, [row(e) for e in emails])
    text = path.read_text()
    summary = run(client, path, [row(e, region="apac") for e in emails], dry_run=True)
    assert summary["outcomes"]["planned"] == 2 and path.read_text() == text


def test_a_snapshot_at_an_fsspec_url(emu: EmulatorServer, client: OmniScimClient) -> None:
    memory = fsspec.filesystem("memory")
    url = "memory://omni-snapshots/attributes.json"
    emails = seed(emu, 2)
    store = FileSnapshotStore(url)
    SyncRun(client, spec(), snapshot=SnapshotSettings(store)).run([row(e) for e in emails])
    before = routes(emu)
    summary = SyncRun(client, spec(), snapshot=SnapshotSettings(store)).run([row(e) for e in emails])
    assert summary["diff_against"] == "snapshot" and LIST not in since(emu, before)
    assert memory.ls("/omni-snapshots", detail=False) == ["/omni-snapshots/attributes.json"]
    memory.rm("/omni-snapshots", recursive=True)


# -- mirror mode -------------------------------------------------------------------------------------------


def test_mirror_in_snapshot_mode_unsets_absent_users_and_keeps_its_guards(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 40)
    path = tmp_path / "omni.json"
    rows = [row(e) for e in emails]
    run(client, path, rows, "mirror", max_changes=40)
    mark = writes(emu)

    # A renamed key column: refused before any request, as in a live run.
    renamed = [{"mail": r["email"], "region": r["region"], "cost_centre": r["cost_centre"]} for r in rows]
    sent = requests(emu)
    with pytest.raises(OmniValidationError, match="key column 'email'"):
        run(client, path, renamed, "mirror")
    # A truncated input: the 10% blast-radius limit counts the snapshot's users.
    with pytest.raises(PlanTooLargeError, match="37 users"):
        run(client, path, rows[:3], "mirror")
    # One unreadable key: refused before any request.
    with pytest.raises(UnreadableKeysError):
        run(client, path, [*rows[:39], {"email": None, "region": "x", "cost_centre": 1}], "mirror")
    assert writes(emu) == mark and requests(emu) - sent == 1  # the truncated run read the definitions
    assert saved(path)["runs_since_full_resync"] == 0  # refused runs leave the snapshot as it was

    # Within the limit: the absent users lose exactly their managed attributes.
    before = routes(emu)
    summary = run(client, path, rows[:38], "mirror")
    assert summary["diff_against"] == "snapshot" and LIST not in since(emu, before)
    assert summary["plan"]["unset"] == 2 and summary["outcomes"]["applied"] == 2
    for email in emails[38:]:
        assert attrs(emu, email) == UNMANAGED
        assert values_in(path)[email] == {}


def test_mirror_in_snapshot_mode_reads_uncertain_users_before_unsetting(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 4)
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails], "mirror")
    document = saved(path)
    document["users"][3]["values"] = None  # uncertain (a crashed run was writing it)
    path.write_text(json.dumps(document))
    before = routes(emu)
    summary = run(client, path, [row(e) for e in emails[:3]], "mirror", max_changes=1)
    assert since(emu, before).get(READ, 0) >= 1 and summary["plan"]["unset"] == 1
    assert attrs(emu, emails[3]) == UNMANAGED


# -- the breaker and crashes -------------------------------------------------------------------------------


def test_the_canary_is_judged_on_a_fresh_read_not_on_the_snapshot(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    """Omni applying a map replace as "replace the whole map" is caught on the first write, although the
    snapshot knows nothing of the unmanaged attribute it wipes."""
    emails = seed(emu, 10)
    path = tmp_path / "omni.json"
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, patch_form="map_replace"
    ) as client:
        run(client, path, [row(e, region="us-east", cost_centre=None) for e in emails])
        emu.config.apply_patch({"patch_semantics": "other"})
        before = routes(emu)
        with pytest.raises(SyncHaltedError) as info:
            run(client, path, [row(e, region="apac", cost_centre=None) for e in emails], max_changes=10)
    assert since(emu, before)[PATCH] == 1  # the canary only
    assert info.value.summary["outcomes"]["failed"] == 10
    assert "department" in str(info.value)
    assert sum(1 for e in emails if attrs(emu, e) != {**UNMANAGED, "region": "us-east"}) == 1
    # The damaged user stays uncertain in the snapshot (the next run reads it); the writes never sent
    # leave their users as they were.
    assert [e for e, v in values_in(path).items() if v is None] == [emails[0]]


class CrashAfterWrites(FileSnapshotStore):
    """The process dies after the writes, before the snapshot is brought up to date."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls = 0

    def write(self, data: str) -> None:
        self.calls += 1
        if self.calls == 2:
            raise SystemExit("killed")
        super().write(data)


def test_a_crash_mid_run_leaves_a_snapshot_that_is_still_correct(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 5)
    path = tmp_path / "omni.json"
    old = [row(e) for e in emails]
    run(client, path, old)

    new = [row(e) for e in emails]
    new[0]["region"] = new[1]["region"] = "apac"
    with pytest.raises(SystemExit):
        SyncRun(client, spec(), snapshot=SnapshotSettings(CrashAfterWrites(path))).run(new)
    assert attrs(emu, emails[0])["region"] == "apac"  # the writes landed
    assert values_in(path)[emails[0]] is None and values_in(path)[emails[1]] is None  # uncertain
    assert values_in(path)[emails[2]] == {"region": "eu-west", "cost_centre": 4100}

    # The warehouse goes back to the old values: a snapshot that still said "eu-west" would find nothing
    # to do and leave "apac" in Omni. The uncertain users are read first, so both are written back.
    before = routes(emu)
    summary = run(client, path, old)
    assert since(emu, before).get(READ, 0) >= 2 and summary["outcomes"]["applied"] == 2
    assert attrs(emu, emails[0])["region"] == attrs(emu, emails[1])["region"] == "eu-west"
    assert all(v is not None for v in values_in(path).values())


def test_failed_writes_stay_uncertain_and_the_rerun_settles_them(emu: EmulatorServer, tmp_path: Path) -> None:
    emails = seed(emu, 3)
    path = tmp_path / "omni.json"
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=1)
    ) as client:
        run(client, path, [row(e) for e in emails])
        emu.config.apply_patch({"faults": {"error_503": 1.0}, "fault_methods": ["PATCH"]})
        summary = run(client, path, [row(e, region="apac") for e in emails], max_failed_rows=3)
        assert summary["outcomes"]["failed"] == 3
        assert all(v is None for v in values_in(path).values())
        emu.config.apply_patch({"faults": {}})
        again = run(client, path, [row(e, region="apac") for e in emails])
    assert again["outcomes"]["applied"] == 3 and all(attrs(emu, e)["region"] == "apac" for e in emails)
    assert all(v == {"region": "apac", "cost_centre": 4100} for v in values_in(path).values())


def test_a_snapshot_that_cannot_be_marked_before_the_writes_stops_the_run_before_any_write(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 2)
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails])

    class Full(FileSnapshotStore):
        def write(self, data: str) -> None:
            raise OSError(28, "No space left on device")

    mark = writes(emu)
    with pytest.raises(SnapshotWriteError, match="nothing was sent to Omni"):
        SyncRun(client, spec(), snapshot=SnapshotSettings(Full(path))).run(
            [row(e, region="apac") for e in emails]
        )
    assert writes(emu) == mark


def test_the_snapshot_never_holds_the_key(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 2)
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails])
    assert TEST_API_KEY not in path.read_text()
    assert USER_ATTRIBUTES_URN not in path.read_text()


def test_an_omni_that_lists_users_without_their_maps(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    """Listed users without attribute maps are uncertain in the snapshot until a run reads them, never
    recorded as holding nothing."""
    emails = seed(emu, 4)
    emu.config.apply_patch({"list_attribute_maps": False})
    path = tmp_path / "omni.json"
    run(client, path, [row(emails[0])])
    snap = values_in(path)
    assert snap[emails[0]] == {"region": "eu-west", "cost_centre": 4100}
    assert all(snap[e] is None for e in emails[1:])  # never read: uncertain, not empty

    before = routes(emu)
    summary = run(client, path, [row(emails[0]), row(emails[1], region="us-east", cost_centre=None)])
    assert summary["diff_against"] == "snapshot" and summary["outcomes"]["unchanged"] == 2
    assert since(emu, before) == {"GET /v1/user-attributes": 1, READ: 1}  # the uncertain user it needed
    assert values_in(path)[emails[1]] == {"region": "us-east"}


def test_overlapping_runs_make_the_next_run_read_omni_in_full(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    """Two runs of one sync at once (a manual trigger during a scheduled run) cannot both vouch for the
    snapshot: the one that notices marks it, and the next run diffs against live Omni."""
    emails = seed(emu, 4)
    path = tmp_path / "omni.json"
    run(client, path, [row(e) for e in emails])
    first = [row(e) for e in emails]
    first[0]["region"] = "apac"
    second = [row(e) for e in emails]
    second[1]["region"] = "emea"

    def meanwhile(progress: Any) -> None:  # called once the first run's writes are done
        run(client, path, second)

    summary = SyncRun(client, spec(), snapshot=settings(path), on_progress=meanwhile).run(first)
    assert summary["snapshot"]["overlapping_runs"] is True and saved(path)["overlapping_runs"] is True
    before = routes(emu)
    after = run(client, path, first)
    assert after["diff_against"] == "omni" and "overlapped" in after["diff_reason"]
    assert since(emu, before).get(LIST) == 1 and "drift" not in after
    assert attrs(emu, emails[1])["region"] == "eu-west"  # the live diff settled what the rows want
    assert saved(path)["overlapping_runs"] is False
