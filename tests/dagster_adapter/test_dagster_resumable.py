"""Issue 21 item 3: the resource's (and so the assets') ``state_path``: a step that dies while waiting for
the rate window is retried and continues from the saved state, without reading Omni again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import MANAGED, UNMANAGED, attrs, method_count, seed

from omni_provider.dagster import OmniScimResource
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.engine import steps

USERS, CHANGED, LIMIT, WINDOW = 40, 30, 12, 1.0


@pytest.fixture
def paced(emu: EmulatorServer) -> OmniScimResource:
    emu.config.apply_patch({"rate_limit_enabled": True, "rate_limit": LIMIT, "rate_window": WINDOW})
    return OmniScimResource(
        host=emu.api_url, api_key=TEST_API_KEY, rate_limit_per_minute=LIMIT, rate_window_seconds=WINDOW
    )


def rows(emails: list[str]) -> list[dict[str, Any]]:
    return [
        {"userName": e, "region": "eu-west" if i < CHANGED else "us-east", "cost_centre": None}
        for i, e in enumerate(emails)
    ]


class StepDied(BaseException):
    """The step's process is gone (nothing of it runs any more)."""


def test_a_step_retry_resumes_from_the_state(
    emu: EmulatorServer, paced: OmniScimResource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = seed(emu, USERS)
    state = tmp_path / "state.json"

    def die(_seconds: float) -> None:
        raise StepDied()

    monkeypatch.setattr(steps, "wait_for_window", die)
    with pytest.raises(StepDied):
        paced.sync_user_attributes(rows(emails), attributes=MANAGED, state_path=str(state))
    assert state.exists()
    written, listed = method_count(emu, "PATCH"), emu.stats.snapshot()["requests_by_route"]
    assert 0 < written < CHANGED

    monkeypatch.undo()
    summary = paced.sync_user_attributes(rows(emails), attributes=MANAGED, state_path=str(state))
    assert emu.stats.snapshot()["requests_by_route"].get("GET /Users") == listed.get("GET /Users")
    assert method_count(emu, "PATCH") == CHANGED
    assert summary["outcomes"]["applied"] == CHANGED and summary["outcomes"]["unchanged"] == USERS - CHANGED
    assert summary["deferrals"] >= 1 and summary["requests"] == sum(
        emu.stats.snapshot()["requests_by_method"].values()
    )
    for i, email in enumerate(emails):
        assert attrs(emu, email) == {"region": "eu-west" if i < CHANGED else "us-east", **UNMANAGED}
    assert emu.stats.snapshot()["rate_limited"] == 0
    assert not state.exists()


def test_without_a_crash_the_state_is_gone_at_the_end(
    emu: EmulatorServer, paced: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, USERS)
    state = tmp_path / "groups.state.json"
    summary = paced.sync_user_attributes(rows(emails), attributes=MANAGED, state_path=str(state))
    assert summary["outcomes"]["applied"] == CHANGED
    assert not state.exists() and not Path(str(state) + ".report.jsonl").exists()


def test_the_component_keeps_its_state_at_state_path(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``state_path`` of the YAML component reaches the run: a step stopped while waiting for the window
    leaves its state there, named by the run id."""
    import dagster as dg
    from dagster.components.testing import create_defs_folder_sandbox

    from omni_provider.dagster import OmniUserAttributesComponent

    emails = seed(emu, USERS)
    monkeypatch.setenv("OMNI_RESUMABLE_KEY", TEST_API_KEY)

    def stop(_seconds: float) -> None:
        raise RuntimeError("the step stopped while waiting for the window")

    monkeypatch.setattr(steps, "wait_for_window", stop)
    source = dg.asset(name="warehouse_rows")(lambda: rows(emails))
    attributes = {
        "asset_name": "omni_user_attributes",
        "source": "warehouse_rows",
        "attributes": MANAGED,
        "state_path": str(tmp_path / "{run_id}.state.json"),
        "connection": {
            "host": emu.api_url,
            "api_key_env_var": "OMNI_RESUMABLE_KEY",
            "rate_limit_per_minute": LIMIT,
            "rate_window_seconds": WINDOW,
        },
    }
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.scaffold_component(
            component_cls=OmniUserAttributesComponent,
            defs_yaml_contents={
                "type": "omni_provider.dagster.OmniUserAttributesComponent",
                "attributes": attributes,
            },
        )
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            result = dg.materialize(
                [source, defs.get_assets_def("omni_user_attributes")],
                resources=dict(defs.resources),
                instance=dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
            )
    assert not result.success
    state = f"{result.run_id}.state.json"
    # The state, and beside it every row's outcome so far (the rest "not attempted").
    assert sorted(p.name for p in tmp_path.iterdir()) == [state, f"{state}.report.jsonl"]
    assert 0 < method_count(emu, "PATCH") < CHANGED


def test_a_step_retry_of_a_snapshot_sync_keeps_the_snapshot_true(
    emu: EmulatorServer, paced: OmniScimResource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``diff_against="snapshot"`` with ``state_path``: the step dies while waiting, its retry resumes, and
    the snapshot ends with every user certain, as Omni holds them; the next run lists no users."""
    import json

    emails = seed(emu, USERS)
    state, snapshot = tmp_path / "state.json", tmp_path / "snapshot.json"
    options: dict[str, Any] = {
        "attributes": MANAGED,
        "state_path": str(state),
        "diff_against": "snapshot",
        "snapshot_path": str(snapshot),
    }

    def die(_seconds: float) -> None:
        raise StepDied()

    monkeypatch.setattr(steps, "wait_for_window", die)
    with pytest.raises(StepDied):
        paced.sync_user_attributes(rows(emails), run_id="run-1", **options)
    monkeypatch.undo()
    summary = paced.sync_user_attributes(rows(emails), run_id="run-1", **options)
    assert summary["outcomes"]["applied"] == CHANGED and summary["snapshot"]["uncertain"] == 0
    held = {user["userName"]: user["values"] for user in json.loads(snapshot.read_text())["users"]}
    for i, email in enumerate(emails):
        assert held[email] == {"region": "eu-west" if i < CHANGED else "us-east"}, email
    listed = emu.stats.snapshot()["requests_by_route"].get("GET /Users")
    again = paced.sync_user_attributes(rows(emails), run_id="run-2", **options)
    assert again["diff_against"] == "snapshot" and again["outcomes"]["unchanged"] == USERS
    assert emu.stats.snapshot()["requests_by_route"].get("GET /Users") == listed
