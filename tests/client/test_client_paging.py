"""Walking SCIM lists: clamped ``count``, empty pages, the embed list."""

from __future__ import annotations

import math

import httpx
import pytest
from omni_fakes import USERS, FakeOmni, list_json, params_of, user_json

from omni_provider.client import OmniError, OmniListingDriftError
from omni_provider.client.client import MAX_LISTING_READS


def test_clamped_count_pages_to_the_end(make_client) -> None:
    omni = FakeOmni(max_page_size=30)
    emails = [f"user{i:03d}@example.com" for i in range(95)]
    for email in emails:
        omni.add(email)
    client, rec = make_client(omni, page_size=100)

    users = client.list_users()

    assert [u.user_name for u in users] == emails
    assert rec.count() == math.ceil(95 / 30) == 4
    # Each page after the first starts on the last user already read, to see whether the list shifted.
    assert [params_of(r)["startIndex"] for r in rec.requests] == ["1", "30", "59", "88"]
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


def test_empty_page_before_the_end_is_drift_not_the_end(make_client) -> None:
    """A server whose pages run out before totalResults would hide users: read again, then refuse."""
    first = [user_json(f"a{i}@example.com") for i in range(3)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(params_of(request)["startIndex"])
        return httpx.Response(200, json=list_json(first if start == 1 else [], 500, start))

    client, rec = make_client(handler)
    with pytest.raises(OmniListingDriftError, match="kept shifting"):
        client.list_users()
    assert rec.count() == 2 * MAX_LISTING_READS
    assert client.stats.listing_rereads == MAX_LISTING_READS - 1


def test_page_size_default_is_sent_as_count(make_client) -> None:
    client, rec = make_client(FakeOmni(), page_size=250)
    client.list_users()
    assert params_of(rec.requests[0]) == {"startIndex": "1", "count": "250"}


def test_iter_users_reads_the_whole_list_first(make_client) -> None:
    """Not lazy any more: a listing that shifted must be read again before anything uses it."""
    omni = FakeOmni(max_page_size=2)
    for i in range(6):
        omni.add(f"u{i}@example.com")
    client, rec = make_client(omni)
    iterator = client.iter_users()
    assert rec.count() == 5  # pages of 2 overlapping by one: 1-2, 2-3, 3-4, 4-5, 5-6
    assert len(list(iterator)) == 6


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
    assert [params_of(r)["startIndex"] for r in rec.requests] == ["1", "2", "3", "4"]


def _churn_after_first_page(omni: FakeOmni, *, delete: int, create: int, times: int = 1) -> None:
    """After a page starting at 1 is served, delete the oldest users and create new ones (``times`` times)."""
    state = {"left": times, "created": 0}
    serve = omni._list

    def listing(request: httpx.Request) -> httpx.Response:
        response = serve(request)
        if params_of(request).get("startIndex") == "1" and state["left"] > 0:
            state["left"] -= 1
            for user_id in list(omni.users)[:delete]:
                del omni.users[user_id]
            for _ in range(create):
                state["created"] += 1
                omni.add(f"new{state['created']}@example.com")
        return response

    omni._list = listing  # type: ignore[method-assign]


@pytest.mark.parametrize(("delete", "create"), [(1, 0), (1, 1), (3, 2)])
def test_a_user_deleted_between_pages_never_hides_another(make_client, delete, create, caplog) -> None:
    """Issue 8 item 5: old code skipped user #101 here (the offset shifted) and never noticed, even when
    a creation kept totalResults unchanged."""
    omni = FakeOmni(max_page_size=100)
    for i in range(250):
        omni.add(f"u{i:03d}@example.com")
    _churn_after_first_page(omni, delete=delete, create=create)
    client, _ = make_client(omni)

    users = client.list_users()

    assert [u.user_name for u in users] == [u["userName"] for u in omni.users.values()]
    assert "u100@example.com" in {u.user_name for u in users}
    assert client.stats.listing_rereads == 1
    assert "shifted while it was read" in caplog.text


def test_a_listing_that_never_settles_is_refused_bounded(make_client) -> None:
    omni = FakeOmni(max_page_size=10)
    for i in range(30):
        omni.add(f"u{i:03d}@example.com")
    _churn_after_first_page(omni, delete=1, create=0, times=100)
    client, rec = make_client(omni)
    with pytest.raises(OmniListingDriftError):
        client.list_users()
    assert rec.count() == 2 * MAX_LISTING_READS  # each read stops at the first shifted page


def test_a_user_seen_twice_is_drift(make_client) -> None:
    users = [user_json(f"a{i}@example.com") for i in range(4)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(params_of(request)["startIndex"])
        if start == 1:
            return httpx.Response(200, json=list_json(users[:1], 4, 1))  # page size 1: no overlap
        return httpx.Response(200, json=list_json([users[0]], 4, start))

    client, _ = make_client(handler)
    with pytest.raises(OmniListingDriftError):
        client.list_users()


# ------------------------------------------------------------------------------ parallel reads (2+ keys)


def test_parallel_read_asks_for_every_overlapping_page_of_a_clamped_list(make_client) -> None:
    omni = FakeOmni(max_page_size=30)
    emails = [f"user{i:03d}@example.com" for i in range(95)]
    for email in emails:
        omni.add(email)
    client, rec = make_client(omni, keys=["key-one-0123456789", "key-two-0123456789"], page_size=100)

    users = client.list_users()

    assert [u.user_name for u in users] == emails
    # Same pages as a sequential read (starts planned from the first page's real length), any order.
    assert sorted(int(params_of(r)["startIndex"]) for r in rec.requests) == [1, 30, 59, 88]
    assert client.pacer.sent_per_key() == [2, 2]


def test_parallel_read_reads_on_when_users_were_added_at_the_end(make_client) -> None:
    """Users created after the last planned page: the total grew, the read continues sequentially."""
    omni = FakeOmni(max_page_size=10)
    for i in range(25):
        omni.add(f"u{i:03d}@example.com")
    serve = omni._list
    added = {"done": False}

    def listing(request: httpx.Request) -> httpx.Response:
        response = serve(request)
        if params_of(request).get("startIndex") == "1" and not added["done"]:
            added["done"] = True
            for i in range(25, 40):
                omni.add(f"u{i:03d}@example.com")
        return response

    omni._list = listing  # type: ignore[method-assign]
    client, _ = make_client(omni, keys=["key-one-0123456789", "key-two-0123456789"])

    users = client.list_users()

    assert [u.user_name for u in users] == [f"u{i:03d}@example.com" for i in range(40)]
    assert client.stats.listing_rereads == 0


def test_a_failed_page_of_a_parallel_read_is_raised(make_client) -> None:
    users = [user_json(f"a{i}@example.com") for i in range(30)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(params_of(request)["startIndex"])
        if start > 15:
            return httpx.Response(404, json={"detail": "gone"})
        return httpx.Response(200, json=list_json(users[start - 1 : start + 9], 30, start))

    client, _ = make_client(handler, keys=["key-one-0123456789", "key-two-0123456789"])
    with pytest.raises(OmniError):
        client.list_users()
