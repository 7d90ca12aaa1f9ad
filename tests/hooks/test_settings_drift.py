"""Every place a client setting shows up agrees with ``ClientSettings``, its one definition.

Checked field by field: the Airflow 3 connection form (``conn-fields``), the Airflow 2.11 Flask form (its
WTForms fields, through a real form), the client's keyword defaults and checks, and the Dagster resource
and component. A setting added, or a default or range changed, in one place only fails here.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from omni_provider.client import OmniConfigurationError, OmniScimClient
from omni_provider.client.settings import (
    DEFAULT_SETTINGS,
    ClientSettings,
    setting_bounds,
    setting_choices,
    setting_info,
)
from omni_provider.get_provider_info import CONNECTION_FIELDS, get_provider_info

SETTINGS = tuple(ClientSettings.model_fields)
NUMERIC = tuple(name for name in SETTINGS if setting_choices(name) is None)
#: Client settings a connection has besides ``ClientSettings``: the keys and the CA bundle.
CONNECTION_ONLY = {"additional_api_keys", "ca_bundle"}


def is_whole(name: str) -> bool:
    return setting_info(name).annotation in (int, "int")


def out_of_range(name: str) -> list[Any]:
    low, high = setting_bounds(name)
    assert low is not None and high is not None, f"{name} has no range"
    step = 1 if is_whole(name) else (high - low) / 1000
    return [low - step, high + step]


def test_every_setting_has_a_label_a_description_and_a_range() -> None:
    for name in SETTINGS:
        info = setting_info(name)
        assert info.title and info.description, name
        assert setting_choices(name) is not None or None not in setting_bounds(name), name


def test_airflow3_form_is_derived_from_the_settings() -> None:
    [connection] = get_provider_info()["connection-types"]
    assert connection["conn-fields"] is CONNECTION_FIELDS
    assert set(CONNECTION_FIELDS) == set(SETTINGS) | CONNECTION_ONLY
    for name in SETTINGS:
        field = CONNECTION_FIELDS[name]
        info = setting_info(name)
        schema = field["schema"]
        assert (field["label"], field["description"]) == (info.title, info.description), name
        assert schema["default"] == info.default, name
        choices = setting_choices(name)
        if choices is not None:
            assert schema["enum"] == list(choices), name
            continue
        kind = "integer" if is_whole(name) else "number"
        assert schema["type"] == [kind, "null"], name
        assert (schema.get("minimum"), schema.get("maximum")) == setting_bounds(name), name
    assert "read timeout" not in CONNECTION_FIELDS["timeout"]["description"].lower()


def test_airflow2_form_is_derived_from_the_settings() -> None:
    pytest.importorskip("wtforms", reason="Airflow 3 has no Flask form; the Airflow 2.11 venv tests it")
    from flask import Flask
    from flask_babel import Babel
    from werkzeug.datastructures import MultiDict
    from wtforms import Form

    from omni_provider.hooks.omni import OmniScimHook

    widgets = OmniScimHook.get_connection_form_widgets()
    assert set(widgets) == set(CONNECTION_FIELDS)
    form_class = type("OmniForm", (Form,), dict(widgets))
    app = Flask(__name__)
    Babel(app)

    def accepts(name: str, value: Any) -> bool:
        form = form_class(MultiDict({name: str(value)}))
        return bool(form.validate()) or name not in form.errors

    with app.app_context():
        for name in SETTINGS:
            info = setting_info(name)
            field = form_class(MultiDict())[name]
            assert (str(field.label.text), field.description) == (info.title, info.description), name
            assert accepts(name, info.default), name
            choices = setting_choices(name)
            if choices is not None:
                assert all(accepts(name, choice) for choice in choices), name
                assert not accepts(name, "something_else"), name
                continue
            low, high = setting_bounds(name)
            assert accepts(name, low) and accepts(name, high), name
            assert not any(accepts(name, value) for value in out_of_range(name)), name


def test_client_defaults_and_checks_come_from_the_settings() -> None:
    parameters = inspect.signature(OmniScimClient.__init__).parameters
    for name in SETTINGS:
        if name == "max_retries":  # the client takes a RetryPolicy
            continue
        assert parameters[name].default == getattr(DEFAULT_SETTINGS, name), name
    with OmniScimClient("acme.omniapp.co", "some-key-123456") as client:
        assert client.retry_policy.max_attempts == DEFAULT_SETTINGS.max_retries + 1
    for name in NUMERIC:
        if name == "max_retries":
            continue
        low, high = setting_bounds(name)
        for value in (low, high):
            OmniScimClient("acme.omniapp.co", "some-key-123456", **{name: value}).close()
        for value in out_of_range(name):
            with pytest.raises(OmniConfigurationError, match=name):
                OmniScimClient("acme.omniapp.co", "some-key-123456", **{name: value})


def test_dagster_resource_fields_are_the_settings() -> None:
    pytest.importorskip("dagster", reason="the Airflow 2.11 venv has no Dagster; the main venv tests this")
    from pydantic import ValidationError

    from omni_provider.dagster import OmniScimResource

    fields = OmniScimResource.model_fields
    for name in SETTINGS:
        info, field = setting_info(name), fields[name]
        assert (field.default, field.description) == (info.default, info.description), name
        # A choice is a string in Dagster's config schema, checked by ClientSettings.
        assert field.annotation is (str if setting_choices(name) else info.annotation), name
    for name in NUMERIC:
        low, high = setting_bounds(name)
        for value in (low, high):
            resource = OmniScimResource(host="acme.omniapp.co", api_key="some-key-123456", **{name: value})
            assert getattr(resource.client_settings(), name) == value
        for value in out_of_range(name):
            with pytest.raises(ValidationError, match=name):
                OmniScimResource(host="acme.omniapp.co", api_key="some-key-123456", **{name: value})
    resource = OmniScimResource(host="acme.omniapp.co", api_key="some-key-123456", patch_form="other")
    with pytest.raises(OmniConfigurationError, match="patch_form"):
        resource.get_client()


def test_dagster_component_fields_are_the_settings() -> None:
    pytest.importorskip("dagster", reason="the Airflow 2.11 venv has no Dagster; the main venv tests this")
    from omni_provider.dagster.component import OmniConnection, OmniUserAttributesComponent

    fields = OmniConnection.model_fields
    for name in SETTINGS:
        info, field = setting_info(name), fields[name]
        assert (field.default, field.description) == (info.default, info.description), name
    # Every setting reaches the resource, and so the client.
    changed: dict[str, Any] = {}
    for name in SETTINGS:
        choices = setting_choices(name)
        if choices is not None:
            changed[name] = next(c for c in choices if c != setting_info(name).default)
        else:
            low, high = setting_bounds(name)
            assert low is not None and high is not None
            changed[name] = int(high) if is_whole(name) else high
    component = OmniUserAttributesComponent(
        asset_name="a",
        source="rows",
        attributes=["region"],
        connection=OmniConnection(host="acme.omniapp.co", **changed),
    )
    resource = component.resource()
    assert {name: getattr(resource, name) for name in SETTINGS} == changed


def test_readme_documents_every_setting_once() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Client settings", 1)[1].split("\n## ", 1)[0]
    for name in SETTINGS:
        assert section.count(f"\n| `{name}` |") == 1, name
