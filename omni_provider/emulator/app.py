"""Assembles the Starlette application: API routes behind the gateway, plus admin routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .config import EmulatorConfig
from .context import EmulatorContext
from .errors import ApiError
from .gateway import ApiGateway
from .routes_admin import AdminRoutes
from .routes_api import ApiRoutes
from .routes_email_only import EmailOnlyRoutes
from .routes_groups import GroupRoutes
from .state import EmulatorState


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown routes and wrong methods still answer in Omni's {"error", "message"} shape.
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, exc.detail)
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


def create_app(config: EmulatorConfig | None = None, state: EmulatorState | None = None) -> Starlette:
    """Build the emulator app. Without ``state``, loads ``config.state_file`` if it exists.

    When ``config.state_file`` is set, writes are saved in the background and on shutdown
    (this needs ASGI lifespan, which uvicorn and EmulatorServer enable).
    """
    config = config or EmulatorConfig()
    state = state if state is not None else EmulatorState.load_or_new(config.state_file)
    context = EmulatorContext.build(config, state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if context.saver is not None:
            context.saver.start()
        try:
            yield
        finally:
            if context.saver is not None:
                context.saver.stop()

    app = Starlette(
        routes=[
            *ApiRoutes(context).routes(),
            *GroupRoutes(context).routes(),
            *EmailOnlyRoutes(context).routes(),
            *AdminRoutes(context).routes(),
        ],
        middleware=[Middleware(ApiGateway, context=context)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.emulator = context
    return app


def get_context(app: Starlette) -> EmulatorContext:
    """The shared objects (config, state, stats, ...) of an app built by create_app."""
    return cast(EmulatorContext, app.state.emulator)
