"""Fixtures for the Dagster adapter: the shared emulator, reset per test, and a resource pointing at it."""

from __future__ import annotations

import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import fresh

from omni_provider.dagster import OmniScimResource
from omni_provider.emulator import EmulatorServer


@pytest.fixture
def emu(emulator_server: EmulatorServer) -> EmulatorServer:
    return fresh(emulator_server)


@pytest.fixture
def omni(emu: EmulatorServer) -> OmniScimResource:
    """The resource as a user configures it (unpaced here: the emulator has no rate limit in these tests)."""
    return OmniScimResource(host=emu.api_url, api_key=TEST_API_KEY, rate_limit_per_minute=1e6, max_retries=1)
