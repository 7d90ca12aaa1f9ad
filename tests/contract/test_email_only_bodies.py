"""The recipients target's bodies validate against Omni's published email-only schemas, and the emulator's
answers against the response schemas. (The schemas type attribute values as scalars or null; the docs also
accept arrays for multi-value attributes: omni-api.md section 9, a known contradiction, not checked here.)"""

from __future__ import annotations

import json
from typing import Any

import httpx

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.client.email_only import EmailOnlyApi, upsert_body
from omni_provider.sync.recipients.options import RecipientSyncOptions
from omni_provider.sync.recipients.run import RecipientSyncRun

TEST_API_KEY = "omni-test-key-7f3a9c1e5b"  # as in tests/conftest.py


def test_a_sync_sends_bodies_the_schemas_accept(emulator: Any, schema_validator: Any) -> None:
    for i in range(25):
        emulator.state.recipients.add(f"r{i}@example.com", {"region": "eu", "department": "Sales"})
    sent: list[tuple[str, Any]] = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append((request.url.path, request.content))

    rows = [{"email": f"r{i}@example.com", "region": "us", "cost_centre": i} for i in range(25)]
    rows += [{"email": "new@example.com", "region": None, "cost_centre": 1}]
    with OmniScimClient(
        emulator.api_url, TEST_API_KEY, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=1)
    ) as client:
        client._http.event_hooks["request"].append(record)
        options = RecipientSyncOptions(attributes=["region", "cost_centre"])
        summary = RecipientSyncRun.from_options(client, options).run(rows)
    assert summary["outcomes"]["applied"] == 26
    bulk = schema_validator("UsersCreateEmailOnlyBulkBody")
    assert len(sent) == 3  # the canary and ceil(25 / 20) bulk upserts
    for path, content in sent:
        assert path.endswith("/v1/users/email-only/bulk")
        bulk.validate(json.loads(content))
    schema_validator("UsersCreateEmailOnlyBody").validate(upsert_body("Ada@Example.com", {"region": None}))


def test_the_emulator_answers_as_the_schemas_say(emulator: Any, schema_validator: Any) -> None:
    with httpx.Client(
        base_url=emulator.api_url, headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=10
    ) as http:
        one = http.post(
            "/v1/users/email-only", json={"email": "a@example.com", "userAttributes": {"region": "eu"}}
        )
        schema_validator("UsersCreateEmailOnlyResponse").validate(one.json())
        bulk = http.post("/v1/users/email-only/bulk", json={"users": [{"email": "b@example.com"}]})
        assert bulk.status_code == 201
        schema_validator("UsersCreateEmailOnlyBulkResponse").validate(bulk.json())
        listing = http.get("/v1/users/email-only", params={"pageSize": 1})
        schema_validator("UsersListEmailOnlyResponse").validate(listing.json())
    with OmniScimClient(emulator.api_url, TEST_API_KEY, rate_limit_per_minute=1e6) as client:
        assert {r.email for r in EmailOnlyApi(client).list_recipients()} == {"a@example.com", "b@example.com"}
