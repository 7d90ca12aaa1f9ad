"""Fixtures for the client tests (helpers live in ``omni_fakes``).

Clients built here never really wait: the pacer gets a clock that jumps 1000 s per reading (so it never
asks to sleep) and every ``sleep`` is recorded in the ``sleeps`` list instead of sleeping. What is left in
``sleeps`` after a call is therefore exactly the retry back-off the client chose.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from omni_fakes import BASE, TEST_API_KEY, FakeOmni, Handler, Recorder

from omni_provider.client import OmniScimClient, RetryPolicy


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def fake_omni() -> FakeOmni:
    return FakeOmni()


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterable[Callable[..., tuple[OmniScimClient, Recorder]]]:
    """``make_client(handler, keys=..., max_attempts=..., **client_kwargs) -> (client, recorder)``."""
    clients: list[OmniScimClient] = []

    def factory(
        handler: Handler,
        *,
        keys: str | list[str] = TEST_API_KEY,
        base_url: str = BASE,
        max_attempts: int = 3,
        **kwargs: Any,
    ) -> tuple[OmniScimClient, Recorder]:
        recorder = handler if isinstance(handler, Recorder) else Recorder(handler)
        kwargs.setdefault("rate_limit_per_minute", 1e6)
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("clock", itertools.count(0.0, 1000.0).__next__)
        kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=max_attempts))
        client = OmniScimClient(base_url, keys, transport=httpx.MockTransport(recorder), **kwargs)
        clients.append(client)
        return client, recorder

    yield factory
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------------------------- emulator

#: What every test starts from; a test changes what it needs through ``config.apply_patch``.
EMULATOR_DEFAULTS: dict[str, Any] = {
    "put_mode": "replace",
    "max_page_size": 100,
    "strict_attributes": True,
    "rate_limit": 60,
    "rate_window": 60.0,
    "rate_window_mode": "sliding",
    "rate_limit_enabled": False,
    "retry_after_header": False,
    "faults": {},
    "fault_seed": 0,
    "fault_methods": None,
    "group_patch_mode": "documented",
    "list_churn": None,
    "group_list_churn": None,
}


@pytest.fixture
def emulator(emulator_server: Any) -> Any:
    """The shared emulator, emptied and set back to the defaults above."""
    emulator_server.config.apply_patch(EMULATOR_DEFAULTS)
    emulator_server.reset()
    return emulator_server


@pytest.fixture
def emu_client(emulator: Any, sleeps: list[float]) -> Iterable[Callable[..., OmniScimClient]]:
    """``emu_client(**client_kwargs)``: a client of the emulator over loopback, unpaced, instant retries."""
    clients: list[OmniScimClient] = []

    def factory(
        *, keys: str | list[str] = TEST_API_KEY, max_attempts: int = 4, **kwargs: Any
    ) -> OmniScimClient:
        kwargs.setdefault("rate_limit_per_minute", 1e6)
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("clock", itertools.count(0.0, 1000.0).__next__)
        kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=max_attempts))
        kwargs.setdefault("timeout", 10.0)
        client = OmniScimClient(emulator.base_url, keys, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
