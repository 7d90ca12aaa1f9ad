"""``create_user`` never creates a user twice, whatever happens to the first POST."""

from __future__ import annotations

import httpx
import pytest
from omni_fakes import USERS, FakeOmni, body_of, params_of

from omni_provider.client import (
    USER_ATTRIBUTES_URN,
    OmniBadRequestError,
    OmniConflictError,
    OmniServerError,
    OmniTransportError,
    OmniValidationError,
)


def test_create_posts_once_with_body(make_client, fake_omni: FakeOmni) -> None:
    client, rec = make_client(fake_omni)
    user = client.create_user("new@example.com", "New Person", {"region": "eu", "level": 3})
    assert rec.methods() == ["POST"]
    assert rec.requests[0].url.path == USERS
    assert rec.requests[0].headers["content-type"] == "application/json"
    assert rec.bodies("POST") == [
        {
            "userName": "new@example.com",
            "displayName": "New Person",
            USER_ATTRIBUTES_URN: {"region": "eu", "level": 3},
        }
    ]
    assert user.user_name == "new@example.com"
    assert user.attributes == {"region": "eu", "level": 3}
    assert len(fake_omni.users) == 1


def test_create_without_attributes_sends_no_attribute_map(make_client, fake_omni: FakeOmni) -> None:
    client, rec = make_client(fake_omni)
    client.create_user("plain@example.com", "Plain")
    assert rec.bodies("POST") == [{"userName": "plain@example.com", "displayName": "Plain"}]


@pytest.mark.parametrize("lost", [httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_lost_response_looks_up_instead_of_posting_again(make_client, sleeps, lost: type) -> None:
    omni = FakeOmni()
    calls = {"post": 0}

    def lose_first_answer(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and calls["post"] == 0:
            calls["post"] += 1
            omni._create(body_of(request))  # the server did create the user
            raise lost("response lost", request=request)
        return None

    omni.before.append(lose_first_answer)
    client, rec = make_client(omni, max_attempts=4)

    user = client.create_user("lost@example.com", "Lost Response")

    assert rec.methods() == ["POST", "GET"]
    assert params_of(rec.requests[1])["filter"] == 'userName eq "lost@example.com"'
    assert len(omni.users) == 1
    assert user.id == next(iter(omni.users))
    assert len(sleeps) == 1


def test_lost_response_with_server_side_fake(make_client, fake_omni: FakeOmni) -> None:
    fake_omni.lose_next.add("POST")
    client, rec = make_client(fake_omni)
    user = client.create_user("lost2@example.com", "Lost Again", {"a": "b"})
    assert rec.count("POST") == 1
    assert [u["userName"] for u in fake_omni.users.values()] == ["lost2@example.com"]
    assert user.attributes == {"a": "b"}


def test_post_that_failed_before_creating_is_sent_again(make_client, fake_omni: FakeOmni, sleeps) -> None:
    refusals = iter([httpx.Response(503), httpx.Response(502)])
    fake_omni.before.append(lambda r: next(refusals, None) if r.method == "POST" else None)
    client, rec = make_client(fake_omni, max_attempts=5)
    user = client.create_user("retry@example.com", "Retry")
    # each retry is preceded by a lookup that finds nothing
    assert rec.methods() == ["POST", "GET", "POST", "GET", "POST"]
    assert len(fake_omni.users) == 1
    assert user.user_name == "retry@example.com"
    assert len(sleeps) == 2


def test_conflict_after_uncertain_attempt_returns_existing_user(make_client) -> None:
    """First POST creates the user but answers 502; the lookup lags behind; the second POST gets 409."""
    omni = FakeOmni()
    state = {"posts": 0, "gets": 0}

    def flow(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST":
            state["posts"] += 1
            if state["posts"] == 1:
                omni._create(body_of(request))
                return httpx.Response(502, text="bad gateway")
        if request.method == "GET":
            state["gets"] += 1
            if state["gets"] == 1:  # replica not caught up yet
                return httpx.Response(
                    200, json={"Resources": [], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0}
                )
        return None

    omni.before.append(flow)
    client, rec = make_client(omni, max_attempts=4)
    user = client.create_user("race@example.com", "Race")
    assert rec.methods() == ["POST", "GET", "POST", "GET"]
    assert len(omni.users) == 1
    assert user.id == next(iter(omni.users))


def test_plain_conflict_raises(make_client, fake_omni: FakeOmni, sleeps) -> None:
    fake_omni.add("taken@example.com")
    client, rec = make_client(fake_omni, max_attempts=5)
    with pytest.raises(OmniConflictError) as info:
        client.create_user("Taken@Example.com", "Taken")
    assert info.value.status_code == 409
    assert "already exists" in str(info.value)
    assert rec.methods() == ["POST"]
    assert sleeps == []


def test_bad_request_not_retried(make_client, sleeps) -> None:
    client, rec = make_client(lambda r: httpx.Response(400, json={"message": "Invalid request body"}))
    with pytest.raises(OmniBadRequestError):
        client.create_user("bad@example.com", "Bad")
    assert rec.methods() == ["POST"]
    assert sleeps == []


def test_gives_up_after_max_attempts(make_client, fake_omni: FakeOmni) -> None:
    fake_omni.before.append(lambda r: httpx.Response(503) if r.method == "POST" else None)
    client, rec = make_client(fake_omni, max_attempts=3)
    with pytest.raises(OmniServerError):
        client.create_user("down@example.com", "Down")
    assert rec.count("POST") == 3
    assert fake_omni.users == {}


def test_transport_failure_every_time_raises_transport_error(make_client, fake_omni: FakeOmni) -> None:
    def refuse(request: httpx.Request) -> httpx.Response | None:
        raise httpx.ConnectError("refused", request=request)

    fake_omni.before.append(refuse)
    client, rec = make_client(fake_omni, max_attempts=2)
    with pytest.raises(OmniTransportError):
        client.create_user("x@example.com", "X")
    # POST, then lookup (which itself retries its GET) -- and no second POST, since no lookup succeeded
    assert rec.count("POST") == 1


@pytest.mark.parametrize(
    ("email", "name"), [("not-an-email", "N"), ("ok@example.com", ""), ("ok@example.com", " ")]
)
def test_invalid_input_refused_before_request(
    make_client, fake_omni: FakeOmni, email: str, name: str
) -> None:
    client, rec = make_client(fake_omni)
    with pytest.raises(OmniValidationError):
        client.create_user(email, name)
    assert rec.count() == 0


def test_unreadable_2xx_answer_to_post_returns_the_created_user(make_client) -> None:
    omni = FakeOmni()

    def garble_created(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST":
            omni._create(body_of(request))  # created, but the answer is cut short
            return httpx.Response(201, content=b'{"id": "9e87')
        return None

    omni.before.append(garble_created)
    client, rec = make_client(omni)
    user = client.create_user("garbled@example.com", "Garbled")
    assert rec.methods() == ["POST", "GET"]  # looked up, never posted again
    assert user.user_name == "garbled@example.com"
    assert len(omni.users) == 1
