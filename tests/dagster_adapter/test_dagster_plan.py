"""Review before it writes, in Dagster: ``OmniScimResource.plan_user_attributes`` / ``apply_plan`` and the
plan and apply assets, against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sync_testkit import UNMANAGED, attrs, seed, writes

from omni_provider.dagster import (
    NO_FAILED_ROWS,
    OmniScimResource,
    build_omni_group_membership_plan_assets,
    build_omni_user_attributes_plan_assets,
)
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.plan_artifact import PlanRefusedError


def rows(emails: list[str], changed: int) -> list[dict[str, Any]]:
    return [{"email": e, "region": "eu-west" if i < changed else "us-east"} for i, e in enumerate(emails)]


def test_plan_then_apply_through_the_resource(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 10)
    planned = omni.plan_user_attributes(
        rows(emails, 3), plan_path=str(tmp_path / "{run_id}.plan.json"), attributes=["region"],
        key_column="email", run_id="r1",
    )  # fmt: skip
    assert planned["plan_path"] == str(tmp_path / "r1.plan.json")
    assert planned["summary"]["stage"] == "planned"
    assert "| update | 3 |" in planned["review"]
    assert writes(emu) == 0
    with pytest.raises(PlanRefusedError, match="replaced or edited after review"):
        omni.apply_plan(planned["plan_path"], plan_digest="sha256:" + "0" * 64)
    assert writes(emu) == 0
    summary = omni.apply_plan(planned["plan_path"], plan_digest=planned["plan_digest"])
    assert summary["outcomes"]["applied"] == 3
    assert [attrs(emu, e) for e in emails[:3]] == [{"region": "eu-west", **UNMANAGED}] * 3
    assert writes(emu) == 3


def test_a_bad_option_is_refused_before_any_request(omni: OmniScimResource, tmp_path: Path) -> None:
    with pytest.raises(OmniValidationError, match="mode"):
        omni.plan_user_attributes(
            [], plan_path=str(tmp_path / "p.json"), attributes=["region"], mode="sideways"
        )


def source(data: Any) -> dg.AssetsDefinition:
    @dg.asset(name="warehouse_users")
    def warehouse_users() -> Any:
        return data

    return warehouse_users


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_the_plan_asset_shows_the_review_and_the_apply_asset_applies_it(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 6)
    plan_asset, apply_asset = build_omni_user_attributes_plan_assets(
        "omni_attributes", "warehouse_users", ["region"], key_column="email",
        plan_path=str(tmp_path / "{run_id}.plan.json"),
    )  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    resources = {"omni": omni}
    planned = dg.materialize([source(rows(emails, 2)), plan_asset], resources=resources, instance=instance)
    shown = metadata(planned, "omni_attributes_plan")
    assert "| update | 2 |" in shown["review"]
    assert "| user001@example.com | update | region | us-east | eu-west |" in shown["review"]
    assert shown["plan_digest"].startswith("sha256:")
    assert writes(emu) == 0

    # A digest other than the reviewed one: refused, nothing written.
    refused = dg.materialize(
        [apply_asset], resources=resources, instance=instance, raise_on_error=False,
        run_config={"ops": {"omni_attributes_apply": {"config": {"plan_digest": "sha256:" + "1" * 64}}}},
        selection=["omni_attributes_apply"],
    )  # fmt: skip
    assert not refused.success
    assert writes(emu) == 0
    applied = dg.materialize(
        [apply_asset], resources=resources, instance=instance, selection=["omni_attributes_apply"],
        run_config={"ops": {"omni_attributes_apply": {"config": {"plan_digest": shown["plan_digest"]}}}},
    )  # fmt: skip
    assert metadata(applied, "omni_attributes_apply")["applied"] == 2
    (check,) = applied.get_asset_check_evaluations()
    assert check.check_name == NO_FAILED_ROWS and check.passed
    assert writes(emu) == 2


def test_the_group_plan_assets(emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path) -> None:
    users = emu.state.seed_users(3)
    emu.state.groups.add_group("Sales", [])
    plan_asset, apply_asset = build_omni_group_membership_plan_assets(
        "omni_groups", "warehouse_users", plan_path=str(tmp_path / "groups.plan.json"), groups=["Sales"]
    )
    instance = dg.DagsterInstance.ephemeral()
    data = [{"email": u.user_name, "group": "Sales"} for u in users[:2]]
    planned = dg.materialize([source(data), plan_asset], resources={"omni": omni}, instance=instance)
    assert "| Sales | add |" in metadata(planned, "omni_groups_plan")["review"]
    applied = dg.materialize(
        [apply_asset], resources={"omni": omni}, instance=instance, selection=["omni_groups_apply"]
    )
    assert metadata(applied, "omni_groups_apply")["added"] == 2
    (sales,) = emu.state.groups.named("Sales")
    assert set(sales.members) == {u.id for u in users[:2]}
