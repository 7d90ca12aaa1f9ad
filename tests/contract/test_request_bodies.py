"""Every body the client sends validates against Omni's published request schemas, and the emulator's answers
against the response schemas (``omni-openapi-scim.json``, see README.md here)."""

from __future__ import annotations

import json
import re
import string
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import ValidationError
from omni_testkit import apply_patch_ops

from omni_provider.client import (
    USER_ATTRIBUTES_URN,
    OmniScimClient,
    PatchOperation,
    PatchRequest,
    RetryPolicy,
)

TEST_API_KEY = "omni-test-key-7f3a9c1e5b"  # as in tests/conftest.py
USER_ID = "9e8719d9-276a-4964-9395-a493189a247c"
CURRENT_ATTRIBUTES = {
    "region": "us-east",
    "cost_centre": 4200,
    "regions": ["us", "eu"],
    "allowed_ids": [1, 2],
}


class CapturingOmni:
    """A MockTransport handler that answers like Omni and keeps (method, path, JSON body) of each request."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.user = {
            "id": USER_ID,
            "userName": "dana@example.com",
            "displayName": "Dana",
            "active": True,
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            USER_ATTRIBUTES_URN: dict(CURRENT_ATTRIBUTES),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.method, request.url.path, body))
        if request.method == "GET":
            return httpx.Response(200, json=self.user)
        answer = dict(self.user)
        if request.method == "POST":
            answer = {**answer, "userName": body["userName"], "displayName": body["displayName"]}
            answer[USER_ATTRIBUTES_URN] = body.get(USER_ATTRIBUTES_URN, {})
            return httpx.Response(201, json=answer)
        if request.method == "PATCH":
            # echo the change so the client's after-write check passes
            answer[USER_ATTRIBUTES_URN] = dict(self.user[USER_ATTRIBUTES_URN])
            apply_patch_ops(answer, body)
        return httpx.Response(200, json=answer)

    def bodies(self, method: str) -> list[Any]:
        return [b for m, _, b in self.sent if m == method]


def _client(omni: CapturingOmni, **kwargs: Any) -> OmniScimClient:
    return OmniScimClient(
        "acme.omniapp.co",
        TEST_API_KEY,
        transport=httpx.MockTransport(omni),
        rate_limit_per_minute=1e6,
        retry_policy=RetryPolicy(max_attempts=1),
        **kwargs,
    )


def _spec_schema_for(openapi: dict[str, Any], method: str, path: str) -> str:
    """The request schema name the spec declares for ``method`` on the path the client really used."""
    for template, operations in openapi["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path, re.IGNORECASE) and method.lower() in operations:
            ref = operations[method.lower()]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            return ref.rsplit("/", 1)[1]
    raise AssertionError(f"{method} {path} is not in Omni's published API")


def _assert_valid(openapi, schema_validator, omni: CapturingOmni, method: str, expected_schema: str) -> int:
    checked = 0
    for sent_method, path, body in omni.sent:
        if sent_method != method:
            continue
        name = _spec_schema_for(openapi, method, path)
        assert name == expected_schema
        schema_validator(name).validate(body)
        checked += 1
    assert checked, f"no {method} was sent"
    return checked


# ---------------------------------------------------------------------------------------------- create


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        {},
        {"region": "us-east"},
        {"cost_centre": 4200, "ratio": 0.25, "regions": ["us", "eu"], "allowed_ids": [1, 2, 3]},
        {"cleared": None, "empty_list": []},
    ],
)
def test_create_body(openapi, schema_validator, attributes) -> None:
    omni = CapturingOmni()
    with _client(omni) as client:
        client.create_user("new.person@example.com", "New Person", attributes)
    _assert_valid(openapi, schema_validator, omni, "POST", "ScimUserCreateRequest")


# ---------------------------------------------------------------------------------------------- PUT


@pytest.mark.parametrize(
    "body",
    [
        {"userName": "dana@example.com"},
        {"userName": "dana@example.com", "displayName": "Dana", "active": False},
        {
            "userName": "dana@example.com",
            USER_ATTRIBUTES_URN: {"region": "eu", "allowed_ids": [1], "gone": None},
        },
    ],
)
def test_put_body(openapi, schema_validator, body) -> None:
    omni = CapturingOmni()
    with _client(omni) as client:
        client.replace_user(USER_ID, body)
    _assert_valid(openapi, schema_validator, omni, "PUT", "ScimUserPutRequest")


# ---------------------------------------------------------------------------------------------- PATCH


@pytest.mark.parametrize(
    "change",
    [
        {"attributes": {"region": "eu-west"}},
        {"attributes": {"cost_centre": 17, "regions": ["ap"], "allowed_ids": [9, 8]}},
        {"attributes": {"region": None}},
        {"attributes": {"regions": []}},
        {"display_name": "Dana Scully"},
        {"active": False},
        {"attributes": {"region": "x", "cost_centre": None}, "display_name": "D", "active": False},
    ],
    ids=["attribute", "typed", "unset", "unset-list", "display-name", "active", "everything"],
)
@pytest.mark.parametrize("form", ["attribute_path", "map_replace"])
def test_patch_body_from_update_user(openapi, schema_validator, change, form) -> None:
    omni = CapturingOmni()
    with _client(omni, patch_form=form) as client:
        result = client.update_user(USER_ID, **change)
    assert result.action == "updated"
    assert _assert_valid(openapi, schema_validator, omni, "PATCH", "ScimUserPatchRequest") == 1


def test_patch_deactivate_path_form(openapi, schema_validator) -> None:
    omni = CapturingOmni()
    patch = PatchRequest(Operations=[PatchOperation(op="replace", path="active", value=False)])
    with _client(omni) as client:
        client.patch_user(USER_ID, patch)
    _assert_valid(openapi, schema_validator, omni, "PATCH", "ScimUserPatchRequest")


def test_remove_op_carries_value_as_the_spec_requires(openapi, schema_validator) -> None:
    omni = CapturingOmni()
    patch = PatchRequest(Operations=[PatchOperation(op="remove", path=f"{USER_ATTRIBUTES_URN}:region")])
    with _client(omni) as client:
        client.patch_user(USER_ID, patch)
    (body,) = omni.bodies("PATCH")
    assert body["Operations"] == [{"op": "remove", "path": f"{USER_ATTRIBUTES_URN}:region", "value": None}]
    _assert_valid(openapi, schema_validator, omni, "PATCH", "ScimUserPatchRequest")


_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -_.,'\"\\éü", max_size=30)
_NUMBERS = st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False, width=32)
_VALUES = st.one_of(
    st.none(),
    _TEXT,
    _NUMBERS,
    st.lists(_TEXT.filter(bool), min_size=1, max_size=4),
    st.lists(_NUMBERS, min_size=1, max_size=4),
)


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attributes=st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=6),
    display_name=st.none() | _TEXT.filter(lambda s: s.strip() != ""),
    active=st.none() | st.booleans(),
)
def test_any_update_sends_a_valid_patch(openapi, schema_validator, attributes, display_name, active) -> None:
    omni = CapturingOmni()
    with _client(omni) as client:
        result = client.update_user(USER_ID, attributes=attributes, display_name=display_name, active=active)
    patches = omni.bodies("PATCH")
    assert len(patches) == (1 if result.action == "updated" else 0)
    for body in patches:
        schema_validator("ScimUserPatchRequest").validate(body)
        sent = {
            op["path"].removeprefix(USER_ATTRIBUTES_URN + ":")
            for op in body["Operations"]
            if op.get("path", "").startswith(USER_ATTRIBUTES_URN)
        }
        assert set(sent) <= set(attributes)  # never more keys than asked for
        assert all("value" in op for op in body["Operations"])  # the spec requires it, remove included


# ------------------------------------------------------------------------------------------ the checks bite


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("ScimUserCreateRequest", {"userName": "a@example.com"}),
        ("ScimUserCreateRequest", {"userName": "not-an-email", "displayName": "A"}),
        ("ScimUserPutRequest", {"displayName": "A"}),
        ("ScimUserPutRequest", {"userName": "a@example.com", "active": "no"}),
        ("ScimUserPatchRequest", {"Operations": [{"op": "replace", "value": {}}]}),
        (
            "ScimUserPatchRequest",
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []},
        ),
        ("ScimUserPatchRequest", {"schemas": ["urn:x"], "Operations": [{"op": "replace", "value": 1}]}),
        (
            "ScimUserPatchRequest",
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove"}]},
        ),
        (
            "ScimUserPatchRequest",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "merge", "value": 1}],
            },
        ),
        (
            "ScimUserResponse",
            {"id": "nope", "userName": "a@example.com", "displayName": "A", "active": True, "schemas": []},
        ),
    ],
)
def test_schemas_reject_bad_bodies(schema_validator, schema: str, body: dict) -> None:
    with pytest.raises(ValidationError):
        schema_validator(schema).validate(body)


# ---------------------------------------------------------------------------------------- emulator answers


def test_emulator_responses_match_response_schemas(emulator, schema_validator) -> None:
    user_schema = schema_validator("ScimUserResponse")
    list_schema = schema_validator("ScimUsersListResponse")
    base = emulator.base_url + "/api"
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    emulator.reset(seed_users=3)
    with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
        created = http.post(
            "/scim/v2/users",
            json={
                "userName": "c@example.com",
                "displayName": "C",
                USER_ATTRIBUTES_URN: {"region": "eu-west"},
            },
        )
        assert created.status_code == 201
        user_schema.validate(created.json())
        user_id = created.json()["id"]

        for response in (
            http.get(f"/scim/v2/users/{user_id}"),
            http.patch(
                f"/scim/v2/users/{user_id}",
                json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": False}}],
                },
            ),
            http.put(f"/scim/v2/users/{user_id}", json={"userName": "c@example.com", "displayName": "C2"}),
        ):
            assert response.status_code == 200, response.text
            user_schema.validate(response.json())

        for params in (
            {},
            {"count": 2},
            {"startIndex": 3, "count": 2},
            {"filter": 'userName eq "C@example.com"'},
        ):
            listed = http.get("/scim/v2/users", params=params)
            assert listed.status_code == 200
            list_schema.validate(listed.json())
        assert listed.json()["totalResults"] == 1

        attrs = http.get("/v1/user-attributes")
        schema_validator("UserAttributesListResponse").validate(attrs.json())


def test_emulator_accepts_every_body_the_client_sends(emulator) -> None:
    """The emulator is strict about bodies, so the client's real bodies must pass it end to end."""
    with OmniScimClient(
        emulator.base_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=1)
    ) as client:
        user = client.create_user("e2e@example.com", "E2E", {"region": "us-east", "allowed_ids": [1, 2]})
        client.update_user(
            user.id, attributes={"region": None, "regions": ["a", "b"]}, display_name="E", active=False
        )
        client.replace_user(user.id, {"userName": "e2e@example.com", "displayName": "E3"})
    assert uuid.UUID(user.id)
