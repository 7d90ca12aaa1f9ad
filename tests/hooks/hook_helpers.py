"""Constants shared by the hook tests (imported by name; conftest modules are not importable reliably)."""

from __future__ import annotations

# Same values as tests/conftest.py.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"
TEST_API_KEY_2 = "omni-test-key-2-d41c8e0b77"
#: Accepted by the emulator on /api/v1 only, like an Omni personal access token.
PERSONAL_TOKEN = "omni-personal-token-5c2e9d1f"
