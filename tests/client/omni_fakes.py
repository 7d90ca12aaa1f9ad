"""Helpers for the client tests: a small in-memory Omni behind ``httpx.MockTransport``, and builders of
the JSON Omni sends. Imported by name (``from omni_fakes import ...``); conftest holds the fixtures."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
from omni_testkit import PERSONAL_TOKEN, TEST_API_KEY, TEST_API_KEY_2, apply_patch_ops  # noqa: F401

from omni_provider.client import USER_ATTRIBUTES_URN

BASE = "https://acme.omniapp.co"
USERS = "/api/scim/v2/users"
CORE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

Handler = Callable[[httpx.Request], httpx.Response]


def user_json(
    email: str,
    *,
    user_id: str | None = None,
    display_name: str | None = None,
    active: bool = True,
    attributes: dict[str, Any] | None = None,
    with_attributes: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": user_id or str(uuid.uuid4()),
        "userName": email,
        "displayName": display_name if display_name is not None else email.split("@")[0],
        "active": active,
        "emails": [{"primary": True, "value": email}],
        "groups": [],
        "meta": {"created": "2024-12-03T23:13:14.109Z", "resourceType": "User"},
        "schemas": [CORE_SCHEMA],
    }
    if with_attributes:
        body[USER_ATTRIBUTES_URN] = dict(attributes or {})
    return body


def list_json(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    return {
        "Resources": resources,
        "itemsPerPage": len(resources),
        "schemas": [LIST_SCHEMA],
        "startIndex": start,
        "totalResults": total,
    }


def params_of(request: httpx.Request) -> dict[str, str]:
    """The decoded query string (what a server sees after URL decoding)."""
    return dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


class Recorder:
    """A MockTransport handler that keeps every request it was given."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def count(self, method: str | None = None) -> int:
        return sum(1 for r in self.requests if method is None or r.method == method)

    def bodies(self, method: str) -> list[Any]:
        return [body_of(r) for r in self.requests if r.method == method]


def scripted(*responses: httpx.Response | BaseException | Handler) -> Handler:
    """Answer with each item in turn (an exception is raised, a callable is called); the last repeats."""
    items = list(responses)
    state = {"i": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        item = items[min(state["i"], len(items) - 1)]
        state["i"] += 1
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, httpx.Response):
            return httpx.Response(item.status_code, headers=item.headers, content=item.content)
        return item(request)

    return handler


_FILTER = re.compile(r'^userName eq (".*")$', re.DOTALL)


class FakeOmni:
    """Just enough of Omni's SCIM user API for the client: list (clamped count, ``userName eq``), get,
    create (409 on a duplicate email), PATCH (both forms, see ``omni_testkit.apply_patch_ops``), PUT
    (replace) and DELETE. ``before`` hooks may answer instead of the server; ``lose_next`` makes the server
    do the work and then drop the connection, like a response lost on the way back."""

    def __init__(self, *, max_page_size: int = 1000) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.max_page_size = max_page_size
        self.before: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.lose_next: set[str] = set()

    def add(self, email: str, **kwargs: Any) -> dict[str, Any]:
        user = user_json(email, **kwargs)
        self.users[user["id"]] = user
        return user

    def __call__(self, request: httpx.Request) -> httpx.Response:
        for hook in list(self.before):
            answer = hook(request)
            if answer is not None:
                return answer
        response = self._serve(request)
        if request.method in self.lose_next:
            self.lose_next.discard(request.method)
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    def _serve(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == USERS:
            if request.method == "GET":
                return self._list(request)
            if request.method == "POST":
                return self._create(body_of(request))
        elif path.startswith(USERS + "/"):
            user = self.users.get(path.rsplit("/", 1)[1])
            if user is None:
                return httpx.Response(404, json={"error": "Not Found", "message": "User not found"})
            if request.method == "GET":
                return httpx.Response(200, json=user)
            if request.method == "PATCH":
                return self._patch(user, body_of(request))
            if request.method == "PUT":
                body = body_of(request)
                user.update(
                    displayName=body.get("displayName", user["userName"]),
                    active=body.get("active", True),
                )
                user[USER_ATTRIBUTES_URN] = {
                    k: v for k, v in (body.get(USER_ATTRIBUTES_URN) or {}).items() if v is not None
                }
                return httpx.Response(200, json=user)
            if request.method == "DELETE":
                del self.users[user["id"]]
                return httpx.Response(204)
        return httpx.Response(404, json={"error": "Not Found", "message": "no such route"})

    def _list(self, request: httpx.Request) -> httpx.Response:
        params = params_of(request)
        users = list(self.users.values())
        if "filter" in params:
            match = _FILTER.match(params["filter"])
            if match is None:
                return httpx.Response(400, json={"error": "Bad Request", "message": "bad filter"})
            wanted = json.loads(match.group(1)).casefold()
            users = [u for u in users if u["userName"].casefold() == wanted]
        start = int(params.get("startIndex", "1"))
        count = min(int(params.get("count", "100")), self.max_page_size)
        page = users[start - 1 : start - 1 + count]
        return httpx.Response(200, json=list_json(page, len(users), start))

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        email = body["userName"]
        if any(u["userName"].casefold() == email.casefold() for u in self.users.values()):
            return httpx.Response(
                409, json={"error": "Conflict", "message": "User with this email already exists"}
            )
        user = self.add(
            email, display_name=body["displayName"], attributes=body.get(USER_ATTRIBUTES_URN) or {}
        )
        return httpx.Response(201, json=user)

    def _patch(self, user: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        apply_patch_ops(user, body)
        return httpx.Response(200, json=user)
