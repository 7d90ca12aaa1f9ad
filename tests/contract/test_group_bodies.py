"""Every group body the client sends validates against Omni's published request schemas
(``ScimGroupsCreateBody``, ``ScimGroupsPatchBody``), and the emulator's group answers against the response
schemas."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_provider.client import GroupsApi, OmniScimClient, RetryPolicy
from omni_provider.domain.groups import create_group_body, members_patch

TEST_API_KEY = "omni-test-key-7f3a9c1e5b"  # as in tests/conftest.py


class RecordingTransport(httpx.BaseTransport):
    """Sends for real (to the emulator) and keeps (method, path, JSON body) of each request."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[str, str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.sent.append((request.method, request.url.path, body))
        return self.inner.handle_request(request)


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1, version=4)) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(
    add=st.lists(st.sampled_from(_ids(12)), max_size=12, unique=True),
    remove=st.lists(st.sampled_from(_ids(24)[12:]), max_size=12, unique=True),
)
def test_every_member_patch_matches_the_published_schema(schema_validator, add, remove) -> None:
    if not add and not remove:
        return
    body = members_patch(add, remove).to_scim()
    schema_validator("ScimGroupsPatchBody").validate(body)
    # One add op carries every addition; each removal is its own op (the schema's path names one user).
    assert len(body["Operations"]) == (1 if add else 0) + len(remove)


def test_create_body_matches_the_published_schema(schema_validator) -> None:
    schema_validator("ScimGroupsCreateBody").validate(create_group_body("Sales EMEA"))
    schema_validator("ScimGroupsCreateBody").validate(create_group_body("Sales EMEA", _ids(3)))


def test_bodies_sent_to_the_emulator_validate_and_answers_match_response_schemas(
    emulator, schema_validator
) -> None:
    users = emulator.state.seed_users(6)
    recorder = RecordingTransport()
    client = OmniScimClient(
        emulator.api_url,
        TEST_API_KEY,
        transport=recorder,
        rate_limit_per_minute=1e6,
        retry_policy=RetryPolicy(max_attempts=1),
    )
    with client:
        groups = GroupsApi(client)
        created = groups.create_group("Finance", [users[0].id, users[1].id])
        groups.update_members(created.id, add=[users[2].id, users[3].id], remove=[users[0].id])
        groups.update_members(created.id, remove=[users[1].id, users[2].id])
        groups.find_group_by_name("Finance")
        groups.delete_group(created.id)
        page = httpx.get(
            emulator.api_url + "/scim/v2/groups",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            timeout=10,
        )
    expected = {"POST": "ScimGroupsCreateBody", "PATCH": "ScimGroupsPatchBody"}
    methods = [m for m, _, _ in recorder.sent]
    assert "PUT" not in methods
    assert methods.count("PATCH") == 2
    for method, _path, body in recorder.sent:
        if method in expected:
            schema_validator(expected[method]).validate(body)
    schema_validator("ScimGroupsListResponse").validate(page.json())
    schema_validator("ScimGroupResponse").validate(created.model_dump(by_alias=True, exclude_none=True))
