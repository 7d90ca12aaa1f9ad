"""Airflow discovers the provider through its entry point, with the ``omni`` connection form."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest
from hook_helpers import TEST_API_KEY
from packaging.utils import canonicalize_name

from omni_provider._compat import AIRFLOW_V_3_0_PLUS, Connection
from omni_provider.get_provider_info import CONNECTION_FIELDS, CONNECTION_FORM, get_provider_info
from omni_provider.hooks.omni import OmniScimHook

DIST = "omni-provider"


@pytest.fixture(scope="module")
def providers_manager():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_provider_info_validates_against_airflow_runtime_schema() -> None:
    schema_path = Path(airflow.__file__).with_name("provider_info.schema.json")
    assert schema_path.is_file()
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_package_name_is_canonical_distribution_name() -> None:
    dist = importlib.metadata.distribution(DIST)
    assert get_provider_info()["package-name"] == canonicalize_name(dist.metadata["Name"])
    assert get_provider_info()["versions"][0] == dist.version


def test_entry_point_points_at_get_provider_info() -> None:
    eps = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.dist is not None and canonicalize_name(ep.dist.name) == DIST
    ]
    assert len(eps) == 1
    assert eps[0].load() is get_provider_info


def test_connection_type_matches_hook_class() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    module_name, _, class_name = conn_type["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class is OmniScimHook
    assert conn_type["connection-type"] == OmniScimHook.conn_type == "omni"
    assert conn_type["hook-name"] == OmniScimHook.hook_name
    for hook in get_provider_info()["hooks"]:
        for module in hook["python-modules"]:
            importlib.import_module(module)


def test_providers_manager_registers_hook(providers_manager) -> None:
    with warnings.catch_warnings():  # Airflow 3.3 deprecates ``hooks`` here for the task-SDK manager's
        warnings.simplefilter("ignore")
        info = providers_manager.hooks["omni"]
    assert info is not None
    assert info.hook_class_name == "omni_provider.hooks.omni.OmniScimHook"
    assert info.connection_id_attribute_name == "omni_conn_id"
    assert info.package_name == DIST
    assert info.connection_testable is True
    assert DIST in providers_manager.providers


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="Airflow 3's task runtime has its own providers manager; on 2.11 workers use ProvidersManager, "
    "tested above",
)
def test_task_runtime_providers_manager_registers_hook() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    info = ProvidersManagerTaskRuntime().hooks["omni"]
    assert info is not None
    assert info.hook_class_name == "omni_provider.hooks.omni.OmniScimHook"
    assert info.connection_type == "omni"


def test_providers_manager_field_behaviour(providers_manager) -> None:
    behaviour = providers_manager.field_behaviours["omni"]
    assert behaviour["relabeling"] == {"host": "Omni instance URL", "password": "Organization API key"}
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert "omniapp.co" in behaviour["placeholders"]["host"]
    # the Airflow 2 classmethod says the same as the Airflow 3 metadata, but keeps Extra visible: 2.11's
    # page script needs its editor for the Test button (tests/ui/test_browser_airflow2.py clicks it)
    legacy = OmniScimHook.get_ui_field_behaviour()
    assert "extra" in CONNECTION_FORM["hidden-fields"] and "extra" not in legacy["hidden_fields"]
    assert legacy == {
        "hidden_fields": [name for name in CONNECTION_FORM["hidden-fields"] if name != "extra"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def test_providers_manager_form_widgets(providers_manager) -> None:
    widgets = providers_manager.connection_form_widgets
    ours = {name for name in widgets if name.startswith("extra__omni__")}
    assert ours == {f"extra__omni__{field}" for field in CONNECTION_FIELDS}
    assert {"rate_limit_per_minute", "timeout", "max_retries", "additional_api_keys"} <= set(
        CONNECTION_FIELDS
    )
    for name, field in CONNECTION_FIELDS.items():
        assert widget_label(widgets[f"extra__omni__{name}"]) == field["label"]
    # the extra keys are secret: the form must treat the field as a password
    assert widgets["extra__omni__additional_api_keys"].is_sensitive
    assert not widgets["extra__omni__timeout"].is_sensitive


def widget_label(widget: Any) -> str:
    """Airflow 3 keeps a JSON-schema description of the field, Airflow 2.11 a WTForms field."""
    if AIRFLOW_V_3_0_PLUS:
        return str(widget.field["schema"]["title"])
    return str(widget.field.args[0])


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 3 never calls the hook's form methods")
def test_airflow2_form_field_types() -> None:
    """Airflow 2.11 accepts only String/Integer/Password/Boolean fields (it drops the hook otherwise)."""
    from wtforms import BooleanField, IntegerField, PasswordField, StringField

    widgets = OmniScimHook.get_connection_form_widgets()
    assert set(widgets) == set(CONNECTION_FIELDS)
    assert {w.field_class for w in widgets.values()} <= {
        BooleanField,
        IntegerField,
        PasswordField,
        StringField,
    }
    assert widgets["additional_api_keys"].field_class is PasswordField
    assert widgets["max_retries"].field_class is IntegerField


def test_connection_get_hook(set_conn) -> None:
    conn = Connection(
        conn_id="omni_via_conn", conn_type="omni", host="acme.omniapp.co", password=TEST_API_KEY
    )
    hook = conn.get_hook()
    assert isinstance(hook, OmniScimHook)
    assert hook.omni_conn_id == "omni_via_conn"


def test_top_level_lazy_imports() -> None:
    from omni_provider import OmniScimClient
    from omni_provider import OmniScimHook as Hook
    from omni_provider.client import OmniScimClient as Client

    assert Hook is OmniScimHook
    assert OmniScimClient is Client
    import omni_provider

    with pytest.raises(AttributeError):
        omni_provider.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("module", ["omni_provider", "omni_provider.client"])
def test_client_import_does_not_import_airflow(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "from omni_provider.client import OmniScimClient, RetryPolicy\n"
        "OmniScimClient('acme.omniapp.co', 'some-key-123456').close()\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(len(loaded), loaded[:5])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
