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
