"""Constants shared by the hook tests (imported by name; conftest modules are not importable reliably)."""

from __future__ import annotations

from omni_testkit import PERSONAL_TOKEN, TEST_API_KEY, TEST_API_KEY_2  # noqa: F401 - re-exported
