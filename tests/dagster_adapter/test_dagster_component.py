"""``OmniUserAttributesComponent`` loaded from a ``defs.yaml`` in a Dagster defs folder, then materialised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from omni_testkit import TEST_API_KEY
from sync_testkit import UNMANAGED, attrs, seed

from omni_provider.dagster import OmniScimResource, OmniUserAttributesComponent
from omni_provider.emulator import EmulatorServer

TYPE = "omni_provider.dagster.OmniUserAttributesComponent"


def test_component_from_yaml_materialises_against_the_emulator(
    emu: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = seed(emu, 4)
    monkeypatch.setenv("OMNI_TEST_HOST", emu.api_url)
    monkeypatch.setenv("OMNI_TEST_COMPONENT_KEY", TEST_API_KEY)
    yaml_attributes: dict[str, Any] = {
        "asset_name": "omni_user_attributes",
        "source": "warehouse/users",
        "attributes": {"REGION": "region"},
        "key_column": "email",
        "max_changes": "50%",
        "report_path": str(tmp_path / "omni-{run_id}.jsonl"),
        "group_name": "omni",
        "connection": {
            "host": "{{ env.OMNI_TEST_HOST }}",
            "api_key_env_var": "OMNI_TEST_COMPONENT_KEY",
            "rate_limit_per_minute": 100000,
        },
    }

    @dg.asset(key=["warehouse", "users"])
    def warehouse_users() -> list[dict[str, Any]]:
        return [{"email": emails[0], "REGION": "apac"}, {"email": emails[1], "REGION": "emea"}]

    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.scaffold_component(
            component_cls=OmniUserAttributesComponent,
            defs_yaml_contents={"type": TYPE, "attributes": yaml_attributes},
        )
        assert "OMNI_TEST_COMPONENT_KEY" in (defs_path / "defs.yaml").read_text()
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (component, defs):
            assert isinstance(component, OmniUserAttributesComponent)
            resource = defs.resources["omni"]
            assert isinstance(resource, OmniScimResource)
            assert resource.host == emu.api_url  # the template resolved when the definitions loaded
            assert TEST_API_KEY not in repr(component) + repr(resource)  # the key waits for run launch
            asset = defs.get_assets_def("omni_user_attributes")
            result = dg.materialize(
                [warehouse_users, asset],
                resources=dict(defs.resources),
                instance=dg.DagsterInstance.ephemeral(),
            )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("omni_user_attributes")
    assert materialization.metadata["applied"].value == 2
    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "apac"}
    assert attrs(emu, emails[2]) == {**UNMANAGED, "region": "us-east"}
    assert len(list(tmp_path.glob("omni-*.jsonl"))) == 1


def test_component_is_registered_with_dagster() -> None:
    from dagster.components.core.package_entry import get_plugin_entry_points

    (entry,) = [ep for ep in get_plugin_entry_points() if ep.value == "omni_provider.dagster"]
    assert entry.load().OmniUserAttributesComponent is OmniUserAttributesComponent
