"""Run the emulator on a real loopback socket, in a background thread or in the foreground."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

from .app import create_app, get_context
from .config import EmulatorConfig
from .context import EmulatorContext
from .state import EmulatorState
from .stats import EmulatorStats


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmulatorServer:
    """The emulator served by uvicorn.

    Usage::

        with EmulatorServer(EmulatorConfig(api_keys=["k"])) as emu:
            httpx.get(emu.base_url + "/api/scim/v2/users", headers={"Authorization": "Bearer k"})

    ``port=0`` picks a free port; ``base_url`` then shows the real one. Binding to a
    non-loopback address needs ``allow_remote=True`` (the admin routes have no auth).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        state: EmulatorState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        log_level: str = "warning",
        access_log: bool = False,
        uvicorn_log_config: dict[str, Any] | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to bind to non-loopback host {host!r} without allow_remote")
        self.config = config or EmulatorConfig()
        self.app = create_app(self.config, state)
        self.context: EmulatorContext = get_context(self.app)
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self._log_level = log_level
        self._access_log = access_log
        self._log_config = uvicorn_log_config
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- accessors
    @property
    def state(self) -> EmulatorState:
        return self.context.state

    @property
    def stats(self) -> EmulatorStats:
        return self.context.stats

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("server is not bound; call start() first")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL for API clients (Omni's is ``https://<instance>.omniapp.co/api``)."""
        return self.base_url + "/api"

    def reset(self, *, seed_users: int = 0, seed: int = 0) -> int:
        """Same as ``POST /_emulator/reset``: clear users, counters, windows, pending faults."""
        return self.context.reset(seed_users=seed_users, seed=seed)

    # ---------------------------------------------------------------- lifecycle
    def bind(self) -> None:
        """Open the listening socket (so the port is known before serving starts)."""
        if self._socket is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            access_log=self._access_log,  # the access log holds method, path and status only
            log_config=self._log_config,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 10.0) -> Self:
        """Serve in a daemon thread; returns once the server accepts connections."""
        if self._thread is not None:
            return self
        self.bind()
        server = self._make_server()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name="omni-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("omni emulator failed to start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, flush the state file, close the socket. Safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._server = None
        if self.context.saver is not None:
            self.context.saver.stop()  # lifespan already flushed; this covers a failed startup
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def serve_forever(self) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM; flushes state on exit."""
        self.bind()
        try:
            self._make_server().run(sockets=[self._socket] if self._socket else None)
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
