"""The group listing is drift-checked by the same walk as the user listing (``listing.walk_listing``).

Against the emulator over loopback, with its ``group_list_churn`` switch playing another admin deleting and
creating groups between two pages: a shifted listing is read again and no group is missed (the old walk,
which advanced by what each page held, skipped the group that moved onto the page already read); a listing
that never settles is refused, bounded; with several keys the pages after the first go in parallel, under the
same checks; a clamped page size is followed; the cost is ``listing_page_count(G, page)`` requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from omni_fakes import TEST_API_KEY, TEST_API_KEY_2

from omni_provider.client import GroupsApi, OmniListingDriftError, OmniScimClient
from omni_provider.client.client import MAX_LISTING_READS, listing_page_count

GROUPS = 40
PAGE = 10


def _seed(emulator: Any, n: int = GROUPS) -> list[str]:
    member = emulator.state.seed_users(1)[0].id
    return [emulator.state.groups.add_group(f"Team {i:02d}", [member]).display_name for i in range(n)]


def _names_now(emulator: Any) -> list[str]:
    return [g.display_name for g in emulator.state.groups.groups()]


def _gets(client: OmniScimClient) -> int:
    return client.stats.by_method.get("GET", 0)


@pytest.mark.parametrize("count", [1, 10, 11, 19, 20, 40, 100])
def test_a_quiet_listing_costs_one_group_more_per_page(emulator: Any, emu_client: Any, count: int) -> None:
    names = _seed(emulator, count)
    client = emu_client(page_size=PAGE)
    listed = GroupsApi(client).list_groups()
    assert [g.display_name for g in listed] == names
    assert _gets(client) == listing_page_count(count, PAGE)
    assert client.stats.listing_rereads == 0


@pytest.mark.parametrize("churn", [{"delete": 1, "create": 0}, {"delete": 1, "create": 1}])
def test_a_group_deleted_between_pages_never_hides_another(
    emulator: Any, emu_client: Any, churn: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Team 00 is deleted once page 1 (Team 00-09) is served: every later group moves up one place, so a
    walk advancing by what it read would start page 2 on Team 11 and never see Team 10."""
    _seed(emulator)
    emulator.config.apply_patch({"group_list_churn": {"after_page": 1, **churn}})
    client = emu_client(page_size=PAGE)
    listed = [g.display_name for g in GroupsApi(client).list_groups()]
    assert listed == _names_now(emulator)
    assert "Team 10" in listed and "Team 00" not in listed
    assert len(listed) == GROUPS - churn["delete"] + churn["create"]
    assert client.stats.listing_rereads == 1
    # The first read stops at page 2 (its first group is not the one read last), then one whole read.
    assert _gets(client) == 2 + listing_page_count(len(listed), PAGE)
    assert "group list shifted while it was read" in caplog.text
    assert "no longer begins with the group read last" in caplog.text


def test_a_group_listing_that_never_settles_is_refused_bounded(emulator: Any, emu_client: Any) -> None:
    _seed(emulator)
    emulator.config.apply_patch(
        {"group_list_churn": {"after_page": 1, "delete": 1, "create": 1, "repeat": True}}
    )
    client = emu_client(page_size=PAGE)
    with pytest.raises(OmniListingDriftError, match="group list kept shifting") as info:
        GroupsApi(client).list_groups()
    assert "groups are being deleted or created" in str(info.value)
    assert _gets(client) == 2 * MAX_LISTING_READS  # each read stops at the first shifted page
    assert client.stats.listing_rereads == MAX_LISTING_READS - 1
    assert not client.stats.by_method.keys() - {"GET"}


def test_iter_groups_reads_the_whole_list_first_and_keeps_exclude_members(
    emulator: Any, emu_client: Any
) -> None:
    names = _seed(emulator)
    emulator.config.apply_patch({"group_list_churn": {"after_page": 1, "delete": 1, "create": 0}})
    client = emu_client(page_size=PAGE)
    groups = list(GroupsApi(client).iter_groups(exclude_members=True))
    assert [g.display_name for g in groups] == names[1:]
    assert not any(g.members_present for g in groups)
    assert client.stats.listing_rereads == 1


def test_a_clamped_group_page_size_is_followed(emulator: Any, emu_client: Any) -> None:
    """The server returns 7 where 10 were asked: pages overlap by one of what really came back."""
    names = _seed(emulator)
    emulator.config.apply_patch({"max_page_size": 7})
    client = emu_client(page_size=PAGE)
    assert [g.display_name for g in GroupsApi(client).list_groups()] == names
    assert _gets(client) == listing_page_count(GROUPS, 7)
    assert client.stats.listing_rereads == 0


def test_group_pages_are_read_in_parallel_with_several_keys(emulator: Any, emu_client: Any) -> None:
    names = _seed(emulator)
    client = emu_client(keys=[TEST_API_KEY, TEST_API_KEY_2], page_size=PAGE)
    assert [g.display_name for g in GroupsApi(client).list_groups()] == names
    sent = client.pacer.sent_per_key()
    assert sum(sent) == listing_page_count(GROUPS, PAGE)  # no extra request for being parallel
    assert min(sent) >= 1  # both keys read pages
    assert client.stats.listing_rereads == 0


def test_a_group_list_that_shifts_during_a_parallel_read_is_read_again(
    emulator: Any, emu_client: Any
) -> None:
    _seed(emulator)
    emulator.config.apply_patch({"group_list_churn": {"after_page": 2, "delete": 2, "create": 1}})
    client = emu_client(keys=[TEST_API_KEY, TEST_API_KEY_2], page_size=PAGE)
    listed = [g.display_name for g in GroupsApi(client).list_groups()]
    assert listed == _names_now(emulator)
    assert len(listed) == len(set(listed)) == GROUPS - 1
    assert client.stats.listing_rereads == 1
