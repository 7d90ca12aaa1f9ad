"""Handlers for ``/api/scim/v2/groups`` (auth, rate limit and faults are done by the gateway, as for users),
plus the admin view ``GET /_emulator/groups``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .context import EmulatorContext
from .errors import ApiError, not_found
from .group_store import DuplicateGroupError, GroupRecord
from .groups import (
    apply_patch,
    apply_put,
    group_json,
    group_list_response,
    parse_create,
)
from .routes_api import _int_param, _json_body
from .scim_filter import parse_filter
from .writes import invalid_body, invalid_patch

_GROUP_FILTERS = {"displayName": frozenset({"eq"})}
DUPLICATE_NAME = "Group with this name already exists"


class GroupRoutes:
    def __init__(self, context: EmulatorContext) -> None:
        self.ctx = context

    def routes(self) -> list[Route]:
        groups = "/api/scim/v2/groups"
        return [
            Route(groups, self.list_groups, methods=["GET"]),
            Route(groups, self.create_group, methods=["POST"]),
            Route(groups + "/{id}", self.get_group, methods=["GET"]),
            Route(groups + "/{id}", self.put_group, methods=["PUT"]),
            Route(groups + "/{id}", self.patch_group, methods=["PATCH"]),
            Route(groups + "/{id}", self.delete_group, methods=["DELETE"]),
            Route("/_emulator/groups", self.admin_groups, methods=["GET"]),
        ]

    def _email(self, user_id: str) -> str | None:
        user = self.ctx.state.get_user(user_id)
        return user.user_name if user is not None else None

    def _json(self, group: GroupRecord, request: Request) -> dict[str, object]:
        members = request.query_params.get("excludedAttributes", "").lower() != "members"
        return group_json(group, self._email, members=members)

    def _group(self, request: Request) -> GroupRecord:
        group = self.ctx.state.groups.get(request.path_params["id"])
        if group is None:
            raise not_found("Group not found")
        return group

    async def list_groups(self, request: Request) -> Response:
        groups = self.ctx.state.groups.groups()
        text = request.query_params.get("filter")
        if text is not None:
            # SCIM's displayName is not case-exact (RFC 7643 section 4.2).
            wanted = parse_filter(text, _GROUP_FILTERS).value.lower()
            groups = [g for g in groups if g.display_name.lower() == wanted]
        start = max(1, _int_param(request, "startIndex", 1))
        count = max(0, min(_int_param(request, "count", 100), self.ctx.config.max_page_size))
        members = request.query_params.get("excludedAttributes", "").lower() != "members"
        page = groups[start - 1 : start - 1 + count]
        body = group_list_response(page, self._email, start_index=start, total=len(groups), members=members)
        if text is None:
            self.ctx.after_group_list_page()  # group_list_churn: groups deleted/created between pages
        return JSONResponse(body)

    async def get_group(self, request: Request) -> Response:
        return JSONResponse(self._json(self._group(request), request))

    async def create_group(self, request: Request) -> Response:
        body = await _json_body(request, invalid_body)
        with self.ctx.state.lock:
            name, members = parse_create(body, self._email)
            try:
                group = self.ctx.state.groups.add_group(name, members)
            except DuplicateGroupError:
                raise ApiError(409, DUPLICATE_NAME) from None
            self.ctx.state.version += 1
        self.ctx.stats.bump("writes_applied")
        return JSONResponse(self._json(group, request), status_code=201)

    async def put_group(self, request: Request) -> Response:
        self._group(request)
        body = await _json_body(request, invalid_body)
        with self.ctx.state.lock:
            updated = apply_put(self._group(request), body, self._email)
            self._store(updated)
        self.ctx.stats.bump("writes_applied")
        return JSONResponse(self._json(updated, request))

    async def patch_group(self, request: Request) -> Response:
        self._group(request)
        body = await _json_body(request, lambda _detail: invalid_patch())
        with self.ctx.state.lock:
            updated = apply_patch(self._group(request), body, self._email, self.ctx.config.group_patch_mode)
            self._store(updated)
        self.ctx.stats.bump("writes_applied")
        if self.ctx.config.patch_answer == "no_content":
            return Response(status_code=204)
        return JSONResponse(self._json(updated, request))

    def _store(self, group: GroupRecord) -> None:
        try:
            self.ctx.state.groups.replace(group)
        except DuplicateGroupError:
            raise ApiError(409, DUPLICATE_NAME) from None
        self.ctx.state.version += 1

    async def delete_group(self, request: Request) -> Response:
        with self.ctx.state.lock:
            if not self.ctx.state.groups.delete(request.path_params["id"]):
                raise not_found("Group not found")
            self.ctx.state.version += 1
        self.ctx.stats.bump("writes_applied")
        return Response(status_code=204)

    async def admin_groups(self, request: Request) -> Response:
        return JSONResponse({"groups": [group_json(g, self._email) for g in self.ctx.state.groups.groups()]})
