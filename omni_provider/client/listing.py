"""Reading one whole SCIM list, page by page, and noticing when it shifted while it was read.

Offset paging skips a user when one before the read position is deleted between two pages (and repeats one
when a user is inserted there). So each page after the first starts one entry early, on the last entry of
the page before: if that entry moved, the list shifted. With several API keys the pages after the first are
fetched concurrently (their starts are all known once the first page gave ``totalResults`` and the real
page length), and the very same checks are then run on them in list order.

The walk is the same for every SCIM list (users, embed users, groups): it only needs each entry's ``id`` and
each page's ``Resources`` and ``totalResults``; ``kind`` names the entries in what it reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Generic, Protocol, TypeVar

from omni_provider.errors import OmniResponseError

log = logging.getLogger("omni_provider.client")

#: Stops a paging loop against a server that never reports the end.
MAX_PAGES = 100_000


class ListEntry(Protocol):
    """What the walk needs of a listed resource (``OmniUser``, ``OmniGroup``)."""

    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=ListEntry)
E_co = TypeVar("E_co", bound=ListEntry, covariant=True)


class ListPage(Protocol[E_co]):
    """What the walk needs of one page of a SCIM ListResponse (``UserListPage``, ``GroupListPage``)."""

    @property
    def resources(self) -> Sequence[E_co]: ...

    @property
    def total_results(self) -> int: ...


#: ``fetch(start_index, count)``: one page of the list.
FetchPage = Callable[[int, int], ListPage[E]]


def overlapping_starts(total: int, page_length: int) -> list[int]:
    """1-based ``startIndex`` of every page after the first of a ``total``-entry list whose pages hold
    ``page_length`` entries: each starts on the last entry of the page before (``page_length - 1`` new)."""
    if page_length < 2:
        return []
    return list(range(page_length, total, page_length - 1))[:MAX_PAGES]


class _Walk(Generic[E]):
    """The entries read so far and the checks each next page must pass (list order)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "user", "group": how an entry is called in a drift reason
        self.entries: list[E] = []
        self.seen: set[str] = set()
        self.start = 1  # 1-based index of the next new entry
        self.total = -1
        self.page_length = 0  # the first page's length: the server's real (possibly clamped) page size
        self.done = False

    @property
    def overlaps(self) -> bool:
        return bool(self.entries) and self.page_length >= 2

    def next_start(self) -> int:
        return self.start - 1 if self.overlaps else self.start

    def take(self, page: ListPage[E], *, asked_at: int) -> str | None:
        """Add one page read at ``asked_at``; why the list drifted, or None (``done`` once at the end)."""
        resources = page.resources
        if self.entries and asked_at != self.next_start():
            # Only possible in parallel mode: pages planned from the first page no longer line up.
            return f"the page at {asked_at} does not continue the read at {self.next_start()}"
        if self.overlaps:
            if not resources or resources[0].id != self.entries[-1].id:
                return f"the page at {self.start - 1} no longer begins with the {self.kind} read last"
            resources = resources[1:]
        elif self.entries and page.total_results != self.total:
            return f"totalResults changed from {self.total} to {page.total_results}"
        if self.entries and page.total_results != self.total:
            # Harmless once the overlap matched: the change lies after the read position.
            log.info(
                "Omni's %s count changed from %d to %d during the read",
                self.kind,
                self.total,
                page.total_results,
            )
        self.total = page.total_results
        for entry in resources:
            if entry.id in self.seen:
                return f"{self.kind} {entry.id} appeared twice"
            self.seen.add(entry.id)
            self.entries.append(entry)
        got = len(page.resources)
        self.page_length = self.page_length or got
        self.start += len(resources)
        if self.start > self.total:
            self.done = True
            return None
        if got == 0 or not resources:
            return f"an empty page at {self.start} of {self.total}"
        if got < self.page_length:
            end = f"{self.start - 1} of {self.total}"
            return f"a short page ({got} of {self.page_length}) before the end ({end})"
        return None


def walk_listing(
    fetch: FetchPage[E], count: int, *, parallel: int = 1, kind: str = "user"
) -> tuple[list[E], str | None]:
    """One read of a list: (entries, None), or (partial, why it drifted).

    Drift: an overlap entry that moved, an entry seen twice, a short or empty page before the end, and (when
    pages are too small to overlap) a change of ``totalResults``. The server may clamp ``count``: the first
    page's length is the page size, and reads advance by what each page really held.

    ``parallel`` > 1 (one per API key): once the first page is in, the other pages are fetched by that many
    threads, then checked in list order exactly as a sequential read checks them. Entries beyond the
    planned pages (created at the end meanwhile) are read on sequentially.
    """
    walk: _Walk[E] = _Walk(kind)
    drift = walk.take(fetch(1, count), asked_at=1)
    if drift is not None or walk.done:
        return walk.entries, drift
    if parallel > 1:
        starts = overlapping_starts(walk.total, walk.page_length)
        for start, page in zip(starts, _fetch_all(fetch, starts, count, parallel), strict=True):
            drift = walk.take(page, asked_at=start)
            if drift is not None or walk.done:
                return walk.entries, drift
    for _page in range(MAX_PAGES):
        start = walk.next_start()
        drift = walk.take(fetch(start, count), asked_at=start)
        if drift is not None or walk.done:
            return walk.entries, drift
    raise OmniResponseError(f"paging did not end after {MAX_PAGES} pages")


def _fetch_all(fetch: FetchPage[E], starts: list[int], count: int, threads: int) -> list[ListPage[E]]:
    """Every page at ``starts``, by at most ``threads`` concurrent requests (the client's pacer spreads
    them over the keys). The first failure cancels what has not started and is raised."""
    if not starts:
        return []
    with ThreadPoolExecutor(max_workers=min(threads, len(starts)), thread_name_prefix="omni-list") as pool:
        futures: list[Future[ListPage[E]]] = [pool.submit(fetch, start, count) for start in starts]
        finished, _pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [f.exception() for f in futures if f in finished]
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            for future in futures:
                future.cancel()
            raise error
        return [future.result() for future in futures]
