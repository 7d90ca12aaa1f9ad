"""A mistyped key or extra is a configuration error before any request: named, non-retryable, never
echoing the key.

Before: a key with a non-ASCII or control character passed construction and the first request raised a
raw ``UnicodeEncodeError`` whose ``.object`` held ``Bearer <key>`` (and Airflow retried it);
``rate_limit_per_minute="nan"`` silently turned pacing off; ``timeout="inf"``/``"nan"`` raised raw errors.
"""

from __future__ import annotations

import json
import math
import traceback
from typing import Any

import httpx
import pytest
from hook_helpers import TEST_API_KEY

from omni_provider._compat import AirflowFailException
from omni_provider.client import OmniConfigurationError, OmniScimClient
from omni_provider.client.settings import ClientSettings
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.update_user import UpdateOmniUserOperator

SECRET_PART = "Sup3rSecretKeyMaterial"


def _no_request_transport(sent: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    return httpx.MockTransport(handler)


# ============================================================================ keys


BAD_KEYS = {
    "non-ASCII inside": (f"{SECRET_PART}é{SECRET_PART}", "a non-ASCII character in the middle"),
    "zero-width space at the start": (
        f"\u200b{SECRET_PART}{SECRET_PART}",
        "a non-ASCII character near the start",
    ),
    "no-break space at the end": (f"{SECRET_PART}{SECRET_PART}\u00a0x", "whitespace near the end"),
    "tab inside": (f"{SECRET_PART}\t{SECRET_PART}", "whitespace in the middle"),
    "space inside": (f"{SECRET_PART} {SECRET_PART}", "whitespace in the middle"),
    "newline inside": (f"{SECRET_PART}\n{SECRET_PART}", "whitespace in the middle"),
    "NUL": (f"{SECRET_PART}\x00{SECRET_PART}", "a control character in the middle"),
    "DEL": (f"{SECRET_PART}{SECRET_PART}\x7f", "a control character near the end"),
    "escape": (f"\x1b{SECRET_PART}{SECRET_PART}", "a control character near the start"),
}


def _assert_hides_key(exc: BaseException, key: str) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc.args) + repr(vars(exc))
    assert SECRET_PART not in text and key not in text
    chained: BaseException | None = exc
    while chained is not None:  # e.g. no UnicodeEncodeError whose .object holds "Bearer <key>"
        assert not isinstance(chained, UnicodeError)
        assert key not in repr(vars(chained))
        chained = chained.__cause__ or chained.__context__


@pytest.mark.parametrize("case", list(BAD_KEYS), ids=list(BAD_KEYS))
def test_key_that_cannot_be_a_header_is_refused_when_the_client_is_built(case: str) -> None:
    key, problem = BAD_KEYS[case]
    sent: list[httpx.Request] = []
    with pytest.raises(OmniConfigurationError) as info:
        OmniScimClient(
            "https://acme.omniapp.co", [TEST_API_KEY, key], transport=_no_request_transport(sent), owner="x"
        )
    assert f"x: API key 2 of 2 contains {problem}" in str(info.value)
    _assert_hides_key(info.value, key)
    assert sent == []


def test_bad_key_names_the_connection_and_fails_the_task_without_retry(set_conn) -> None:
    key, _problem = BAD_KEYS["non-ASCII inside"]
    set_conn(password=key, conn_id="omni_prod")
    with pytest.raises(OmniConfigurationError, match="connection 'omni_prod': API key contains a non-ASCII"):
        OmniScimHook("omni_prod").get_conn()
    ok, message = OmniScimHook("omni_prod").test_connection()
    assert not ok and "non-ASCII character in the middle" in message and SECRET_PART not in message
    op = UpdateOmniUserOperator(
        task_id="u", omni_conn_id="omni_prod", user_name="ada@example.com", attributes={"region": "x"}
    )
    with pytest.raises(AirflowFailException) as info:  # not AirflowException: a retry cannot fix it
        op.execute({})  # type: ignore[arg-type]
    _assert_hides_key(info.value, key)


def test_additional_key_is_checked_too(set_conn) -> None:
    set_conn(extra={"additional_api_keys": f"{TEST_API_KEY}x, {SECRET_PART}\u00e9"})
    with pytest.raises(
        OmniConfigurationError, match="API key 3 of 3 contains a non-ASCII character near the end"
    ):
        OmniScimHook().get_conn()


def test_surrounding_whitespace_is_still_trimmed(set_conn) -> None:
    set_conn(password=f"  {TEST_API_KEY}\n")
    assert OmniScimHook().get_conn().key_count == 1


# ============================================================================ extras

BAD_EXTRAS: list[tuple[str, Any]] = [
    ("rate_limit_per_minute", "nan"),
    ("rate_limit_per_minute", "inf"),
    ("rate_limit_per_minute", 0),
    ("rate_limit_per_minute", "-5"),
    ("rate_limit_per_minute", "sixty"),
    ("timeout", "inf"),
    ("timeout", "nan"),
    ("timeout", "1e999"),
    ("timeout", 0),
    ("timeout", 86_400),
    ("connect_timeout", "nan"),
    ("max_retries", "nan"),
    ("max_retries", -1),
    ("max_retries", "2.5"),
    ("max_retries", 1000),
    ("page_size", 0),
    ("page_size", "5000"),
    ("max_response_bytes", 10),
    ("max_response_bytes", "inf"),
]


@pytest.mark.parametrize(("extra", "value"), BAD_EXTRAS, ids=[f"{e}={v!r}" for e, v in BAD_EXTRAS])
def test_bad_extra_is_a_configuration_error_naming_extra_and_range(set_conn, extra: str, value: Any) -> None:
    set_conn(extra={extra: value}, conn_id="omni_prod")
    sent: list[httpx.Request] = []
    hook = OmniScimHook("omni_prod", client_options={"transport": _no_request_transport(sent)})
    with pytest.raises(OmniConfigurationError) as info:
        hook.get_conn()
    message = str(info.value)
    assert message.startswith(f"connection 'omni_prod' extra {extra!r} must be a ")
    assert " from " in message and " to " in message  # the accepted range
    assert sent == []
    op = UpdateOmniUserOperator(
        task_id="u", omni_conn_id="omni_prod", user_name="ada@example.com", attributes={"region": "x"}
    )
    with pytest.raises(AirflowFailException, match=extra):
        op.execute({})  # type: ignore[arg-type]


def test_uri_form_extras_are_coerced_and_checked(set_conn) -> None:
    set_conn(uri=f"omni://:{TEST_API_KEY}@acme.omniapp.co?timeout=12.5&max_retries=2&page_size=250")
    client = OmniScimHook().get_conn()
    assert (client.timeout, client.retry_policy.max_attempts, client.page_size) == (12.5, 3, 250)
    set_conn(uri=f"omni://:{TEST_API_KEY}@acme.omniapp.co?rate_limit_per_minute=nan")
    with pytest.raises(OmniConfigurationError, match="'rate_limit_per_minute' must be a finite number"):
        OmniScimHook().get_conn()


def test_hook_arguments_are_checked_the_same_way(set_conn) -> None:
    set_conn()
    with pytest.raises(OmniConfigurationError, match="OmniScimHook argument 'timeout' must be a finite"):
        OmniScimHook(timeout=math.inf).get_conn()


def test_new_extras_reach_the_client(set_conn) -> None:
    set_conn(extra={"page_size": 500, "max_response_bytes": 4096, "connect_timeout": 3})
    client = OmniScimHook().get_conn()
    assert (client.page_size, client.max_response_bytes, client._http.timeout.connect) == (500, 4096, 3)


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "rate_limit_per_minute"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_client_arguments_must_be_finite_and_in_range(name: str, value: float) -> None:
    with pytest.raises(OmniConfigurationError, match=f"'{name}' must be a finite number"):
        OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, **{name: value})


def test_every_numeric_setting_has_a_documented_range() -> None:
    """The model is the one place ranges live: each numeric field carries both bounds."""
    from omni_provider.client.settings import accepted_range

    for name, field in ClientSettings.model_fields.items():
        if field.annotation in (int, float):
            assert accepted_range(name), name
    assert json.loads(ClientSettings().model_dump_json())["max_response_bytes"] == 32 * 1024 * 1024
