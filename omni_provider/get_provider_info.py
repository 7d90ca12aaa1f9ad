"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``), which Airflow 3.2+ reads
without importing the hook. Its client-setting fields are derived from ``ClientSettings``.
"""

from __future__ import annotations

from typing import Any

from omni_provider import __version__
from omni_provider.client.settings import ClientSettings, setting_bounds, setting_choices, setting_info

#: The Airflow connection type (``OmniScimHook.conn_type``).
CONNECTION_TYPE = "omni"

CONNECTION_FORM: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "extra"],
    "relabeling": {"host": "Omni instance URL", "password": "Organization API key"},
    "placeholders": {
        "host": "https://acme.omniapp.co",
        "password": "Organization API key (Settings > API access); personal tokens are refused",
    },
}


def _setting_form_field(name: str) -> dict[str, Any]:
    """One form field of a client setting: label, description, type, range and default from
    ``ClientSettings``; empty means "the default" (``null``)."""
    info = setting_info(name)
    choices = setting_choices(name)
    low, high = setting_bounds(name)
    schema: dict[str, Any]
    if choices is not None:
        schema = {"type": ["string", "null"], "enum": list(choices)}
    else:
        schema = {"type": ["integer" if info.annotation in (int, "int") else "number", "null"]}
        schema.update({k: v for k, v in (("minimum", low), ("maximum", high)) if v is not None})
    schema["default"] = info.default
    return {"label": info.title, "description": info.description, "schema": schema}


#: The extras of an ``omni`` connection: every client setting (``ClientSettings``), then the extra keys
#: and the CA bundle, which only a connection has.
CONNECTION_FIELDS: dict[str, Any] = {
    **{name: _setting_form_field(name) for name in ClientSettings.model_fields},
    "additional_api_keys": {
        "label": "Additional Organization API keys",
        "description": "Comma-separated. Each key has its own rate limit; requests are spread over them.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Optional path to a CA bundle for TLS verification (verification is always on).",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "omni-provider",
        "name": "Omni",
        "description": "Push user attributes from your warehouse into Omni through its SCIM 2.0 API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Omni",
                "external-doc-url": "https://docs.omni.co/api/users/list-users",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Omni", "python-modules": ["omni_provider.hooks.omni"]}],
        "operators": [
            {
                "integration-name": "Omni",
                "python-modules": [
                    "omni_provider.operators.update_user",
                    "omni_provider.operators.sync_attributes",
                    "omni_provider.operators.sync_groups",
                    "omni_provider.operators.sync_recipients",
                    "omni_provider.operators.plan",
                    "omni_provider.operators.apply_plan",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "omni_provider.hooks.omni.OmniScimHook",
                "hook-name": "Omni",
                "connection-type": CONNECTION_TYPE,
                "ui-field-behaviour": CONNECTION_FORM,
                "conn-fields": CONNECTION_FIELDS,
            }
        ],
    }
