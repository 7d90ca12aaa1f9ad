"""The email-only users API of the emulator: cursor paging, the 1-20 rule, both upsert meanings, the value
checks against the attribute definitions, system attributes, full Omni users refused, limits and faults."""

from __future__ import annotations

import httpx
import pytest
from emulator_testkit import PAT, MakeEmulator, admin, api_client, create_user

from omni_provider.emulator import EmulatorServer

PATH = "/v1/users/email-only"
BULK = PATH + "/bulk"
BULK_INVALID = "Invalid request - must provide 1-20 users with valid emails"


@pytest.fixture
def client(emulator: EmulatorServer) -> httpx.Client:
    with api_client(emulator) as c:
        yield c


def _all(client: httpx.Client, **params: object) -> tuple[list[dict[str, object]], int]:
    records: list[dict[str, object]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        answer = client.get(PATH, params=query)
        assert answer.status_code == 200, answer.text
        pages += 1
        body = answer.json()
        records += body["records"]
        if not body["pageInfo"]["hasNextPage"]:
            return records, pages
        cursor = body["pageInfo"]["nextCursor"]


def test_cursor_paging_pages_of_twenty_newest_first(emulator: EmulatorServer, client: httpx.Client) -> None:
    for i in range(45):
        emulator.state.recipients.add(f"r{i:02d}@example.com", {"region": "eu"})
    first = client.get(PATH).json()
    assert first["pageInfo"] == {
        "hasNextPage": True,
        "nextCursor": first["pageInfo"]["nextCursor"],
        "pageSize": 20,
        "totalRecords": 45,
    }
    assert first["records"][0]["email"] == "r44@example.com"  # desc by default
    records, pages = _all(client)
    assert pages == 3 and len({r["email"] for r in records}) == 45
    ascending, _ = _all(client, sortDirection="asc", pageSize=7)
    assert [r["email"] for r in ascending] == [f"r{i:02d}@example.com" for i in range(45)]
    only, _ = _all(client, email="R1")  # partial, case-insensitive
    assert sorted(r["email"] for r in only) == [f"r1{i}@example.com" for i in range(10)]
    for bad in ({"pageSize": 21}, {"pageSize": 0}, {"sortDirection": "up"}, {"cursor": "x"}):
        assert client.get(PATH, params=bad).status_code == 400


def test_records_are_snake_case_with_system_attributes_as_strings(client: httpx.Client) -> None:
    answer = client.post(PATH, json={"email": "Ada@Example.com", "userAttributes": {"region": "eu"}})
    assert answer.status_code == 200
    user_id = answer.json()["userId"]
    assert answer.json() == {"email": "Ada@Example.com", "userId": user_id}
    (record,) = client.get(PATH).json()["records"]
    assert record["user_id"] == user_id
    assert record["user_attributes"] == {
        "omni_user_email": "Ada@Example.com",
        "omni_user_name": "Ada@Example.com",
        "omni_user_id": user_id,
        "omni_is_org_admin": "false",
        "region": "eu",
    }


def test_bulk_takes_one_to_twenty_and_refuses_the_whole_request(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    users = [{"email": f"b{i}@example.com", "userAttributes": {"cost_centre": i}} for i in range(20)]
    answer = client.post(BULK, json={"users": users})
    assert answer.status_code == 201 and len(answer.json()["results"]) == 20
    for body in ({"users": []}, {"users": [*users, {"email": "x@example.com"}]}, {"nope": 1}, [1]):
        refused = client.post(BULK, json=body)
        assert refused.status_code == 400 and refused.json()["message"] == BULK_INVALID
    bad = [{"email": "c1@example.com"}, {"email": "c..2@example.com"}]
    refused = client.post(BULK, json={"users": bad})
    assert refused.status_code == 400 and refused.json()["message"] == BULK_INVALID
    assert emulator.state.recipients.get("c1@example.com") is None  # nothing of a refused request stored
    stats = admin(emulator, "GET", "stats").json()
    assert stats["recipients_created"] == 20 and stats["email_only_users"] == 20
    assert stats["requests_by_route"]["POST /v1/users/email-only/bulk"] == 6


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_upsert_meanings(make_emulator: MakeEmulator, mode: str) -> None:
    server = make_emulator(email_only_upsert=mode)
    server.state.recipients.add(
        "ada@example.com", {"region": "eu", "department": "Sales", "omni_user_timezone": "Europe/Paris"}
    )
    with api_client(server) as c:
        answer = c.post(PATH, json={"email": "ADA@example.com", "userAttributes": {"region": "us"}})
        assert answer.status_code == 200
        kept = server.state.recipients.get("ada@example.com")
        assert kept is not None
        expected = {"region": "us", "omni_user_timezone": "Europe/Paris"}
        if mode == "merge":
            expected["department"] = "Sales"
        assert dict(kept.attributes) == expected
        # null unsets in both; a body without userAttributes changes nothing
        assert c.post(PATH, json={"email": "ada@example.com", "userAttributes": {"region": None}}).is_success
        assert c.post(PATH, json={"email": "ada@example.com"}).is_success
        kept = server.state.recipients.get("ada@example.com")
        assert kept is not None and "region" not in kept.attributes


def test_values_checked_against_definitions(client: httpx.Client) -> None:
    def refused(attributes: dict[str, object]) -> str:
        answer = client.post(PATH, json={"email": "v@example.com", "userAttributes": attributes})
        assert answer.status_code == 400, attributes
        return str(answer.json()["message"])

    assert "Unknown user attribute" in refused({"nope": "x"})
    assert "expects a Number" in refused({"cost_centre": "12"})
    assert "multiple values" in refused({"regions": "eu"})
    assert "read-only" in refused({"omni_user_name": "Ada"})
    ok = {"cost_centre": 12, "regions": ["eu", "us"], "allowed_ids": [1, 10], "omni_user_timezone": "UTC"}
    assert client.post(PATH, json={"email": "v@example.com", "userAttributes": ok}).status_code == 200
    assert client.post(PATH, json={"email": "not-an-email"}).status_code == 400


def test_a_full_omni_user_is_not_turned_into_a_recipient(
    emulator: EmulatorServer, client: httpx.Client
) -> None:
    create_user(client, "grace@example.com", "Grace")
    for path, body in (
        (PATH, {"email": "GRACE@example.com"}),
        (BULK, {"users": [{"email": "grace@example.com"}]}),
    ):
        answer = client.post(path, json=body)
        assert answer.status_code == 400
        assert "an Omni user has this email" in answer.json()["message"]
    assert emulator.state.recipients.all() == []


def test_rate_limit_faults_and_tokens(make_emulator: MakeEmulator) -> None:
    server = make_emulator(rate_limit_enabled=True, rate_limit=2, rate_window=30)
    with api_client(server) as c:
        assert [c.get(PATH).status_code for _ in range(3)] == [200, 200, 429]
    server = make_emulator()
    admin(server, "POST", "config", json={"fail_next": [{"status": 503, "methods": ["POST"]}]})
    with api_client(server) as c:
        assert c.post(BULK, json={"users": [{"email": "f@example.com"}]}).status_code == 503
        assert server.state.recipients.all() == []
        assert c.post(BULK, json={"users": [{"email": "f@example.com"}]}).status_code == 201
    with api_client(server, PAT) as c:  # /api/v1 takes personal access tokens as well
        assert c.get(PATH).status_code == 200
    with api_client(server, None) as c:
        assert c.get(PATH).status_code == 401


def test_recipients_survive_a_state_file(make_emulator: MakeEmulator, tmp_path: object) -> None:
    from pathlib import Path

    from omni_provider.emulator import EmulatorState

    state = EmulatorState()
    state.recipients.add("keep@example.com", {"region": "eu"})
    target = Path(str(tmp_path)) / "state.json"
    state.save(target)
    loaded = EmulatorState.load(target)
    kept = loaded.recipients.get("keep@example.com")
    assert kept is not None and dict(kept.attributes) == {"region": "eu"}
    assert loaded.recipients.upsert("new@example.com", {}, "merge")[0].seq == 2
