"""``KeyPacer`` on a fake clock: even spacing per key, several keys in parallel, penalties after 429."""

from __future__ import annotations

import itertools
import threading

import httpx
import pytest
from omni_fakes import TEST_API_KEY, TEST_API_KEY_2, FakeOmni, scripted

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.client.pacing import KeyPacer


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def _send_times(pacer: KeyPacer, t: FakeTime, n: int) -> list[tuple[int, float]]:
    out = []
    for _ in range(n):
        index = pacer.acquire()
        out.append((index, t.now))
    return out


def _max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times if s <= u < s + window) for s in times)


def test_one_key_sixty_per_minute_is_one_second_apart() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, safety=1.0, clock=t.clock, sleep=t.sleep)
    sends = _send_times(pacer, t, 61)
    times = [s for _, s in sends]
    assert times[0] == 1000.0  # the first request goes at once
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([1.0] * 60)
    assert times[-1] - times[0] == pytest.approx(60.0)
    assert _max_in_window(times, 60.0) == 60


def test_default_safety_stays_under_the_limit() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, clock=t.clock, sleep=t.sleep)
    times = [s for _, s in _send_times(pacer, t, 200)]
    assert pacer.interval > 1.0
    assert _max_in_window(times, 60.0) <= 60


def test_two_keys_alternate_and_double_the_rate() -> None:
    t = FakeTime()
    pacer = KeyPacer(2, 60, safety=1.0, clock=t.clock, sleep=t.sleep)
    sends = _send_times(pacer, t, 120)
    indices = [i for i, _ in sends]
    assert indices[:6] == [0, 1, 0, 1, 0, 1]
    assert indices.count(0) == indices.count(1) == 60
    assert sends[-1][1] - sends[0][1] == pytest.approx(59.0)  # 120 requests in ~60 s: twice one key's rate
    for key in (0, 1):
        times = [s for i, s in sends if i == key]
        assert _max_in_window(times, 60.0) <= 60
        assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))
    assert pacer.sent_per_key() == [60, 60]


def test_idle_time_is_not_banked() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, safety=1.0, clock=t.clock, sleep=t.sleep)
    pacer.acquire()
    t.now += 600  # ten idle minutes
    times = [s for _, s in _send_times(pacer, t, 5)]
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([1.0] * 4)


def test_penalize_pushes_key_back_and_others_carry_on() -> None:
    t = FakeTime()
    pacer = KeyPacer(2, 60, safety=1.0, clock=t.clock, sleep=t.sleep)
    assert [pacer.acquire(), pacer.acquire()] == [0, 1]
    pacer.penalize(0, 10.0)
    sends = _send_times(pacer, t, 12)
    before = [(i, s) for i, s in sends if s < 1010.0]
    assert {i for i, _ in before} == {1}  # key 0 rests for 10 s
    first_key0 = next(s for i, s in sends if i == 0)
    assert first_key0 == pytest.approx(1010.0)


def test_penalize_never_brings_a_slot_forward() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 6, safety=1.0, clock=t.clock, sleep=t.sleep)  # 10 s apart
    pacer.acquire()
    pacer.penalize(0, 1.0)
    pacer.acquire()
    assert t.now == pytest.approx(1010.0)


def test_reserve_is_thread_safe() -> None:
    t = FakeTime()
    pacer = KeyPacer(3, 60, safety=1.0, clock=t.clock, sleep=lambda s: None)
    waits: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            got = pacer.reserve()
            with lock:
                waits.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert pacer.sent_per_key() == [134, 133, 133]
    for key in range(3):
        slots = sorted(w for i, w in waits if i == key)
        assert slots == pytest.approx([float(n) for n in range(len(slots))])  # no slot handed out twice


@pytest.mark.parametrize(("keys", "rate"), [(0, 60), (1, 0), (1, -5)])
def test_bad_pacer_settings(keys: int, rate: float) -> None:
    with pytest.raises(ValueError):
        KeyPacer(keys, rate)


def test_client_paces_through_injected_clock_and_sleep() -> None:
    t = FakeTime()
    omni = FakeOmni()
    with OmniScimClient(
        "acme.omniapp.co",
        TEST_API_KEY,
        transport=httpx.MockTransport(omni),
        clock=t.clock,
        sleep=t.sleep,
    ) as client:
        for _ in range(5):
            client.list_users_page()
    assert t.slept == pytest.approx([60 / (60 * 0.98)] * 4)


def test_client_with_two_keys_halves_the_wait() -> None:
    t = FakeTime()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return FakeOmni()(request)

    with OmniScimClient(
        "acme.omniapp.co",
        [TEST_API_KEY, TEST_API_KEY_2],
        transport=httpx.MockTransport(handler),
        rate_limit_per_minute=60,
        clock=t.clock,
        sleep=t.sleep,
    ) as client:
        for _ in range(10):
            client.list_users_page()
    assert seen == [f"Bearer {TEST_API_KEY}", f"Bearer {TEST_API_KEY_2}"] * 5
    assert t.now - 1000.0 == pytest.approx(4 * 60 / (60 * 0.98))  # 10 requests in 4 intervals


def test_429_without_retry_after_rests_that_key() -> None:
    t = FakeTime()
    recorded: list[tuple[str, float]] = []
    answers = scripted(httpx.Response(429), httpx.Response(200, json={"Resources": [], "totalResults": 0}))

    def handler(request: httpx.Request) -> httpx.Response:
        recorded.append((request.headers["authorization"], t.now))
        return answers(request)

    with OmniScimClient(
        "acme.omniapp.co",
        [TEST_API_KEY, TEST_API_KEY_2],
        transport=httpx.MockTransport(handler),
        rate_limit_per_minute=60,
        clock=t.clock,
        sleep=t.sleep,
        retry_policy=RetryPolicy(max_attempts=3),
    ) as client:
        client.list_users_page()
    # The retry goes to the other key (the first rests for 4 intervals).
    assert [k for k, _ in recorded] == [f"Bearer {TEST_API_KEY}", f"Bearer {TEST_API_KEY_2}"]
    assert client.pacer._slots[0].next_at >= 1000.0 + 4 * client.pacer.interval - 1e-9


def test_429_with_retry_after_rests_key_that_long() -> None:
    t = FakeTime()
    answers = scripted(
        httpx.Response(429, headers={"Retry-After": "30"}),
        httpx.Response(200, json={"Resources": [], "totalResults": 0}),
    )
    with OmniScimClient(
        "acme.omniapp.co",
        TEST_API_KEY,
        transport=httpx.MockTransport(answers),
        clock=t.clock,
        sleep=t.sleep,
        retry_policy=RetryPolicy(max_attempts=2),
    ) as client:
        client.list_users_page()
    # one retry wait of 30 s (Retry-After), and the pacer does not add a second wait on top
    assert t.slept == pytest.approx([30.0])
