"""Fixtures for the emulator tests: real uvicorn servers on 127.0.0.1 with random ports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emulator_testkit import API_KEY, API_KEY_2, PAT, MakeEmulator, api_client

from omni_provider.emulator import EmulatorConfig, EmulatorServer, EmulatorState


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    """Start an emulator; keyword arguments are EmulatorConfig fields (plus ``state``).

    Rate limiting is off unless a test turns it on, so tests can make many requests.
    """
    servers: list[EmulatorServer] = []

    def factory(state: EmulatorState | None = None, **overrides: Any) -> EmulatorServer:
        settings: dict[str, Any] = {
            "api_keys": [API_KEY, API_KEY_2],
            "personal_tokens": [PAT],
            "rate_limit_enabled": False,
        }
        settings.update(overrides)
        server = EmulatorServer(EmulatorConfig(**settings), state).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> EmulatorServer:
    return make_emulator()


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with api_client(emulator) as c:
        yield c
