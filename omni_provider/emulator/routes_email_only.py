"""The email-only users API (``/api/v1/users/email-only``): delivery recipients without an Omni login.

As Omni's docs describe it (omni-api.md section 9): a cursor-paged listing (``pageSize`` 1-20, default 20,
``email`` a partial case-insensitive filter, ``sortDirection`` asc|desc, default desc) answering snake_case
records with the system attributes among the attributes, as strings; an upsert of one
(``{email, userAttributes?}`` -> 200 ``{email, userId}``) and a bulk upsert of 1 to 20 (-> 201
``{results}``, else 400 "must provide 1-20 users with valid emails"). Values are checked against the
attribute definitions; among system attributes only ``omni_user_timezone`` may be set. Whether an upsert
merges or replaces the attributes is undocumented: ``config.email_only_upsert`` plays either.

An email that belongs to a full (SCIM) Omni user is refused with 400 ("failed to create user", the
documented 400 of the single upsert): it is never turned into a recipient. A bulk request is all or
nothing: one bad entry refuses the whole request, and nothing of it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import read_json
from .context import EmulatorContext
from .errors import ApiError, bad_request
from .recipient_store import RecipientRecord

PATH = "/api/v1/users/email-only"
MAX_PAGE_SIZE = 20
MAX_BULK = 20
BULK_INVALID = "Invalid request - must provide 1-20 users with valid emails"
# A common server-side email rule (zod's): stricter than "one @ and a dotted domain" (no "..", no leading
# dot, an ASCII letters-only top-level domain), so an address a client accepts may still be refused here.
_EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)[A-Za-z0-9_'+\-.]*[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$"
)
_NUMBER = re.compile(r"^\d+$")


def _page_size(raw: str | None) -> int:
    if raw is None:
        return MAX_PAGE_SIZE
    if not _NUMBER.match(raw.strip()) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise bad_request(f"pageSize must be a number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _system_attributes(record: RecipientRecord) -> dict[str, str]:
    return {
        "omni_user_email": record.email,
        "omni_user_name": record.email,
        "omni_user_id": record.user_id,
        "omni_is_org_admin": "false",
    }


def record_json(record: RecipientRecord) -> dict[str, Any]:
    attributes = {**_system_attributes(record), **record.attributes}
    return {"email": record.email, "user_id": record.user_id, "user_attributes": attributes}


class EmailOnlyRoutes:
    def __init__(self, context: EmulatorContext) -> None:
        self.ctx = context

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.list_recipients, methods=["GET"]),
            Route(PATH, self.upsert_one, methods=["POST"]),
            Route(PATH + "/bulk", self.upsert_bulk, methods=["POST"]),
        ]

    async def list_recipients(self, request: Request) -> Response:
        params = request.query_params
        size = _page_size(params.get("pageSize"))
        direction = params.get("sortDirection", "desc")
        if direction not in ("asc", "desc"):
            raise bad_request("sortDirection must be 'asc' or 'desc'")
        records = self.ctx.state.recipients.all()
        if direction == "desc":
            records.reverse()
        wanted = params.get("email")
        if wanted:
            records = [r for r in records if wanted.strip().lower() in r.email.lower()]
        total = len(records)
        cursor = params.get("cursor")
        if cursor:
            if not _NUMBER.match(cursor):
                raise bad_request("Invalid cursor")
            after = int(cursor)
            records = [r for r in records if (r.seq < after if direction == "desc" else r.seq > after)]
        page = records[:size]
        more = len(records) > size
        return JSONResponse(
            {
                "pageInfo": {
                    "hasNextPage": more,
                    "nextCursor": str(page[-1].seq) if more else None,
                    "pageSize": size,
                    "totalRecords": total,
                },
                "records": [record_json(r) for r in page],
            }
        )

    def _checked(self, entry: Any, *, invalid: str | None) -> tuple[str, dict[str, Any] | None]:
        """(email, normalised attributes or None) of one ``{email, userAttributes?}``, or a 400."""
        if not isinstance(entry, Mapping):
            raise bad_request(invalid or "Invalid request body: expected an object")
        email = entry.get("email")
        if not isinstance(email, str) or not _EMAIL.match(email):
            raise bad_request(invalid or "Invalid email address")
        if self.ctx.state.find_by_email(email) is not None:
            raise bad_request(f"Failed to create email-only user {email}: an Omni user has this email")
        attributes = entry.get("userAttributes")
        if attributes is None:
            return email, None
        if not isinstance(attributes, Mapping):
            raise bad_request(f"{email}: userAttributes must be an object")
        try:
            return email, self.ctx.attribute_rules().normalise(attributes)
        except ApiError as exc:
            raise bad_request(f"{email}: {exc.message}") from None

    def _store(self, email: str, changes: dict[str, Any] | None) -> RecipientRecord:
        record, created = self.ctx.state.recipients.upsert(email, changes, self.ctx.config.email_only_upsert)
        self.ctx.state.version += 1
        self.ctx.stats.bump("writes_applied")
        if created:
            self.ctx.stats.bump("recipients_created")
        return record

    async def upsert_one(self, request: Request) -> Response:
        body = await read_json(request, lambda detail: bad_request(f"Invalid request body: {detail}"))
        with self.ctx.state.lock:
            email, changes = self._checked(body, invalid=None)
            record = self._store(email, changes)
        return JSONResponse({"email": record.email, "userId": record.user_id})

    async def upsert_bulk(self, request: Request) -> Response:
        body = await read_json(request, lambda _detail: bad_request(BULK_INVALID))
        users = body.get("users") if isinstance(body, Mapping) else None
        if not isinstance(users, list) or not 1 <= len(users) <= MAX_BULK:
            raise bad_request(BULK_INVALID)
        with self.ctx.state.lock:  # all checked before any is stored: a refused request stores nothing
            checked = [self._checked(entry, invalid=BULK_INVALID) for entry in users]
            stored = [self._store(email, changes) for email, changes in checked]
        results = [{"email": r.email, "userId": r.user_id} for r in stored]
        return JSONResponse({"results": results}, status_code=201)
