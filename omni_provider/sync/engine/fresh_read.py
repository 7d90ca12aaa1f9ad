"""The fresh read an apply of a stored plan makes before its writes: the planned items as Omni holds them
now, one listing when many are planned (``LISTING_FROM``), else one GET each, concurrently."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from omni_provider.errors import OmniNotFoundError

#: From this many planned users (groups) on, one listing of Omni is cheaper than one GET each.
LISTING_FROM = 20

ItemT = TypeVar("ItemT")


def read_each(
    ids: Sequence[str], read: Callable[[str], ItemT], *, max_workers: int = 4
) -> dict[str, ItemT | None]:
    """``read(id)`` for every id (None when Omni answers 404: gone since the plan)."""

    def one(item_id: str) -> ItemT | None:
        try:
            return read(item_id)
        except OmniNotFoundError:
            return None

    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="omni-read") as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))
