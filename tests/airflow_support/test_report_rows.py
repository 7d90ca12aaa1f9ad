"""The report's records as the report view's table rows (both targets), and the link a sync task logs."""

from __future__ import annotations

import json
from typing import Any

from omni_provider.airflow_support.report_link import VIEW_ROUTE, log_report_view_link, report_view_url
from omni_provider.airflow_support.report_rows import ReportRow, order_rows, parse_report
from omni_provider.sync.groups.outcome import MembershipOutcome, MembershipStatus
from omni_provider.sync.users.outcome import RowOutcome, RowStatus


def lines(*outcomes: Any) -> list[str]:
    """Report lines exactly as the report sinks write them (``write_jsonl``)."""
    return [json.dumps(o.to_record(), default=str, ensure_ascii=False) for o in outcomes]


def test_an_attribute_row_gives_one_table_row_per_change() -> None:
    applied = RowOutcome(
        row=1,
        key="ada@example.com",
        action="update",
        status=RowStatus.APPLIED,
        changed=("region", "regions"),
        changes=(
            {"attribute": "region", "old": None, "new": "EMEA"},
            {"attribute": "regions", "old": ["US"], "new": ["US", "EU"]},
        ),
    )
    rejected = RowOutcome(
        row=2, key="nobody@example.com", action="rejected", status=RowStatus.REJECTED, error="no Omni user"
    )
    report, truncated = parse_report(lines(applied, rejected), max_rows=100)
    assert not truncated and report.skipped == 0
    assert report.rows == [
        ReportRow(1, "applied", "ada@example.com", "region", None, "EMEA"),
        ReportRow(1, "applied", "ada@example.com", "regions", "US", "US, EU"),
        ReportRow(2, "rejected", "nobody@example.com", reason="no Omni user"),
    ]
    assert report.statuses() == ["applied", "rejected"] and dict(report.counts) == {
        "applied": 1,
        "rejected": 1,
    }
    assert [r.key for r in order_rows(report.rows)] == [
        "nobody@example.com",
        "ada@example.com",
        "ada@example.com",
    ]
    assert [r.status for r in report.filtered("rejected")] == ["rejected"]


def test_a_membership_row_is_keyed_by_its_group() -> None:
    added = MembershipOutcome(
        row=1, user="ada@example.com", group="Finance", action="add", status=MembershipStatus.ADDED
    )
    removed = MembershipOutcome(
        row=None, user="bob@example.com", group="Finance", action="remove", status=MembershipStatus.REMOVED
    )
    rejected = MembershipOutcome(
        row=3,
        user="nobody@example.com",
        group="Sales",
        action="rejected",
        status=MembershipStatus.REJECTED,
        error="no Omni user with this email",
    )
    report, _ = parse_report(lines(added, removed, rejected), max_rows=100)
    assert report.rows == [
        ReportRow(1, "added", "Finance", "member ada@example.com", "not a member", "member"),
        ReportRow(None, "removed", "Finance", "member bob@example.com", "member", "not a member"),
        ReportRow(3, "rejected", "Sales", "member nobody@example.com", reason="no Omni user with this email"),
    ]


def test_lines_that_are_not_report_records_are_counted_not_shown() -> None:
    report, truncated = parse_report(
        [
            "root:x:0:0:root:/root:/bin/bash",
            '{"api_key": "omni-secret"}',
            "[1, 2]",
            "",
            '{"status": "applied"}',
        ],
        max_rows=10,
    )
    assert report.rows == [] and report.skipped == 4 and not report.counts and not truncated


def test_rows_past_the_limit_are_counted_not_listed() -> None:
    many = [
        RowOutcome(row=i, key=f"u{i}@example.com", action="unchanged", status=RowStatus.UNCHANGED)
        for i in range(5)
    ]
    report, truncated = parse_report(lines(*many), max_rows=3)
    assert truncated and len(report.rows) == 3 and report.counts["unchanged"] == 5


class TI:
    log_url = "http://airflow.example:8080/base/dags/d/runs/manual__1%3A2/tasks/sync/mapped/2?try_number=3"


def test_the_link_is_the_task_instance_page_plus_the_tab() -> None:
    assert (
        report_view_url(TI())
        == f"http://airflow.example:8080/base/dags/d/runs/manual__1%3A2/tasks/sync/mapped/2/plugin/{VIEW_ROUTE}"
    )
    assert report_view_url(object()) is None


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)


def test_the_link_is_logged_once_a_report_file_was_written() -> None:
    from omni_provider._compat import AIRFLOW_V_3_0_PLUS

    log = RecordingLog()
    log_report_view_link({"ti": TI()}, {"stage": "reading"}, log)  # no report: no link
    log_report_view_link({"ti": TI()}, {"report_path": "file:///tmp/r.jsonl"}, log)
    if AIRFLOW_V_3_0_PLUS:
        assert log.lines == [
            f"Per-row report in the Airflow UI (Omni report tab of this task): {report_view_url(TI())}"
        ]
    else:  # Airflow 2.11 has no such view: the task log's per-row lines are the view there
        assert log.lines == []


def test_the_plugin_serves_the_view_only_on_airflow_3() -> None:
    from omni_provider._compat import AIRFLOW_V_3_0_PLUS
    from omni_provider.airflow_support.plugin import OmniProviderPlugin

    routes = [v["url_route"] for v in OmniProviderPlugin.external_views]
    assert routes == ([VIEW_ROUTE] if AIRFLOW_V_3_0_PLUS else [])
    assert len(OmniProviderPlugin.fastapi_apps) == (1 if AIRFLOW_V_3_0_PLUS else 0)
