"""``KeyPacer`` on a fake clock: a sliding-window log per key (the whole limit at once, never more than the
limit in any window-length span), several keys, answers that count until one window after they came back,
rests after 429, margins, thread safety."""

from __future__ import annotations

import threading

import httpx
import pytest
from omni_fakes import TEST_API_KEY, TEST_API_KEY_2, FakeOmni, scripted

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.client.pacing import KeyPacer


class FakeTime:
    """A clock that only moves when someone sleeps (or a test moves it)."""

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


def _run(pacer: KeyPacer, t: FakeTime, n: int, latency: float = 0.0) -> list[tuple[int, float, float]]:
    """n requests one after the other: (key, sent at, answered at); each answer takes ``latency``."""
    out = []
    for _ in range(n):
        index = pacer.acquire()
        sent = t.now
        t.now += latency
        pacer.release(index)
        out.append((index, sent, t.now))
    return out


def _max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times if s <= u < s + window) for s in times)


def test_the_first_limit_requests_go_at_once_then_the_window_frees() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    sends = _run(pacer, t, 61)
    assert [s for _, s, _ in sends[:60]] == [1000.0] * 60  # the whole limit without waiting
    assert t.slept == pytest.approx([60.0])  # then one wait: the first answer leaves the window
    assert sends[60][1] == pytest.approx(1060.0)


def test_never_more_than_the_limit_in_any_window_span() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    sends = _run(pacer, t, 600, latency=0.2)
    times = [s for _, s, _ in sends]
    assert _max_in_window(times, 60.0) == 60
    # The stricter check: a request counts until a window after its answer, so no send falls inside
    # the window of the 60th answer before it.
    for j in range(60, len(sends)):
        assert sends[j][1] >= sends[j - 60][2] + 60.0 - 1e-9


def test_a_long_run_holds_the_whole_limit() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    sends = _run(pacer, t, 10 * 60 + 1, latency=0.05)  # ten full windows and one more request
    span = sends[-1][1] - sends[0][1]
    rate = (len(sends) - 1) / span  # requests per second after the first
    assert rate / (60 / 60) >= 0.99  # the old even spacing held 98% and wasted the first window
    assert _max_in_window([s for _, s, _ in sends], 60.0) == 60


def test_answers_count_from_when_they_came_back() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 3, window_seconds=10, clock=t.clock, sleep=t.sleep)
    indices = [pacer.acquire() for _ in range(3)]
    t.now += 4.0  # the answers take 4 s: Omni may have stamped them as late as that
    for index in indices:
        pacer.release(index)
    pacer.acquire()
    assert t.now == pytest.approx(1014.0)  # a window after the answers, not after the sends


def test_a_key_with_its_whole_limit_in_flight_waits_for_an_answer() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 2, window_seconds=10, clock=t.clock, sleep=t.sleep)
    first, _second = pacer.acquire(), pacer.acquire()
    got: list[tuple[int, float]] = []
    waiter = threading.Thread(target=lambda: got.append(pacer.reserve()))
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and got == []  # no slot while both requests are unanswered
    t.now += 1.0
    pacer.release(first)
    waiter.join(timeout=5)
    assert got == [(0, pytest.approx(10.0))]  # booked a window after that answer


def test_two_keys_send_twice_the_limit_at_once_and_alternate() -> None:
    t = FakeTime()
    pacer = KeyPacer(2, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    sends = _run(pacer, t, 121)
    indices = [i for i, _, _ in sends]
    assert indices[:6] == [0, 1, 0, 1, 0, 1]
    assert [s for _, s, _ in sends[:120]] == [1000.0] * 120
    assert indices[:120].count(0) == indices[:120].count(1) == 60
    assert sends[120][1] == pytest.approx(1060.0)
    assert pacer.sent_per_key() == [61, 60]


def test_margin_leaves_part_of_the_limit_to_other_tools() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, window_seconds=60, margin=0.1, clock=t.clock, sleep=t.sleep)
    assert pacer.limit == 54
    sends = _run(pacer, t, 55)
    assert [s for _, s, _ in sends[:54]] == [1000.0] * 54
    assert sends[54][1] == pytest.approx(1060.0)


def test_less_than_one_request_per_window_stretches_the_window() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 0.5, window_seconds=60, clock=t.clock, sleep=t.sleep)
    sends = _run(pacer, t, 3)
    assert [s - 1000.0 for _, s, _ in sends] == pytest.approx([0.0, 120.0, 240.0])


def test_idle_time_is_not_banked() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 3, window_seconds=10, clock=t.clock, sleep=t.sleep)
    _run(pacer, t, 1)
    t.now += 600  # ten idle minutes buy no more than one window's limit
    sends = _run(pacer, t, 4)
    assert [s - sends[0][1] for _, s, _ in sends] == pytest.approx([0.0, 0.0, 0.0, 10.0])


def test_a_429_rests_the_key_until_its_window_frees_and_others_carry_on() -> None:
    t = FakeTime()
    pacer = KeyPacer(2, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    index = pacer.acquire()
    pacer.rest(index)  # a 429 without Retry-After: the window may be full of another tool's requests
    pacer.release(index)
    sends = _run(pacer, t, 3)
    assert {i for i, _, _ in sends} == {1 - index}  # the other key takes the load at once
    assert t.slept == []
    for _ in range(59):
        pacer.release(pacer.acquire())  # the other key's limit is used up...
    assert pacer.acquire() == index  # ...and the rested key comes back one window after the 429
    assert t.now == pytest.approx(1060.0)


def test_a_429_with_retry_after_rests_that_long_and_never_brings_a_slot_forward() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 60, window_seconds=60, clock=t.clock, sleep=t.sleep)
    pacer.release(pacer.acquire())
    pacer.rest(0, 30.0)
    pacer.rest(0, 1.0)
    pacer.acquire()
    assert t.now == pytest.approx(1030.0)


def test_a_booking_made_before_a_429_is_taken_back() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 1, window_seconds=10, clock=t.clock, sleep=t.sleep)
    pacer.release(pacer.acquire())

    def sleep_while_a_429_comes_in(seconds: float) -> None:
        t.sleep(seconds)
        if len(t.slept) == 1:
            pacer.rest(0, 25.0)  # another worker's request on this key was answered 429 meanwhile

    pacer._sleep = sleep_while_a_429_comes_in
    pacer.acquire()
    assert t.now == pytest.approx(1035.0)  # not at 1010, where the slot was first booked
    assert pacer.sent_per_key() == [2]


def test_reserve_is_thread_safe_and_never_overbooks() -> None:
    t = FakeTime()
    pacer = KeyPacer(3, 20, window_seconds=60, clock=t.clock, sleep=t.sleep)
    booked: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            index, wait = pacer.reserve()
            with lock:
                at = t.now + wait
                booked.append((index, at))
                t.now = max(t.now, at)  # "sent" at its slot...
            pacer.release(index)  # ...and answered at once

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(pacer.sent_per_key()) == 200
    for key in range(3):
        times = sorted(at for i, at in booked if i == key)
        assert _max_in_window(times, 60.0) <= 20


def test_cancel_frees_a_caller_waiting_for_an_answer() -> None:
    t = FakeTime()
    pacer = KeyPacer(1, 1, window_seconds=10, clock=t.clock, sleep=t.sleep)
    pacer.acquire()
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(pacer.acquire()))
    waiter.start()
    pacer.cancel()
    waiter.join(timeout=5)
    assert got == [0]


@pytest.mark.parametrize(
    ("keys", "rate", "kwargs"),
    [(0, 60, {}), (1, 0, {}), (1, -5, {}), (1, 60, {"window_seconds": 0}), (1, 60, {"margin": 0.95})],
)
def test_bad_pacer_settings(keys: int, rate: float, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        KeyPacer(keys, rate, **kwargs)


# -- through the client ---------------------------------------------------------------------------------


def test_client_sends_the_whole_limit_then_waits_for_the_window() -> None:
    t = FakeTime()
    omni = FakeOmni()
    with OmniScimClient(
        "acme.omniapp.co",
        TEST_API_KEY,
        rate_limit_per_minute=5,
        transport=httpx.MockTransport(omni),
        clock=t.clock,
        sleep=t.sleep,
    ) as client:
        for _ in range(6):
            client.list_users_page()
    assert t.slept == pytest.approx([60.0])  # five at once, the sixth a window after the first answer


def test_client_with_two_keys_doubles_the_burst() -> None:
    t = FakeTime()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return FakeOmni()(request)

    with OmniScimClient(
        "acme.omniapp.co",
        [TEST_API_KEY, TEST_API_KEY_2],
        transport=httpx.MockTransport(handler),
        rate_limit_per_minute=5,
        clock=t.clock,
        sleep=t.sleep,
    ) as client:
        for _ in range(10):
            client.list_users_page()
        assert t.slept == []
        client.list_users_page()
    assert seen[:10] == [f"Bearer {TEST_API_KEY}", f"Bearer {TEST_API_KEY_2}"] * 5
    assert t.slept == pytest.approx([60.0])


def test_429_without_retry_after_rests_that_key_one_window() -> None:
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
    # The retry goes to the other key; the first rests a whole window.
    assert [k for k, _ in recorded] == [f"Bearer {TEST_API_KEY}", f"Bearer {TEST_API_KEY_2}"]
    assert client.pacer._keys[0].rest_until >= 1000.0 + 60.0 - 1e-9


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
