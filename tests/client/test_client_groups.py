"""The group side of the client against the emulator (and a fake Omni where the emulator cannot misbehave
the way a test needs): paging, the exact-name look-up, create never twice, one PATCH per change, retries
that converge without losing members, the answer check, and input refused before any request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from omni_fakes import TEST_API_KEY

from omni_provider.client import (
    AmbiguousGroupError,
    GroupsApi,
    OmniBadRequestError,
    OmniGroupWriteSemanticsError,
    OmniScimClient,
    OmniValidationError,
    OmniWriteSemanticsError,
    RetryPolicy,
)
from omni_provider.client.groups import GROUPS_PATH
from omni_provider.client.retry import is_retryable
from omni_provider.errors import rerun_may_help


def _groups(client: OmniScimClient) -> GroupsApi:
    return GroupsApi(client)


def _fail_next(emulator: Any, *entries: dict[str, Any]) -> None:
    emulator.context.faults.set_fail_next(list(entries))


def _ids(emulator: Any, n: int) -> list[str]:
    return [u.id for u in emulator.state.seed_users(n)]


def test_list_walks_clamped_pages(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 1)
    for i in range(7):
        emulator.state.groups.add_group(f"Team {i}", ids)
    emulator.config.apply_patch({"max_page_size": 3})
    client = emu_client()
    groups = _groups(client).list_groups()
    assert [g.display_name for g in groups] == [f"Team {i}" for i in range(7)]
    assert groups[0].member_ids == {ids[0]}
    assert client.stats.by_method["GET"] == 3  # 7 groups, 3 a page: the least possible


def test_find_by_name_is_exact(emulator: Any, emu_client: Any) -> None:
    emulator.state.groups.add_group("Finance")
    api = _groups(emu_client())
    assert api.find_group_by_name(" Finance ") is not None
    # The emulator's filter is case-insensitive; the client re-checks the exact name.
    assert api.find_group_by_name("finance") is None


def test_find_by_name_refuses_two_exact_matches() -> None:
    group = {"id": "abc", "displayName": "Sales", "schemas": [], "members": []}

    def handler(request: httpx.Request) -> httpx.Response:
        page = {"Resources": [group, {**group, "id": "def"}], "totalResults": 2, "itemsPerPage": 2}
        return httpx.Response(200, json={**page, "startIndex": 1, "schemas": []})

    transport = httpx.MockTransport(handler)
    with (
        OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, transport=transport) as c,
        pytest.raises(AmbiguousGroupError),
    ):
        _groups(c).find_group_by_name("Sales")


def test_create_after_a_lost_answer_does_not_create_twice(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 2)
    _fail_next(emulator, {"fault": "lost_response", "methods": ["POST"]})
    client = emu_client()
    group = _groups(client).create_group("Finance", ids)
    assert [g.display_name for g in emulator.state.groups.groups()] == ["Finance"]
    assert group.member_ids == set(ids)
    assert client.stats.by_method["POST"] == 1  # the look-up found it; no second POST


def test_create_retries_a_503_and_a_409_after_it_means_ours(emulator: Any, emu_client: Any) -> None:
    _fail_next(emulator, {"status": 503, "count": 2, "methods": ["POST"]})
    group = _groups(emu_client()).create_group("Finance")
    assert group.display_name == "Finance"
    assert len(emulator.state.groups.groups()) == 1


def test_create_of_a_taken_name_is_a_conflict(emulator: Any, emu_client: Any) -> None:
    emulator.state.groups.add_group("Finance")
    with pytest.raises(Exception, match="409"):
        _groups(emu_client()).create_group("FINANCE")


def test_one_patch_carries_every_add_and_remove(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 6)
    record = emulator.state.groups.add_group("A", ids[:3])
    client = emu_client()
    api = _groups(client)
    result = api.update_members(record.id, add=ids[3:], remove=ids[:2])
    assert result.action == "updated"
    assert set(result.added) == set(ids[3:])
    assert set(result.removed) == set(ids[:2])
    assert result.group.member_ids == {ids[2], *ids[3:]}
    assert client.stats.by_method == {"GET": 1, "PATCH": 1}
    # Nothing left to do: no request at all when the current state is given.
    again = api.update_members(result.group, add=ids[3:], remove=ids[:2])
    assert again.action == "unchanged"
    assert client.stats.by_method == {"GET": 1, "PATCH": 1}
    assert "PUT" not in emulator.stats.snapshot()["requests_by_method"]


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "lost_response", "methods": ["PATCH"]},
        {"status": 503, "count": 2, "methods": ["PATCH"]},
        {"status": 500, "count": 1, "methods": ["PATCH"]},
        {"status": 429, "count": 2, "methods": ["PATCH"]},
        {"fault": "drop_connection", "methods": ["PATCH"]},
    ],
)
def test_member_write_converges_under_faults(emulator: Any, emu_client: Any, fault: dict[str, Any]) -> None:
    ids = _ids(emulator, 5)
    record = emulator.state.groups.add_group("A", ids[:3])
    before = _groups(emu_client()).get_group(record.id)
    _fail_next(emulator, fault)
    result = _groups(emu_client()).update_members(before, add=ids[3:], remove=[ids[0]])
    stored = emulator.state.groups.get(record.id)
    assert set(stored.members) == {ids[1], ids[2], ids[3], ids[4]}  # nothing lost, nothing twice
    assert len(stored.members) == 4
    assert result.group.member_ids == set(stored.members)


def test_a_429_is_resent_without_a_read(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 2)
    record = emulator.state.groups.add_group("A", ids[:1])
    client = emu_client()
    before = _groups(client).get_group(record.id)
    _fail_next(emulator, {"status": 429, "count": 1, "methods": ["PATCH"]})
    _groups(client).update_members(before, add=ids[1:])
    assert client.stats.by_method == {"GET": 1, "PATCH": 2}


def test_answer_losing_untouched_members_raises_and_is_not_retried(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 3)
    record = emulator.state.groups.add_group("A", ids[:2])
    emulator.config.apply_patch({"group_patch_mode": "replace_members"})
    client = emu_client()
    with pytest.raises(OmniGroupWriteSemanticsError) as caught:
        _groups(client).update_members(record.id, add=[ids[2]])
    assert caught.value.group == "A"
    assert set(caught.value.members) == {"user00001@example.com", "user00002@example.com"}
    assert "What to check" in str(caught.value)
    assert client.stats.by_method["PATCH"] == 1


def test_a_group_write_semantics_error_is_a_write_semantics_error_and_never_retried(
    emulator: Any, emu_client: Any
) -> None:
    """One ``except OmniWriteSemanticsError`` catches a group's too, with its own fields and message."""
    ids = _ids(emulator, 3)
    record = emulator.state.groups.add_group("A", ids[:2])
    emulator.config.apply_patch({"group_patch_mode": "replace_members"})
    client = emu_client()
    caught: OmniWriteSemanticsError | None = None
    try:
        _groups(client).update_members(record.id, add=[ids[2]])
    except OmniWriteSemanticsError as exc:
        caught = exc
    assert isinstance(caught, OmniGroupWriteSemanticsError)
    assert caught.group == "A" and caught.problem == "members this write did not touch are gone"
    assert caught.field == "members" and caught.user == "user00001@example.com, user00002@example.com"
    assert str(caught).startswith("group 'A': after PATCH Omni reports members this write did not touch")
    assert "What to check: whether Omni treated the member operations as a replace" in str(caught)
    assert not is_retryable(caught, "PATCH") and not rerun_may_help(caught)
    assert client.stats.by_method["PATCH"] == 1
    renamed = OmniGroupWriteSemanticsError("A", "a changed group name", old="A", new="B")
    assert renamed.field == "displayName" and (renamed.old, renamed.new) == ("A", "B")
    assert "Omni reports a changed group name: was 'A', now 'B'. What to check" in str(renamed)


def _fake_group_server(answer_members: list[str], before_members: list[str]) -> httpx.MockTransport:
    def member(u: str) -> dict[str, str]:
        return {"value": u, "display": f"{u[:4]}@example.com"}

    def handler(request: httpx.Request) -> httpx.Response:
        members = before_members if request.method == "GET" else answer_members
        body = {"id": "grp1", "displayName": "A", "schemas": [], "members": [member(u) for u in members]}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


U = [f"{i}{i}{i}{i}0000-0000-4000-8000-000000000000" for i in range(1, 6)]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ([U[0]], "added members missing"),  # the add did not land
        ([U[0], U[1], U[2]], "removed members still present"),
    ],
)
def test_answer_differing_from_what_was_sent_raises(answer: list[str], problem: str) -> None:
    transport = _fake_group_server(answer, [U[0], U[1]])
    with (
        OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, transport=transport) as c,
        pytest.raises(OmniGroupWriteSemanticsError, match=problem),
    ):
        _groups(c).update_members("grp1", add=[U[2]], remove=[U[1]])


def test_a_member_added_by_someone_else_is_reported_not_an_error() -> None:
    transport = _fake_group_server([U[0], U[2], U[3]], [U[0]])
    with OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, transport=transport) as c:
        result = _groups(c).update_members("grp1", add=[U[2]])
    assert result.concurrent_additions == (U[3],)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("get_group", ("../users",)),
        ("get_group", ("a b",)),
        ("create_group", ("x" * 65,)),
        ("create_group", ("",)),
        ("find_group_by_name", ("bad\x00name",)),
        ("delete_group", ("id?x=1",)),
    ],
)
def test_bad_input_is_refused_before_any_request(call: str, args: tuple[str, ...]) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    with (
        OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, transport=transport) as c,
        pytest.raises(OmniValidationError),
    ):
        getattr(_groups(c), call)(*args)
    assert sent == []


def test_member_ids_are_checked_before_any_request() -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500))
    with OmniScimClient("https://acme.omniapp.co", TEST_API_KEY, transport=transport) as c:
        group = _groups(c)
        with pytest.raises(OmniValidationError):
            group.update_members("grp1", add=["not-a-uuid"])
        with pytest.raises(OmniValidationError):
            group.create_group("A", ["1 OR 1=1"])
    assert sent == []


def test_a_400_is_not_retried(emulator: Any, emu_client: Any) -> None:
    ids = _ids(emulator, 1)
    record = emulator.state.groups.add_group("A")
    emulator.state.delete_user(ids[0])  # the member to add no longer exists
    client = emu_client()
    with pytest.raises(OmniBadRequestError):
        _groups(client).update_members(record.id, add=ids)
    assert client.stats.by_method["PATCH"] == 1


def test_delete_after_a_lost_answer(emulator: Any, emu_client: Any) -> None:
    record = emulator.state.groups.add_group("A")
    _fail_next(emulator, {"fault": "lost_response", "methods": ["DELETE"]})
    _groups(emu_client()).delete_group(record.id)
    assert emulator.state.groups.groups() == []


def test_groups_path_constant() -> None:
    assert GROUPS_PATH == "/scim/v2/groups"
    assert RetryPolicy().max_attempts >= 2
