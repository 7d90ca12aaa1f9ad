"""The wire under ``OmniScimClient``: a wall-clock deadline per request and a cap on answer size.

httpx's timeouts bound each socket operation, not a whole exchange: a server that dribbles a byte every
half second (in the headers or the body) keeps a ``timeout=2`` request alive for as long as it likes. Here
every connect, read and write of a request is given at most the time left until the request's deadline,
so the exchange as a whole ends by then (``httpx.ReadTimeout`` etc., typed by the client as
``OmniTimeoutError``). The deadline is per thread, since the sync calls one client from worker threads.

Answers are streamed and counted while they arrive, so an oversized one is refused after ``limit`` bytes
instead of being held in memory whole.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from omni_provider.errors import OmniResponseError, OmniResponseTooLargeError


class RequestDeadline:
    """The monotonic time by which the current thread's request must be over (None: no request)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def until(self, deadline: float) -> Iterator[None]:
        self._local.at = deadline
        try:
            yield
        finally:
            self._local.at = None

    def expired(self) -> bool:
        at: float | None = getattr(self._local, "at", None)
        return at is not None and time.monotonic() >= at

    def cap(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """``timeout`` shortened to the time left; ``expired`` raised when none is left."""
        at: float | None = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise expired("the request deadline has passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: RequestDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.cap(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: RequestDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.cap(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.cap(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport(
    deadline: RequestDeadline, *, verify: Any, limits: httpx.Limits
) -> httpx.HTTPTransport:
    """httpx's own transport, with every socket operation bounded by ``deadline``.

    httpx offers no argument for httpcore's ``network_backend``, so it is swapped in on the pool httpx
    built; ``tests/security/test_transport_limits.py`` fails if an httpx upgrade stops this working.
    """
    transport = httpx.HTTPTransport(verify=verify, limits=limits)
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx version does not expose httpcore's connection pool")
    pool._network_backend = _DeadlineBackend(pool._network_backend, deadline)
    return transport


#: Content codings we ask for and accept; each inflates at most ~1000:1, so slicing bounds what one
#: slice can decode to (brotli or zstd could inflate far more, and are refused).
ACCEPTED_ENCODINGS = ("gzip", "deflate")
#: Compressed answers are handed to httpx's decoder this many raw bytes at a time (<= ~1 MiB decoded).
_COMPRESSED_SLICE = 1024


class CappedStream(httpx.SyncByteStream):
    """An answer's raw bytes, refused past ``limit`` (checked up front against Content-Length too).

    A compressed answer is passed on in small slices: httpx decodes each raw chunk whole, and a 64 KiB
    gzip chunk can hold 64 MiB of spaces, which would be in memory before any cap could look at it.
    """

    def __init__(self, response: httpx.Response, limit: int, *, method: str, path: str) -> None:
        self._inner = response.stream
        self._limit = limit
        self._method = method
        self._path = path
        announced = response.headers.get("content-length", "")
        if announced.strip().isdigit() and int(announced) > limit:
            raise OmniResponseTooLargeError(method, path, limit)
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
        unknown = [c for c in codings if c and c != "identity" and c not in ACCEPTED_ENCODINGS]
        if unknown:
            raise OmniResponseError(
                f"{method} {path}: Omni's answer uses an unasked-for encoding {unknown[0]!r}"
            )
        self._slice = _COMPRESSED_SLICE if any(codings) and codings != ["identity"] else 0

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:  # type: ignore[union-attr]  # a sync client's stream is sync
            seen += len(chunk)
            if seen > self._limit:
                raise OmniResponseTooLargeError(self._method, self._path, self._limit)
            if not self._slice:
                yield chunk
                continue
            for start in range(0, len(chunk), self._slice):
                yield chunk[start : start + self._slice]

    def close(self) -> None:
        self._inner.close()  # type: ignore[union-attr]


def read_capped(
    response: httpx.Response, limit: int, deadline: RequestDeadline, *, method: str, path: str
) -> bytes:
    """The decoded body, refused past ``limit`` bytes (a small gzip body can inflate to gigabytes) or
    once the deadline has passed (checked per chunk too, for transports that are not sockets)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise OmniResponseTooLargeError(method, path, limit)
        if deadline.expired():
            raise httpx.ReadTimeout("the request deadline has passed", request=response.request)
    return bytes(body)
