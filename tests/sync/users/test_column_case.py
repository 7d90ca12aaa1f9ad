"""Column names that differ only in case from the mapping (Snowflake's upper case) still match."""

from __future__ import annotations

from omni_provider.sync.users.rows import align_column_case


def test_upper_case_columns_are_renamed_to_the_configured_names() -> None:
    rows = [
        {"EMAIL": "a@example.com", "REGION": "EU", "OTHER": 1},
        {"EMAIL": "b@example.com", "REGION": "US", "OTHER": 2},
    ]
    aligned = align_column_case(rows, ["email", "region"])
    assert aligned == [
        {"email": "a@example.com", "region": "EU", "OTHER": 1},
        {"email": "b@example.com", "region": "US", "OTHER": 2},
    ]


def test_exact_names_win_and_ambiguous_case_is_left_alone() -> None:
    rows = [{"email": "a@example.com", "Region": "EU", "REGION": "US"}]
    assert align_column_case(rows, ["email", "region"]) is rows  # nothing unambiguous to rename


def test_empty_input() -> None:
    assert align_column_case([], ["email"]) == []
