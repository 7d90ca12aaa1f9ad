"""Shape SQL results as a list of dicts (column name -> value) for the Omni operators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rows_as_dicts(
    results: list[Any], descriptions: list[Sequence[Sequence[Any]] | None]
) -> list[list[dict[str, Any]]]:
    """An ``output_processor`` for common-sql's ``SQLExecuteQueryOperator``.

    Its default output is rows as lists, which loses the column names; the Omni operators address
    columns by name, so this keeps them.
    """
    shaped: list[list[dict[str, Any]]] = []
    for rows, description in zip(results, descriptions, strict=False):
        columns = [str(col[0]) for col in (description or [])]
        shaped.append([dict(zip(columns, row, strict=True)) for row in rows or []])
    return shaped
