"""Constants and helpers shared by the test modules (import as ``omni_testkit``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Long enough for Airflow's masker (min 5 chars) and distinctive enough to grep for.
TEST_API_KEY = "omni-test-key-7f3a9c1e5b"
TEST_API_KEY_2 = "omni-test-key-2-d41c8e0b77"
#: Accepted by the emulator on /api/v1 only, like an Omni personal access token.
PERSONAL_TOKEN = "omni-personal-token-5c2e9d1f"


def omni_connection_json(base_url: str, key: str = TEST_API_KEY, **extra: object) -> str:
    """An ``omni`` connection in Airflow's JSON form; the rate limit is lifted unless a test sets one. The
    window is short because a 429 without Retry-After (the emulator's burst faults) rests the key for one
    whole window: Omni's minute would only make the fault tests slow."""
    extras = {"rate_limit_per_minute": 1_000_000, "rate_window_seconds": 0.5, **extra}
    return json.dumps({"conn_type": "omni", "host": base_url, "password": key, "extra": extras})


#: The example DAGs' warehouse table: email, region, department, seat_tier, cost_centre, active.
WAREHOUSE_DDL = (
    "CREATE TABLE user_attributes (email TEXT, region TEXT, department TEXT, seat_tier TEXT, "
    "cost_centre INTEGER, active INTEGER)"
)


def make_warehouse(path: Path, rows: Iterable[tuple[object, ...]]) -> Path:
    """A SQLite warehouse with the example DAGs' ``user_attributes`` table."""
    with sqlite3.connect(path) as db:
        db.execute(WAREHOUSE_DDL)
        db.executemany("INSERT INTO user_attributes VALUES (?, ?, ?, ?, ?, ?)", rows)
    return path


ATTRIBUTE_URN = "urn:omni:params:1.0:UserAttribute"


def apply_patch_ops(user: dict[str, Any], body: dict[str, Any]) -> None:
    """Apply a SCIM PatchOp the way the client assumes Omni does, in place, for the test fakes: a no-path
    ``replace`` merges ``displayName``, ``active`` and the attribute map key by key (``null`` clears);
    ``replace`` / ``remove`` with the path ``urn:omni:params:1.0:UserAttribute:<name>`` set or clear one
    attribute; the paths ``displayName`` and ``active`` set those fields."""
    attrs = user.setdefault(ATTRIBUTE_URN, {})

    def put(name: str, value: Any) -> None:
        if value is None or value == "" or value == []:
            attrs.pop(name, None)
        else:
            attrs[name] = value

    for op in body["Operations"]:
        path = op.get("path")
        if path is None:
            assert op["op"] == "replace", op
            value = op["value"]
            for field in ("displayName", "active"):
                if field in value:
                    user[field] = value[field]
            for name, item in (value.get(ATTRIBUTE_URN) or {}).items():
                put(name, item)
        elif path in ("displayName", "active"):
            assert op["op"] == "replace", op
            user[path] = op["value"]
        else:
            assert path.startswith(ATTRIBUTE_URN + ":"), op
            assert op["op"] in ("replace", "remove"), op
            put(path[len(ATTRIBUTE_URN) + 1 :], None if op["op"] == "remove" else op["value"])
