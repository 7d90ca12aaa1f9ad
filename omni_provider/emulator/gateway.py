"""ASGI middleware in front of every /api route: path case, auth, faults, rate limit, counters.

Order per request: count -> authenticate -> (slow) -> injected fault -> rate limit -> handler.
Injected faults answer before the rate limiter, as an upstream proxy failure would, so they do
not use up the key's budget. Admin routes (/_emulator) bypass all of this.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import EmulatorContext
from .faults import FaultDecision
from .ratelimit import retry_after_seconds

# Omni's docs spell the collections both "Users" and "users" ("Groups", "groups"); route on one spelling.
_USERS_PATH = re.compile(r"^/api/scim/v2/(embed/)?(users|groups)(?=/|$)", re.IGNORECASE)

PAT_ON_SCIM = "Personal access tokens are not supported on SCIM endpoints; use an Organization API key"
AUTH_REQUIRED = "Authentication required (SCIM bearer token)"

TokenKind = Literal["org", "pat"]
#: Marks the response start of a dropped connection for the request log (servers ignore unknown keys).
DROPPED = "omni_emulator.dropped"


def canonical_path(path: str) -> str:
    return _USERS_PATH.sub(
        lambda m: "/api/scim/v2/" + ("embed/" if m.group(1) else "") + m.group(2).lower(), path
    )


def bearer_token(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _matches(token: str, candidates: Iterable[str]) -> bool:
    # Compare against every candidate so timing does not reveal which one matched.
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(token.encode(), candidate.encode())
    return found


async def send_json(
    send: Send, status: int, body: object, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def drop_connection(send: Send) -> None:
    """Start a response that promises more bytes than are sent, then stop.

    uvicorn closes the socket when the app returns mid-response, so the client sees a
    protocol/read error (httpx.RemoteProtocolError), never an HTTP status.
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            DROPPED: True,
        }
    )
    await send({"type": "http.response.body", "body": b'{"Resources": [', "more_body": True})


def route_of(scope: Scope) -> str:
    """The request's route for the statistics: ids replaced by ``{id}``, a filtered list marked."""
    parts = scope["path"].removeprefix("/api").split("/")
    route = "/".join("{id}" if i > 3 and part and part != "bulk" else part for i, part in enumerate(parts))
    query = scope.get("query_string", b"")
    if b"filter=" in query:
        route += "?filter"
    elif query.startswith(b"email=") or b"&email=" in query:  # the email-only listing's filter
        route += "?email"
    return route


class ApiGateway:
    def __init__(self, app: ASGIApp, context: EmulatorContext) -> None:
        self.app = app
        self.ctx = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        scope = dict(scope, path=canonical_path(path))
        method: str = scope["method"]
        stats = self.ctx.stats
        token = bearer_token(scope)
        kind = self._classify(token)
        stats.request(method, token if kind else None, route_of(scope))
        logged_key = token if kind else None
        send = _logging(send, lambda status: stats.log_request(arrived, method, logged_key, status))

        if kind is None or (kind == "pat" and scope["path"].startswith("/api/scim/")):
            stats.bump("auth_failures")
            message = AUTH_REQUIRED if kind is None else PAT_ON_SCIM
            await self._error(send, 401, message)
            return
        assert token is not None

        fault = self.ctx.faults.decide(method, token)
        if fault.slow:
            stats.fault("slow")
            await asyncio.sleep(self.ctx.config.slow_seconds)
        if await self._injected(fault, send):
            return

        if self.ctx.config.rate_limit_enabled:
            wait = self.ctx.limiter.acquire(token)
            if wait is not None:
                stats.bump("rate_limited")
                await self._too_many(send, wait)
                return

        if fault.kind == "lost_response":
            # Apply the write, then drop the connection: the client cannot know it succeeded.
            stats.fault("lost_response")
            await self.app(scope, receive, _swallow)
            await drop_connection(send)
            return
        await self.app(scope, receive, self._counting(send))

    def _classify(self, token: str | None) -> TokenKind | None:
        if token is None:
            return None
        if _matches(token, self.ctx.config.api_keys):
            return "org"
        if _matches(token, self.ctx.config.personal_tokens):
            return "pat"
        return None

    async def _injected(self, fault: FaultDecision, send: Send) -> bool:
        """Answer with an injected fault; False if the request should go on."""
        if fault.kind is None or fault.kind == "lost_response":
            return False
        self.ctx.stats.fault(fault.kind)
        if fault.kind == "drop_connection":
            await drop_connection(send)
        elif fault.status == 429:
            await self._too_many(send, 1.0)
        else:
            assert fault.status is not None
            await self._error(send, fault.status, "Injected fault")
        return True

    async def _too_many(self, send: Send, wait: float) -> None:
        # Omni documents no Retry-After header, so it is opt-in.
        headers = [(b"retry-after", str(retry_after_seconds(wait)).encode())]
        await self._error(
            send, 429, "Rate limit exceeded", headers if self.ctx.config.retry_after_header else ()
        )

    async def _error(
        self, send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        self.ctx.stats.response(status)
        await send_json(send, status, {"error": HTTPStatus(status).phrase, "message": message}, headers)

    def _counting(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.ctx.stats.response(int(message["status"]))
            await send(message)

        return wrapped


async def _swallow(message: Message) -> None:
    return None


def _logging(send: Send, note: Callable[[int], None]) -> Send:
    """Note the answer's status in the request log; a cut connection notes 0."""
    noted = False

    async def wrapped(message: Message) -> None:
        nonlocal noted
        if message["type"] == "http.response.start" and not noted:
            noted = True
            # drop_connection marks the 200 it starts and never finishes: that is no answer.
            note(0 if message.get(DROPPED) else int(message["status"]))
        await send(message)

    return wrapped
