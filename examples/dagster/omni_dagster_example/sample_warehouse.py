"""A small SQLite "warehouse" for trying the example (and the repository's demos) against the local emulator.

``python -m omni_dagster_example.sample_warehouse warehouse.db`` (from ``examples/dagster``) writes it and
prints the ``export OMNI_EXAMPLE_WAREHOUSE=...`` line to use. Its people are ``user00001@example.com`` to
``user00008@example.com``, the first users the emulator seeds (``--seed-users 25``, as the demos use).
"""

from __future__ import annotations

import argparse
import shlex
import sqlite3
from contextlib import closing
from pathlib import Path

#: The warehouse's truth. Emails differ in case from Omni's on purpose: matching is case-insensitive.
WAREHOUSE_ROWS = [
    ("User00001@Example.com", "EMEA", "Finance", "pro", 4100, 1),
    ("user00002@example.com", "AMER", "Sales", "standard", 4200, 1),
    ("USER00003@EXAMPLE.COM", "APAC", "Engineering", "pro", 4300, 1),
    ("user00004@example.com", "EMEA", "Marketing", "viewer", 4400, 1),
    ("user00005@example.com", "AMER", "Engineering", "pro", 4300, 1),
    ("user00006@example.com", "APAC", "Support", "standard", 4500, 1),
    ("user00007@example.com", "EMEA", "Finance", "standard", 4100, 1),
    ("user00008@example.com", "AMER", "Sales", "viewer", 4200, 0),
]
#: Who belongs to which managed group (the group DAG mirrors Finance, Sales and Engineering).
GROUP_ROWS = [
    ("User00001@Example.com", "Finance"),
    ("user00007@example.com", "Finance"),
    ("user00002@example.com", "Sales"),
    ("user00008@example.com", "Sales"),
    ("USER00003@EXAMPLE.COM", "Engineering"),
    ("user00005@example.com", "Engineering"),
]

#: People who get Omni deliveries without an Omni login (the email-only recipients DAG syncs them): 45
#: partners, each with the region and tier their deliveries are filtered by.
RECIPIENT_ROWS = [
    (f"partner{i:03d}@partners.example.com", ("EMEA", "AMER", "APAC")[i % 3], ("gold", "silver")[i % 2])
    for i in range(1, 46)
]


def make_warehouse(path: Path) -> Path:
    """Tables ``user_attributes``, ``group_memberships`` and ``delivery_recipients`` in a new SQLite file
    at ``path``."""
    if path.exists():
        raise FileExistsError(f"{path} exists already; remove it or choose another path")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE user_attributes (email TEXT PRIMARY KEY, region TEXT, department TEXT, "
            "seat_tier TEXT, cost_centre INTEGER, active INTEGER)"
        )
        db.executemany("INSERT INTO user_attributes VALUES (?, ?, ?, ?, ?, ?)", WAREHOUSE_ROWS)
        db.execute("CREATE TABLE group_memberships (email TEXT, team TEXT)")
        db.executemany("INSERT INTO group_memberships VALUES (?, ?)", GROUP_ROWS)
        db.execute("CREATE TABLE delivery_recipients (email TEXT, region TEXT, partner_tier TEXT)")
        db.executemany("INSERT INTO delivery_recipients VALUES (?, ?, ?)", RECIPIENT_ROWS)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the SQLite file to create, e.g. warehouse.db")
    path = parser.parse_args(argv).path.resolve()
    try:
        make_warehouse(path)
    except FileExistsError as exc:
        parser.exit(1, f"{exc}\n")
    print(f"{len(WAREHOUSE_ROWS)} people written to {path}")
    print(f"export OMNI_EXAMPLE_WAREHOUSE={shlex.quote(str(path))}")


if __name__ == "__main__":
    main()
