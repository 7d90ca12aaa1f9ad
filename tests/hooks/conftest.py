"""Fixtures for the hook tests: env-var connections and the emulator on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hook_helpers import TEST_API_KEY


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``set_conn(host=..., password=..., extra=..., conn_id="omni_default", uri=None)``: define an ``omni``
    connection through ``AIRFLOW_CONN_<ID>``, in JSON form (or the given URI); returns the conn id."""

    def define(
        *,
        host: str | None = "https://acme.omniapp.co",
        password: str | None = TEST_API_KEY,
        extra: dict[str, Any] | None = None,
        conn_id: str = "omni_default",
        uri: str | None = None,
    ) -> str:
        if uri is None:
            body: dict[str, Any] = {"conn_type": "omni"}
            if host is not None:
                body["host"] = host
            if password is not None:
                body["password"] = password
            if extra is not None:
                body["extra"] = extra
            value = json.dumps(body)
        else:
            value = uri
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        return conn_id

    return define


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emulator(emulator_server: Any) -> Any:
    emulator_server.config.apply_patch(
        {"put_mode": "replace", "faults": {}, "rate_limit_enabled": False, "max_page_size": 100}
    )
    emulator_server.reset()
    return emulator_server


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's canned status, content type and body."""

    def do_GET(self) -> None:
        server = self.server
        server.paths.append(self.path)  # type: ignore[attr-defined]
        status, content_type, body = server.canned  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return


@pytest.fixture
def tiny_server() -> Iterable[Callable[..., str]]:
    """``tiny_server(status, body, content_type="text/html", tls=None) -> base URL``: a loopback HTTP server
    that is not Omni. ``tls`` is an ``ssl.SSLContext`` to serve HTTPS with."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(
        status: int = 404,
        body: bytes = b"<html><body>Not Found</body></html>",
        content_type: str = "text/html",
        tls: ssl.SSLContext | None = None,
    ) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
        server.canned = (status, content_type, body)  # type: ignore[attr-defined]
        server.paths = []  # type: ignore[attr-defined]
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        scheme = "https" if tls is not None else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
