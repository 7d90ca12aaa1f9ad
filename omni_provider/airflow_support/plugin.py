"""An API-server plugin that lets the connection list's Test button reach ``OmniScimHook.test_connection``.

Airflow 3.3's UI tests a saved connection by posting it back with ``port: Number(connection.port)``, which
is ``0`` for a connection without a port, and the test endpoint then answers 400 "The host or port to test
differs from the stored connection" because ``0`` is not the stored NULL. An Omni connection has no port
(the URL in the host field carries one when needed), so its Test button could never work. Airflow fixed
the comparison upstream (apache/airflow#73298, "port 0 means the same as blank"); this middleware applies
the same rule to Omni connections only. On an Airflow that has the fix it makes no difference.

The same middleware also hands the connection id typed in the form to ``OmniScimHook.test_connection``
(``hooks/tested_connection.py``): Airflow tests under a temporary id, which the Test message must not name.

On Airflow 3 the plugin also serves the Omni report tab of a task instance (``report_view``: a FastAPI
app under ``/omni-provider`` shown by the UI as an external view); Airflow 2.11 has no such view.

It is registered through the ``airflow.plugins`` entry point, so it is listed under Admin > Plugins.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.airflow_support.report_link import APP_PREFIX, VIEW_HREF, VIEW_ROUTE
from omni_provider.get_provider_info import CONNECTION_TYPE
from omni_provider.hooks.tested_connection import connection_id_of, typed_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TEST_PATH_SUFFIX = "/api/v2/connections/test"
#: A connection test body is a few hundred bytes; anything larger is passed on untouched.
MAX_BODY_BYTES = 256 * 1024


def _omni_body(body: bytes) -> dict[str, Any] | None:
    """The parsed body when it tests an Omni connection; None for anything else."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("conn_type") == CONNECTION_TYPE else None


def blank_port_for_omni(body: bytes) -> bytes | None:
    """The body with ``port: 0`` replaced by ``null`` when it tests an Omni connection; None to keep it."""
    data = _omni_body(body)
    if data is None:
        return None
    port = data.get("port")
    if port != 0 or isinstance(port, bool):
        return None
    data["port"] = None
    return json.dumps(data).encode()


class OmniConnectionTestPortMiddleware:
    """Pure ASGI middleware: touches only ``POST .../api/v2/connections/test`` bodies of Omni connections."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).endswith(TEST_PATH_SUFFIX)
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break  # a disconnect: hand on what came
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES or not message.get("more_body", False):
                break
        complete = messages[-1].get("type") == "http.request" and not messages[-1].get("more_body", False)
        typed: str | None = None
        if complete and size <= MAX_BODY_BYTES:
            body = b"".join(m.get("body", b"") for m in messages)
            typed = connection_id_of(_omni_body(body))
            new_body = blank_port_for_omni(body)
            if new_body is not None:
                messages = [{"type": "http.request", "body": new_body, "more_body": False}]
                scope = dict(scope)
                scope["headers"] = [
                    (name, value) for name, value in scope.get("headers", []) if name != b"content-length"
                ] + [(b"content-length", str(len(new_body)).encode())]

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        token = typed_id.set(typed)
        try:
            await self.app(scope, replay, send)
        finally:
            typed_id.reset(token)


class ReportViewApp:
    """The report view's ASGI app, imported on its first request: every Airflow process loads plugins (a
    task, to read their macros), and only the API server needs the view and its API-server imports."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from omni_provider.airflow_support.report_view import app

        await app(scope, receive, send)


def report_view_parts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report view's app and its task-instance tab (Airflow 3; none on 2.11)."""
    if not AIRFLOW_V_3_0_PLUS:
        return [], []
    apps = [{"app": ReportViewApp(), "url_prefix": APP_PREFIX, "name": "Omni report view"}]
    views = [
        {
            "name": "Omni report",
            "href": VIEW_HREF,
            "destination": "task_instance",
            "url_route": VIEW_ROUTE,
        }
    ]
    return apps, views


class OmniProviderPlugin(AirflowPlugin):
    name = "omni_provider"
    fastapi_root_middlewares = [
        {"name": "omni-connection-test-port", "middleware": OmniConnectionTestPortMiddleware}
    ]
    fastapi_apps, external_views = report_view_parts()
