"""Constants and helpers shared by the test modules (import as ``omni_testkit``)."""

from __future__ import annotations

import json

#: Long enough for Airflow's masker (min 5 chars) and distinctive enough to grep for.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"
TEST_API_KEY_2 = "omni-test-key-2-d41c8e0b77"


def omni_connection_json(base_url: str, key: str = TEST_API_KEY, **extra: object) -> str:
    """An ``omni`` connection in Airflow's JSON form; the rate limit is lifted unless a test sets one."""
    extras = {"rate_limit_per_minute": 1_000_000, **extra}
    return json.dumps({"conn_type": "omni", "host": base_url, "password": key, "extra": extras})
