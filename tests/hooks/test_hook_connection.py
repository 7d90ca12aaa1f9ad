"""``OmniScimHook`` built from env-var connections: host forms, extras, keys, the one cached client."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hook_helpers import TEST_API_KEY, TEST_API_KEY_2

from omni_provider._compat import AirflowNotFoundException
from omni_provider.client import OmniConfigurationError, OmniScimClient
from omni_provider.hooks.omni import DEFAULT_MAX_RETRIES, DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT, OmniScimHook


def _settings(client: OmniScimClient) -> dict:
    return {
        "base_url": client.base_url,
        "keys": client.key_count,
        "rate": client.pacer.rate_per_minute,
        "timeout": client._http.timeout.read,
        "attempts": client.retry_policy.max_attempts,
    }


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("acme.omniapp.co", "https://acme.omniapp.co/api"),
        ("https://acme.omniapp.co", "https://acme.omniapp.co/api"),
        ("https://acme.omniapp.co/api", "https://acme.omniapp.co/api"),
        ("https://acme.omniapp.co/api/", "https://acme.omniapp.co/api"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/api"),
        ("https://acme.omniapp.co:8443", "https://acme.omniapp.co:8443/api"),
    ],
)
def test_json_connection_host_forms(set_conn, host: str, expected: str) -> None:
    set_conn(host=host)
    hook = OmniScimHook()
    assert hook.get_conn().base_url == expected
    hook.close()


def test_json_connection_defaults(set_conn) -> None:
    set_conn()
    hook = OmniScimHook()
    assert _settings(hook.get_conn()) == {
        "base_url": "https://acme.omniapp.co/api",
        "keys": 1,
        "rate": DEFAULT_RATE_LIMIT,
        "timeout": DEFAULT_TIMEOUT,
        "attempts": DEFAULT_MAX_RETRIES + 1,
    }
    hook.close()


def test_json_connection_extras(set_conn) -> None:
    set_conn(
        extra={
            "rate_limit_per_minute": 120,
            "timeout": 7.5,
            "max_retries": 2,
            "additional_api_keys": f" {TEST_API_KEY_2} , ,omni-test-key-3-aaaaaa",
        }
    )
    hook = OmniScimHook()
    assert _settings(hook.get_conn()) == {
        "base_url": "https://acme.omniapp.co/api",
        "keys": 3,
        "rate": 120.0,
        "timeout": 7.5,
        "attempts": 3,
    }
    hook.close()


def test_additional_keys_as_json_list(set_conn) -> None:
    set_conn(extra={"additional_api_keys": [TEST_API_KEY_2, ""]})
    hook = OmniScimHook()
    assert hook.get_conn().key_count == 2
    hook.close()


def test_prefixed_extras(set_conn) -> None:
    set_conn(
        extra={
            "extra__omni__rate_limit_per_minute": "30",
            "extra__omni__timeout": "12",
            "extra__omni__max_retries": "0",
            "extra__omni__additional_api_keys": TEST_API_KEY_2,
        }
    )
    hook = OmniScimHook()
    assert _settings(hook.get_conn()) == {
        "base_url": "https://acme.omniapp.co/api",
        "keys": 2,
        "rate": 30.0,
        "timeout": 12.0,
        "attempts": 1,
    }
    hook.close()


def test_plain_extra_wins_over_prefixed_and_empty_plain_falls_back(set_conn) -> None:
    set_conn(
        extra={"timeout": 9, "extra__omni__timeout": 99, "max_retries": "", "extra__omni__max_retries": 6}
    )
    hook = OmniScimHook()
    settings = _settings(hook.get_conn())
    assert settings["timeout"] == 9
    assert settings["attempts"] == 7
    hook.close()


def test_uri_connection_extras_are_strings(set_conn) -> None:
    set_conn(
        uri=(
            f"omni://:{quote(TEST_API_KEY)}@acme.omniapp.co/api"
            f"?rate_limit_per_minute=90&timeout=4&max_retries=1&additional_api_keys={quote(TEST_API_KEY_2)}"
        )
    )
    hook = OmniScimHook()
    assert _settings(hook.get_conn()) == {
        "base_url": "https://acme.omniapp.co/api",
        "keys": 2,
        "rate": 90.0,
        "timeout": 4.0,
        "attempts": 2,
    }
    hook.close()


def test_uri_connection_with_port(set_conn) -> None:
    set_conn(uri=f"omni://:{TEST_API_KEY}@acme.omniapp.co:8443")
    hook = OmniScimHook()
    assert hook.get_conn().base_url == "https://acme.omniapp.co:8443/api"
    hook.close()


def test_uri_connection_with_encoded_loopback_url(set_conn) -> None:
    set_conn(uri=f"omni://:{TEST_API_KEY}@{quote('http://127.0.0.1:8765', safe='')}/")
    hook = OmniScimHook()
    assert hook.get_conn().base_url == "http://127.0.0.1:8765/api"
    hook.close()


def test_hook_arguments_override_extras(set_conn) -> None:
    set_conn(extra={"rate_limit_per_minute": 120, "timeout": 7, "max_retries": 2})
    hook = OmniScimHook(rate_limit_per_minute=500, timeout=3, max_retries=0)
    settings = _settings(hook.get_conn())
    assert (settings["rate"], settings["timeout"], settings["attempts"]) == (500, 3, 1)
    hook.close()


def test_named_connection(set_conn) -> None:
    conn_id = set_conn(conn_id="omni_eu", host="https://eu.omniapp.co")
    hook = OmniScimHook(omni_conn_id=conn_id)
    assert hook.get_conn().base_url == "https://eu.omniapp.co/api"
    hook.close()


def test_missing_password_is_clear_error(set_conn) -> None:
    set_conn(password=None)
    hook = OmniScimHook()
    with pytest.raises(AirflowNotFoundException, match=r"no Organization API key.*password"):
        hook.get_conn()


def test_missing_connection(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_OMNI_MISSING", raising=False)
    with pytest.raises(AirflowNotFoundException):
        OmniScimHook("omni_missing").get_conn()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"rate_limit_per_minute": "fast"}, "rate_limit_per_minute"),
        ({"rate_limit_per_minute": -1}, "rate_limit_per_minute"),
        ({"max_retries": -1}, "max_retries"),
        ({"extra__omni__max_retries": "many"}, "max_retries"),
    ],
)
def test_bad_extras_named_in_error(set_conn, extra: dict, match: str) -> None:
    set_conn(extra=extra)
    with pytest.raises(OmniConfigurationError, match=match):
        OmniScimHook().get_conn()


def test_insecure_host_refused(set_conn) -> None:
    set_conn(host="http://acme.omniapp.co")
    with pytest.raises(OmniConfigurationError, match="https"):
        OmniScimHook().get_conn()


def test_get_conn_returns_one_cached_client(set_conn) -> None:
    set_conn()
    hook = OmniScimHook()
    first = hook.get_conn()
    assert hook.get_conn() is first
    assert hook.client is first
    hook.close()
    second = hook.get_conn()
    assert second is not first
    assert first._http.is_closed
    hook.close()


def test_client_options_passed_through(set_conn) -> None:
    set_conn()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"Resources": [], "totalResults": 0})

    hook = OmniScimHook(
        client_options={"transport": httpx.MockTransport(handler), "rate_limit_per_minute": 1e6}
    )
    hook.get_conn().list_users_page()
    assert seen == [f"Bearer {TEST_API_KEY}"]
    hook.close()


def test_key_as_hook_argument_refused() -> None:
    with pytest.raises(OmniConfigurationError, match="connection"):
        OmniScimHook(client_options={"api_key": TEST_API_KEY})


def test_ui_field_behaviour_hides_and_relabels() -> None:
    behaviour = OmniScimHook.get_ui_field_behaviour()
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert "password" not in behaviour["hidden_fields"]
    assert "host" not in behaviour["hidden_fields"]
    assert behaviour["relabeling"]["password"] == "Organization API key"
    assert "omniapp.co" in behaviour["placeholders"]["host"]


def test_hook_repr_has_no_key(set_conn) -> None:
    set_conn()
    hook = OmniScimHook()
    hook.get_conn()
    assert TEST_API_KEY not in repr(hook)
    assert TEST_API_KEY not in repr(hook.get_conn())
    hook.close()
