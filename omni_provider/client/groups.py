"""Omni's SCIM groups on an ``OmniScimClient``'s transport: list, get, create, PATCH members, delete.

Never PUT: Omni documents PUT as a replace of the whole membership, so a read-modify-PUT loses every member
someone else added between the read and the write (and an empty list empties the group). Member changes
go out as one PATCH per group carrying every add and remove; its answer is checked so a surprise in how
Omni applies it stops the caller instead of being reported as success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from omni_provider.client.client import OmniScimClient
from omni_provider.client.retry import is_retryable
from omni_provider.domain.groups import (
    GroupListPage,
    OmniGroup,
    create_group_body,
    members_patch,
    validate_group_id,
    validate_group_name,
)
from omni_provider.domain.identity import normalized_text, scim_string_literal, validate_user_id
from omni_provider.errors import (
    AmbiguousGroupError,
    OmniApiError,
    OmniConflictError,
    OmniGroupWriteSemanticsError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniResponseError,
    OmniTransportError,
)

log = logging.getLogger("omni_provider.client")

GROUPS_PATH = "/scim/v2/groups"


@dataclass(frozen=True)
class GroupUpdateResult:
    """What ``update_members`` did. ``concurrent_additions`` are members that appeared although this write
    did not add them: someone else added them between our read and our write (not an error)."""

    group: OmniGroup
    action: Literal["updated", "unchanged"]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    concurrent_additions: tuple[str, ...] = field(default=())
    requests: int = 0


class GroupsApi:
    """The group endpoints, sharing the client's pooled connection, pacing, retries, stats and cancel."""

    def __init__(self, client: OmniScimClient) -> None:
        self.client = client

    @staticmethod
    def _path(group_id: str) -> str:
        return f"{GROUPS_PATH}/{quote(validate_group_id(group_id), safe='')}"

    def _group(self, response: Any, method: str, path: str) -> OmniGroup:
        c = self.client
        return c._parse(OmniGroup, c._json(response, method, path), method, path)

    def _answer_or_read(self, response: Any, method: str, path: str, group_id: str) -> OmniGroup:
        """The group as a write left it: its answer, or a fresh read when the 2xx answer has no body (SCIM
        allows ``204 No Content``), an unreadable one, or one without the member list. A 2xx is never
        assumed applied nor failed: it is judged on Omni's state."""
        if response.content.strip():
            try:
                answer = self._group(response, method, path)
            except OmniResponseError as exc:
                log.warning("Group %s: %s; checking the write on a fresh read", group_id, exc)
            else:
                if answer.members_present:
                    return answer
        return self.get_group(group_id)

    # -- reads --------------------------------------------------------------------------------------------

    def list_groups_page(
        self,
        start_index: int = 1,
        count: int | None = None,
        *,
        filter: str | None = None,
        exclude_members: bool = False,
    ) -> GroupListPage:
        params: dict[str, Any] = {"startIndex": max(1, start_index), "count": count or self.client.page_size}
        if filter is not None:
            params["filter"] = filter
        if exclude_members:
            params["excludedAttributes"] = "members"
        response = self.client.request("GET", GROUPS_PATH, params=params)
        c = self.client
        return c._parse(GroupListPage, c._json(response, "GET", GROUPS_PATH), "GET", GROUPS_PATH)

    def _read(
        self, fetch: Callable[[int, int], GroupListPage], page_size: int | None, what: str
    ) -> list[OmniGroup]:
        """A whole group list, drift-checked and read again (bounded) when it shifted, exactly as the user
        list (``OmniScimClient._read_listing``): a group skipped by a shifted page would look absent, so
        the sync would plan its creation, or miss members to add or remove in a mirror run. Each page
        after the first starts on the last group already read; with several keys they go in parallel.
        Omni may clamp ``count``: reads advance by what each page really held."""
        return self.client._read_listing(fetch, page_size, what, kind="group")

    def iter_groups(
        self, *, page_size: int | None = None, exclude_members: bool = False
    ) -> Iterator[OmniGroup]:
        """Every group, members included unless excluded; the list is read whole first (never a shifted
        listing), so a shifted listing can be read again."""
        return iter(self.list_groups(page_size=page_size, exclude_members=exclude_members))

    def list_groups(self, *, page_size: int | None = None, exclude_members: bool = False) -> list[OmniGroup]:
        """Every group, page by page (``listing_page_count(G, page)`` requests: each page after the first
        repeats the last group of the one before), never a shifted listing."""
        return self._read(
            lambda s, c: self.list_groups_page(s, c, exclude_members=exclude_members), page_size, "group list"
        )

    def get_group(self, group_id: str) -> OmniGroup:
        path = self._path(group_id)
        return self._group(self.client.request("GET", path), "GET", path)

    def find_group_by_name(self, name: str) -> OmniGroup | None:
        """The group named exactly ``name`` (after stripping), through the ``displayName eq`` filter; the
        match is re-checked here so a lenient server filter cannot pick another group."""
        name = validate_group_name(name)
        flt = f"displayName eq {scim_string_literal(name)}"
        listed = self._read(lambda s, c: self.list_groups_page(s, c, filter=flt), None, "filtered group list")
        matches = [g for g in listed if normalized_text(g.display_name) == name]
        if len(matches) > 1:
            raise AmbiguousGroupError(name, len(matches))
        return matches[0] if matches else None

    # -- writes -------------------------------------------------------------------------------------------

    def create_group(self, name: str, members: Iterable[str] = ()) -> OmniGroup:
        """POST a new group, never twice: after a failure that may have created it (no answer, 5xx, 429),
        look the name up before sending again; a 409 after such a failure means our earlier try won."""
        body = create_group_body(name, members)
        name = body["displayName"]
        c = self.client
        policy = c.retry_policy
        uncertain = False
        for attempt in range(1, policy.max_attempts + 1):
            if uncertain:
                existing = self.find_group_by_name(name)
                if existing is not None:
                    return existing
            try:
                response = c.request("POST", GROUPS_PATH, body=body, user=f"group {name}", retry=False)
            except OmniConflictError:
                if uncertain:
                    existing = self.find_group_by_name(name)
                    if existing is not None:
                        return existing
                raise
            except (OmniTransportError, OmniApiError) as exc:
                if not is_retryable(exc, "POST", repeat_is_harmless=True) or attempt == policy.max_attempts:
                    raise
                uncertain = True
                self._back_off(exc, attempt, "POST", GROUPS_PATH)
                continue
            try:
                created = self._group(response, "POST", GROUPS_PATH)
            except OmniResponseError:
                existing = self.find_group_by_name(name)  # created, but the answer is unreadable (or none)
                if existing is None:
                    raise
                return existing
            if normalized_text(created.display_name) != name:
                raise OmniGroupWriteSemanticsError(
                    name, "an answer naming another group", old=name, new=created.display_name
                )
            return created
        raise AssertionError("unreachable")

    def update_members(
        self,
        group: OmniGroup | str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        display: Mapping[str, str] | None = None,
    ) -> GroupUpdateResult:
        """Add and remove members (user ids) in one PATCH, sending only what differs from ``group``.

        ``group`` is the state the change is based on (e.g. from a listing); an id means read it first.
        After a failure that may have been applied (no answer, 5xx), the group is read again and only what
        is still missing is sent, so a retry never depends on how Omni treats a repeated add or remove.
        The answer is verified against the state the write was based on: an added member missing, a
        removed one still present, an untouched member gone or the name changed raise
        ``OmniGroupWriteSemanticsError`` (never retried).
        """
        c = self.client
        requests_before = c.stats.requests
        wanted_add = [validate_user_id(u) for u in add]  # checked before any request
        wanted_remove = [validate_user_id(u) for u in remove]
        before = group if isinstance(group, OmniGroup) and group.members_present else None
        if before is None:
            before = self.get_group(group.id if isinstance(group, OmniGroup) else group)
        path = self._path(before.id)
        current = before
        policy = c.retry_policy
        for attempt in range(1, policy.max_attempts + 1):
            to_add = [u for u in wanted_add if u not in current.member_ids]
            to_remove = [u for u in wanted_remove if u in current.member_ids]
            if not to_add and not to_remove:
                if current is before:
                    return GroupUpdateResult(before, "unchanged", requests=c.stats.requests - requests_before)
                after = current  # an earlier, unanswered attempt did it
                break
            body = members_patch(to_add, to_remove, display=display).to_scim()
            try:
                response = c.request(
                    "PATCH", path, body=body, user=f"group {before.display_name}", retry=False
                )
            except (OmniTransportError, OmniApiError) as exc:
                if not is_retryable(exc, "PATCH") or attempt == policy.max_attempts:
                    raise
                self._back_off(exc, attempt, "PATCH", path)
                if not isinstance(exc, OmniRateLimitError):  # a 429 was refused, so nothing changed
                    current = self.get_group(before.id)
                continue
            after = self._answer_or_read(response, "PATCH", path, before.id)
            break
        else:  # pragma: no cover - the loop always breaks or raises
            raise AssertionError("unreachable")
        concurrent = verify_member_write(before, after, wanted_add, wanted_remove)
        if concurrent:
            log.warning(
                "Group %r: %d member(s) appeared that this write did not add (another writer?)",
                before.display_name,
                len(concurrent),
            )
        return GroupUpdateResult(
            after,
            "updated",
            added=tuple(u for u in wanted_add if u not in before.member_ids),
            removed=tuple(u for u in wanted_remove if u in before.member_ids),
            concurrent_additions=concurrent,
            requests=c.stats.requests - requests_before,
        )

    def delete_group(self, group_id: str) -> None:
        """DELETE; a 404 after an unanswered first attempt means that attempt deleted it."""
        path = self._path(group_id)
        c = self.client
        policy = c.retry_policy
        for attempt in range(1, policy.max_attempts + 1):
            try:
                c.request("DELETE", path, retry=False)
                return
            except OmniNotFoundError:
                if attempt == 1:
                    raise
                return
            except (OmniTransportError, OmniApiError) as exc:
                if not is_retryable(exc, "DELETE") or attempt == policy.max_attempts:
                    raise
                self._back_off(exc, attempt, "DELETE", path)

    def _back_off(self, exc: OmniTransportError | OmniApiError, attempt: int, method: str, path: str) -> None:
        c = self.client
        policy = c.retry_policy
        c._count_retry(exc)
        wait = min(policy.backoff_max, policy.backoff_initial * 2 ** (attempt - 1))
        if isinstance(exc, OmniApiError) and exc.retry_after is not None:
            wait = min(policy.max_retry_after, max(wait, exc.retry_after))
        log.warning("Omni %s %s failed (%s); checking and retrying in %.1fs", method, path, exc, wait)
        c._sleep(wait)


def verify_member_write(
    before: OmniGroup, after: OmniGroup, added: Iterable[str], removed: Iterable[str]
) -> tuple[str, ...]:
    """Judge a member write's answer against the state it was based on (the rule for user writes, applied
    to members). Returns the members that appeared without being added (another writer; not an error)."""
    group = before.display_name
    if after.id.strip().lower() != before.id.strip().lower():
        # The answer describes another group: nothing about this write can be trusted.
        raise OmniGroupWriteSemanticsError(
            group, "an answer naming another group", old=before.id, new=after.id
        )
    names = {m.value.lower(): m.display or m.value for m in [*before.members, *after.members]}

    def shown(ids: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(names.get(u, u) for u in ids))

    added_set = {u.lower() for u in added}
    removed_set = {u.lower() for u in removed}
    now = after.member_ids
    if after.display_name != before.display_name:
        raise OmniGroupWriteSemanticsError(
            group, "a changed group name", old=before.display_name, new=after.display_name
        )
    missing = sorted(added_set - now)
    if missing:
        raise OmniGroupWriteSemanticsError(group, "added members missing", members=shown(missing))
    kept = sorted(removed_set & now)
    if kept:
        raise OmniGroupWriteSemanticsError(group, "removed members still present", members=shown(kept))
    vanished = sorted((before.member_ids - removed_set) - now)
    if vanished:
        raise OmniGroupWriteSemanticsError(
            group, "members this write did not touch are gone", members=shown(vanished)
        )
    return tuple(sorted(now - before.member_ids - added_set))
