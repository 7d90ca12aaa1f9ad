"""Walking SCIM lists: clamped ``count``, empty pages, the embed list."""

from __future__ import annotations

import math

import httpx
import pytest
from omni_fakes import USERS, FakeOmni, list_json, params_of, user_json


def test_clamped_count_pages_to_the_end(make_client) -> None:
    omni = FakeOmni(max_page_size=30)
    emails = [f"user{i:03d}@example.com" for i in range(95)]
    for email in emails:
        omni.add(email)
    client, rec = make_client(omni, page_size=100)

    users = client.list_users()

    assert [u.user_name for u in users] == emails
    assert rec.count() == math.ceil(95 / 30) == 4
    assert [params_of(r)["startIndex"] for r in rec.requests] == ["1", "31", "61", "91"]
    assert {params_of(r)["count"] for r in rec.requests} == {"100"}
    assert {r.url.path for r in rec.requests} == {USERS}


@pytest.mark.parametrize(
    ("total", "clamp", "ask"), [(1, 100, 100), (100, 100, 100), (101, 100, 1000), (7, 1, 5)]
)
def test_request_count_is_ceil_total_over_page(make_client, total: int, clamp: int, ask: int) -> None:
    omni = FakeOmni(max_page_size=clamp)
    for i in range(total):
        omni.add(f"u{i}@example.com")
    client, rec = make_client(omni)

    users = list(client.iter_users(page_size=ask))

    assert len({u.id for u in users}) == total
    assert rec.count() == math.ceil(total / min(clamp, ask))
    assert params_of(rec.requests[0])["count"] == str(ask)


def test_no_users_is_one_request(make_client) -> None:
    client, rec = make_client(FakeOmni())
    assert client.list_users() == []
    assert rec.count() == 1


def test_empty_page_stops_even_if_total_says_more(make_client) -> None:
    first = [user_json(f"a{i}@example.com") for i in range(3)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(params_of(request)["startIndex"])
        return httpx.Response(200, json=list_json(first if start == 1 else [], 500, start))

    client, rec = make_client(handler)
    users = client.list_users()
    assert [u.user_name for u in users] == [u["userName"] for u in first]
    assert rec.count() == 2
    assert [params_of(r)["startIndex"] for r in rec.requests] == ["1", "4"]


def test_page_size_default_is_sent_as_count(make_client) -> None:
    client, rec = make_client(FakeOmni(), page_size=250)
    client.list_users()
    assert params_of(rec.requests[0]) == {"startIndex": "1", "count": "250"}


def test_iter_users_is_lazy(make_client) -> None:
    omni = FakeOmni(max_page_size=2)
    for i in range(6):
        omni.add(f"u{i}@example.com")
    client, rec = make_client(omni)
    iterator = client.iter_users()
    next(iterator)
    assert rec.count() == 1
    assert len(list(iterator)) == 5
    assert rec.count() == 3


def test_embed_users_listed_from_their_own_endpoint(make_client) -> None:
    embed = [
        {**user_json(f"embed-user-{i}@acme.embed-exploreomni.co"), "embedExternalId": f"ext-{i}"}
        for i in range(5)
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/scim/v2/embed/users"
        p = params_of(request)
        start, count = int(p["startIndex"]), min(int(p["count"]), 2)
        return httpx.Response(200, json=list_json(embed[start - 1 : start - 1 + count], len(embed), start))

    client, rec = make_client(handler)
    users = list(client.iter_embed_users())
    assert [u.model_extra["embedExternalId"] for u in users] == [f"ext-{i}" for i in range(5)]
    assert [params_of(r)["startIndex"] for r in rec.requests] == ["1", "3", "5"]
