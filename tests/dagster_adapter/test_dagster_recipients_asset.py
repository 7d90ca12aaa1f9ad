"""``build_omni_email_recipients_asset`` and ``OmniScimResource.sync_email_recipients`` against the emulator:
the exact end state of the recipients (unmanaged attributes kept), bulk writes, and the materialisation's
metadata and check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from omni_provider.dagster import NO_FAILED_ROWS, OmniScimResource, build_omni_email_recipients_asset
from omni_provider.emulator import EmulatorServer

ASSET = "omni_email_recipients"
ROUTE = "POST /v1/users/email-only/bulk"


def materialize(omni: OmniScimResource, rows: Any, **kwargs: Any) -> dg.ExecuteInProcessResult:
    @dg.asset(name="warehouse_recipients")
    def warehouse_recipients() -> Any:
        return rows

    asset = build_omni_email_recipients_asset(
        ASSET, "warehouse_recipients", ["region", "cost_centre"], **kwargs
    )
    return dg.materialize(
        [warehouse_recipients, asset],
        resources={"omni": omni},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def test_asset_upserts_in_bulk_keeps_unmanaged_attributes_and_reports(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    for i in range(30):
        emu.state.recipients.add(f"p{i:02d}@example.com", {"region": "eu", "department": "Sales"})
    data = pd.DataFrame(
        {
            "email": [f"p{i:02d}@example.com" for i in range(30)] + ["new@example.com"],
            "region": ["us"] * 20 + ["eu"] * 10 + ["apac"],
            "cost_centre": list(range(31)),
        }
    )
    result = materialize(omni, data, report_path=str(tmp_path / "recipients-{run_id}.jsonl"))
    assert result.success
    metadata = result.asset_materializations_for_node(ASSET)[0].metadata
    assert metadata["applied"].value == 31 and metadata["rejected"].value == 0
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == NO_FAILED_ROWS and check.passed
    held = {r.email: dict(r.attributes) for r in emu.state.recipients.all()}
    assert held["p00@example.com"] == {"region": "us", "cost_centre": 0, "department": "Sales"}
    assert held["new@example.com"] == {"region": "apac", "cost_centre": 30}
    assert emu.stats.snapshot()["requests_by_route"][ROUTE] <= math.ceil(31 / 20) + 1
    assert len(list(tmp_path.glob("recipients-*.jsonl"))) == 1


def test_resource_rerun_sends_no_write(emu: EmulatorServer, omni: OmniScimResource) -> None:
    rows = [{"email": f"q{i}@example.com", "region": "eu", "cost_centre": i} for i in range(5)]
    first = omni.sync_email_recipients(rows, attributes=["region", "cost_centre"])
    assert first["outcomes"]["applied"] == 5
    again = omni.sync_email_recipients(rows, attributes=["region", "cost_centre"])
    assert again["outcomes"]["unchanged"] == 5 and "POST" not in again["requests_by_method"]
