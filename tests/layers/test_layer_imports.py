"""Each layer imports on its own: the client, the sync engine and the emulator never pull in Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "omni_provider",
        "omni_provider.client",
        "omni_provider.sync",
        "omni_provider.sync.apply",
        "omni_provider.emulator",
    ],
)
def test_module_imports_without_airflow(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_operators_hold_no_http_code() -> None:
    import omni_provider.operators.sync_attributes as sync_op
    import omni_provider.operators.update_user as update_op

    for module in (sync_op, update_op):
        source = Path(module.__file__ or "").read_text()
        assert "import httpx" not in source and "httpx." not in source
