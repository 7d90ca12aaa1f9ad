"""Fixtures for the orchestrator-free engine: the shared emulator, reset per test, and a client of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import fresh, unpaced_client

from omni_provider.client import OmniScimClient
from omni_provider.emulator import EmulatorServer


@pytest.fixture
def emu(emulator_server: EmulatorServer) -> EmulatorServer:
    return fresh(emulator_server)


@pytest.fixture
def client(emu: EmulatorServer) -> Iterator[OmniScimClient]:
    """An unpaced client of the emulator with one quick retry."""
    with unpaced_client(emu, TEST_API_KEY) as omni:
        yield omni
