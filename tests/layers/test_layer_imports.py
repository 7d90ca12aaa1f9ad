"""Each layer imports on its own: the client, the sync engine and the emulator pull in no orchestrator, and
the Dagster adapter never pulls in Airflow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def orchestrators_imported_by(module: str) -> list[str]:
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'dagster'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(ast.literal_eval(out.strip()))


@pytest.mark.parametrize(
    "module",
    [
        "omni_provider",
        "omni_provider.client",
        "omni_provider.sync",
        "omni_provider.sync.apply",
        "omni_provider.sync.run",
        "omni_provider.sync.single",
        "omni_provider.sync.report",
        "omni_provider.emulator",
    ],
)
def test_module_imports_no_orchestrator(module: str) -> None:
    assert orchestrators_imported_by(module) == []


def test_dagster_adapter_imports_no_airflow() -> None:
    assert orchestrators_imported_by("omni_provider.dagster") == ["dagster"]


def test_operators_hold_no_http_code() -> None:
    import omni_provider.operators.sync_attributes as sync_op
    import omni_provider.operators.update_user as update_op

    for module in (sync_op, update_op):
        source = Path(module.__file__ or "").read_text()
        assert "import httpx" not in source and "httpx." not in source
