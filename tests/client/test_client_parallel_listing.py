"""Issue 13 item 3: with several keys, list pages are read in parallel, with the same drift checks.

Against an emulator that accepts four keys, over loopback: the users read are those of a sequential read,
a clamped page size is followed, a list that shifts mid-read is detected and read again, and with a
scaled-down rate window the read takes clearly less wall time than today's sequential read with one key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.client.client import listing_page_count
from omni_provider.client.listing import walk_listing
from omni_provider.emulator.config import EmulatorConfig
from omni_provider.emulator.server import EmulatorServer
from omni_provider.emulator.stats import key_id

KEYS = [f"omni-parallel-key-{i}-5c0ffee" for i in range(1, 5)]
USERS = 1_000
PAGE = 50


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(api_keys=list(KEYS), rate_limit_enabled=False)) as emulator:
        yield emulator


@pytest.fixture
def emulator(server: EmulatorServer) -> EmulatorServer:
    server.config.apply_patch(
        {"rate_limit_enabled": False, "max_page_size": 100, "list_churn": None, "rate_window_mode": "sliding"}
    )
    server.reset(seed_users=USERS, seed=13)
    return server


def _client(emulator: EmulatorServer, keys: int, **kwargs: Any) -> OmniScimClient:
    kwargs.setdefault("rate_limit_per_minute", 1e6)
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05))
    return OmniScimClient(emulator.base_url, KEYS[:keys], timeout=10.0, **kwargs)


def _listed_ids(emulator: EmulatorServer) -> list[str]:
    return [user.id for user in emulator.state.users()]


@pytest.mark.parametrize("keys", [2, 3, 4])
def test_parallel_read_gives_the_same_users_as_a_sequential_one(emulator: EmulatorServer, keys: int) -> None:
    with _client(emulator, 1, page_size=PAGE) as one:
        sequential = [u.id for u in one.list_users()]
    emulator.stats.reset()
    with _client(emulator, keys, page_size=PAGE) as several:
        parallel = [u.id for u in several.list_users()]
        sent = several.pacer.sent_per_key()
    assert parallel == sequential == _listed_ids(emulator)
    assert len(set(parallel)) == USERS
    pages = listing_page_count(USERS, PAGE)
    assert sum(sent) == pages  # no extra request for being parallel
    assert min(sent) >= pages // keys - 1  # the pages were spread over every key
    by_key = emulator.stats.snapshot()["requests_by_key"]
    assert sorted(by_key) == sorted(key_id(k) for k in KEYS[:keys])


def test_a_clamped_page_size_is_followed_in_parallel(emulator: EmulatorServer) -> None:
    """The server returns 30 where 100 were asked: page starts come from the page really returned."""
    emulator.config.apply_patch({"max_page_size": 30})
    with _client(emulator, 3, page_size=100) as client:
        users = client.list_users()
        sent = sum(client.pacer.sent_per_key())
    assert [u.id for u in users] == _listed_ids(emulator)
    assert sent == listing_page_count(USERS, 30)
    assert client.stats.listing_rereads == 0


@pytest.mark.parametrize("churn", [{"delete": 3, "create": 0}, {"delete": 2, "create": 2}])
def test_a_list_that_shifts_during_a_parallel_read_is_read_again(
    emulator: EmulatorServer, churn: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    """Users deleted (and created) while the pages are in flight shift every later page: the overlaps
    show it, the whole list is read again, and no user is missing or doubled."""
    emulator.config.apply_patch({"list_churn": {"after_page": 3, **churn}})
    with _client(emulator, 4, page_size=PAGE) as client:
        users = client.list_users()
    assert [u.id for u in users] == _listed_ids(emulator)
    assert len(users) == USERS - churn["delete"] + churn["create"]
    assert client.stats.listing_rereads == 1
    assert "shifted while it was read" in caplog.text


def _timed_read(emulator: EmulatorServer, keys: int, limit: int, window: float) -> tuple[float, int]:
    emulator.config.apply_patch({"rate_limit_enabled": True, "rate_limit": limit, "rate_window": window})
    emulator.reset(seed_users=USERS, seed=13)
    paced = {"rate_limit_per_minute": limit, "rate_window_seconds": window}
    with _client(emulator, keys, page_size=PAGE, **paced) as client:
        start = time.monotonic()
        users = client.list_users()
        elapsed = time.monotonic() - start
    assert len(users) == USERS
    return elapsed, emulator.stats.snapshot()["responses_429"]


def test_parallel_read_takes_clearly_less_time_in_a_scaled_rate_window(emulator: EmulatorServer) -> None:
    """21 pages at 5 requests per 0.5 s window: one key needs 4 more windows (about 2 s); four keys
    read in parallel hold 20 requests per window, so the read needs about one more."""
    limit, window = 5, 0.5
    one_key, one_429 = _timed_read(emulator, 1, limit, window)
    four_keys, four_429 = _timed_read(emulator, 4, limit, window)
    print(f"21 list pages, {limit} per {window} s per key: 1 key {one_key:.2f} s, 4 keys {four_keys:.2f} s")
    assert one_429 == four_429 == 0
    assert one_key >= 4 * window - 0.1  # the limit really bounded the sequential read
    assert four_keys < one_key / 2


def test_the_pages_really_go_in_parallel(emulator: EmulatorServer) -> None:
    """Every request takes 100 ms: four keys read the 21 pages in about 6 rounds instead of 21 (the same
    keys read sequentially, as before this change, need all 21)."""
    emulator.config.apply_patch({"faults": {"slow": 1.0}, "slow_seconds": 0.1})
    try:
        with _client(emulator, 4, page_size=PAGE) as client:
            start = time.monotonic()
            sequential, drift = walk_listing(client.list_users_page, PAGE, parallel=1)
            one_by_one = time.monotonic() - start
            start = time.monotonic()
            parallel = client.list_users()
            together = time.monotonic() - start
    finally:
        emulator.config.apply_patch({"faults": {}, "slow_seconds": 0.5})
    print(f"21 pages at 100 ms each, 4 keys: sequential {one_by_one:.2f} s, parallel {together:.2f} s")
    assert drift is None and [u.id for u in parallel] == [u.id for u in sequential]
    assert one_by_one >= 21 * 0.1
    assert together < one_by_one / 2
