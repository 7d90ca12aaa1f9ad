"""Emulator-only admin routes under /_emulator (no auth; they do not exist in Omni).

They let tests, benchmarks and the demo inspect and steer a running emulator. The emulator runs on
developers' laptops, where any web page in a browser can send requests to it, so these routes answer
only requests addressed to a loopback host name (a DNS-rebinding page sends ``Host: its.own.name``) and
take POSTs only as ``application/json`` (which a page cannot send cross-site without a CORS preflight,
and the emulator answers none).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .bodies import parse_json, read_body
from .context import EmulatorContext
from .errors import ApiError, bad_request
from .resources import user_json

PREFIX = "/_emulator"
#: Users one ``POST /_emulator/reset`` may seed (about 0.3 s); larger sets through the CLI or Python API.
MAX_SEED_USERS = 10_000
#: Entries in the ``fail_next`` queue (each request walks it).
MAX_FAIL_NEXT = 100

Handler = Callable[[Request], Awaitable[Response]]


def is_loopback_host_header(value: str) -> bool:
    """``localhost:8765``, ``127.0.0.1``, ``[::1]:80``: a Host header naming this machine."""
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


def guarded(handler: Handler) -> Handler:
    """Refuse a request to an admin route unless it names a loopback host and, for a POST, is JSON."""

    async def guard(request: Request) -> Response:
        if not is_loopback_host_header(request.headers.get("host", "")):
            raise ApiError(403, "Emulator admin routes answer only requests to a loopback host")
        if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
            raise ApiError(415, "Emulator admin routes take application/json bodies only")
        return await handler(request)

    return guard


async def _optional_object(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    body = parse_json(raw, bad_request)
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    return body


class AdminRoutes:
    def __init__(self, context: EmulatorContext) -> None:
        self.ctx = context

    def routes(self) -> list[Route]:
        routes: list[tuple[str, Handler, str]] = [
            ("health", self.health, "GET"),
            ("stats", self.stats, "GET"),
            ("config", self.get_config, "GET"),
            ("config", self.patch_config, "POST"),
            ("reset", self.reset, "POST"),
            ("users", self.users, "GET"),
            ("save", self.save, "POST"),
        ]
        return [Route(f"{PREFIX}/{name}", guarded(h), methods=[method]) for name, h, method in routes]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(self, request: Request) -> Response:
        body = self.ctx.stats.snapshot()
        body["users"] = self.ctx.state.user_count()
        body["embed_users"] = len(self.ctx.state.embed_users())
        body["email_only_users"] = len(self.ctx.state.recipients.all())
        body["fail_next_pending"] = self.ctx.faults.pending_fail_next()
        body["state_saves"] = self.ctx.saver.saves if self.ctx.saver else 0
        return JSONResponse(body)

    def _config_body(self) -> dict[str, Any]:
        return {"config": self.ctx.config.public_dict(), "fail_next": self.ctx.faults.pending_fail_next()}

    async def get_config(self, request: Request) -> Response:
        return JSONResponse(self._config_body())

    async def patch_config(self, request: Request) -> Response:
        """Body: any of the runtime-changeable config fields, plus ``fail_next`` (replaces the queue)."""
        patch = await _optional_object(request)
        fail_next = patch.pop("fail_next", None)
        try:
            if fail_next is not None:
                if not isinstance(fail_next, list) or len(fail_next) > MAX_FAIL_NEXT:
                    raise ValueError(f"fail_next must be a list of at most {MAX_FAIL_NEXT} entries")
                self.ctx.faults.set_fail_next(fail_next)
            self.ctx.config.apply_patch(patch)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if "fault_seed" in patch:
            self.ctx.faults.reseed(self.ctx.config.fault_seed)
        return JSONResponse(self._config_body())

    async def reset(self, request: Request) -> Response:
        """Clear users, counters, rate-limit windows and pending faults.

        Body (all optional): ``seed_users`` (int, at most ``MAX_SEED_USERS``), ``seed`` (int),
        ``keep_users`` (bool).
        """
        body = await _optional_object(request)
        seed_users, seed = body.get("seed_users", 0), body.get("seed", 0)
        if not _is_int(seed_users) or not 0 <= seed_users <= MAX_SEED_USERS or not _is_int(seed):
            raise bad_request(f"seed_users must be an integer from 0 to {MAX_SEED_USERS}; seed an integer")
        keep = body.get("keep_users", False)
        if not isinstance(keep, bool):
            raise bad_request("keep_users must be a boolean")
        created = self.ctx.reset(seed_users=seed_users, seed=seed, keep_users=keep)
        return JSONResponse({"users": self.ctx.state.user_count(), "seeded": created})

    async def users(self, request: Request) -> Response:
        return JSONResponse(
            {
                "users": [user_json(u) for u in self.ctx.state.users()],
                "embed_users": [user_json(u, embed=True) for u in self.ctx.state.embed_users()],
            }
        )

    async def save(self, request: Request) -> Response:
        if self.ctx.saver is None:
            raise bad_request("no state_file configured")
        self.ctx.saver.flush(force=True)
        return JSONResponse({"saved": str(self.ctx.saver.path)})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
