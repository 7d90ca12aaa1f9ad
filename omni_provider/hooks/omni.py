"""``OmniScimHook``: the Airflow connection type ``omni`` and a configured ``OmniScimClient``."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from omni_provider._compat import (
    AIRFLOW_V_3_0_PLUS,
    AirflowNotFoundException,
    BaseHook,
    Connection,
    mask_secret,
)
from omni_provider.client import (
    OmniApiError,
    OmniAuthenticationError,
    OmniConfigurationError,
    OmniError,
    OmniPermissionError,
    OmniScimClient,
    OmniTransportError,
    RetryPolicy,
)
from omni_provider.client.client import USER_ATTRIBUTES_PATH
from omni_provider.client.settings import DEFAULT_SETTINGS, ClientSettings, validate_settings
from omni_provider.get_provider_info import CONNECTION_TYPE
from omni_provider.hooks import connection_form
from omni_provider.hooks.tested_connection import typed_connection_id

DEFAULT_RATE_LIMIT = DEFAULT_SETTINGS.rate_limit_per_minute
DEFAULT_TIMEOUT = DEFAULT_SETTINGS.timeout
DEFAULT_MAX_RETRIES = DEFAULT_SETTINGS.max_retries
#: What Airflow 2.11's Edit form sends back to Test for a saved secret extra (``additional_api_keys``) instead
#: of its value; Save swaps the stored value back in, so no saved connection holds it. Never a key.
AIRFLOW2_SECRET_PLACEHOLDER = "RATHER_LONG_SENSITIVE_FIELD_PLACEHOLDER"  # noqa: S105 - Airflow's placeholder


def _extra(extras: Mapping[str, Any], name: str) -> Any:
    """A connection extra under its plain name (Airflow 3 UI, JSON) or ``extra__omni__`` (older forms)."""
    value = extras.get(name)
    if isinstance(value, str):
        value = value.strip()  # a value pasted into the UI form often carries spaces
    if value in (None, ""):
        value = extras.get(f"extra__omni__{name}")
        if isinstance(value, str):
            value = value.strip()
    return None if value == "" else value


def connection_settings(
    conn_id: str, extras: Mapping[str, Any], overrides: Mapping[str, Any]
) -> ClientSettings:
    """The client settings of a connection: its extras (every field of ``ClientSettings``), overridden by
    the hook's arguments, all checked in one place before any request (``client/settings.py``)."""
    values = {name: _extra(extras, name) for name in ClientSettings.model_fields}
    values.update(overrides)
    describe = {
        name: f"OmniScimHook argument {name!r}"
        if name in overrides
        else f"connection {conn_id!r} extra {name!r}"
        for name in ClientSettings.model_fields
    }
    return validate_settings({k: v for k, v in values.items() if v is not None}, describe=describe)


def _with_port(host: str, port: int | None) -> str:
    """The host field plus the connection's port when the host names none (URI-form connections such as
    ``omni://:key@acme.omniapp.co:8443`` put the port in its own field)."""
    if not port or not host.strip():
        return host
    scheme, sep, rest = host.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    netloc, slash, path = rest.partition("/")
    if ":" in netloc.rsplit("]", 1)[-1]:
        return host  # the host already carries a port
    return f"{scheme}{sep}{netloc}:{port}{slash}{path}"


class OmniScimHook(BaseHook):
    """Talks to Omni's SCIM API with the instance URL and Organization API key of an ``omni`` connection.

    Connection fields: host = instance URL (``acme.omniapp.co``, ``https://acme.omniapp.co`` or with
    ``/api``); password = Organization API key. Extras: every client setting of ``ClientSettings``
    (``client/settings.py``: ``rate_limit_per_minute``, ``timeout``, ``max_retries``, ...; defaults, ranges
    and meanings there and in the README's "Client settings"), ``additional_api_keys`` (comma-separated;
    load is spread over all keys) and ``ca_bundle``. Every setting is checked before any request.
    Arguments given here override the extras.
    """

    conn_name_attr = "omni_conn_id"
    default_conn_name = "omni_default"
    conn_type = CONNECTION_TYPE
    hook_name = "Omni"

    def __init__(
        self,
        omni_conn_id: str = default_conn_name,
        *,
        rate_limit_per_minute: float | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.omni_conn_id = omni_conn_id
        self._rate_limit_per_minute = rate_limit_per_minute
        self._timeout = timeout
        self._max_retries = max_retries
        # For tests and special set-ups (e.g. an httpx transport); never a key: keys come from the connection.
        self._client_options = dict(client_options or {})
        if "api_key" in self._client_options:
            raise OmniConfigurationError("pass the API key through the Airflow connection, not the hook")

    def __repr__(self) -> str:
        return f"OmniScimHook(omni_conn_id={self.omni_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 2.11 form; Airflow 3.2+ reads the same from ``get_provider_info``, except that 2.11 keeps
        Extra visible: its page script (``connection_form.js``) saves the Extra field's editor before each
        Test and creates that editor only for a field visible when the page loads, so with Extra hidden the
        Test button of a saved connection's Edit page throws and sends nothing."""
        behaviour = connection_form.ui_field_behaviour()
        behaviour["hidden_fields"] = [name for name in behaviour["hidden_fields"] if name != "extra"]
        return behaviour

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 2.11 form's extra fields; Airflow 3.2+ reads ``conn-fields`` from ``get_provider_info``."""
        return connection_form.form_widgets()

    @property
    def connection(self) -> Connection:
        """Looked up on each use, never kept on the hook: Airflow's ``Connection`` repr shows the password
        and extras (the keys), so any dump of the hook's attributes (``vars(hook)``, a debugger, an error
        reporter's locals) would print them. The client built from it is cached, so this runs once."""
        return self.get_connection(self.omni_conn_id)

    def _client_settings(self, shown_id: str | None = None) -> dict[str, Any]:
        """``shown_id``: the connection id to name in errors, when it is not the hook's own."""
        shown_id = shown_id or self.omni_conn_id
        conn = self.connection
        extras = conn.extra_dejson or {}
        keys = [conn.password or ""]
        more = _extra(extras, "additional_api_keys")
        if isinstance(more, str):
            keys += [k.strip() for k in more.split(",") if k.strip()]
        elif isinstance(more, list | tuple):
            keys += [str(k).strip() for k in more if str(k).strip()]
        keys = [k for k in keys if k and k != AIRFLOW2_SECRET_PLACEHOLDER]
        if not keys:
            raise AirflowNotFoundException(
                f"connection {shown_id!r} has no Organization API key (put it in the password field)"
            )
        for key in keys:
            # Airflow masks the password itself; the derived header and extra keys are ours to mask.
            mask_secret(key)
            mask_secret("Bearer " + key)
        overrides = {
            "rate_limit_per_minute": self._rate_limit_per_minute,
            "timeout": self._timeout,
            "max_retries": self._max_retries,
        }
        checked = connection_settings(shown_id, extras, {k: v for k, v in overrides.items() if v is not None})
        settings: dict[str, Any] = {
            "base_url": _with_port(conn.host or "", conn.port),
            "api_key": keys,
            "owner": f"connection {shown_id!r}",
            **checked.client_arguments(),
        }
        ca_bundle = _extra(extras, "ca_bundle")
        if ca_bundle:
            settings["verify"] = str(ca_bundle)
        settings.update(self._client_options)
        return settings

    @cached_property
    def client(self) -> OmniScimClient:
        return OmniScimClient(**self._client_settings())

    def get_conn(self) -> OmniScimClient:
        """The hook's one client (one connection pool, one pacer for all calls of this hook)."""
        return self.client

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    def cancel(self) -> None:
        """For ``on_kill``: the client stops waiting and sends nothing more (``OmniScimClient.cancel``)."""
        if "client" in self.__dict__:
            self.client.cancel()

    def test_connection(self) -> tuple[bool, str]:
        """One cheap read (``GET /scim/v2/users?count=1``); never raises, never echoes the key. Messages
        name the connection id typed in the form, not the temporary one Airflow tests it under."""
        try:
            settings = self._client_settings(typed_connection_id())
        except AirflowNotFoundException as exc:  # no key: 2.11's Edit page never sends the saved one back
            hint = (
                ""
                if AIRFLOW_V_3_0_PLUS
                else "; Airflow 2's Edit page does not send a saved key: type it again"
            )
            return False, f"Invalid Omni connection: {exc}{hint}"
        except (OmniError, ValueError) as exc:
            return False, f"Invalid Omni connection: {exc}"
        settings.update(
            timeout=min(float(settings["timeout"]), 15.0), retry_policy=RetryPolicy(max_attempts=1)
        )
        try:
            with OmniScimClient(**settings) as client:
                return self._probe(client)
        except OmniConfigurationError as exc:
            return False, f"Invalid Omni URL or key: {exc}"
        except Exception as exc:  # the Test button must get an answer, whatever happened
            return False, f"Connection test failed: {type(exc).__name__}: {exc}"

    @staticmethod
    def _probe(client: OmniScimClient) -> tuple[bool, str]:
        host = client.base_url
        try:
            page = client.list_users_page(1, 1)
        except OmniTransportError as exc:
            if exc.tls_verification_failed:
                return False, (
                    f"Cannot reach Omni at {host}: its TLS certificate is not trusted ({exc.tls_detail}). "
                    "If it comes from a private CA, set the connection extra 'ca_bundle' to its PEM file"
                )
            return (
                False,
                f"Cannot reach Omni at {host} ({exc.cause_type}); check the instance URL and network",
            )
        except OmniAuthenticationError:
            if OmniScimHook._is_personal_token(client):
                return False, (
                    "Omni accepted the key on /api/v1 but refused it on SCIM: it looks like a personal "
                    "access token. SCIM needs an Organization API key (Settings > API access)."
                )
            return False, "Omni rejected the API key (HTTP 401); check the Organization API key"
        except OmniPermissionError:
            return False, "Omni refused access (HTTP 403); SCIM needs an Organization API key of an Org Admin"
        except OmniApiError as exc:
            if exc.status_code == 404:
                return False, f"No Omni SCIM API at {host} (HTTP 404); check the instance URL"
            return False, f"Omni answered HTTP {exc.status_code}: {exc.omni_message or 'no message'}"
        except OmniError as exc:
            return False, f"Unexpected answer from {host}: {exc}"
        users = page.total_results
        return True, (
            f"Connected to Omni at {host}; the SCIM API answered ({users} user{'' if users == 1 else 's'})"
        )

    @staticmethod
    def _is_personal_token(client: OmniScimClient) -> bool:
        try:
            client.request("GET", USER_ATTRIBUTES_PATH, retry=False)
        except OmniPermissionError:
            return True  # a valid token without admin rights on /v1: still not an org key
        except OmniError:
            return False
        return True
