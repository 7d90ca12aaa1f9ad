"""The four adapters of the user attribute sync build the same ``SyncOptions`` and the same plan.

The same rows and the same arguments go to ``SyncOmniUserAttributesOperator``,
``OmniScimResource.sync_user_attributes``, ``build_omni_user_attributes_asset`` and
``OmniUserAttributesComponent`` (from a ``defs.yaml``); each run is caught where it starts
(``SyncRun.from_options``), and its options and its plan (every item: action, user, changes) compared.
Once with every option left at its default (which must then be the same everywhere), once with options set.
The three adapters of the group-membership sync (``SyncOmniGroupMembershipOperator``,
``OmniScimResource.sync_group_membership``, ``build_omni_group_membership_asset``) likewise build the same
``GroupSyncOptions`` and group plan (caught at ``GroupSyncRun.from_options``), and refuse a bad value,
naming the option, before any request. The three adapters of the email-only recipients sync
(``SyncOmniEmailRecipientsOperator``, ``OmniScimResource.sync_email_recipients``,
``build_omni_email_recipients_asset``) build the same ``RecipientSyncOptions`` and plan (caught at
``RecipientSyncRun.from_options``), and refuse a bad value the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from omni_testkit import TEST_API_KEY, omni_connection_json
from sync_testkit import requests, seed, writes

from omni_provider._compat import AirflowFailException
from omni_provider.dagster import (
    OmniScimResource,
    OmniUserAttributesComponent,
    build_omni_email_recipients_asset,
    build_omni_group_membership_asset,
    build_omni_user_attributes_asset,
)
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import OmniValidationError
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.sync_groups import SyncOmniGroupMembershipOperator
from omni_provider.operators.sync_recipients import SyncOmniEmailRecipientsOperator
from omni_provider.sync.groups.options import GROUP_SYNC_DEFAULTS, GroupSyncOptions
from omni_provider.sync.groups.run import GroupSyncRun
from omni_provider.sync.recipients.options import RECIPIENT_SYNC_DEFAULTS, RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.run import SyncRun

SOURCE = "warehouse_users"
ATTRIBUTES = {"REGION": "region", "cost_centre": "cost_centre"}


class TI:
    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        pass


RunT = TypeVar("RunT", SyncRun, GroupSyncRun, RecipientSyncRun)


def spy_on(monkeypatch: pytest.MonkeyPatch, run_class: type[RunT]) -> list[RunT]:
    """Every run of ``run_class`` an adapter starts (through ``from_options``), as it started it, with the
    options it was started from."""
    runs: list[RunT] = []
    original = run_class.from_options

    def spy(client: Any, options: Any, **kwargs: Any) -> RunT:
        run = original(client, options, **kwargs)
        run.options = options  # type: ignore[union-attr]
        runs.append(run)
        return run

    monkeypatch.setattr(run_class, "from_options", spy)
    return runs


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SyncRun]]:
    """Every ``SyncRun`` an adapter starts, as it started it."""
    yield spy_on(monkeypatch, SyncRun)


@pytest.fixture
def started_groups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[GroupSyncRun]]:
    """Every ``GroupSyncRun`` an adapter starts, as it started it."""
    yield spy_on(monkeypatch, GroupSyncRun)


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
    # The resumable state (issue 21): in every adapter, off unless set.
    for where, parameters in signatures.items():
        assert parameters["state_path"].default is None, where
    assert component["state_path"].default is None


# -- the group-membership sync: GroupSyncOptions ------------------------------------------------------------

GROUP_SOURCE = "warehouse_memberships"
GROUP_ASSET = "omni_group_membership"


def via_group_operator(rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    operator = SyncOmniGroupMembershipOperator(task_id="sync", rows=rows, **args)
    operator.execute({"ti": TI(), "run_id": "manual"})


def via_group_resource(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    omni.sync_group_membership(rows, **args)


def via_group_asset(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    source = dg.asset(name=GROUP_SOURCE)(lambda: rows)
    asset = build_omni_group_membership_asset(GROUP_ASSET, GROUP_SOURCE, **args)
    result = dg.materialize(
        [source, asset], resources={"omni": omni}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"dry_run": True}, id="defaults"),
        pytest.param(
            {
                "dry_run": True,
                "group_column": "team",
                "groups": ["Sales", "Support"],
                "mode": "mirror",
                "create_missing_groups": True,
                "max_changes": "60%",
                "max_failed_rows": None,
                "max_workers": 3,
                "max_members_per_write": 2,
            },
            id="options-set",
        ),
    ],
)
def test_every_group_adapter_builds_the_same_options_and_plan(
    emu: EmulatorServer,
    omni: OmniScimResource,
    started_groups: list[GroupSyncRun],
    monkeypatch: pytest.MonkeyPatch,
    args: dict[str, Any],
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    emails = seed(emu, 5)
    ids = {u.user_name: u.id for u in emu.state.users()}
    emu.state.groups.add_group("Sales", [ids[emails[0]], ids[emails[3]]])
    emu.state.groups.add_group("Support", [])
    column = args.get("group_column", "group")
    rows = [
        {"email": emails[0].upper(), column: "Sales"},
        {"email": emails[1], column: "Sales"},
        {"email": emails[2], column: "Support"},
        {"email": "ghost@example.com", column: "Sales"},
    ]
    if "max_failed_rows" not in args:
        args = {**args, "max_failed_rows": 1}  # the ghost row is rejected in every run
    via_group_operator(rows, args)
    via_group_resource(omni, rows, args)
    via_group_asset(omni, rows, args)

    assert len(started_groups) == 3 and writes(emu) == 0
    options = [run.options for run in started_groups]  # type: ignore[attr-defined]
    assert all(option == options[0] for option in options), options
    assert options[0] == GroupSyncOptions(**args)
    plans = [run.plan for run in started_groups]
    items = [list(plan.items) for plan in plans if plan is not None]
    assert len(items) == 3 and all(each == items[0] for each in items)
    actions = [item.action.value for item in items[0]]
    assert actions.count("add") == 2 and actions.count("unchanged") == 1 and actions.count("rejected") == 1
    if args.get("mode") == "mirror":
        assert actions.count("remove") == 1  # the seeded Sales member the rows leave out


def test_the_group_adapters_defaults_are_the_group_options_defaults() -> None:
    """Left out, an option takes ``GroupSyncOptions``'s default in every adapter, and every option may be
    set in each."""
    signatures = {
        "operator": inspect.signature(SyncOmniGroupMembershipOperator.__init__).parameters,
        "resource": inspect.signature(OmniScimResource.sync_group_membership).parameters,
        "asset": inspect.signature(build_omni_group_membership_asset).parameters,
    }
    for where, parameters in signatures.items():
        assert set(GROUP_SYNC_DEFAULTS) <= set(parameters), (
            where,
            set(GROUP_SYNC_DEFAULTS) - set(parameters),
        )
        for name, default in GROUP_SYNC_DEFAULTS.items():
            assert parameters[name].default == default, (where, name)


BAD = [
    pytest.param({"mode": "replace"}, "mode", id="mode"),
    pytest.param({"max_members_per_write": 0}, "max_members_per_write", id="max_members_per_write"),
    pytest.param({"max_failed_rows": -1}, "max_failed_rows", id="max_failed_rows"),
    pytest.param({"max_changes": "lots"}, "max_changes", id="max_changes"),
]


@pytest.mark.parametrize(("bad", "named"), BAD)
def test_each_group_adapter_refuses_a_bad_value_before_any_request(
    emu: EmulatorServer,
    omni: OmniScimResource,
    monkeypatch: pytest.MonkeyPatch,
    bad: dict[str, Any],
    named: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    emails = seed(emu, 1)
    rows = [{"email": emails[0], "group": "Sales"}]
    before = requests(emu)
    attempts: dict[str, Callable[[], Any]] = {
        "operator": lambda: via_group_operator(rows, bad),
        "resource": lambda: via_group_resource(omni, rows, bad),
        # Checked when the definitions load.
        "asset": lambda: build_omni_group_membership_asset(GROUP_ASSET, GROUP_SOURCE, **bad),
    }
    for where, attempt in attempts.items():
        expected = AirflowFailException if where == "operator" else OmniValidationError
        with pytest.raises(expected, match=named):
            attempt()
    assert requests(emu) == before


# -- the email-only recipients sync: RecipientSyncOptions ---------------------------------------------------

RECIPIENT_SOURCE = "warehouse_recipients"
RECIPIENT_ASSET = "omni_email_recipients"
RECIPIENT_ATTRIBUTES = {"REGION": "region", "cost_centre": "cost_centre"}
#: Stands for the test's own temporary snapshot path in a parameter.
TMP = "<tmp_path>"


@pytest.fixture
def started_recipients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecipientSyncRun]]:
    """Every ``RecipientSyncRun`` an adapter starts, as it started it."""
    yield spy_on(monkeypatch, RecipientSyncRun)


def via_recipient_operator(rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    operator = SyncOmniEmailRecipientsOperator(
        task_id="sync", rows=rows, attributes=RECIPIENT_ATTRIBUTES, **args
    )
    operator.execute({"ti": TI(), "run_id": "manual"})


def via_recipient_resource(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    omni.sync_email_recipients(rows, attributes=RECIPIENT_ATTRIBUTES, **args)


def via_recipient_asset(omni: OmniScimResource, rows: list[dict[str, Any]], args: dict[str, Any]) -> None:
    source = dg.asset(name=RECIPIENT_SOURCE)(lambda: rows)
    asset = build_omni_email_recipients_asset(RECIPIENT_ASSET, RECIPIENT_SOURCE, RECIPIENT_ATTRIBUTES, **args)
    result = dg.materialize(
        [source, asset], resources={"omni": omni}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"dry_run": True}, id="defaults"),
        pytest.param(
            {
                "dry_run": True,
                "key_column": "mail",
                "mode": "mirror",
                "max_changes": "60%",
                "max_failed_rows": None,
                "max_failed_pct": "40%",
                "max_workers": 3,
                "allow_empty_input": True,
            },
            id="options-set",
        ),
        pytest.param(
            {"dry_run": True, "diff_against": "snapshot", "snapshot_path": TMP, "full_resync_every": 3},
            id="snapshot",
        ),
    ],
)
def test_every_recipient_adapter_builds_the_same_options_and_plan(
    emu: EmulatorServer,
    omni: OmniScimResource,
    started_recipients: list[RecipientSyncRun],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: dict[str, Any],
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    if args.get("snapshot_path") == TMP:
        args = {**args, "snapshot_path": str(tmp_path / "recipients-snapshot.json")}
    for i in range(1, 6):
        emu.state.recipients.add(f"r{i}@example.com", {"region": "eu", "department": "Sales"})
    column = args.get("key_column", "email")
    rows = [
        {column: "R1@example.com", "REGION": "apac", "cost_centre": 7},
        {column: "r2@example.com", "REGION": "eu", "cost_centre": None},
        {column: "new@example.com", "REGION": "emea", "cost_centre": 3},
        {column: "not-an-email", "REGION": "emea", "cost_centre": 3},
    ]
    if args.get("mode") == "mirror":
        rows.pop()  # mirror refuses an unreadable key before any request
    elif "max_failed_rows" not in args:
        args = {**args, "max_failed_rows": 1}  # the bad email is rejected in every run
    via_recipient_operator(rows, args)
    via_recipient_resource(omni, rows, args)
    via_recipient_asset(omni, rows, args)

    assert len(started_recipients) == 3 and writes(emu) == 0
    options = [run.options for run in started_recipients]  # type: ignore[attr-defined]
    assert all(option == options[0] for option in options), options
    assert options[0] == RecipientSyncOptions(attributes=RECIPIENT_ATTRIBUTES, **args)
    plans = [run.plan for run in started_recipients]
    items = [list(plan.items) for plan in plans if plan is not None]
    assert len(items) == 3 and all(each == items[0] for each in items)
    actions = [item.action.value for item in items[0]]
    assert actions.count("update") == 1 and actions.count("unchanged") == 1 and actions.count("create") == 1
    if args.get("mode") == "mirror":
        assert actions.count("unset") == 3  # the three seeded recipients the rows leave out
    else:
        assert actions.count("rejected") == 1


def test_the_recipient_adapters_defaults_are_the_recipient_options_defaults() -> None:
    """Left out, an option takes ``RecipientSyncOptions``'s default in every adapter, and every option may
    be set in each."""
    signatures = {
        "operator": inspect.signature(SyncOmniEmailRecipientsOperator.__init__).parameters,
        "resource": inspect.signature(OmniScimResource.sync_email_recipients).parameters,
        "asset": inspect.signature(build_omni_email_recipients_asset).parameters,
    }
    for where, parameters in signatures.items():
        missing = set(RECIPIENT_SYNC_DEFAULTS) - set(parameters)
        assert not missing, (where, missing)
        for name, default in RECIPIENT_SYNC_DEFAULTS.items():
            assert parameters[name].default == default, (where, name)


RECIPIENT_BAD = [
    pytest.param({"mode": "add"}, "mode", id="mode"),
    pytest.param({"max_failed_pct": 120}, "max_failed_pct", id="max_failed_pct"),
    pytest.param({"key_column": ""}, "key_column", id="key_column"),
    pytest.param({"snapshot_path": "/tmp/s.json"}, "snapshot_path", id="snapshot_path"),
    pytest.param({"diff_against": "snapshot"}, "snapshot_path", id="snapshot-without-path"),
    pytest.param({"full_resync_every": 0}, "full_resync_every", id="full_resync_every"),
]


@pytest.mark.parametrize(("bad", "named"), RECIPIENT_BAD)
def test_each_recipient_adapter_refuses_a_bad_value_before_any_request(
    emu: EmulatorServer,
    omni: OmniScimResource,
    monkeypatch: pytest.MonkeyPatch,
    bad: dict[str, Any],
    named: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    rows = [{"email": "r1@example.com", "REGION": "eu", "cost_centre": 1}]
    before = requests(emu)
    attempts: dict[str, Callable[[], Any]] = {
        "operator": lambda: via_recipient_operator(rows, bad),
        "resource": lambda: via_recipient_resource(omni, rows, bad),
        "asset": lambda: build_omni_email_recipients_asset(
            RECIPIENT_ASSET, RECIPIENT_SOURCE, RECIPIENT_ATTRIBUTES, **bad
        ),
    }
    for where, attempt in attempts.items():
        expected = AirflowFailException if where == "operator" else OmniValidationError
        with pytest.raises(expected, match=named):
            attempt()
    assert requests(emu) == before
