"""``SyncRun`` on its own, with no orchestrator: the whole sync flow against the emulator over loopback.

The emulator's counters say what was really sent; no assertion depends on timing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import MANAGED, UNMANAGED, attrs, method_count, requests, seed, state_of, writes

from omni_provider.client import OmniError, OmniScimClient, OmniValidationError, RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import PlanTooLargeError, SyncFailedError, SyncHaltedError, SyncReportLostError
from omni_provider.sync import SyncSpec
from omni_provider.sync.engine.report import JsonlFileSink
from omni_provider.sync.users.apply import Progress, is_stopped_error
from omni_provider.sync.users.outcome import RowOutcome
from omni_provider.sync.users.run import SyncRun

#: The keys of the sync operator's XCom summary, which every adapter returns too.
SUMMARY_KEYS = {
    "stage", "mode", "dry_run", "rows", "omni_users", "plan", "outcomes", "by_action", "requests", "retries",
    "rate_limited", "requests_by_method", "seconds", "complete", "errors_sample", "diff_against", "verdict",
}  # fmt: skip


def spec(mode: str = "update", **kwargs: Any) -> SyncSpec:
    kwargs.setdefault("key_column", "email")
    return SyncSpec.from_user_args(MANAGED, mode=mode, **kwargs)


def row(email: str, region: str | None = "eu-west", cost_centre: int | None = 4100, **extra: Any) -> dict:
    return {"email": email, "region": region, "cost_centre": cost_centre, **extra}


class ListSink:
    """A report sink that keeps what it was given."""

    def __init__(self) -> None:
        self.written: list[tuple[list[RowOutcome], str]] = []
        self.checked = 0

    def check(self) -> None:
        self.checked += 1

    def write(self, outcomes: Sequence[RowOutcome], *, run_id: str) -> dict[str, Any]:
        self.written.append((list(outcomes), run_id))
        return {"report_rows": len(outcomes)}


def test_update_applies_only_differences_and_reports_every_row(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 5)
    before = state_of(emu)
    report = tmp_path / "reports" / "run.jsonl"
    sink = ListSink()
    rows = [
        row("User001@Example.com"),  # case differs from Omni's: still the same user
        row(emails[1], region="us-east", cost_centre=None),  # already so
        row("ghost@example.com"),  # not in Omni: rejected in update mode
    ]
    summary = SyncRun(
        client, spec(), sinks=[JsonlFileSink(report), sink], max_failed_rows=1, run_id="r-1"
    ).run(rows)

    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 4100}
    for email in emails[1:]:
        assert attrs(emu, email) == before[email]
    assert method_count(emu, "PATCH") == 1 and writes(emu) == 1

    assert set(summary) >= SUMMARY_KEYS and set(summary) - SUMMARY_KEYS == {"report_path", "report_rows"}
    assert summary["plan"] == {"create": 0, "update": 1, "unset": 0, "unchanged": 1, "rejected": 1}
    assert summary["outcomes"] == {"applied": 1, "unchanged": 1, "rejected": 1, "failed": 0, "planned": 0}
    assert summary["rows"] == 3 and summary["omni_users"] == 5 and summary["complete"] is True
    assert summary["requests"] == requests(emu)  # definitions + one page + one PATCH
    sent = emu.stats.snapshot()["requests_by_method"]
    assert summary["requests_by_method"] == sent and sent["PATCH"] == 1
    assert summary["errors_sample"] == [
        {"row": 3, "key": "ghost@example.com", "status": "rejected", "error": "no Omni user with this email"}
    ]
    json.dumps(summary)  # plain data, ready for XCom or Dagster metadata

    assert summary["report_path"] == str(report.resolve())
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["row"], r["status"]) for r in records] == [(1, "applied"), (2, "unchanged"), (3, "rejected")]
    assert sink.checked == 1 and len(sink.written) == 1
    outcomes, run_id = sink.written[0]
    assert run_id == "r-1" and [o.status.value for o in outcomes] == ["applied", "unchanged", "rejected"]


def test_rerun_sends_no_write_and_counts_only_its_own_requests(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    rows = [row(e, region="apac", cost_centre=i) for i, e in enumerate(emails)]
    first = SyncRun(client, spec()).run(rows)
    assert first["outcomes"]["applied"] == 3
    sent = requests(emu)

    second = SyncRun(client, spec()).run(rows)  # the same client: its counters are cumulative
    assert writes(emu) == 3
    assert second["outcomes"] == {"applied": 0, "unchanged": 3, "rejected": 0, "failed": 0, "planned": 0}
    assert second["requests"] == requests(emu) - sent == 2  # definitions and one page


def test_dry_run_writes_nothing(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 2)
    before = state_of(emu)
    summary = SyncRun(client, spec(), dry_run=True).run([row(emails[0]), row(emails[1])])
    assert writes(emu) == 0 and state_of(emu) == before
    assert summary["dry_run"] is True and summary["outcomes"]["planned"] == 2


def test_upsert_creates_missing_users(emu: EmulatorServer, client: OmniScimClient) -> None:
    seed(emu, 1)
    rows = [row("new.person@example.com", name="New Person"), row("user001@example.com")]
    summary = SyncRun(client, spec("upsert", display_name_column="name")).run(rows)
    assert summary["plan"]["create"] == 1 and summary["outcomes"]["applied"] == 2
    created = emu.state.find_by_email("new.person@example.com")
    assert created is not None and created.display_name == "New Person"
    assert dict(created.attributes) == {"region": "eu-west", "cost_centre": 4100}


def test_mirror_unsets_managed_attributes_of_absent_users(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    summary = SyncRun(client, spec("mirror"), max_changes=3).run([row(emails[0])])
    assert summary["plan"]["unset"] == 2
    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 4100}
    for email in emails[1:]:
        assert attrs(emu, email) == UNMANAGED  # the managed keys are gone, the others stay


def test_mirror_refuses_an_empty_input_before_any_write(emu: EmulatorServer, client: OmniScimClient) -> None:
    seed(emu, 3)
    with pytest.raises(PlanTooLargeError, match="no rows"):
        SyncRun(client, spec("mirror")).run([])
    assert writes(emu) == 0


def test_plan_over_max_changes_is_refused_and_a_dry_run_reports_the_refusal(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 4)
    rows = [row(e) for e in emails]
    with pytest.raises(PlanTooLargeError, match="more than max_changes"):
        SyncRun(client, spec(), max_changes="50%").run(rows)
    assert writes(emu) == 0

    summary = SyncRun(client, spec(), max_changes=2, dry_run=True).run(rows)
    assert "max_changes" in summary["refused"] and summary["outcomes"]["planned"] == 4
    assert writes(emu) == 0


def test_rejected_rows_over_the_threshold_raise_with_the_summary(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 2)
    rows = [row(emails[0]), row("ghost@example.com"), row(emails[1], cost_centre="not a number")]
    with pytest.raises(SyncFailedError) as info:
        SyncRun(client, spec(), max_failed_rows=1).run(rows)
    assert info.value.retryable is False  # a re-run cannot fix the input
    assert info.value.summary["outcomes"]["rejected"] == 2 and info.value.summary["outcomes"]["applied"] == 1
    assert "over max_failed_rows=1" in str(info.value)
    # Within the thresholds the run passes, and says what did not sync.
    summary = SyncRun(client, spec(), max_failed_rows=None, max_failed_pct=100).run(rows)
    assert summary["outcomes"]["rejected"] == 2


def test_failed_writes_are_retryable_and_a_rerun_applies_them(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    rows = [row(e, region="apac") for e in emails]
    emu.config.apply_patch({"faults": {"error_503": 1.0}, "fault_methods": ["PATCH"]})
    one_try = RetryPolicy(max_attempts=1)
    with (
        OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=one_try) as once,
        pytest.raises(SyncFailedError) as info,
    ):
        SyncRun(once, spec()).run(rows)
    assert info.value.retryable is True
    assert info.value.summary["outcomes"]["failed"] == 3
    emu.config.apply_patch({"faults": {}})
    assert SyncRun(client, spec()).run(rows)["outcomes"]["applied"] == 3


def test_stop_leaves_every_row_reported(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 20)
    sink = ListSink()
    seen: list[Progress] = []

    def stop_after_first(progress: Progress) -> None:
        seen.append(progress)
        if progress.done >= 1:
            run.stop()

    run = SyncRun(
        client,
        spec(),
        sinks=[sink],
        max_workers=1,
        progress_every=0.0,
        on_progress=stop_after_first,
        max_failed_rows=None,  # so the stopped run returns its summary instead of failing
    )
    summary = run.run([row(e, region="apac") for e in emails])
    assert summary["complete"] is False
    applied, failed = summary["outcomes"]["applied"], summary["outcomes"]["failed"]
    assert applied >= 1 and failed >= 1 and applied + failed == 20
    assert applied == writes(emu)  # exactly the users changed in Omni
    ((outcomes, _),) = sink.written
    assert len(outcomes) == 20 and seen[0].total == 20
    assert all(o.stopped and is_stopped_error(o.error) for o in outcomes if o.status.value == "failed")


def test_an_interrupted_run_still_reports_every_row_then_raises(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 10)
    sink = ListSink()

    def interrupt(progress: Progress) -> None:
        raise KeyboardInterrupt  # what a task timeout or a termination signal looks like to the engine

    run = SyncRun(client, spec(), sinks=[sink], max_workers=1, progress_every=0.0, on_progress=interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.run([row(e, region="apac") for e in emails])
    ((outcomes, _),) = sink.written
    assert len(outcomes) == 10
    statuses = [o.status.value for o in outcomes]
    assert statuses.count("applied") == writes(emu) and set(statuses) <= {"applied", "failed"}


def test_progress_goes_to_the_log_by_default(
    emu: EmulatorServer, client: OmniScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, 2)
    with caplog.at_level(logging.INFO, logger="omni_provider.sync"):
        SyncRun(client, spec(), progress_every=0.0).run([row(e, region="apac") for e in emails])
    assert any(r.getMessage().startswith("Sync progress: 2/2 writes") for r in caplog.records)


@pytest.mark.parametrize(
    ("settings", "rows", "message"),
    [
        ({"max_changes": "lots"}, [], "max_changes"),
        ({"max_failed_rows": -1}, [], "max_failed_rows"),
        ({"max_failed_pct": 250}, [], "max_failed_pct"),
        ({"dry_run": "yes"}, [], "dry_run"),
        ({"sinks": [JsonlFileSink("")]}, [], "report_path"),
        ({}, "email,region", "list of dicts"),
        ({}, {"email": "a@example.com"}, "list of dicts"),
        ({}, [["a@example.com", "EU"]], "row 1 is a list"),
    ],
)
def test_bad_configuration_fails_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, settings: dict[str, Any], rows: Any, message: str
) -> None:
    with pytest.raises(OmniValidationError, match=message):
        SyncRun(client, spec(), **settings).run(rows)
    assert requests(emu) == 0


def test_report_to_an_fsspec_url(emu: EmulatorServer, client: OmniScimClient) -> None:
    memory = fsspec.filesystem("memory")
    emails = seed(emu, 1)
    url = "memory://omni-engine-reports/run.jsonl"
    summary = SyncRun(client, spec(), sinks=[JsonlFileSink(url)]).run([row(emails[0])])
    assert summary["report_path"] == url
    lines = memory.cat("/omni-engine-reports/run.jsonl").decode().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["applied"]
    memory.rm("/omni-engine-reports", recursive=True)


# -- the summary says how far a run got, whatever stopped it -------------------------------------------


def test_summary_stage_and_error_for_every_kind_of_ending(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    emails = seed(emu, 3)
    ok = SyncRun(client, spec())
    assert ok.run([row(emails[0])]) is ok.summary
    assert ok.summary["stage"] == "done" and "error" not in ok.summary

    config = SyncRun(client, spec(), max_changes="lots")
    with pytest.raises(OmniValidationError):
        config.run([row(emails[0])])
    assert config.summary == {"stage": "configuration", "error": str(config.summary["error"])}
    assert "max_changes" in config.summary["error"]

    def broken_query() -> list[dict[str, Any]]:
        raise RuntimeError("warehouse unreachable")

    reading = SyncRun(client, spec())
    with pytest.raises(RuntimeError):
        reading.run(broken_query)
    assert reading.summary["stage"] == "reading" and reading.summary["error"] == "warehouse unreachable"
    assert reading.summary["mode"] == "update" and "rows" not in reading.summary

    refused = SyncRun(client, spec(), max_changes=0)
    with pytest.raises(PlanTooLargeError):
        refused.run([row(emails[1])])
    assert refused.summary["stage"] == "planning" and refused.summary["plan"]["update"] == 1
    assert "max_changes=0" in refused.summary["error"]

    rejected = SyncRun(client, spec())
    with pytest.raises(SyncFailedError):
        rejected.run([row("ghost@example.com")])
    # Every stage ran; the verdict failed it (never "reporting": the report was written).
    assert rejected.summary["stage"] == "done" and rejected.summary["outcomes"]["rejected"] == 1
    assert rejected.summary["verdict"] == "failed"
    assert rejected.summary["error"].startswith("Omni sync failed")


def test_omni_unreachable_while_reading(emu: EmulatorServer) -> None:
    seed(emu, 1)
    emu.context.faults.set_fail_next([{"status": 503, "methods": ["GET"], "count": 5}])
    one_try = RetryPolicy(max_attempts=1)
    with OmniScimClient(emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=one_try) as once:
        run = SyncRun(once, spec())
        with pytest.raises(OmniError):
            run.run([row("user001@example.com")])
    assert run.summary["stage"] == "reading" and "503" in run.summary["error"] and run.summary["rows"] == 1
    assert writes(emu) == 0


def test_a_row_source_is_read_after_the_configuration_checks(
    emu: EmulatorServer, client: OmniScimClient
) -> None:
    calls: list[int] = []

    def query() -> list[dict[str, Any]]:
        calls.append(1)
        return [row("user001@example.com")]

    with pytest.raises(OmniValidationError):
        SyncRun(client, spec(), max_failed_rows=-1).run(query)
    assert calls == []  # a bad setting stops the run before the warehouse is queried
    seed(emu, 1)
    assert SyncRun(client, spec()).run(query)["outcomes"]["applied"] == 1 and calls == [1]


class FailingSink(ListSink):
    label = "report file s3://audit/run.jsonl"

    def write(self, outcomes: Sequence[RowOutcome], *, run_id: str) -> dict[str, Any]:
        raise PermissionError("write access denied")


def test_a_sink_failing_after_the_writes_keeps_the_outcomes_in_the_fallback(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    emails = seed(emu, 3)
    fallback = tmp_path / "fallback" / "run.jsonl"
    run = SyncRun(client, spec(), sinks=[FailingSink()], fallback_sink=JsonlFileSink(fallback))
    with pytest.raises(SyncReportLostError) as info:
        run.run([row(e) for e in emails])
    assert writes(emu) == 3  # the writes happened and are accounted for
    assert info.value.retryable is False and info.value.summary is run.summary
    summary = run.summary
    assert summary["outcomes"]["applied"] == 3 and summary["stage"] == "reporting"
    assert "s3://audit/run.jsonl: PermissionError: write access denied" in summary["report_error"]
    assert summary["report_fallback_path"] == str(fallback.resolve())
    assert [json.loads(line)["status"] for line in fallback.read_text().splitlines()] == ["applied"] * 3
    assert "the per-row outcomes are in" in str(info.value) and str(fallback.resolve()) in str(info.value)


def test_without_a_fallback_the_outcomes_go_to_the_log(
    emu: EmulatorServer, client: OmniScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(emu, 2)
    with (
        caplog.at_level(logging.ERROR, logger="omni_provider.sync"),
        pytest.raises(SyncReportLostError) as info,
    ):
        SyncRun(client, spec(), sinks=[FailingSink()]).run([row(e) for e in emails])
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("outcome ")]
    assert [json.loads(m.removeprefix("outcome "))["status"] for m in logged] == ["applied", "applied"]
    assert "outcomes are in the log" in str(info.value)


def test_an_unwritable_report_directory_fails_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report folder should be")
    run = SyncRun(client, spec(), sinks=[JsonlFileSink(blocker / "reports" / "run.jsonl")])
    with pytest.raises(OmniValidationError, match="cannot write to directory"):
        run.run([row("user001@example.com")])
    assert requests(emu) == 0 and run.summary["stage"] == "configuration"


def test_the_circuit_breaker_ends_the_run_with_every_row_reported(omni_emulator: EmulatorServer) -> None:
    emu = omni_emulator  # its own emulator: the whole-map semantics must not outlive this test
    emails = seed(emu, 12)
    emu.config.apply_patch({"patch_semantics": "other"})  # an Omni that replaces the whole attribute map
    sink = ListSink()
    with OmniScimClient(
        emu.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, patch_form="map_replace"
    ) as client:
        run = SyncRun(client, spec(), sinks=[sink])
        with pytest.raises(SyncHaltedError) as info:
            run.run([row(e, region="apac") for e in emails])
    assert info.value.retryable is False and "circuit breaker" in str(info.value)
    assert run.summary["stage"] == "applying" and run.summary["stopped"]
    assert run.summary["complete"] is False and method_count(emu, "PATCH") == 1  # the canary only
    ((outcomes, _),) = sink.written
    assert len(outcomes) == 12
