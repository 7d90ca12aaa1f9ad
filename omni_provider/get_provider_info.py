"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``), which Airflow 3.2+ reads
without importing the hook.
"""

from __future__ import annotations

from typing import Any

from omni_provider import __version__

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

CONNECTION_FIELDS: dict[str, Any] = {
    "rate_limit_per_minute": {
        "label": "Rate limit (requests per window per key)",
        "description": "Omni allows 60 per key unless support raised it (up to 500 per instance).",
        "schema": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000, "default": 60},
    },
    "rate_window_seconds": {
        "label": "Rate window (s)",
        "description": "The span the rate limit counts over; Omni's is one minute.",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "maximum": 3600, "default": 60},
    },
    "rate_limit_margin": {
        "label": "Rate limit margin",
        "description": "Share of each key's limit left unused for other tools using the same key (0 to 0.9).",
        "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 0.9, "default": 0},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Read timeout of one HTTP request.",
        "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of one request on 429, 5xx and network errors.",
        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 10, "default": 4},
    },
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
