"""``update_one_user``: the single-user core the Airflow operator and the Dagster resource both call."""

from __future__ import annotations

from typing import Any

import pytest
from sync_testkit import UNMANAGED, attrs, requests, seed, state_of, writes

from omni_provider.client import OmniScimClient, OmniValidationError, UserNotFoundError
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.users.single import update_one_user


def test_updates_only_the_named_attributes(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 2)
    user = emu.state.find_by_email(emails[0])
    assert user is not None
    result = update_one_user(client, user_name="User001@EXAMPLE.com", attributes={"cost_centre": 7})
    assert result == {
        "user_id": user.id,
        "user_name": emails[0],
        "action": "updated",
        "changes": {"attributes": {"cost_centre": {"old": None, "new": 7}}, "user": {}},
    }
    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "us-east", "cost_centre": 7}
    assert attrs(emu, emails[1]) == {**UNMANAGED, "region": "us-east"}

    again = update_one_user(client, user_id=user.id, attributes={"cost_centre": 7})
    assert (
        again["action"] == "unchanged"
        and again["changes"] == {"attributes": {}, "user": {}}
        and writes(emu) == 1
    )


def test_unset_display_name_and_active(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 1)
    result = update_one_user(
        client, user_name=emails[0], attributes={"region": None}, display_name=" Ada ", active=False
    )
    assert result["changes"] == {
        "attributes": {"region": {"old": "us-east", "new": None}},
        "user": {"displayName": {"old": "User 1", "new": "Ada"}, "active": {"old": True, "new": False}},
    }
    user = emu.state.find_by_email(emails[0])
    assert user is not None and user.display_name == "Ada" and user.active is False
    assert dict(user.attributes) == UNMANAGED


def test_dry_run_reports_without_writing(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 1)
    before = state_of(emu)
    result = update_one_user(client, user_name=emails[0], attributes={"region": "apac"}, dry_run=True)
    assert result["action"] == "dry_run"
    assert result["changes"]["attributes"] == {"region": {"old": "us-east", "new": "apac"}}
    assert writes(emu) == 0 and state_of(emu) == before


def test_missing_user_and_mismatched_id(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 2)
    with pytest.raises(UserNotFoundError):
        update_one_user(client, user_name="ghost@example.com", attributes={"region": "apac"})
    other = emu.state.find_by_email(emails[1])
    assert other is not None
    with pytest.raises(OmniValidationError, match="refusing to guess"):
        update_one_user(client, user_id=other.id, user_name=emails[0], attributes={"region": "apac"})
    assert writes(emu) == 0


def test_unknown_attribute_is_refused_before_any_write(emu: EmulatorServer, client: OmniScimClient) -> None:
    emails = seed(emu, 1)
    with pytest.raises(OmniValidationError, match="regoin"):
        update_one_user(client, user_name=emails[0], attributes={"regoin": "apac"})
    assert writes(emu) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attributes": {"region": "apac"}}, "give user_id"),
        ({"user_name": "not an email", "attributes": {"region": "apac"}}, "email"),
        ({"user_id": "../users", "attributes": {"region": "apac"}}, "id"),
        ({"user_name": "a@example.com"}, "nothing to update"),
        ({"user_name": "a@example.com", "attributes": {"region": float("nan")}}, "region"),
        ({"user_name": "a@example.com", "display_name": 5}, "display_name must be text"),
        ({"user_name": "a@example.com", "display_name": "x" * 300}, "longer than 256"),
        ({"user_name": "a@example.com", "active": "yes"}, "active"),
        ({"user_name": "a@example.com", "attributes": {"region": "x"}, "dry_run": "no"}, "dry_run"),
    ],
)
def test_bad_input_fails_before_any_request(
    emu: EmulatorServer, client: OmniScimClient, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(OmniValidationError, match=message):
        update_one_user(client, **kwargs)
    assert requests(emu) == 0
