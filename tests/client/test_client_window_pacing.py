"""The window pacer against the emulator enforcing its limit over loopback, in real (scaled-down) time.

The emulator counts in fixed or sliding windows (``rate_window_mode``); the client knows neither and must
see no 429 under both, send its first L requests without waiting, and hold about the whole limit on a
long run. Rates are measured from the emulator's request log (its own arrival stamps).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from omni_fakes import TEST_API_KEY, TEST_API_KEY_2

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.emulator.stats import LoggedRequest, key_id

LIMIT = 10
WINDOW = 1.0


class RecordingSleep:
    """Real sleeps, noted, so a test can tell which requests waited."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def _limit(emulator: Any, mode: str, *, limit: int = LIMIT, window: float = WINDOW) -> None:
    emulator.config.apply_patch(
        {"rate_limit_enabled": True, "rate_limit": limit, "rate_window": window, "rate_window_mode": mode}
    )
    emulator.reset()


def _client(emulator: Any, keys: list[str], sleep: RecordingSleep, **kwargs: Any) -> OmniScimClient:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05))
    return OmniScimClient(
        emulator.base_url,
        keys,
        rate_limit_per_minute=LIMIT,
        rate_window_seconds=WINDOW,
        timeout=10.0,
        sleep=sleep,
        **kwargs,
    )


def _max_in_any_window(log: list[LoggedRequest], window: float) -> int:
    times = sorted(r.at for r in log if r.status == 200)
    return max(sum(1 for u in times if s <= u < s + window) for s in times)


def _send_parallel(client: OmniScimClient, n: int, workers: int = 4) -> None:
    """n list-page requests from a few worker threads, as the sync sends its writes."""
    todo = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            try:
                client.list_users_page(1, 1)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors


@pytest.mark.parametrize("mode", ["sliding", "fixed"])
def test_no_429_and_the_first_limit_requests_go_at_once(emulator: Any, mode: str) -> None:
    _limit(emulator, mode)
    sleep = RecordingSleep()
    with _client(emulator, [TEST_API_KEY], sleep) as client:
        _send_parallel(client, 3 * LIMIT + 1)
    log = emulator.stats.request_log()
    assert emulator.stats.snapshot()["responses_429"] == 0
    assert len(log) == 3 * LIMIT + 1 and all(r.status == 200 for r in log)
    first = sorted(r.at for r in log)[:LIMIT]
    assert first[-1] - first[0] < WINDOW / 2  # the whole limit went out at once...
    assert len(sleep.waits) <= 2 * LIMIT + 1  # ...without waiting: only later requests waited
    assert _max_in_any_window(log, WINDOW) <= LIMIT


@pytest.mark.parametrize("mode", ["sliding", "fixed"])
def test_a_long_run_holds_about_the_whole_limit(emulator: Any, mode: str) -> None:
    _limit(emulator, mode, window=0.5)
    windows = 6
    with OmniScimClient(
        emulator.base_url, TEST_API_KEY, rate_limit_per_minute=LIMIT, rate_window_seconds=0.5, timeout=10
    ) as client:
        _send_parallel(client, windows * LIMIT + 1)
    times = sorted(r.at for r in emulator.stats.request_log() if r.status == 200)
    assert len(times) == windows * LIMIT + 1 and emulator.stats.snapshot()["responses_429"] == 0
    rate = (len(times) - 1) / (times[-1] - times[0])  # requests per second after the first
    share = rate / (LIMIT / 0.5)
    print(f"long run ({mode} window): {share:.1%} of the limit, measured by the emulator")
    assert 0.85 <= share <= 1.0 + 1e-9  # about the whole limit (a loaded machine adds answer latency)


def test_a_429_waits_until_the_window_frees(emulator: Any) -> None:
    # Another tool uses the same key first: it fills the emulator's window, which our pacer cannot know.
    _limit(emulator, "sliding")
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    with httpx.Client(base_url=emulator.api_url, headers=headers, timeout=10) as other_tool:
        for _ in range(LIMIT):
            assert other_tool.get("/scim/v2/users", params={"count": 1}).status_code == 200
    sleep = RecordingSleep()
    with _client(emulator, [TEST_API_KEY], sleep) as client:
        client.list_users_page(1, 1)
        client.list_users_page(1, 1)
    log = emulator.stats.request_log()
    statuses = [r.status for r in log]
    assert statuses == [200] * LIMIT + [429, 200, 200]  # one 429, then no storm of retries
    other_first = log[0].at
    assert log[LIMIT + 1].at >= other_first + WINDOW  # the retry came when the window had room
    assert log[LIMIT + 1].at >= log[LIMIT].at + WINDOW - 0.05  # a whole window after the 429 answer
    assert client.stats.rate_limited == 1 and client.stats.retries == 1


def test_several_keys_each_use_their_whole_window(emulator: Any) -> None:
    _limit(emulator, "fixed")
    sleep = RecordingSleep()
    with _client(emulator, [TEST_API_KEY, TEST_API_KEY_2], sleep) as client:
        _send_parallel(client, 4 * LIMIT)
        assert client.pacer.sent_per_key() == [2 * LIMIT, 2 * LIMIT]
    log = emulator.stats.request_log()
    assert emulator.stats.snapshot()["responses_429"] == 0
    first = sorted(r.at for r in log)[: 2 * LIMIT]
    assert first[-1] - first[0] < WINDOW / 2  # both keys' limits at once
    for key in (TEST_API_KEY, TEST_API_KEY_2):
        mine = [r for r in log if r.key == key_id(key)]
        assert len(mine) == 2 * LIMIT
        assert _max_in_any_window(mine, WINDOW) <= LIMIT


def test_margin_leaves_room_for_another_tool(emulator: Any) -> None:
    # 20 % of the key left to another tool: its requests in the same window still get through.
    _limit(emulator, "sliding")
    sleep = RecordingSleep()
    with _client(emulator, [TEST_API_KEY], sleep, rate_limit_margin=0.2) as client:
        _send_parallel(client, 8, workers=2)
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    with httpx.Client(base_url=emulator.api_url, headers=headers, timeout=10) as other_tool:
        answers = [other_tool.get("/scim/v2/users", params={"count": 1}).status_code for _ in range(2)]
    assert answers == [200, 200]
    assert client.pacer.limit == 8 and emulator.stats.snapshot()["responses_429"] == 0
