"""Handlers for the Omni API routes under /api (auth and faults are done by the gateway)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import read_json
from .context import EmulatorContext
from .errors import ApiError, bad_request, not_found
from .resources import USER_ATTRIBUTE_URN, list_response, user_json
from .scim_filter import parse_filter
from .state import DuplicateEmailError, UserRecord
from .writes import apply_patch, apply_put, invalid_body, invalid_patch, parse_create

# CLI-SPEC types count/startIndex as numeric strings with this pattern.
_NUMBER = re.compile(r"^-?\d*\.?\d+$")
_USER_FILTERS = {"userName": frozenset({"eq"})}
_EMBED_FILTERS = {"userName": frozenset({"eq", "co"}), "embedExternalId": frozenset({"eq", "co"})}


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _NUMBER.match(raw.strip()):
        raise bad_request(f"{name} must be a number")
    return int(float(raw))


async def _json_body(request: Request, error: Callable[[str], ApiError]) -> Any:
    return await read_json(request, error)


class ApiRoutes:
    def __init__(self, context: EmulatorContext) -> None:
        self.ctx = context

    def routes(self) -> list[Route]:
        users, embed = "/api/scim/v2/users", "/api/scim/v2/embed/users"
        return [
            Route(users, self.list_users, methods=["GET"]),
            Route(users, self.create_user, methods=["POST"]),
            Route(users + "/{id}", self.get_user, methods=["GET"]),
            Route(users + "/{id}", self.put_user, methods=["PUT"]),
            Route(users + "/{id}", self.patch_user, methods=["PATCH"]),
            Route(users + "/{id}", self.delete_user, methods=["DELETE"]),
            Route(embed, self.list_embed_users, methods=["GET"]),
            Route(embed + "/{id}", self.get_embed_user, methods=["GET"]),
            Route(embed + "/{id}", self.delete_embed_user, methods=["DELETE"]),
            Route("/api/v1/user-attributes", self.list_attributes, methods=["GET"]),
        ]

    def _page(self, request: Request, matches: list[UserRecord], *, embed: bool = False) -> JSONResponse:
        # SCIM: startIndex below 1 means 1; count is clamped, itemsPerPage says what was returned.
        start = max(1, _int_param(request, "startIndex", 1))
        count = max(0, min(_int_param(request, "count", 100), self.ctx.config.max_page_size))
        page = matches[start - 1 : start - 1 + count]
        body = list_response(page, start_index=start, total=len(matches), embed=embed)
        if not self.ctx.config.list_attribute_maps:
            for resource in body["Resources"]:  # SCIM lets a list leave the map out
                resource.pop(USER_ATTRIBUTE_URN, None)
        return JSONResponse(body)

    def _user(self, request: Request) -> UserRecord:
        user = self.ctx.state.get_user(request.path_params["id"])
        if user is None:
            raise not_found()
        return user

    async def list_users(self, request: Request) -> Response:
        text = request.query_params.get("filter")
        if text is None:
            response = self._page(request, self.ctx.state.users())
            self.ctx.after_list_page()  # the list_churn switch: users deleted/created between pages
            return response
        wanted = parse_filter(text, _USER_FILTERS)
        found = self.ctx.state.find_by_email(wanted.value)  # the email index is case-insensitive
        return self._page(request, [found] if found else [])

    async def get_user(self, request: Request) -> Response:
        return JSONResponse(user_json(self._user(request)))

    async def create_user(self, request: Request) -> Response:
        new = parse_create(await _json_body(request, invalid_body), self.ctx.attribute_rules())
        try:
            user = self.ctx.state.add_user(new.user_name, new.display_name, new.attributes)
        except DuplicateEmailError:
            raise ApiError(409, "User with this email already exists") from None
        self.ctx.stats.bump("users_created")
        self.ctx.stats.bump("writes_applied")
        return JSONResponse(user_json(user), status_code=201)

    async def put_user(self, request: Request) -> Response:
        self._user(request)  # 404 before looking at the body
        body = await _json_body(request, invalid_body)
        with self.ctx.state.lock:  # read-modify-write must not interleave with other threads
            rules = self.ctx.attribute_rules()
            updated = apply_put(self._user(request), body, self.ctx.config.put_mode, rules)
            self.ctx.state.replace_user(updated)
        self.ctx.stats.bump("writes_applied")
        return JSONResponse(user_json(updated))

    async def patch_user(self, request: Request) -> Response:
        self._user(request)
        body = await _json_body(request, lambda _detail: invalid_patch())
        with self.ctx.state.lock:
            writer = self.ctx.config.concurrent_writer
            if writer and writer.get("when", "before") == "before":
                self.ctx.other_writer_acts(request.path_params["id"], writer)
            updated = apply_patch(
                self._user(request), body, self.ctx.attribute_rules(), self.ctx.config.patch_semantics
            )
            self.ctx.state.replace_user(updated)
            if writer and writer.get("when") == "after":
                updated = self.ctx.other_writer_acts(request.path_params["id"], writer) or updated
        self.ctx.stats.bump("writes_applied")
        if self.ctx.config.patch_answer == "no_content":
            return Response(status_code=204)
        return JSONResponse(user_json(updated))

    async def delete_user(self, request: Request) -> Response:
        if not self.ctx.state.delete_user(request.path_params["id"]):
            raise not_found()
        self.ctx.stats.bump("users_deleted")
        self.ctx.stats.bump("writes_applied")
        return Response(status_code=204)

    async def list_embed_users(self, request: Request) -> Response:
        users = self.ctx.state.embed_users()
        text = request.query_params.get("filter")
        if text is not None:
            wanted = parse_filter(text, _EMBED_FILTERS)
            users = [u for u in users if _embed_matches(u, wanted.attribute, wanted.op, wanted.value)]
        return self._page(request, users, embed=True)

    async def get_embed_user(self, request: Request) -> Response:
        user = self.ctx.state.get_embed_user(request.path_params["id"])
        if user is None:
            raise not_found("Embed user not found")
        return JSONResponse(user_json(user, embed=True))

    async def delete_embed_user(self, request: Request) -> Response:
        if not self.ctx.state.delete_embed_user(request.path_params["id"]):
            raise not_found("Embed user not found")
        self.ctx.stats.bump("writes_applied")
        return Response(status_code=204)

    async def list_attributes(self, request: Request) -> Response:
        definitions = self.ctx.state.attribute_definitions.values()
        return JSONResponse({"records": [d.to_json() for d in definitions]})


def _embed_matches(user: UserRecord, attribute: str, op: str, value: str) -> bool:
    # Omni: email comparisons are case-insensitive, embedExternalId ones case-sensitive.
    if attribute == "userName":
        actual, value = user.user_name.lower(), value.lower()
    else:
        actual = user.embed_external_id or ""
    return actual == value if op == "eq" else value in actual
