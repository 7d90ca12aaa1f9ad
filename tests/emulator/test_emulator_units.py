"""Unit tests of the pieces with subtle rules: limiter, filter parser, fault draws, config, speed."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from emulator_testkit import API_KEY, ATTRS, patch_body

from omni_provider.emulator import EmulatorConfig, EmulatorServer, EmulatorState
from omni_provider.emulator.errors import ApiError
from omni_provider.emulator.faults import FaultInjector
from omni_provider.emulator.ratelimit import RateLimiter, RateWindowMode, retry_after_seconds
from omni_provider.emulator.scim_filter import parse_filter

USER_FILTERS = {"userName": frozenset({"eq"})}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_is_a_sliding_window_not_a_fixed_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(lambda: 3, lambda: 10.0, clock=clock)
    for offset in (0.0, 4.0, 8.0):
        clock.now = 1000.0 + offset
        assert limiter.acquire("k") is None
    clock.now = 1009.0
    assert limiter.acquire("k") == pytest.approx(1.0)  # the hit at t=0 frees at t=10
    clock.now = 1010.0
    assert limiter.acquire("k") is None
    clock.now = 1011.0
    assert limiter.acquire("k") == pytest.approx(3.0)  # next to free: the hit at t=4
    assert limiter.acquire("other") is None


def test_fixed_window_mode_counts_in_consecutive_windows() -> None:
    clock = FakeClock()
    mode: list[RateWindowMode] = ["fixed"]
    limiter = RateLimiter(lambda: 3, lambda: 10.0, lambda: mode[0], clock=clock)
    clock.now = 1008.0  # window [1000, 1010)
    assert [limiter.acquire("k") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("k") == pytest.approx(2.0)  # frees at the boundary, not 10 s after the hits
    clock.now = 1010.0
    # A new window: three more at once, six within 2 s, which a sliding window would refuse.
    assert [limiter.acquire("k") for _ in range(3)] == [None, None, None]
    assert limiter.acquire("k") == pytest.approx(10.0)
    mode[0] = "sliding"
    clock.now = 1019.0
    assert limiter.acquire("k") is not None  # switched at runtime: 3 accepted at t=10


def test_limiter_handles_a_lowered_limit() -> None:
    clock, limit = FakeClock(), [5]
    limiter = RateLimiter(lambda: limit[0], lambda: 10.0, clock=clock)
    for i in range(5):
        clock.now = 1000.0 + i
        limiter.acquire("k")
    limit[0] = 2
    # Four of the five hits must expire first: the 4th (t=3) frees at t=13.
    assert limiter.acquire("k") == pytest.approx(1013.0 - clock.now)


def test_retry_after_rounding() -> None:
    assert [retry_after_seconds(w) for w in (0.0, 0.2, 1.0, 1.01, 59.5)] == [1, 1, 1, 2, 60]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('userName eq "a@b.com"', "a@b.com"),
        ('  username   EQ   "A@B.com"  ', "A@B.com"),
        ('userName eq "q\\"uote@b.com"', 'q"uote@b.com'),
        ('userName eq "back\\\\slash@b.com"', "back\\slash@b.com"),
        ('userName eq "caf\\u00e9@b.com"', "café@b.com"),
    ],
)
def test_filter_parser_accepts(text: str, value: str) -> None:
    parsed = parse_filter(text, USER_FILTERS)
    assert (parsed.attribute, parsed.op, parsed.value) == ("userName", "eq", value)


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "a@b.com" and active eq true',
        'userName eq "unterminated',
        'userName eq "bad\\escape"',
        "userName eq 'single'",
        'userName pr "x"',
        'emails eq "a@b.com"',
        'userName eq "a" or userName eq "b"',
    ],
)
def test_filter_parser_rejects(text: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_filter(text, USER_FILTERS)
    assert (info.value.status, info.value.message) == (400, "Unsupported filter")


def test_fault_draws_do_not_depend_on_which_kinds_fire() -> None:
    # With the same seed, raising one probability must not shift another kind's draws.
    low = FaultInjector(EmulatorConfig(faults={"error_503": 0.2, "error_500": 0.0}, fault_seed=3))
    high = FaultInjector(EmulatorConfig(faults={"error_503": 0.2, "error_500": 1e-9}, fault_seed=3))
    a = [low.decide("GET", "k").kind for _ in range(200)]
    b = [high.decide("GET", "k").kind for _ in range(200)]
    assert a == b


@pytest.mark.parametrize(
    "settings",
    [
        {"api_keys": []},
        {"put_mode": "upsert"},
        {"max_page_size": 0},
        {"rate_window": 0},
        {"rate_window_mode": "tumbling"},
        {"faults": {"error_503": 1.5}},
        {"faults": {"nope": 0.1}},
        {"fault_methods": frozenset({"FETCH"})},
        {"api_keys": ["same"], "personal_tokens": ["same"]},
    ],
)
def test_config_validation(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**settings)  # type: ignore[arg-type]


def test_config_patch_is_all_or_nothing() -> None:
    config = EmulatorConfig()
    with pytest.raises(ValueError):
        config.apply_patch({"put_mode": "merge", "rate_limit": -1})
    assert config.put_mode == "replace" and config.rate_limit == 60
    config.apply_patch({"put_mode": "merge", "fault_methods": ["patch"]})
    assert config.put_mode == "merge" and config.fault_methods == frozenset({"PATCH"})


def test_patch_stays_fast_with_10000_users_and_a_state_file(tmp_path: Path) -> None:
    state = EmulatorState()
    state.seed_users(10_000)
    config = EmulatorConfig(
        api_keys=[API_KEY], rate_limit_enabled=False, state_file=tmp_path / "s.json", persist_interval=0.1
    )
    with (
        EmulatorServer(config, state) as server,
        httpx.Client(base_url=server.api_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
    ):
        ids = [u.id for u in state.users()[:50]]
        timings = []
        for i, user_id in enumerate(ids * 2):
            started = time.perf_counter()
            response = client.patch(
                f"/scim/v2/users/{user_id}",
                json=patch_body({"op": "replace", "value": {ATTRS: {"seat_tier": f"t{i}"}}}),
            )
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
    # Typically well under 2 ms; the bound is loose so a busy CI machine does not flake.
    assert statistics.median(timings) < 0.02
    assert EmulatorState.load(config.state_file).get_user(ids[-1]).attributes["seat_tier"] == "t99"  # type: ignore[arg-type, union-attr]


def test_emulator_is_independent_of_airflow_and_the_client() -> None:
    # Static: no module of the emulator imports them...
    package = Path(__file__).resolve().parents[2] / "omni_provider" / "emulator"
    forbidden = re.compile(r"^\s*(from|import)\s+(airflow|omni_provider\.client|\.\.client)\b", re.M)
    for source in package.glob("*.py"):
        assert not forbidden.search(source.read_text()), source
    # ...and at runtime importing it pulls in neither (checked in a fresh interpreter).
    code = (
        "import sys, omni_provider.emulator, omni_provider.emulator.cli; "
        "bad = [m for m in sys.modules "
        "if m.split('.')[0] == 'airflow' or m.startswith('omni_provider.client')]; "
        "sys.exit(f'imported: {bad[:5]}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
