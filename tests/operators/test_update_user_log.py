"""The single-user task's log line says old -> new for each changed attribute and field."""

from __future__ import annotations

from typing import Any

import pytest
from airflow_testkit import capture_task_logs
from omni_testkit import TEST_API_KEY

from omni_provider import UpdateOmniUserOperator
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.users.single import describe_changes


@pytest.fixture
def grace(omni_connection: EmulatorServer) -> Any:
    return omni_connection.state.add_user(
        "grace@example.com", "Grace Hopper", {"region": "us-east", "cost_centre": 4100}
    )


def _run_logged(**kwargs: Any) -> str:
    """The task's log lines as Airflow's structlog logger would format them."""
    with capture_task_logs() as logs:
        UpdateOmniUserOperator(task_id="update", user_name="grace@example.com", **kwargs).execute({})
    return "\n".join(
        # Airflow 3 (structlog) keeps the arguments apart; Airflow 2.11's records arrive formatted.
        entry["event"] % tuple(entry["positional_args"]) if entry.get("positional_args") else entry["event"]
        for entry in logs
        if "event" in entry
    )


def test_update_logs_old_and_new_values(
    omni_connection: EmulatorServer,
    grace: Any,
) -> None:
    log = _run_logged(
        attributes={"region": "EMEA", "cost_centre": None, "department": "R&D"},
        display_name="Amazing",
    )
    assert (
        'Updated grace@example.com: cost_centre: 4100 -> (unset), department: (unset) -> "R&D", '
        'displayName: "Grace Hopper" -> "Amazing", region: "us-east" -> "EMEA"'
    ) in log
    assert TEST_API_KEY not in log


def test_dry_run_logs_what_would_change(
    omni_connection: EmulatorServer,
    grace: Any,
) -> None:
    log = _run_logged(attributes={"region": "EMEA"}, dry_run=True)
    assert 'Dry run for grace@example.com: would change region: "us-east" -> "EMEA"' in log


def test_unchanged_says_so(
    omni_connection: EmulatorServer,
    grace: Any,
) -> None:
    assert "Unchanged grace@example.com: no change" in _run_logged(attributes={"region": "us-east"})
    assert "would change nothing" in _run_logged(attributes={"region": "us-east"}, dry_run=True)


def test_describe_changes_shows_lists_and_unicode() -> None:
    report = {"regions": {"old": ["EU"], "new": ["EU", "US"]}, "city": {"old": None, "new": "Zürich"}}
    assert describe_changes(report) == 'city: (unset) -> "Zürich", regions: ["EU"] -> ["EU", "US"]'
