"""Retries: which failures, how many attempts, how long (recorded, never slept)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from omni_fakes import list_json, scripted

from omni_provider.client import (
    OmniApiError,
    OmniAuthenticationError,
    OmniBadRequestError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniServerError,
    OmniTransportError,
    RetryPolicy,
)
from omni_provider.errors import parse_retry_after

OK_LIST = httpx.Response(200, json=list_json([], 0, 1))


@pytest.mark.parametrize("status", [429, 502, 503, 504])
@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_retryable_status_tried_exactly_max_attempts(make_client, sleeps, status: int, attempts: int) -> None:
    client, rec = make_client(lambda r: httpx.Response(status), max_attempts=attempts)
    with pytest.raises(OmniApiError) as info:
        client.list_users_page()
    assert info.value.status_code == status
    assert rec.count() == attempts
    assert len(sleeps) == attempts - 1
    assert client.stats.retries == attempts - 1


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_status_then_success(make_client, sleeps, status: int) -> None:
    client, rec = make_client(
        scripted(httpx.Response(status), httpx.Response(status), OK_LIST), max_attempts=5
    )
    page = client.list_users_page()
    assert page.total_results == 0
    assert rec.count() == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= RetryPolicy().backoff_max for s in sleeps)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_retried_up_to_cap(make_client, sleeps, exc: Exception) -> None:
    client, rec = make_client(scripted(exc), max_attempts=3)
    with pytest.raises(OmniTransportError) as info:
        client.list_users_page()
    assert rec.count() == 3
    assert len(sleeps) == 2
    assert info.value.cause_type == type(exc).__name__
    assert client.stats.transport_errors == 3


def test_transport_error_then_success(make_client) -> None:
    client, rec = make_client(scripted(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), OK_LIST))
    assert client.list_users_page().total_results == 0
    assert rec.count() == 3


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OmniBadRequestError),
        (401, OmniAuthenticationError),
        (403, OmniApiError),
        (404, OmniNotFoundError),
    ],
)
def test_client_errors_not_retried(make_client, sleeps, status: int, cls: type) -> None:
    client, rec = make_client(lambda r: httpx.Response(status), max_attempts=5)
    with pytest.raises(cls):
        client.list_users_page()
    assert rec.count() == 1
    assert sleeps == []


def test_500_retried_for_idempotent_get(make_client) -> None:
    client, rec = make_client(scripted(httpx.Response(500), OK_LIST), max_attempts=3)
    client.list_users_page()
    assert rec.count() == 2


def test_patch_retried_on_503(make_client, fake_omni) -> None:
    user = fake_omni.add("p@example.com", attributes={"a": "1"})
    fails = iter([httpx.Response(503), httpx.Response(503)])
    fake_omni.before.append(lambda r: next(fails, None) if r.method == "PATCH" else None)
    client, rec = make_client(fake_omni, max_attempts=3)
    result = client.update_user(user["id"], attributes={"a": "2"})
    assert result.user.attributes == {"a": "2"}
    assert rec.methods() == ["GET", "PATCH", "PATCH", "PATCH"]


def test_retry_after_seconds_honoured(make_client, sleeps) -> None:
    client, rec = make_client(
        scripted(httpx.Response(429, headers={"Retry-After": "7"}), OK_LIST), max_attempts=3
    )
    client.list_users_page()
    assert rec.count() == 2
    assert sleeps == [7.0]  # first back-off is at most 1 s, so Retry-After decides
    assert client.stats.rate_limited == 1


def test_retry_after_on_503_honoured(make_client, sleeps) -> None:
    client, _ = make_client(scripted(httpx.Response(503, headers={"Retry-After": "12"}), OK_LIST))
    client.list_users_page()
    assert sleeps == [12.0]


def test_retry_after_http_date_honoured(make_client, sleeps) -> None:
    when = datetime.now(UTC) + timedelta(seconds=45)
    header = format_datetime(when, usegmt=True)
    client, rec = make_client(scripted(httpx.Response(429, headers={"Retry-After": header}), OK_LIST))
    client.list_users_page()
    assert rec.count() == 2
    assert len(sleeps) == 1
    assert 40 <= sleeps[0] <= 45


def test_retry_after_date_in_past_means_no_extra_wait(make_client, sleeps) -> None:
    header = "Wed, 21 Oct 2015 07:28:00 GMT"
    client, _ = make_client(scripted(httpx.Response(429, headers={"Retry-After": header}), OK_LIST))
    client.list_users_page()
    assert len(sleeps) == 1 and sleeps[0] <= 1.0


def test_huge_retry_after_stops_instead_of_hanging(make_client, sleeps) -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after=120)
    client, rec = make_client(
        lambda r: httpx.Response(429, headers={"Retry-After": "3600"}), retry_policy=policy
    )
    with pytest.raises(OmniRateLimitError) as info:
        client.list_users_page()
    assert rec.count() == 1
    assert sleeps == []
    assert info.value.retry_after == 3600


def test_retry_after_on_5xx_capped_at_max(make_client, sleeps) -> None:
    policy = RetryPolicy(max_attempts=2, max_retry_after=60)
    client, rec = make_client(
        scripted(httpx.Response(503, headers={"Retry-After": "3600"}), OK_LIST), retry_policy=policy
    )
    client.list_users_page()
    assert rec.count() == 2
    assert sleeps == [60]


def test_backoff_grows_and_is_capped(make_client, sleeps) -> None:
    policy = RetryPolicy(max_attempts=8, backoff_initial=1.0, backoff_max=4.0, max_total_wait=1e9)
    client, rec = make_client(lambda r: httpx.Response(502), retry_policy=policy)
    with pytest.raises(OmniServerError):
        client.list_users_page()
    assert rec.count() == 8
    assert len(sleeps) == 7
    assert all(0 <= s <= 4.0 for s in sleeps)
    # jittered exponential: the n-th wait is at most 2**(n-1)
    assert all(s <= 2 ** (i) for i, s in enumerate(sleeps))


def test_get_user_retry_then_found(make_client, fake_omni) -> None:
    user = fake_omni.add("g@example.com")
    flaky = iter([httpx.Response(504)])
    fake_omni.before.append(lambda r: next(flaky, None))
    client, rec = make_client(fake_omni)
    assert client.get_user(user["id"]).user_name == "g@example.com"
    assert rec.count() == 2


def test_delete_404_on_retry_means_already_deleted(make_client, fake_omni) -> None:
    user = fake_omni.add("d@example.com")
    fake_omni.lose_next.add("DELETE")
    client, rec = make_client(fake_omni)
    client.delete_user(user["id"])
    assert rec.methods() == ["DELETE", "DELETE"]
    assert fake_omni.users == {}


def test_delete_404_on_first_try_raises(make_client, fake_omni) -> None:
    client, rec = make_client(fake_omni)
    with pytest.raises(OmniNotFoundError):
        client.delete_user(str(uuid.uuid4()))
    assert rec.count() == 1


def test_retry_policy_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("0", 0.0), ("5", 5.0), (" 2.5 ", 2.5), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected
