"""The client against the real emulator over loopback HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from omni_fakes import PERSONAL_TOKEN, TEST_API_KEY, TEST_API_KEY_2

from omni_provider.client import (
    USER_ATTRIBUTES_URN,
    OmniAuthenticationError,
    OmniBadRequestError,
    OmniConflictError,
    OmniNotFoundError,
    OmniScimClient,
    OmniServerError,
    OmniUser,
    RetryPolicy,
)

FULL_ATTRIBUTES: dict[str, Any] = {
    "region": "us-east",
    "department": "Finance",
    "seat_tier": "gold",
    "cost_centre": 4200,
    "regions": ["us", "eu"],
    "allowed_ids": [1, 2, 3],
}


class RecordingTransport(httpx.HTTPTransport):
    """A real loopback transport that also keeps each request's method, path and query."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, dict(request.url.params)))
        return super().handle_request(request)


def _seed_full_user(client: OmniScimClient) -> OmniUser:
    user = client.create_user("full.user@example.com", "Full User", dict(FULL_ATTRIBUTES))
    client.update_user(user.id, active=False)  # a non-default value that a replace would reset
    return client.get_user(user.id)


def _comparable(user: OmniUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "userName": user.user_name,
        "displayName": user.display_name,
        "active": user.active,
        "attributes": user.attributes,
    }


@pytest.mark.parametrize("put_mode", ["merge", "replace"])
def test_update_user_never_loses_anything_in_either_put_mode(emulator, emu_client, put_mode: str) -> None:
    emulator.config.apply_patch({"put_mode": put_mode})
    client = emu_client()
    before = _seed_full_user(client)
    assert before.active is False
    assert before.attributes == FULL_ATTRIBUTES

    result = client.update_user(before.id, attributes={"seat_tier": "platinum"})

    assert result.action == "updated"
    after = client.get_user(before.id)
    expected = _comparable(before)
    expected["attributes"] = {**FULL_ATTRIBUTES, "seat_tier": "platinum"}
    assert _comparable(after) == expected
    assert emulator.stats.snapshot()["requests_by_method"].get("PUT", 0) == 0

    # a display-name change alone keeps every attribute and the active flag
    client.update_user(before.id, display_name="Renamed User")
    again = client.get_user(before.id)
    assert _comparable(again) == {**expected, "displayName": "Renamed User"}

    # and unsetting one attribute leaves the others
    client.update_user(before.id, attributes={"regions": None})
    final = client.get_user(before.id)
    remaining = {k: v for k, v in expected["attributes"].items() if k != "regions"}
    assert final.attributes == remaining
    assert final.active is False


def test_partial_put_in_replace_mode_drops_everything_else(emulator, emu_client) -> None:
    emulator.config.apply_patch({"put_mode": "replace"})
    client = emu_client()
    before = _seed_full_user(client)

    returned = client.replace_user(
        before.id, {"userName": before.user_name, USER_ATTRIBUTES_URN: {"seat_tier": "platinum"}}
    )

    after = client.get_user(before.id)
    assert _comparable(returned) == _comparable(after)
    assert after.attributes == {"seat_tier": "platinum"}  # the five other attributes are gone
    assert after.display_name != "Full User"  # reset
    assert after.active is True  # a deactivated user came back


def test_partial_put_in_merge_mode_keeps_everything_else(emulator, emu_client) -> None:
    emulator.config.apply_patch({"put_mode": "merge"})
    client = emu_client()
    before = _seed_full_user(client)
    client.replace_user(
        before.id, {"userName": before.user_name, USER_ATTRIBUTES_URN: {"seat_tier": "platinum"}}
    )
    after = client.get_user(before.id)
    assert after.attributes == {**FULL_ATTRIBUTES, "seat_tier": "platinum"}
    assert after.display_name == "Full User"
    assert after.active is False


def test_unchanged_update_sends_no_write(emulator, emu_client) -> None:
    client = emu_client()
    user = _seed_full_user(client)
    emulator.stats.reset()
    result = client.update_user(user.id, attributes={"region": "us-east", "cost_centre": "4200"})
    assert result.action == "unchanged"
    assert emulator.stats.snapshot()["requests_by_method"] == {"GET": 1}
    assert emulator.stats.snapshot()["writes_applied"] == 0


def test_paging_past_clamped_pages(emulator, emu_client) -> None:
    emulator.config.apply_patch({"max_page_size": 100})
    emulator.reset(seed_users=250)
    transport = RecordingTransport()
    client = emu_client(page_size=1000, transport=transport)

    users = client.list_users()

    assert len(users) == 250
    assert len({u.id for u in users}) == 250
    assert [u.user_name for u in users] == [f"user{i:05d}@example.com" for i in range(1, 251)]
    assert [(m, q["startIndex"], q["count"]) for m, _, q in transport.seen] == [
        ("GET", "1", "1000"),
        ("GET", "100", "1000"),  # each page overlaps the one before by one user (drift check)
        ("GET", "199", "1000"),
    ]
    assert emulator.stats.snapshot()["requests_total"] == 3


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("Mixed.Case@Example.COM", "mixed.case@example.com"),
        ('quote"d@example.com', 'QUOTE"D@example.com'),
        ("back\\slash@example.com", "Back\\Slash@Example.com"),
        ("o'neil+tag@example.com", "O'Neil+Tag@example.com"),
    ],
)
def test_find_by_email_case_and_quotes(emulator, emu_client, stored: str, asked: str) -> None:
    emulator.state.add_user("other@example.com", "Other")
    created = emulator.state.add_user(stored, "Target", {"region": "eu-west"})
    client = emu_client()
    user = client.find_user_by_email(asked)
    assert user is not None
    assert user.id == created.id
    assert user.user_name == stored
    assert user.attributes == {"region": "eu-west"}
    assert client.find_user_by_email("absent" + asked) is None


def test_rate_limit_429_retried_to_success(emulator, emu_client, sleeps) -> None:
    emulator.config.apply_patch(
        {"rate_limit_enabled": True, "rate_limit": 3, "rate_window": 0.3, "retry_after_header": False}
    )

    def nap(seconds: float) -> None:  # record the chosen wait, really wait a little
        sleeps.append(seconds)
        time.sleep(min(seconds, 0.1))

    client = emu_client(
        sleep=nap, retry_policy=RetryPolicy(max_attempts=20, backoff_initial=0.05, backoff_max=0.1)
    )
    pages = [client.list_users_page() for _ in range(8)]
    assert all(p.total_results == 0 for p in pages)
    stats = emulator.stats.snapshot()
    assert stats["rate_limited"] > 0
    assert client.stats.rate_limited == stats["rate_limited"]
    assert stats["responses_by_status"]["200"] == 8


def test_rate_limit_with_retry_after_header(emulator, emu_client, sleeps) -> None:
    emulator.config.apply_patch(
        # A window long enough that the three requests fall in it even on a loaded machine (at 0.4 s they
        # sometimes did not, and no 429 came); the client then waits what Retry-After says.
        {"rate_limit_enabled": True, "rate_limit": 2, "rate_window": 1.5, "retry_after_header": True}
    )
    client = emu_client(sleep=lambda s: (sleeps.append(s), time.sleep(s)))
    for _ in range(3):
        client.list_users_page()
    assert sleeps and sleeps[0] >= 1.0  # the emulator's Retry-After (whole seconds, at least 1)


def test_client_paced_under_server_limit_never_sees_429(emulator) -> None:
    # Server: 4 per 0.4 s. Client: 3 per 0.45 s (0.15 s apart), so any 5 requests span 0.6 s: a margin of
    # 0.2 s for scheduling jitter on a busy machine.
    emulator.config.apply_patch({"rate_limit_enabled": True, "rate_limit": 4, "rate_window": 0.4})
    with OmniScimClient(
        emulator.base_url, TEST_API_KEY, rate_limit_per_minute=3, rate_window_seconds=0.45, timeout=10
    ) as client:
        for _ in range(7):
            client.list_users_page()
    stats = emulator.stats.snapshot()
    assert stats["rate_limited"] == 0
    assert stats["requests_total"] == 7


def test_two_keys_spread_over_the_emulator(emulator, emu_client) -> None:
    client = emu_client(keys=[TEST_API_KEY, TEST_API_KEY_2])
    for _ in range(6):
        client.list_users_page()
    by_key = emulator.stats.snapshot()["requests_by_key"]
    assert sorted(by_key.values()) == [3, 3]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_injected_errors_retried(emulator, emu_client, sleeps, status: int) -> None:
    emulator.context.faults.set_fail_next([{"status": status, "count": 2}])
    client = emu_client(max_attempts=4)
    assert client.list_users_page().total_results == 0
    stats = emulator.stats.snapshot()
    assert stats["requests_total"] == 3
    assert stats["responses_by_status"][str(status)] == 2
    assert len(sleeps) == 2


def test_injected_errors_beyond_cap_raise(emulator, emu_client) -> None:
    emulator.context.faults.set_fail_next([{"status": 503, "count": 10}])
    client = emu_client(max_attempts=3)
    with pytest.raises(OmniServerError) as info:
        client.list_users_page()
    assert info.value.omni_message.startswith("Injected fault")
    assert emulator.stats.snapshot()["requests_total"] == 3


def test_dropped_connection_retried(emulator, emu_client) -> None:
    emulator.context.faults.set_fail_next([{"fault": "drop_connection", "count": 1}])
    client = emu_client()
    assert client.list_users_page().total_results == 0
    assert emulator.stats.snapshot()["requests_total"] == 2


def test_lost_response_on_create_makes_exactly_one_user(emulator, emu_client, sleeps) -> None:
    emulator.context.faults.set_fail_next([{"fault": "lost_response", "methods": ["POST"]}])
    client = emu_client()

    user = client.create_user("lost.response@example.com", "Lost Response", {"region": "ap-south"})

    assert emulator.state.user_count() == 1
    (stored,) = emulator.state.users()
    assert user.id == stored.id
    assert user.attributes == {"region": "ap-south"}
    methods = emulator.stats.snapshot()["requests_by_method"]
    assert methods == {"POST": 1, "GET": 1}
    assert len(sleeps) == 1


def test_503_on_create_then_success_makes_one_user(emulator, emu_client) -> None:
    emulator.context.faults.set_fail_next([{"status": 503, "methods": ["POST"], "count": 1}])
    client = emu_client()
    client.create_user("after503@example.com", "After")
    assert emulator.state.user_count() == 1
    assert emulator.stats.snapshot()["requests_by_method"] == {"POST": 2, "GET": 1}


def test_duplicate_create_conflicts(emulator, emu_client) -> None:
    emulator.state.add_user("dup@example.com", "Dup")
    client = emu_client()
    with pytest.raises(OmniConflictError, match="already exists"):
        client.create_user("DUP@example.com", "Dup Again")
    assert emulator.state.user_count() == 1


def test_emulator_refuses_unknown_attribute_as_bad_request(emulator, emu_client) -> None:
    client = emu_client()
    user = client.create_user("attr@example.com", "Attr")
    with pytest.raises(OmniBadRequestError, match="Unknown user attribute"):
        client.update_user(user.id, attributes={"no_such_attribute": "x"})


def test_wrong_key_and_personal_token_are_401(emulator, emu_client) -> None:
    for key in ("omni-wrong-key-0000000", PERSONAL_TOKEN):
        client = emu_client(keys=key)
        with pytest.raises(OmniAuthenticationError) as info:
            client.list_users_page()
        assert key not in str(info.value)
    # the personal token is accepted on /api/v1
    client = emu_client(keys=PERSONAL_TOKEN)
    assert "region" in client.attribute_definitions_by_name()


def test_get_and_delete(emulator, emu_client) -> None:
    client = emu_client()
    user = client.create_user("gone@example.com", "Gone")
    assert client.get_user(user.id).user_name == "gone@example.com"
    client.delete_user(user.id)
    with pytest.raises(OmniNotFoundError):
        client.get_user(user.id)


def test_capitalised_users_path_same_resource(emulator, emu_client) -> None:
    client = emu_client()
    user = client.create_user("caps@example.com", "Caps")
    response = client.request("GET", f"/scim/v2/Users/{user.id}")
    assert response.json()["id"] == user.id
