"""The email-only users API (``/api/v1/users/email-only``): recipients of Omni deliveries without a login.

Shares the client's pooled connection, pacing, retries, stats and cancel (as ``GroupsApi``). An upsert is
retried like an idempotent request: its body is the recipient's whole desired state, so a repeat after a
lost answer sets the same values again, whether Omni merges or replaces the attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from omni_provider.client.client import OmniScimClient
from omni_provider.domain.identity import emails_match, validate_email
from omni_provider.domain.models import AttributeValue
from omni_provider.domain.recipients import EmailOnlyPage, EmailOnlyResult, EmailOnlyUser
from omni_provider.errors import OmniResponseError, OmniValidationError

log = logging.getLogger("omni_provider.client")

EMAIL_ONLY_PATH = "/v1/users/email-only"
EMAIL_ONLY_BULK_PATH = EMAIL_ONLY_PATH + "/bulk"
#: Omni's page size limit for the listing (default and maximum).
MAX_PAGE_SIZE = 20
#: Omni's limit of recipients per bulk upsert.
MAX_BULK = 20

UpsertEntry = tuple[str, Mapping[str, AttributeValue] | None]


def upsert_body(email: str, attributes: Mapping[str, AttributeValue] | None) -> dict[str, Any]:
    """``{email, userAttributes?}``, the email checked by the one identity rule (before any request)."""
    body: dict[str, Any] = {"email": validate_email(email)}
    if attributes is not None:
        body["userAttributes"] = dict(attributes)
    return body


class EmailOnlyApi:
    """The three email-only endpoints: the cursor listing, the single upsert and the bulk upsert."""

    def __init__(self, client: OmniScimClient) -> None:
        self.client = client

    # -- reads --------------------------------------------------------------------------------------------

    def list_page(
        self, cursor: str | None = None, *, email: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> EmailOnlyPage:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise OmniValidationError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")
        params: dict[str, Any] = {"pageSize": page_size, "sortDirection": "asc"}
        if cursor:
            params["cursor"] = cursor
        if email is not None:
            params["email"] = email
        c = self.client
        response = c.request("GET", EMAIL_ONLY_PATH, params=params)
        return c._parse(EmailOnlyPage, c._json(response, "GET", EMAIL_ONLY_PATH), "GET", EMAIL_ONLY_PATH)

    def _walk(self, email: str | None = None) -> list[EmailOnlyUser]:
        """Every page (oldest first: a recipient created meanwhile lands after the cursor, none shifts);
        a recipient seen twice is kept once, a cursor that repeats is an error rather than a loop."""
        seen_cursors: set[str] = set()
        found: dict[str, EmailOnlyUser] = {}
        cursor: str | None = None
        while True:
            page = self.list_page(cursor, email=email)
            for record in page.records:
                found.setdefault(record.user_id, record)
            info = page.page_info
            if not info.has_next_page or not info.next_cursor:
                return list(found.values())
            if info.next_cursor in seen_cursors:
                raise OmniResponseError(f"GET {EMAIL_ONLY_PATH}: Omni's cursor repeated; listing abandoned")
            seen_cursors.add(info.next_cursor)
            cursor = info.next_cursor

    def list_recipients(self) -> list[EmailOnlyUser]:
        """Every email-only user: ``ceil(recipients / 20)`` requests (one when there are none)."""
        return self._walk()

    def find_recipient(self, email: str) -> EmailOnlyUser | None:
        """The recipient with this email (Omni's filter is partial: the exact one, by the identity rule)."""
        wanted = validate_email(email)
        matches = [r for r in self._walk(wanted) if emails_match(r.email, wanted)]
        return matches[0] if matches else None

    # -- writes -------------------------------------------------------------------------------------------

    def upsert(self, email: str, attributes: Mapping[str, AttributeValue] | None = None) -> EmailOnlyResult:
        """``POST /v1/users/email-only``: create or update one recipient (-> 200 ``{email, userId}``)."""
        body = upsert_body(email, attributes)
        c = self.client

        def attempt(_retried: bool) -> EmailOnlyResult:
            response = c._send("POST", EMAIL_ONLY_PATH, params=None, body=body, user=body["email"])
            return c._parse(
                EmailOnlyResult, c._json(response, "POST", EMAIL_ONLY_PATH), "POST", EMAIL_ONLY_PATH
            )

        return c._retrying_call("POST", EMAIL_ONLY_PATH, attempt, repeat_is_harmless=True)

    def upsert_bulk(self, entries: Sequence[UpsertEntry]) -> list[EmailOnlyResult]:
        """``POST /v1/users/email-only/bulk``: create or update 1 to 20 recipients in one request (-> 201
        ``{results}``). Omni refuses the whole request (400) when one entry is bad."""
        if not 1 <= len(entries) <= MAX_BULK:
            raise OmniValidationError(f"a bulk upsert takes 1 to {MAX_BULK} recipients, got {len(entries)}")
        body = {"users": [upsert_body(email, attributes) for email, attributes in entries]}
        c = self.client
        who = body["users"][0]["email"] + (f" and {len(entries) - 1} more" if len(entries) > 1 else "")
        path = EMAIL_ONLY_BULK_PATH

        def attempt(_retried: bool) -> list[EmailOnlyResult]:
            response = c._send("POST", path, params=None, body=body, user=who)
            data = c._json(response, "POST", path)
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise OmniResponseError(f"POST {path}: answer has no 'results' list")
            return [c._parse(EmailOnlyResult, r, "POST", path) for r in results]

        return c._retrying_call("POST", path, attempt, repeat_is_harmless=True)
