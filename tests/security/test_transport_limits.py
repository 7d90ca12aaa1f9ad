"""A hostile or broken server cannot hold a request open or fill the worker's memory (real sockets on
loopback).

* Wall-clock deadline: a server that dribbles its answer (one byte every 0.2 s, in the body or in the
  headers) keeps each read inside httpx's read timeout, so only a deadline on the whole exchange ends the
  request. It must end within the configured ``timeout`` (plus scheduling slack) with ``OmniTimeoutError``,
  a retryable transport error.
* Answer size: a huge body (chunked, so no Content-Length warns), an announced one, a gzip bomb, and a huge
  body on a redirect are refused while streaming, with ``OmniResponseError``; tracemalloc's peak stays near
  the cap, not near the body.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY, omni_connection_json

from omni_provider._compat import AirflowException
from omni_provider.client import (
    OmniResponseError,
    OmniResponseTooLargeError,
    OmniScimClient,
    OmniTimeoutError,
    OmniTransportError,
    RetryPolicy,
)
from omni_provider.client.retry import is_retryable
from omni_provider.operators.update_user import UpdateOmniUserOperator

MIB = 1024 * 1024
LIST_BODY = b'{"Resources": [], "totalResults": 0, "startIndex": 1}'
#: Longest any misbehaving server below keeps a connection open, so a test never hangs for long.
SERVER_GIVES_UP_AFTER = 12.0

Behaviour = Callable[[socket.socket], None]


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"\n{title} FIGURES " + json.dumps(figures, sort_keys=True, default=str))


class RawServer:
    """Accepts connections on loopback, reads each request's head, then lets ``behaviour`` answer."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(SERVER_GIVES_UP_AFTER)
        with conn:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                self.behaviour(conn)
            except OSError:
                return  # the client hung up: what a deadline is for

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Behaviour], RawServer]]:
    started: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        server = RawServer(behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def dribble(conn: socket.socket, data: bytes, every: float = 0.2) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, for at most SERVER_GIVES_UP_AFTER."""
    end = time.monotonic() + SERVER_GIVES_UP_AFTER
    for byte in data:
        if time.monotonic() > end:
            return
        conn.sendall(bytes([byte]))
        time.sleep(every)


def dribbled_body(conn: socket.socket) -> None:
    body = b" " * 200 + LIST_BODY  # valid JSON once complete: only the pace is wrong
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    conn.sendall(f"Content-Length: {len(body)}\r\n\r\n".encode())
    dribble(conn, body)


def dribbled_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    dribble(conn, b"X-Padding: " + b"a" * 200 + b"\r\n")


def client_for(url: str, **kwargs: Any) -> OmniScimClient:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=1))
    return OmniScimClient(url, TEST_API_KEY, rate_limit_per_minute=1e6, sleep=lambda s: None, **kwargs)


# ============================================================================ wall-clock deadline


@pytest.mark.parametrize("behaviour", [dribbled_body, dribbled_headers], ids=["body", "headers"])
def test_dribbling_server_cannot_outlast_the_deadline(raw_server: Any, behaviour: Behaviour) -> None:
    server = raw_server(behaviour)
    timeout = 1.5
    with client_for(server.url, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(OmniTimeoutError) as info:
            client.list_users_page()
        elapsed = time.monotonic() - started
    print_figures(
        f"deadline vs dribbled {behaviour.__name__}",
        {"timeout_s": timeout, "ended_after_s": round(elapsed, 2), "server_would_go_on_s": 12},
    )
    assert elapsed < timeout + 0.75
    error = info.value
    assert isinstance(error, OmniTransportError) and is_retryable(error, "GET")
    assert f"within {timeout:g} s" in str(error) and TEST_API_KEY not in str(error)


def test_timeout_is_retried_and_each_attempt_keeps_its_deadline(raw_server: Any) -> None:
    server = raw_server(dribbled_body)
    with client_for(server.url, timeout=0.8, retry_policy=RetryPolicy(max_attempts=3)) as client:
        started = time.monotonic()
        with pytest.raises(OmniTimeoutError):
            client.list_users_page()
        elapsed = time.monotonic() - started
        assert client.stats.retries == 2 and client.stats.transport_errors == 3
    assert server.connections == 3
    assert elapsed < 3 * 0.8 + 1.5


def test_a_timely_answer_is_untouched_by_the_deadline(raw_server: Any) -> None:
    def prompt(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        conn.sendall(f"Content-Length: {len(LIST_BODY)}\r\n\r\n".encode() + LIST_BODY)

    server = raw_server(prompt)
    with client_for(server.url, timeout=1.0) as client:
        for _ in range(3):  # a kept-alive connection gets a fresh deadline per request
            assert client.list_users_page().total_results == 0
            time.sleep(0.4)


# ============================================================================ answer size


def send_chunked(conn: socket.socket, total: int) -> None:
    """``total`` bytes of spaces in chunked encoding (so no Content-Length warns the client)."""
    conn.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    sent = 0
    while sent < total:
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
    conn.sendall(b"0\r\n\r\n")


def huge_chunked_body(total: int) -> Behaviour:
    def send(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        send_chunked(conn, total)

    return send


def peak_while(call: Callable[[], Any]) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    try:
        call()
        error: BaseException | None = None
    except Exception as exc:
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, error


def test_huge_body_refused_while_streaming_with_bounded_memory(raw_server: Any) -> None:
    body_size, cap = 128 * MIB, 2 * MIB
    server = raw_server(huge_chunked_body(body_size))
    with client_for(server.url, max_response_bytes=cap, timeout=20) as client:
        started = time.monotonic()
        peak, error = peak_while(client.list_users_page)
        elapsed = time.monotonic() - started
    print_figures(
        "huge answer",
        {
            "body_mib": 128,
            "cap_mib": 2,
            "peak_traced_mib": round(peak / MIB, 1),
            "seconds": round(elapsed, 2),
        },
    )
    assert isinstance(error, OmniResponseTooLargeError) and isinstance(error, OmniResponseError)
    assert f"larger than {cap:,} bytes" in str(error)
    assert not is_retryable(error, "GET")
    assert peak < 4 * cap  # the cap, a copy of it and buffers; reading it whole would be 128 MiB


def test_announced_huge_body_refused_before_reading(raw_server: Any) -> None:
    def announce(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 268435456\r\n\r\n"
        )
        dribble(conn, b" " * 100)  # would take 20 s: refused on the header alone

    server = raw_server(announce)
    with client_for(server.url, timeout=20) as client:  # default cap: 32 MiB
        started = time.monotonic()
        with pytest.raises(OmniResponseTooLargeError, match="33,554,432 bytes"):
            client.list_users_page()
        assert time.monotonic() - started < 1.0


def test_gzip_bomb_refused_on_its_decoded_size(raw_server: Any) -> None:
    bomb = gzip.compress(b" " * (64 * MIB), compresslevel=9)  # about 64 KiB on the wire

    def send(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )

    server = raw_server(send)
    with client_for(server.url, max_response_bytes=MIB) as client:
        peak, error = peak_while(client.list_users_page)
    print_figures(
        "gzip bomb",
        {
            "wire_kib": len(bomb) // 1024,
            "decoded_mib": 64,
            "cap_mib": 1,
            "peak_traced_mib": round(peak / MIB, 1),
        },
    )
    assert len(bomb) < MIB
    assert isinstance(error, OmniResponseTooLargeError)
    assert peak < 8 * MIB  # httpx alone would inflate the 64 KiB chunk to 64 MiB before any check


def test_an_encoding_we_did_not_ask_for_is_refused(raw_server: Any) -> None:
    def brotli(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\nabcd")

    server = raw_server(brotli)
    with (
        client_for(server.url) as client,
        pytest.raises(OmniResponseError, match="unasked-for encoding 'br'"),
    ):
        client.list_users_page()


def test_huge_body_on_a_same_origin_redirect_is_capped_too(raw_server: Any) -> None:
    """httpx reads a redirect's body itself before following it: the cap applies there as well."""

    def redirect_with_body(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /api/scim/v2/Users\r\n")
        send_chunked(conn, 64 * MIB)

    server = raw_server(redirect_with_body)
    with client_for(server.url, max_response_bytes=MIB) as client:
        peak, error = peak_while(client.list_users_page)
    print_figures("redirect body", {"body_mib": 64, "cap_mib": 1, "peak_traced_mib": round(peak / MIB, 1)})
    assert isinstance(error, OmniResponseTooLargeError), error
    assert peak < 8 * MIB


def test_size_cap_is_a_connection_extra(raw_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = raw_server(huge_chunked_body(8 * MIB))
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(server.url, max_response_bytes=MIB, max_retries=0)
    )
    op = UpdateOmniUserOperator(task_id="u", user_name="ada@example.com", attributes={"region": "x"})
    with pytest.raises(AirflowException, match="larger than 1,048,576 bytes"):
        op.execute({})  # type: ignore[arg-type]
