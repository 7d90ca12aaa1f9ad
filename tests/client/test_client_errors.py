"""HTTP error statuses become typed errors carrying Omni's message, and nothing that must not leak."""

from __future__ import annotations

import uuid

import httpx
import pytest
from omni_fakes import TEST_API_KEY, USERS

from omni_provider.client import (
    OmniApiError,
    OmniAuthenticationError,
    OmniBadRequestError,
    OmniConflictError,
    OmniNotFoundError,
    OmniPermissionError,
    OmniRateLimitError,
    OmniServerError,
)
from omni_provider.errors import MAX_MESSAGE_CHARS

VICTIM = "victim.person@othercorp.example"
VICTIM_ATTR = "salary-band-Z9"

STATUS_CLASSES = [
    (400, OmniBadRequestError),
    (401, OmniAuthenticationError),
    (403, OmniPermissionError),
    (404, OmniNotFoundError),
    (409, OmniConflictError),
    (429, OmniRateLimitError),
    (500, OmniServerError),
    (502, OmniServerError),
    (503, OmniServerError),
    (504, OmniServerError),
]


def _fail_once(make_client, response: httpx.Response):
    client, rec = make_client(lambda request: response, max_attempts=1)
    return client, rec


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_status_maps_to_error_class_with_omni_message(make_client, status: int, cls: type) -> None:
    body = {"error": str(status), "message": f"something specific went wrong ({status})"}
    client, rec = _fail_once(make_client, httpx.Response(status, json=body))
    with pytest.raises(cls) as info:
        client.list_users_page()
    err = info.value
    assert isinstance(err, OmniApiError)
    assert err.status_code == status
    assert err.omni_message.startswith(f"something specific went wrong ({status})")
    assert f"HTTP {status}" in str(err)
    assert f"something specific went wrong ({status})" in str(err)
    assert f"GET {USERS.removeprefix('/api')}" in str(err)
    assert rec.count() == 1


def test_unknown_4xx_is_generic_api_error(make_client) -> None:
    client, _ = _fail_once(make_client, httpx.Response(418, text="short and stout"))
    with pytest.raises(OmniApiError) as info:
        client.list_users_page()
    assert type(info.value) is OmniApiError
    assert info.value.status_code == 418
    assert info.value.omni_message == "short and stout"


def test_auth_errors_explain_org_key(make_client) -> None:
    client, _ = _fail_once(make_client, httpx.Response(401, json={"error": "Unauthorized"}))
    with pytest.raises(OmniAuthenticationError, match="Organization API key"):
        client.list_users_page()


def test_scim_error_body(make_client) -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "detail": "Attribute 'region' is not defined",
        "scimType": "invalidValue",
        "status": "400",
    }
    client, _ = _fail_once(make_client, httpx.Response(400, json=body))
    with pytest.raises(OmniBadRequestError) as info:
        client.list_users_page()
    assert "Attribute 'region' is not defined" in info.value.omni_message
    assert "invalidValue" in info.value.omni_message


def test_plain_text_body(make_client) -> None:
    client, _ = _fail_once(make_client, httpx.Response(502, text="upstream connect error\n  or reset"))
    with pytest.raises(OmniServerError) as info:
        client.list_users_page()
    assert info.value.omni_message == "upstream connect error or reset"


def test_html_page_is_not_echoed(make_client) -> None:
    html = (
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
        f"<h1>Bad Gateway</h1><p>debug: {VICTIM} {TEST_API_KEY}</p></body></html>"
    )
    client, _ = _fail_once(make_client, httpx.Response(502, html=html))
    with pytest.raises(OmniServerError) as info:
        client.list_users_page()
    text = str(info.value)
    assert "html" in info.value.omni_message
    assert str(len(html.encode())) in info.value.omni_message
    for secret in (VICTIM, TEST_API_KEY, "Bad Gateway</h1>", "<p>"):
        assert secret not in text


def test_empty_body(make_client) -> None:
    client, _ = _fail_once(make_client, httpx.Response(503))
    with pytest.raises(OmniServerError) as info:
        client.list_users_page()
    assert info.value.omni_message == ""
    assert str(info.value).endswith("HTTP 503")


def test_json_without_message(make_client) -> None:
    body = {"Resources": [{"userName": VICTIM}], "code": 7}
    client, _ = _fail_once(make_client, httpx.Response(500, json=body))
    with pytest.raises(OmniServerError) as info:
        client.list_users_page()
    assert VICTIM not in str(info.value)
    assert info.value.omni_message == "(JSON body without a message)"


def test_only_message_fields_repeated_not_the_rest_of_the_body(make_client) -> None:
    body = {
        "error": "Conflict",
        "message": "User with this email already exists",
        "existing": {"userName": VICTIM, "urn:omni:params:1.0:UserAttribute": {"band": VICTIM_ATTR}},
        "request": {"headers": {"Authorization": f"Bearer {TEST_API_KEY}"}},
    }
    client, _ = _fail_once(make_client, httpx.Response(409, json=body))
    with pytest.raises(OmniConflictError) as info:
        client.create_user("new.person@example.com", "New Person")
    text = str(info.value)
    assert "User with this email already exists" in text
    assert "new.person@example.com" in text  # our own input, to say which user failed
    for secret in (VICTIM, VICTIM_ATTR, TEST_API_KEY, "Bearer"):
        assert secret not in text


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, json={"error": "Unauthorized", "message": f"invalid token {TEST_API_KEY}"}),
        httpx.Response(401, text=f"Unauthorized: Bearer {TEST_API_KEY} is not valid"),
        httpx.Response(400, json={"detail": f"bad header 'Authorization: Bearer {TEST_API_KEY}'"}),
        httpx.Response(403, json=f"token {TEST_API_KEY} lacks admin rights"),
    ],
    ids=["json-message", "plain-text", "scim-detail", "json-string"],
)
def test_key_echoed_by_server_is_not_repeated(make_client, response: httpx.Response) -> None:
    client, _ = _fail_once(make_client, response)
    with pytest.raises(OmniApiError) as info:
        client.list_users_page()
    assert TEST_API_KEY not in str(info.value)
    assert TEST_API_KEY not in info.value.omni_message
    assert TEST_API_KEY not in repr(info.value)


def test_long_message_clipped(make_client) -> None:
    long = "x" * 5000
    client, _ = _fail_once(make_client, httpx.Response(400, json={"message": long}))
    with pytest.raises(OmniBadRequestError) as info:
        client.list_users_page()
    assert len(info.value.omni_message) == MAX_MESSAGE_CHARS
    assert info.value.omni_message.endswith("…")


def test_error_names_user_and_path(make_client) -> None:
    user_id = str(uuid.uuid4())
    client, _ = _fail_once(make_client, httpx.Response(404, json={"message": "User not found"}))
    with pytest.raises(OmniNotFoundError) as info:
        client.get_user(user_id)
    assert info.value.path == f"/scim/v2/users/{user_id}"
    assert info.value.user == user_id
    assert info.value.method == "GET"
    assert "User not found" in str(info.value)
