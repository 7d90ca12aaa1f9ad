"""Fixtures for the emulator tests: real uvicorn servers on 127.0.0.1 with random ports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emulator_testkit import API_KEY, API_KEY_2, PAT, MakeEmulator, api_client

from omni_provider.emulator import EmulatorConfig, EmulatorServer, EmulatorState


def _config(**overrides: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {
        "api_keys": [API_KEY, API_KEY_2],
        "personal_tokens": [PAT],
        "rate_limit_enabled": False,
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)


@pytest.fixture(scope="session")
def _shared_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(_config()) as server:
        yield server


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    """Start an emulator; keyword arguments are EmulatorConfig fields (plus ``state``).

    Rate limiting is off unless a test turns it on, so tests can make many requests.
    """
    servers: list[EmulatorServer] = []

    def factory(state: EmulatorState | None = None, **overrides: Any) -> EmulatorServer:
        server = EmulatorServer(_config(**overrides), state).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(_shared_emulator: EmulatorServer) -> EmulatorServer:
    """A running emulator with default test settings and no users.

    One server is shared by the session (starting one costs ~0.2 s); each test gets it back
    with a fresh config and empty state. Use ``make_emulator`` for other settings.
    """
    fresh = _config()
    for field in dataclasses.fields(fresh):
        setattr(_shared_emulator.config, field.name, getattr(fresh, field.name))
    _shared_emulator.reset()
    return _shared_emulator


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with api_client(emulator) as c:
        yield c
