"""The example project in ``examples/dagster``: ``dagster`` loads it from its folder, and it materialises."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from omni_testkit import TEST_API_KEY, make_warehouse
from sync_testkit import attrs, seed

from omni_provider.emulator import EmulatorServer

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "dagster"
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_dagster_loads_the_project_from_its_folder(tmp_path: Path) -> None:
    """What ``dagster dev`` does first: find the module through pyproject.toml and load the definitions."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "OMNI_HOST": "unused", "OMNI_API_KEY": "unused"}
    (tmp_path / "dagster.yaml").write_text("")
    result = subprocess.run(
        [DAGSTER, "definitions", "validate"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location omni_dagster_example" in result.stdout + result.stderr


def test_the_example_materialises_against_the_emulator(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = seed(emu, 4)  # the example refuses to rewrite more than half of Omni's users
    warehouse = make_warehouse(
        tmp_path / "warehouse.db",
        [
            (emails[0].upper(), "EMEA", "Finance", "pro", 4100, 1),
            (emails[1], "AMER", "Sales", "viewer", 4200, 1),
        ],
    )
    monkeypatch.setenv("OMNI_HOST", emu.api_url)
    monkeypatch.setenv("OMNI_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("OMNI_RATE_LIMIT_PER_MINUTE", "100000")
    monkeypatch.setenv("OMNI_EXAMPLE_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("OMNI_SYNC_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.syspath_prepend(str(PROJECT))
    module = importlib.import_module("omni_dagster_example.definitions")
    defs = importlib.reload(module).defs  # the report directory is read when the module loads

    job = defs.get_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert attrs(emu, emails[0]) == {
        "department": "Finance",
        "region": "EMEA",
        "seat_tier": "pro",
        "cost_centre": 4100,
    }
    assert attrs(emu, emails[2]) == {"department": "Sales", "region": "us-east"}  # not in the warehouse
    (materialization,) = result.asset_materializations_for_node("omni_user_attributes")
    assert materialization.metadata["applied"].value == 2
    assert len(list((tmp_path / "reports").glob("omni-*.jsonl"))) == 1
