"""The example project in ``examples/dagster``: ``dagster`` loads it from its folder, and it materialises."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from omni_testkit import TEST_API_KEY, make_warehouse
from sync_testkit import attrs, seed, writes

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

    # The preview job: the same asset launched with dry_run, so nothing is written.
    preview = defs.resolve_job_def("preview_omni_user_attributes").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    (planned,) = preview.asset_materializations_for_node("omni_user_attributes")
    assert planned.metadata["dry_run"].value is True and planned.metadata["planned"].value == 2
    assert writes(emu) == 0

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
    assert len(list((tmp_path / "reports").glob("omni-*.jsonl"))) == 2  # one per run, the preview's too


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(base_url: str, query: str) -> Any:
    response = httpx.post(f"{base_url}/graphql", json={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def test_the_readme_commands_start_dagster_dev(emu: EmulatorServer, tmp_path: Path) -> None:
    """The example's README from a checkout: make the warehouse with its one command, then ``dagster dev``
    in the example's folder against the emulator; it answers on its port and shows both assets.
    Loopback only; the whole process group is stopped at the end (as Ctrl-C does, then SIGKILL)."""
    made = subprocess.run(
        [sys.executable, "-m", "omni_dagster_example.sample_warehouse", str(tmp_path / "warehouse.db")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert f"export OMNI_EXAMPLE_WAREHOUSE={tmp_path / 'warehouse.db'}" in made.stdout
    assert (tmp_path / "warehouse.db").exists()

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    (tmp_path / "dagster_home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),  # else a .tmp_dagster_home_* in the example folder
        "OMNI_HOST": emu.base_url,
        "OMNI_API_KEY": TEST_API_KEY,
        "OMNI_EXAMPLE_WAREHOUSE": str(tmp_path / "warehouse.db"),
        "OMNI_SYNC_REPORT_DIR": str(tmp_path / "reports"),
        "NO_PROXY": "*",
    }
    log_path = tmp_path / "dagster-dev.log"
    with log_path.open("wb") as log:
        dev = subprocess.Popen(
            [DAGSTER, "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answers() -> bool:
            assert dev.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{base_url}/server_info", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        def assets() -> set[str]:
            nodes = _graphql(base_url, "{ assetNodes { assetKey { path } } }")["assetNodes"]
            return {"/".join(node["assetKey"]["path"]) for node in nodes}

        _wait("dagster dev to answer", answers, timeout=150)
        _wait("the example's assets", lambda: assets() >= EXAMPLE_ASSETS, timeout=60)
        assert "dagster" in httpx.get(base_url, timeout=10).text.lower()  # the UI's page
    finally:
        _stop_group(dev)
    assert not list(PROJECT.glob(".tmp_dagster_home_*"))


EXAMPLE_ASSETS = {"warehouse_user_attributes", "omni_user_attributes"}


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(1)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the group (what Ctrl-C sends), SIGKILL to what is left after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
