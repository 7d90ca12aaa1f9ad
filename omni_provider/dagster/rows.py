"""The asset's input: a list (or any iterable) of dicts, or a pandas DataFrame, without importing pandas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _is_dataframe(value: object) -> bool:
    # Duck-typed so pandas stays optional: only what the conversion below calls.
    return all(hasattr(value, name) for name in ("to_dict", "notna", "astype", "columns"))


def rows_from(value: object) -> Any:
    """A DataFrame becomes one dict per row, its missing values (NaN, NaT, NA) as ``None``, which the sync
    treats as SQL NULL (unset); anything else is passed on for the engine to check."""
    if _is_dataframe(value):
        frame: Any = value
        records: list[Mapping[str, Any]] = (
            frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        )
        return records
    return value
