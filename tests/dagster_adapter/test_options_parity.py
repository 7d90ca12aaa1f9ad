"""The four adapters of the user attribute sync build the same ``SyncOptions`` and the same plan.

The same rows and the same arguments go to ``SyncOmniUserAttributesOperator``,
``OmniScimResource.sync_user_attributes``, ``build_omni_user_attributes_asset`` and
``OmniUserAttributesComponent`` (from a ``defs.yaml``); each run is caught where it starts
(``SyncRun.from_options``), and its options and its plan (every item: action, user, changes) compared.
Once with every option left at its default (which must then be the same everywhere), once with options set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from omni_testkit import TEST_API_KEY, omni_connection_json
from sync_testkit import seed, writes

from omni_provider.dagster import (
    OmniScimResource,
    OmniUserAttributesComponent,
    build_omni_user_attributes_asset,
)
from omni_provider.emulator import EmulatorServer
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.run import SyncRun

SOURCE = "warehouse_users"
ATTRIBUTES = {"REGION": "region", "cost_centre": "cost_centre"}


class TI:
    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        pass


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SyncRun]]:
    """Every ``SyncRun`` an adapter starts, as it started it."""
    runs: list[SyncRun] = []
    original = SyncRun.from_options

    def spy(client: Any, options: SyncOptions, **kwargs: Any) -> SyncRun:
        run = original(client, options, **kwargs)
        run.options = options  # type: ignore[attr-defined]
        runs.append(run)
        return run

    monkeypatch.setattr(SyncRun, "from_options", spy)
    yield runs


def rows_for(emails: list[str]) -> list[dict[str, Any]]:
    return [
        {"userName": emails[0].upper(), "REGION": "apac", "cost_centre": 7},
        {"userName": emails[1], "REGION": "emea", "cost_centre": None},
        {"userName": emails[2], "REGION": "emea", "cost_centre": 3},
        {"userName": "ghost@example.com", "REGION": "apac", "cost_centre": 1},
    ]


def via_operator(emu: EmulatorServer, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    operator = SyncOmniUserAttributesOperator(task_id="sync", rows=rows, attributes=ATTRIBUTES, **args)
    operator.execute({"ti": TI(), "run_id": "manual"})


def via_resource(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    omni.sync_user_attributes(rows, attributes=ATTRIBUTES, **args)


def via_asset(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    source = dg.asset(name=SOURCE)(lambda: rows)
    asset = build_omni_user_attributes_asset("omni_user_attributes", SOURCE, ATTRIBUTES, **args)
    result = dg.materialize(
        [source, asset], resources={"omni": omni}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


def via_component(emu: EmulatorServer, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    source = dg.asset(name=SOURCE)(lambda: rows)
    yaml_attributes = {
        "asset_name": "omni_user_attributes",
        "source": SOURCE,
        "attributes": ATTRIBUTES,
        **args,
        "connection": {
            "host": emu.api_url,
            "api_key_env_var": "OMNI_PARITY_KEY",
            "rate_limit_per_minute": 1_000_000,
        },
    }
    with create_defs_folder_sandbox() as sandbox:
        defs_path = sandbox.scaffold_component(
            component_cls=OmniUserAttributesComponent,
            defs_yaml_contents={
                "type": "omni_provider.dagster.OmniUserAttributesComponent",
                "attributes": yaml_attributes,
            },
        )
        with sandbox.load_component_and_build_defs(defs_path=defs_path) as (_, defs):
            result = dg.materialize(
                [source, defs.get_assets_def("omni_user_attributes")],
                resources=dict(defs.resources),
                instance=dg.DagsterInstance.ephemeral(),
            )
    assert result.success


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"dry_run": True}, id="defaults"),
        pytest.param(
            {
                "dry_run": True,
                "key_column": "userName",
                "mode": "mirror",
                "max_changes": "60%",
                "max_failed_rows": None,
                "max_failed_pct": "40%",
                "max_workers": 3,
                "allow_empty_input": True,
            },
            id="options-set",
        ),
    ],
)
def test_every_adapter_builds_the_same_options_and_plan(
    emu: EmulatorServer,
    omni: OmniScimResource,
    started: list[SyncRun],
    monkeypatch: pytest.MonkeyPatch,
    args: dict[str, Any],
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    monkeypatch.setenv("OMNI_PARITY_KEY", TEST_API_KEY)
    emails = seed(emu, 5)
    rows = rows_for(emails)
    if "max_failed_rows" not in args:
        args = {**args, "max_failed_rows": 1}  # the ghost row is rejected in every run
    via_operator(emu, rows, args)
    via_resource(omni, rows, args)
    via_asset(omni, rows, args)
    via_component(emu, rows, args)

    assert len(started) == 4 and writes(emu) == 0
    options = [run.options for run in started]  # type: ignore[attr-defined]
    assert all(option == options[0] for option in options), options
    expected = SyncOptions(attributes=ATTRIBUTES, **args)
    assert options[0] == expected
    plans = [run.plan for run in started]
    assert all(plan is not None for plan in plans)
    items = [list(plan.items) for plan in plans if plan is not None]
    assert all(each == items[0] for each in items)
    actions = [item.action.value for item in items[0]]
    assert actions.count("update") == 3 and actions.count("rejected") == 1
    if args.get("mode") == "mirror":
        assert actions.count("unset") == 2  # the two seeded users the rows leave out


def test_the_adapters_defaults_are_the_options_defaults() -> None:
    """Left out, an option takes ``SyncOptions``'s default in every adapter (key_column: match_on's name)."""
    import inspect

    assert SYNC_DEFAULTS["key_column"] is None and SYNC_DEFAULTS["match_on"] == "userName"
    signatures = {
        "operator": inspect.signature(SyncOmniUserAttributesOperator.__init__).parameters,
        "resource": inspect.signature(OmniScimResource.sync_user_attributes).parameters,
        "asset": inspect.signature(build_omni_user_attributes_asset).parameters,
    }
    component = OmniUserAttributesComponent.model_fields
    for name, default in SYNC_DEFAULTS.items():
        for where, parameters in signatures.items():
            if name in parameters:
                assert parameters[name].default == default, (where, name)
        if name in component:
            assert component[name].default == default, ("component", name)
    # Every option a Dagster user may set, as an Airflow user may.
    shared = set(SYNC_DEFAULTS) - {"progress_every"}
    for where, parameters in signatures.items():
        assert shared <= set(parameters), (where, shared - set(parameters))
    assert shared <= set(component), shared - set(component)
