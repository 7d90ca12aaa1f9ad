"""Emulator-only admin routes under /_emulator (no auth; they do not exist in Omni).

They let tests, benchmarks and the demo inspect and steer a running emulator.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .context import EmulatorContext
from .errors import bad_request
from .resources import user_json

PREFIX = "/_emulator"


async def _optional_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("malformed JSON") from None
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    return body


class AdminRoutes:
    def __init__(self, context: EmulatorContext) -> None:
        self.ctx = context

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/health", self.health, methods=["GET"]),
            Route(f"{PREFIX}/stats", self.stats, methods=["GET"]),
            Route(f"{PREFIX}/config", self.get_config, methods=["GET"]),
            Route(f"{PREFIX}/config", self.patch_config, methods=["POST"]),
            Route(f"{PREFIX}/reset", self.reset, methods=["POST"]),
            Route(f"{PREFIX}/users", self.users, methods=["GET"]),
            Route(f"{PREFIX}/save", self.save, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(self, request: Request) -> Response:
        body = self.ctx.stats.snapshot()
        body["users"] = self.ctx.state.user_count()
        body["embed_users"] = len(self.ctx.state.embed_users())
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
                if not isinstance(fail_next, list):
                    raise ValueError("fail_next must be a list")
                self.ctx.faults.set_fail_next(fail_next)
            self.ctx.config.apply_patch(patch)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if "fault_seed" in patch:
            self.ctx.faults.reseed(self.ctx.config.fault_seed)
        return JSONResponse(self._config_body())

    async def reset(self, request: Request) -> Response:
        """Clear users, counters, rate-limit windows and pending faults.

        Body (all optional): ``seed_users`` (int), ``seed`` (int), ``keep_users`` (bool).
        """
        body = await _optional_object(request)
        seed_users, seed = body.get("seed_users", 0), body.get("seed", 0)
        if not isinstance(seed_users, int) or seed_users < 0 or not isinstance(seed, int):
            raise bad_request("seed_users and seed must be non-negative integers")
        created = self.ctx.reset(seed_users=seed_users, seed=seed, keep_users=bool(body.get("keep_users")))
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
