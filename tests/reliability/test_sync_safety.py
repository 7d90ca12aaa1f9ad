"""SyncOmniUserAttributesOperator against the emulator: never wipe on a broken input, one identity rule, and
a report that is checked before any write, never replaced and never lost.

Each test counts what the emulator really received; "before any request" means its request counter is 0.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
import structlog
from fsspec.implementations.memory import MemoryFileSystem
from omni_testkit import TEST_API_KEY, omni_connection_json
from reliability_kit import print_figures

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

MANAGED = ["region", "cost_centre"]
RUN_ID = "scheduled__2026-11-30T00:00:00+00:00"


class RecordingTI:
    """The task instance, as far as the operator uses it (the try number names the report)."""

    def __init__(self, try_number: int = 1) -> None:
        self.dag_id = "omni_sync"
        self.task_id = "sync"
        self.run_id = RUN_ID
        self.map_index = -1
        self.try_number = try_number
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        json.dumps(value)  # XCom values must be JSON-serialisable
        self.pushed[key] = value


@dataclass
class Run:
    ti: RecordingTI
    logs: list[dict[str, Any]]
    result: dict[str, Any] | None = None
    error: BaseException | None = None

    @property
    def summary(self) -> dict[str, Any]:
        return self.ti.pushed["sync_summary"]  # type: ignore[no-any-return]

    def events(self, level: str) -> list[str]:
        return [str(e["event"]) for e in self.logs if e.get("log_level") == level]


def run_sync(*, raises: type[BaseException] | None = None, try_number: int = 1, **kwargs: Any) -> Run:
    kwargs.setdefault("attributes", MANAGED)
    operator = SyncOmniUserAttributesOperator(task_id="sync", **kwargs)
    ti = RecordingTI(try_number)
    context: Any = {"ti": ti, "run_id": RUN_ID}
    with structlog.testing.capture_logs() as logs:
        if raises is None:
            return Run(ti, logs, result=operator.execute(context))
        with pytest.raises(raises) as info:
            operator.execute(context)
    assert type(info.value) is raises, f"expected {raises.__name__}, got {type(info.value).__name__}"
    return Run(ti, logs, error=info.value)


def seed(emu: EmulatorServer, n: int) -> list[str]:
    emails = [f"user{i:03d}@example.com" for i in range(1, n + 1)]
    for i, email in enumerate(emails, start=1):
        emu.state.add_user(email, f"User {i}", {"region": "us-east", "department": "Sales"})
    return emails


def requests(emu: EmulatorServer) -> int:
    return int(emu.stats.snapshot()["requests_total"])


def writes(emu: EmulatorServer) -> int:
    methods = emu.stats.snapshot()["requests_by_method"]
    return sum(methods.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))


def regions(emu: EmulatorServer) -> dict[str, Any]:
    return {u.user_name: u.attributes.get("region") for u in emu.state.users()}


@pytest.fixture
def emu(omni_connection: EmulatorServer) -> EmulatorServer:
    return omni_connection


# -- item 1: a mirror never runs on unreadable keys -----------------------------------------------------


def test_renamed_key_column_in_mirror_mode_fails_before_any_request(emu: EmulatorServer) -> None:
    emails = seed(emu, 40)
    before = regions(emu)
    # The query renamed "email" to "mail": on the old code every row was rejected, then all 40 users unset.
    rows = [{"mail": e, "region": "eu-west", "cost_centre": 1} for e in emails[:30]]
    run = run_sync(
        rows=rows, mode="mirror", key_column="email", max_changes="100%", raises=AirflowFailException
    )
    assert "key column 'email' is not in the input" in str(run.error)
    assert "cost_centre, mail, region" in str(run.error)
    assert requests(emu) == 0 and regions(emu) == before
    assert run.summary["stage"] == "reading" and "key column 'email'" in run.summary["error"]
    print_figures(
        "renamed_key_column_mirror",
        {"rows": len(rows), "omni_users": 40, "requests": requests(emu), "writes": 0},
    )


@pytest.mark.parametrize("mode", ["update", "upsert"])
def test_missing_key_column_fails_before_any_request_in_every_mode(emu: EmulatorServer, mode: str) -> None:
    seed(emu, 3)
    rows = [{"EMAIL_ADDRESS": "user001@example.com", "region": "x", "cost_centre": 1, "name": "A"}]
    extra = {"display_name_column": "name"} if mode == "upsert" else {}
    run = run_sync(rows=rows, mode=mode, key_column="email", raises=AirflowFailException, **extra)
    assert "key column 'email' is not in the input" in str(run.error)
    assert requests(emu) == 0


@pytest.mark.parametrize(
    ("bad_key", "reason"),
    [
        (None, "empty match key"),
        (b"user002@example.com", "got bytes"),
        ("user002 at example.com", "not an email"),
    ],
)
def test_mirror_with_an_unreadable_key_unsets_nobody_and_sends_nothing(
    emu: EmulatorServer, bad_key: object, reason: str
) -> None:
    emails = seed(emu, 10)
    before = regions(emu)
    rows: list[dict[str, Any]] = [{"email": e, "region": "us-east", "cost_centre": None} for e in emails]
    rows[1]["email"] = bad_key
    run = run_sync(
        rows=rows, mode="mirror", key_column="email", max_changes="100%", raises=AirflowFailException
    )
    message = str(run.error)
    assert "1 of 10 input rows have an unreadable key in column 'email'" in message and reason in message
    assert requests(emu) == 0 and regions(emu) == before
    print_figures(
        f"mirror_unreadable_key[{reason}]", {"rows": 10, "unreadable": 1, "requests": requests(emu)}
    )


# -- item 2: mirror blast radius by default -------------------------------------------------------------


def test_mirror_with_default_settings_refuses_to_unset_most_users(emu: EmulatorServer) -> None:
    emails = seed(emu, 40)
    before = regions(emu)
    rows = [{"userName": e, "region": "us-east", "cost_centre": None} for e in emails[:3]]
    run = run_sync(rows=rows, mode="mirror", raises=AirflowFailException)
    message = str(run.error)
    assert "mirror mode would unset attributes of 37 of 40 Omni users (region on 37 users;" in message
    assert "default limit for mirror runs (10% = 4 users)" in message and "max_changes" in message
    assert writes(emu) == 0 and regions(emu) == before
    assert run.summary["plan"]["unset"] == 37 and run.summary["error"] == message
    print_figures(
        "mirror_default_limit",
        {"rows": 3, "omni_users": 40, "would_unset": 37, "limit": 4, "writes": writes(emu)},
    )

    # Given explicitly, max_changes is the caller's decision: the same run then goes through.
    run = run_sync(rows=rows, mode="mirror", max_changes="100%")
    assert writes(emu) == 37 and sum(1 for v in regions(emu).values() if v is None) == 37
    print_figures("mirror_explicit_max_changes", {"max_changes": "100%", "writes": writes(emu)})


def test_mirror_within_the_default_limit_runs(emu: EmulatorServer) -> None:
    emails = seed(emu, 20)
    rows = [{"userName": e, "region": "us-east", "cost_centre": None} for e in emails[:18]]
    run = run_sync(rows=rows, mode="mirror")  # 2 of 20 users = 10%: allowed
    assert run.result is not None and run.result["outcomes"]["applied"] == 2 and writes(emu) == 2


# -- item 8: one user whatever its Unicode spelling -----------------------------------------------------

ZOE_NFC = unicodedata.normalize("NFC", "Zoë.Ångström@exämple.com")
ZOE_NFD = unicodedata.normalize("NFD", ZOE_NFC)


def test_emulator_keeps_an_nfd_email_as_sent_and_compares_code_points(emu: EmulatorServer) -> None:
    # Created through the API, as another provisioning tool would: the bytes sent are the bytes stored.
    created = httpx.post(
        emu.base_url + "/api/scim/v2/users",
        json={"userName": ZOE_NFD, "displayName": "Zoë"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    stored = emu.state.get_user(created.json()["id"])
    assert stored is not None and stored.user_name == ZOE_NFD and ZOE_NFD != ZOE_NFC
    # Like a database index on lower(userName): case-insensitive, not Unicode-normalising.
    assert emu.state.find_by_email(ZOE_NFD.upper()) is not None
    assert emu.state.find_by_email(ZOE_NFC) is None


def test_nfd_email_in_omni_and_nfc_in_the_warehouse_is_one_user(emu: EmulatorServer) -> None:
    emu.state.add_user(ZOE_NFD, "Zoë", {"region": "us-east"})
    seed(emu, 2)
    rows = [
        {"userName": ZOE_NFC.lower(), "name": "Zoë", "region": "eu-north", "cost_centre": None},
        {"userName": "user001@example.com", "name": "U1", "region": "us-east", "cost_centre": None},
        {"userName": "user002@example.com", "name": "U2", "region": "us-east", "cost_centre": None},
    ]
    run = run_sync(rows=rows, mode="upsert", display_name_column="name")
    assert run.result is not None and run.result["plan"]["create"] == 0
    assert emu.stats.snapshot()["users_created"] == 0 and len(emu.state.users()) == 3
    assert emu.state.find_by_email(ZOE_NFD) is not None
    assert emu.state.find_by_email(ZOE_NFD).attributes["region"] == "eu-north"  # type: ignore[union-attr]

    # Mirror: the NFD user is present in the input, so it is never unset as absent.
    run = run_sync(rows=rows, mode="mirror", max_changes=0)
    assert (
        run.result is not None and run.result["plan"]["unset"] == 0 and run.result["plan"]["unchanged"] == 3
    )
    stats = emu.stats.snapshot()
    print_figures(
        "nfd_in_omni_nfc_in_warehouse",
        {
            "users_created": stats["users_created"],
            "posts": stats["requests_by_method"].get("POST", 0),
            "patches": stats["requests_by_method"].get("PATCH", 0),
            "mirror_unsets": run.result["plan"]["unset"],
        },
    )


# -- item 9: what the client would refuse is rejected at plan time --------------------------------------


def test_email_the_client_refuses_is_rejected_at_plan_time_not_failed_at_write_time(
    emu: EmulatorServer,
) -> None:
    seed(emu, 1)
    rows = [
        {"userName": "ada@localhost", "name": "Ada", "region": "eu-west", "cost_centre": None},
        {"userName": "user001@example.com", "name": "U1", "region": "eu-west", "cost_centre": None},
    ]
    # Rejected rows cannot be fixed by a task retry, so the failure is not retryable.
    run = run_sync(rows=rows, mode="upsert", display_name_column="name", raises=AirflowFailException)
    summary = run.summary
    assert summary["plan"]["rejected"] == 1 and summary["plan"]["create"] == 0
    assert summary["outcomes"]["failed"] == 0 and summary["outcomes"]["applied"] == 1
    assert "not an email" in summary["errors_sample"][0]["error"]
    assert emu.stats.snapshot()["requests_by_method"].get("POST", 0) == 0
    print_figures(
        "client_refused_email_rejected_at_plan_time",
        {"rejected": 1, "failed": 0, "posts": 0, "task_error": type(run.error).__name__},
    )


# -- item 11: the report location is checked first; a report that cannot be written is never lost -------


def test_unwritable_report_directory_fails_before_any_request(emu: EmulatorServer, tmp_path: Path) -> None:
    seed(emu, 2)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report folder should be")
    rows = [{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}]
    run = run_sync(rows=rows, report_path=str(blocker / "reports" / "run.jsonl"), raises=AirflowFailException)
    assert "cannot write to directory" in str(run.error) and "Nothing was sent to Omni" in str(run.error)
    assert requests(emu) == 0
    assert run.summary["stage"] == "configuration"
    print_figures("unwritable_report_dir", {"requests": requests(emu)})


def test_report_url_without_its_storage_backend_fails_before_any_request(emu: EmulatorServer) -> None:
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("s3fs is installed here; this test needs an environment without it")
    seed(emu, 2)
    rows = [{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}]
    run = run_sync(rows=rows, report_path="s3://audit-bucket/omni/run.jsonl", raises=AirflowFailException)
    assert "no storage backend for s3:// URLs" in str(run.error) and "s3fs" in str(run.error)
    assert requests(emu) == 0
    print_figures("s3_report_without_backend", {"requests": requests(emu)})


def test_report_table_on_an_unusable_connection_fails_before_any_request(emu: EmulatorServer) -> None:
    seed(emu, 2)
    rows = [{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}]
    run = run_sync(
        rows=rows, report_table="omni_report", report_conn_id="no_such_conn", raises=AirflowFailException
    )
    assert "report_table 'omni_report' on connection 'no_such_conn' is not usable" in str(run.error)
    assert requests(emu) == 0


class ReadOnlyMemoryFileSystem(MemoryFileSystem):
    """An object store the worker may read but not write (like a bucket with read-only credentials)."""

    protocol = "readonlymem"

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if "r" not in mode:
            raise PermissionError(f"write access denied to {path}")
        return super()._open(path, mode, *args, **kwargs)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        return None

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        return None


@pytest.fixture
def read_only_store() -> Iterator[None]:
    from airflow.sdk.io import attach

    fsspec.register_implementation("readonlymem", ReadOnlyMemoryFileSystem, clobber=True)
    attach("readonlymem", fs=ReadOnlyMemoryFileSystem())
    yield


@pytest.mark.filterwarnings("ignore:UPath 'readonlymem' filesystem not explicitly implemented")
def test_report_that_fails_after_the_writes_goes_to_a_local_fallback_and_the_summary_is_pushed(
    emu: EmulatorServer, tmp_path: Path, read_only_store: None
) -> None:
    emails = seed(emu, 5)
    rows = [{"userName": e, "region": "ap-south", "cost_centre": 7} for e in emails]
    fallback = tmp_path / "fallback"
    run = run_sync(
        rows=rows,
        report_path="readonlymem://audit/omni/run.jsonl",
        fallback_report_dir=str(fallback),
        raises=AirflowFailException,
    )
    # The writes happened and are accounted for: the summary is in XCom, the rows in the fallback file.
    assert writes(emu) == 5 and all(v == "ap-south" for v in regions(emu).values())
    summary = run.summary
    assert summary["outcomes"]["applied"] == 5 and "PermissionError" in summary["report_error"]
    local = Path(summary["report_fallback_path"].removeprefix("file://"))
    assert local.parent == fallback.resolve()
    assert local.name == f"omni_sync.sync.{RUN_ID.replace(':', '_').replace('+', '_')}.try1.jsonl"
    records = [json.loads(line) for line in local.read_text(encoding="utf-8").splitlines()]
    assert [(r["row"], r["status"]) for r in records] == [(n, "applied") for n in range(1, 6)]
    assert [e for e in run.events("error") if str(local) in e and "local fallback file" in e]
    assert "the per-row outcomes are in" in str(run.error) and str(local) in str(run.error)
    print_figures("report_fallback", {"rows": 5, "writes": writes(emu), "fallback_records": len(records)})


# -- item 12: a retry never overwrites an earlier attempt's report --------------------------------------


def test_default_report_name_carries_the_try_number_so_retries_keep_every_report(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emails = seed(emu, 3)
    folder = tmp_path / "reports"
    rows = [{"userName": e, "region": "eu-west", "cost_centre": None} for e in emails]
    first = run_sync(rows=rows, report_path=f"{folder}/", try_number=1)
    second = run_sync(rows=rows, report_path=f"{folder}/", try_number=2)  # a retry: everything unchanged
    names = sorted(p.name for p in folder.iterdir())
    run_part = RUN_ID.replace(":", "_").replace("+", "_")
    assert names == [f"omni_sync.sync.{run_part}.try1.jsonl", f"omni_sync.sync.{run_part}.try2.jsonl"]
    statuses = [
        [json.loads(line)["status"] for line in (folder / name).read_text().splitlines()] for name in names
    ]
    assert statuses == [["applied"] * 3, ["unchanged"] * 3]
    assert first.summary["report_path"] != second.summary["report_path"]
    print_figures("report_per_try", {"tries": 2, "files": names})


def test_an_existing_report_file_is_never_replaced(emu: EmulatorServer, tmp_path: Path) -> None:
    emails = seed(emu, 2)
    report = tmp_path / "run.jsonl"
    report.write_text("earlier attempt\n")
    rows = [{"userName": e, "region": "eu-west", "cost_centre": None} for e in emails]
    # A cleared task: same run id, same templated path, and (as after a clear) the same try number twice.
    run1 = run_sync(rows=rows, report_path=str(report), try_number=3)
    run2 = run_sync(rows=rows, report_path=str(report), try_number=3)
    assert report.read_text() == "earlier attempt\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl", "run.try3.2.jsonl", "run.try3.jsonl"]
    assert run1.summary["report_path"] == (tmp_path / "run.try3.jsonl").as_uri()
    assert run2.summary["report_path"] == (tmp_path / "run.try3.2.jsonl").as_uri()
    assert [e for e in run1.events("warning") if "already exists" in e and "run.try3.jsonl" in e]
    print_figures("existing_report_kept", {"runs": 2, "files": sorted(p.name for p in tmp_path.iterdir())})


def test_existing_object_store_report_is_never_replaced(emu: EmulatorServer) -> None:
    from airflow.sdk.io import attach

    memory = fsspec.filesystem("memory")
    attach("memory", fs=memory)
    memory.pipe("/keep/run.jsonl", b"earlier attempt\n")
    seed(emu, 1)
    rows = [{"userName": "user001@example.com", "region": "eu-west", "cost_centre": None}]
    run = run_sync(rows=rows, report_path="memory://keep/run.jsonl", try_number=2)
    assert memory.cat("/keep/run.jsonl") == b"earlier attempt\n"
    assert run.summary["report_path"] == "memory://keep/run.try2.jsonl"
    assert io.BytesIO(memory.cat("/keep/run.try2.jsonl")).read().count(b"\n") == 1
    memory.rm("/keep", recursive=True)


# -- issue 10: sync_summary is pushed in every run ------------------------------------------------------


def test_sync_summary_is_pushed_on_success_and_on_every_kind_of_failure(
    emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = seed(emu, 4)
    ok = run_sync(rows=[{"userName": emails[0], "region": "x", "cost_centre": None}])
    assert ok.summary == ok.result and ok.summary["stage"] == "done" and "error" not in ok.summary

    config = run_sync(rows=[], mode="sideways", raises=AirflowFailException)
    assert config.summary == {"stage": "configuration", "error": str(config.error)}

    refused = run_sync(
        rows=[{"userName": emails[0], "region": "y", "cost_centre": None}],
        max_changes=0,
        raises=AirflowFailException,
    )
    assert refused.summary["stage"] == "planning" and refused.summary["plan"]["update"] == 1
    assert "max_changes=0" in refused.summary["error"]

    rejected = run_sync(
        rows=[{"userName": "ghost@example.com", "region": "y", "cost_centre": None}],
        raises=AirflowFailException,
    )
    assert rejected.summary["stage"] == "done" and rejected.summary["outcomes"]["rejected"] == 1
    assert rejected.summary["verdict"] == "failed" and "Omni sync failed" in rejected.summary["error"]

    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, max_retries=0))
    emu.context.faults.set_fail_next([{"status": 503, "methods": ["GET"]}])
    unreachable = run_sync(
        rows=[{"userName": emails[0], "region": "z", "cost_centre": None}], raises=AirflowException
    )
    assert unreachable.summary["stage"] == "reading" and "503" in unreachable.summary["error"]
    runs = [ok, config, refused, rejected, unreachable]
    print_figures(
        "sync_summary_always_pushed",
        {
            "runs": len(runs),
            "pushed": sum("sync_summary" in r.ti.pushed for r in runs),
            "stages": [r.summary["stage"] for r in runs],
        },
    )
