"""Input that could re-target a request, redirects that could carry the key away, bodies that lie."""

from __future__ import annotations

import uuid

import httpx
import pytest
from omni_fakes import TEST_API_KEY, TEST_API_KEY_2, USERS, FakeOmni, body_of, list_json, user_json

from omni_provider.client import (
    OmniRedirectError,
    OmniResponseError,
    OmniScimClient,
    OmniValidationError,
    PatchOperation,
    PatchRequest,
)
from omni_provider.domain.identity import validate_user_id

GOOD_ID = "9e8719d9-276a-4964-9395-a493189a247c"
BAD_IDS = [
    "../x",
    "../../v1/user-attributes",
    "a/b",
    "x?y",
    "#",
    f"{GOOD_ID}/../../x",
    f"{GOOD_ID}?count=1",
    f"{GOOD_ID}#frag",
    "not-a-uuid",
    "",
    " ",
    "9e8719d9276a49649395a493189a247c",  # no hyphens: uuid.UUID accepts it, Omni's ids have them
    "{9e8719d9-276a-4964-9395-a493189a247c}",
    "urn:uuid:9e8719d9-276a-4964-9395-a493189a247c",
    "9e8719d9-276a-4964-\n9395-a493189a247c",
    "%2e%2e%2fx",
    None,
    1.5,
    ["a"],
]


def _calls(client: OmniScimClient, user_id: object):
    return [
        lambda: client.get_user(user_id),  # type: ignore[arg-type]
        lambda: client.update_user(user_id, attributes={"a": "b"}),  # type: ignore[arg-type]
        lambda: client.replace_user(user_id, {"userName": "a@example.com"}),  # type: ignore[arg-type]
        lambda: client.patch_user(  # type: ignore[arg-type]
            user_id, PatchRequest(Operations=[PatchOperation(op="replace", value={"active": False})])
        ),
        lambda: client.delete_user(user_id),  # type: ignore[arg-type]
        lambda: client.get_embed_user(user_id),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("user_id", BAD_IDS, ids=repr)
def test_invalid_user_ids_rejected_before_any_request(make_client, user_id: object) -> None:
    client, rec = make_client(FakeOmni())
    for call in _calls(client, user_id):
        with pytest.raises(OmniValidationError):
            call()
    assert rec.count() == 0


def test_valid_id_accepted_and_lowercased() -> None:
    assert validate_user_id(GOOD_ID.upper()) == GOOD_ID
    assert validate_user_id(f"  {GOOD_ID} ") == GOOD_ID


def test_valid_id_reaches_exact_path(make_client, fake_omni) -> None:
    user = fake_omni.add("x@example.com", user_id=GOOD_ID)
    client, rec = make_client(fake_omni)
    assert client.get_user(GOOD_ID.upper()).id == user["id"]
    assert rec.requests[0].url.raw_path == f"{USERS}/{GOOD_ID}".encode()


# ---------------------------------------------------------------------------------------------- redirects


def test_same_origin_redirect_followed_with_key(make_client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/scim/v2/users":
            return httpx.Response(307, headers={"Location": "/api/scim/v2/Users?startIndex=1&count=100"})
        return httpx.Response(200, json=list_json([user_json("r@example.com")], 1, 1))

    client, rec = make_client(handler)
    page = client.list_users_page()
    assert [u.user_name for u in page.resources] == ["r@example.com"]
    assert [r.url.path for r in rec.requests] == ["/api/scim/v2/users", "/api/scim/v2/Users"]
    assert rec.requests[1].url.params["count"] == "100"
    assert {r.headers["authorization"] for r in rec.requests} == {f"Bearer {TEST_API_KEY}"}


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/api/scim/v2/users",
        "//evil.example/api/scim/v2/users",
        "http://acme.omniapp.co/api/scim/v2/users",  # https -> http downgrade
        "https://acme.omniapp.co:8443/api/scim/v2/users",
        "https://acme.omniapp.co.evil.example/api/scim/v2/users",
    ],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_cross_origin_redirect_not_followed(make_client, location: str, status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if (
            request.url.host != "acme.omniapp.co"
            or request.url.port is not None
            or request.url.scheme != "https"
        ):
            raise AssertionError(f"the key was sent to {request.url}")
        return httpx.Response(status, headers={"Location": location})

    client, rec = make_client(handler, max_attempts=5)
    with pytest.raises(OmniRedirectError) as info:
        client.list_users_page()
    assert rec.count() == 1
    assert {(r.url.scheme, r.url.host) for r in rec.requests} == {("https", "acme.omniapp.co")}
    assert TEST_API_KEY not in str(info.value)


def test_redirect_loop_stops(make_client) -> None:
    client, rec = make_client(lambda r: httpx.Response(302, headers={"Location": "/api/scim/v2/users"}))
    with pytest.raises(OmniRedirectError, match="redirects"):
        client.list_users_page()
    assert rec.count() == 4  # the request and three same-origin hops


def test_write_redirect_keeps_method_and_body(make_client, fake_omni) -> None:
    def redirect_post(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and request.url.path == USERS:
            return httpx.Response(308, headers={"Location": "/api/scim/v2/users/"})
        return None

    def trailing_slash(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == USERS + "/" and request.method == "POST":
            return fake_omni._create(body_of(request))
        return None

    fake_omni.before += [redirect_post, trailing_slash]
    client, rec = make_client(fake_omni)
    client.create_user("moved@example.com", "Moved")
    assert rec.methods() == ["POST", "POST"]
    assert rec.requests[0].content == rec.requests[1].content


# ---------------------------------------------------------------------------------------------- bodies

VICTIM = "victim.person@othercorp.example"


@pytest.mark.parametrize(
    "content",
    [
        b"<html><body>maintenance " + VICTIM.encode() + b"</body></html>",
        b"",
        b'{"Resources": [{"id": "x", "userName": "' + VICTIM.encode() + b'"',  # truncated
        b"\xff\xfe not utf-8",
    ],
    ids=["html", "empty", "truncated", "binary"],
)
def test_non_json_200_is_response_error(make_client, content: bytes) -> None:
    client, rec = make_client(lambda r: httpx.Response(200, content=content))
    with pytest.raises(OmniResponseError) as info:
        client.list_users_page()
    assert VICTIM not in str(info.value)
    assert "maintenance" not in str(info.value)
    assert f"{len(content)} bytes" in str(info.value)
    assert rec.count() == 1  # a 200 is an answer: not retried


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Resources": [{"userName": VICTIM, "displayName": "Victim"}], "totalResults": 1}, "Resources.0.id"),
        ({"Resources": [user_json(VICTIM)]}, "totalResults"),
        (
            {"Resources": [{"id": "x", "userName": ["not", VICTIM]}], "totalResults": 1},
            "Resources.0.userName",
        ),
        ({"Resources": VICTIM, "totalResults": 1}, "Resources"),
        ([VICTIM], "<body>"),
        (VICTIM, "<body>"),
    ],
)
def test_missing_or_mistyped_fields_are_response_errors(make_client, body: object, field: str) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json=body))
    with pytest.raises(OmniResponseError) as info:
        client.list_users_page()
    assert field in str(info.value)
    assert VICTIM not in str(info.value)
    assert "Victim" not in str(info.value)


def test_user_answer_without_id_is_response_error(make_client) -> None:
    body = user_json(VICTIM, attributes={"salary": "secret-123"})
    del body["id"]
    client, _ = make_client(lambda r: httpx.Response(200, json=body))
    with pytest.raises(OmniResponseError) as info:
        client.get_user(GOOD_ID)
    assert "id" in str(info.value)
    for value in (VICTIM, "secret-123"):
        assert value not in str(info.value)


def test_unknown_fields_are_kept_not_refused(make_client) -> None:
    body = {**user_json("k@example.com"), "newOmniField": {"x": 1}}
    client, _ = make_client(lambda r: httpx.Response(200, json=body))
    user = client.get_user(GOOD_ID)
    assert user.model_extra["newOmniField"] == {"x": 1}


def test_attribute_definitions_parsed(make_client) -> None:
    records = [
        {
            "name": "region",
            "label": "Region",
            "id": str(uuid.uuid4()),
            "type": "String",
            "multiple_values": False,
        },
        {"name": "omni_user_email", "label": "Email", "id": "", "type": "String", "system": True},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/user-attributes"
        return httpx.Response(200, json={"records": records})

    client, _ = make_client(handler)
    defs = client.attribute_definitions_by_name()
    assert set(defs) == {"region", "omni_user_email"}
    assert defs["omni_user_email"].system


def test_attribute_definitions_without_records_is_response_error(make_client) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json={"data": []}))
    with pytest.raises(OmniResponseError, match="records"):
        client.list_attribute_definitions()


# ---------------------------------------------------------------------------------------------- the key


def test_repr_and_str_have_no_key() -> None:
    client = OmniScimClient("acme.omniapp.co", [TEST_API_KEY, TEST_API_KEY_2])
    try:
        for text in (repr(client), str(client), repr(client.__dict__.get("_keys"))):
            assert TEST_API_KEY not in text
            assert TEST_API_KEY_2 not in text
        assert "acme.omniapp.co" in repr(client)
        assert client.key_count == 2
    finally:
        client.close()


def test_default_headers(make_client) -> None:
    client, rec = make_client(FakeOmni())
    client.list_users_page()
    headers = rec.requests[0].headers
    assert headers["authorization"] == f"Bearer {TEST_API_KEY}"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("omni-provider/")


def test_two_keys_both_used(make_client) -> None:
    client, rec = make_client(FakeOmni(), keys=[TEST_API_KEY, TEST_API_KEY_2])
    for _ in range(6):
        client.list_users_page()
    used = [r.headers["authorization"] for r in rec.requests]
    assert used.count(f"Bearer {TEST_API_KEY}") == 3
    assert used.count(f"Bearer {TEST_API_KEY_2}") == 3
    assert client.pacer.sent_per_key() == [3, 3]


@pytest.mark.parametrize("status", [200, 500])
def test_undecodable_body_is_response_error(make_client, status: int) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raw = httpx.ByteStream(b"not gzip at all " + VICTIM.encode())
        return httpx.Response(status, headers={"Content-Encoding": "gzip"}, stream=raw)

    client, rec = make_client(broken)
    with pytest.raises(OmniResponseError, match="could not be decoded") as info:
        client.list_users_page()
    assert VICTIM not in str(info.value)
    assert rec.count() == 1
