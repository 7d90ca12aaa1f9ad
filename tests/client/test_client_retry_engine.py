"""One retry engine for every method: create and delete follow the same policy as every read and PATCH
(jittered back-off, attempt and total-wait caps, ``Retry-After`` obeyed up to a cap and "give up" beyond
it), with their special cases as hooks of that engine. Timeouts are told apart from other transport errors.

Before, ``create_user`` had its own loop: waits of exactly 1, 2, 4... s (no jitter), no total-wait cap, and
a ``Retry-After: 3600`` clamped to 120 s and waited out instead of ending the call.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from omni_fakes import FakeOmni, body_of, list_json

from omni_provider.client import (
    OmniConflictError,
    OmniRateLimitError,
    OmniRedirectError,
    OmniServerError,
    OmniTimeoutError,
    OmniTransportError,
    RetryPolicy,
)
from omni_provider.client.retry import is_retryable

GONE = "11111111-2222-4333-8444-555555555555"


def _always(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json={"message": "busy"})


def posts_fail(answer: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Every write gets ``answer``; every look-up finds nobody."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=list_json([], 0, 1))
        return answer

    return handler


def test_create_waits_are_jittered_like_every_other_call(make_client, sleeps) -> None:
    policy = RetryPolicy(max_attempts=6, backoff_initial=1.0, backoff_max=30.0, max_total_wait=1e9)
    client, rec = make_client(posts_fail(_always(502)), retry_policy=policy)
    with pytest.raises(OmniServerError):
        client.create_user("jitter@example.com", "Jitter")
    assert rec.count("POST") == 6 and rec.count("GET") == 5 and len(sleeps) == 5
    assert all(0 <= s <= 2**i for i, s in enumerate(sleeps))
    assert sleeps != [1.0, 2.0, 4.0, 8.0, 16.0]  # the old loop's fixed doubling


@pytest.mark.parametrize("call", ["create", "delete"])
def test_huge_retry_after_ends_the_call_instead_of_waiting(make_client, sleeps, call: str) -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after=120)
    client, rec = make_client(lambda r: _always(429, {"Retry-After": "3600"}), retry_policy=policy)
    with pytest.raises(OmniRateLimitError) as info:
        if call == "create":
            client.create_user("patient@example.com", "Patient")
        else:
            client.delete_user(GONE)
    assert info.value.retry_after == 3600
    assert sleeps == [] and rec.count() == 1


@pytest.mark.parametrize("call", ["create", "delete"])
def test_total_wait_is_capped_for_writes_too(make_client, sleeps, call: str) -> None:
    policy = RetryPolicy(max_attempts=50, backoff_initial=4.0, backoff_max=30.0, max_total_wait=20.0)
    client, rec = make_client(posts_fail(_always(503, {"Retry-After": "6"})), retry_policy=policy)
    with pytest.raises(OmniServerError):
        if call == "create":
            client.create_user("capped@example.com", "Capped")
        else:
            client.delete_user(GONE)
    assert sum(sleeps) <= 20.0 and len(sleeps) >= 2
    assert rec.count("GET") < 50 > rec.count("POST") + rec.count("DELETE")


def test_a_failing_look_up_ends_the_create_instead_of_multiplying_retries(make_client) -> None:
    client, rec = make_client(lambda r: _always(502), max_attempts=4)
    with pytest.raises(OmniServerError):
        client.create_user("storm@example.com", "Storm")
    assert rec.methods() == ["POST", "GET", "GET", "GET", "GET"]  # not 4 POSTs x 4 look-ups


def test_create_retries_count_in_the_client_stats(make_client, fake_omni: FakeOmni) -> None:
    posts = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and posts["n"] < 2:
            posts["n"] += 1
            return _always(503)
        return None

    fake_omni.before.append(flaky)
    client, rec = make_client(fake_omni, max_attempts=4)
    client.create_user("counted@example.com", "Counted")
    assert client.stats.retries == 2
    # the hook: a look-up before each resend
    assert rec.methods() == ["POST", "GET", "POST", "GET", "POST"]


def test_first_attempt_conflict_still_raises(make_client, fake_omni: FakeOmni, sleeps) -> None:
    fake_omni.add("exists@example.com")
    client, rec = make_client(fake_omni, max_attempts=4)
    with pytest.raises(OmniConflictError):
        client.create_user("exists@example.com", "Exists")
    assert rec.methods() == ["POST"] and sleeps == []


def test_delete_404_after_a_lost_answer_means_done(make_client, fake_omni: FakeOmni) -> None:
    user = fake_omni.add("bye@example.com")
    calls = {"n": 0}

    def lose_first(request: httpx.Request) -> httpx.Response | None:
        if request.method == "DELETE" and calls["n"] == 0:
            calls["n"] += 1
            fake_omni.users.pop(user["id"])  # deleted, but the answer is lost
            raise httpx.ReadTimeout("lost", request=request)
        return None

    fake_omni.before.append(lose_first)
    client, rec = make_client(fake_omni, max_attempts=3)
    client.delete_user(user["id"])
    assert rec.methods() == ["DELETE", "DELETE"]


# ============================================================================ timeouts in the error tree


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.PoolTimeout("x"),
    ],
)
def test_timeouts_are_their_own_transport_error(make_client, exc: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    client, rec = make_client(fail, max_attempts=2)
    with pytest.raises(OmniTimeoutError) as info:
        client.list_users_page()
    assert isinstance(info.value, OmniTransportError) and is_retryable(info.value, "GET")
    assert info.value.cause_type == type(exc).__name__
    assert rec.count() == 2


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("reset")])
def test_other_transport_errors_are_not_timeouts(make_client, exc: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    client, _rec = make_client(fail, max_attempts=1)
    with pytest.raises(OmniTransportError) as info:
        client.list_users_page()
    assert not isinstance(info.value, OmniTimeoutError)


def test_a_lost_create_answer_by_timeout_is_looked_up(make_client, fake_omni: FakeOmni) -> None:
    calls = {"n": 0}

    def slow_first(request: httpx.Request) -> httpx.Response | None:
        if request.method == "POST" and calls["n"] == 0:
            calls["n"] += 1
            fake_omni._create(body_of(request))
            raise httpx.ReadTimeout("slow", request=request)
        return None

    fake_omni.before.append(slow_first)
    client, rec = make_client(fake_omni, max_attempts=3)
    client.create_user("slow@example.com", "Slow")
    assert rec.methods() == ["POST", "GET"] and len(fake_omni.users) == 1


# ============================================================================ redirects through httpx


@pytest.mark.parametrize("status", [301, 302, 303])
def test_redirect_that_would_turn_a_write_into_a_get_is_refused(make_client, status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise AssertionError("the PATCH was turned into a GET")
        return httpx.Response(status, headers={"Location": "/api/scim/v2/users/elsewhere"})

    client, rec = make_client(handler)
    with pytest.raises(OmniRedirectError, match="would turn the POST into a GET"):
        client.create_user("moved@example.com", "Moved")
    assert rec.methods() == ["POST"]
