"""Transport safety with real sockets on loopback: what ``tests/client`` shows with MockTransport, shown
end to end through the operators, plus what only a real network stack can show.

* Plain ``http://`` to anything but loopback is refused before any DNS lookup or connection.
* A redirect to another origin is never followed: the second server never sees a connection, let alone an
  ``Authorization`` header.
* TLS is verified by default: against a loopback HTTPS emulator with a private-CA certificate (trustme) the
  default refuses before any HTTP request is sent (so the key never leaves), says why and how to fix it,
  and works once the CA bundle is given (connection extra ``ca_bundle`` / client ``verify=<path>``); the
  host name is still checked with the bundle.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from omni_testkit import TEST_API_KEY, omni_connection_json

from omni_provider._compat import AirflowFailException
from omni_provider.client import (
    OmniConfigurationError,
    OmniRedirectError,
    OmniScimClient,
    OmniTransportError,
    RetryPolicy,
)
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.update_user import UpdateOmniUserOperator

# ============================================================================ plain http to a remote host


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every DNS lookup and outgoing connection made through ``socket``."""
    attempts: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"dns {host}")
        raise OSError("network disabled in this test")

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(f"connect {address}")
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return attempts


REMOTE_HTTP = [
    "http://acme.omniapp.co",
    "http://10.0.0.7:8080",
    "http://[2001:db8::1]/api",
    "http://0.0.0.0:8765",  # every interface, not loopback
    "http://api.localhost",  # *.localhost is resolved through DNS here, so it may not be local
    "http://localhost.evil.example",
    "http://127.0.0.1.nip.io",
    "http://LOCALHOST.:80@evil.example",
]


@pytest.mark.parametrize("url", REMOTE_HTTP)
def test_plain_http_to_non_loopback_refused_before_any_connection(
    url: str, no_network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(OmniConfigurationError):
        OmniScimClient(url, TEST_API_KEY)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(url))
    with pytest.raises(AirflowFailException) as info:
        UpdateOmniUserOperator(task_id="u", user_name="ada@example.com", attributes={"region": "x"}).execute(
            {}  # type: ignore[arg-type]
        )
    assert "http://" in str(info.value) or "credentials" in str(info.value)
    assert TEST_API_KEY not in str(info.value)
    ok, message = OmniScimHook().test_connection()
    assert not ok and TEST_API_KEY not in message
    assert no_network == []  # refused on the URL alone: no DNS lookup, no socket


# ============================================================================ redirects between real servers


class RecordingServer(http.server.ThreadingHTTPServer):
    """Counts accepted connections and keeps each request's method, path and headers."""

    daemon_threads = True

    def __init__(self, answer: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.answer = answer
        self.accepted = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        self.accepted += 1
        return super().get_request()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Recorder(http.server.BaseHTTPRequestHandler):
    server: RecordingServer

    def _any(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        status, headers, body = self.server.answer
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def servers() -> Iterator[list[RecordingServer]]:
    started: list[RecordingServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def serve(
    started: list[RecordingServer], status: int, headers: dict[str, str], body: bytes = b""
) -> RecordingServer:
    server = RecordingServer((status, headers, body))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    started.append(server)
    return server


LIST_BODY = b'{"Resources": [], "totalResults": 0, "startIndex": 1}'


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["other port", "localhost name", "scheme-relative"])
def test_redirect_to_another_origin_never_carries_the_key(
    servers: list[RecordingServer], status: int, target: str
) -> None:
    elsewhere = serve(servers, 200, {"Content-Type": "application/json"}, LIST_BODY)
    port = elsewhere.server_address[1]
    location = {
        "other port": f"{elsewhere.url}/api/scim/v2/users",
        "localhost name": f"http://localhost:{port}/api/scim/v2/users",  # same machine, other origin
        "scheme-relative": f"//localhost:{port}/api/scim/v2/users",
    }[target]
    omni = serve(servers, status, {"Location": location})
    client = OmniScimClient(
        omni.url, TEST_API_KEY, retry_policy=RetryPolicy(max_attempts=2), sleep=lambda s: None
    )
    with (
        client,
        pytest.raises(OmniRedirectError, match="not following, since the request carries the API key"),
    ):
        client.list_users_page()
    assert len(omni.requests) == 1 and omni.requests[0][2]["Authorization"] == f"Bearer {TEST_API_KEY}"
    assert elsewhere.accepted == 0 and elsewhere.requests == []


def test_redirect_refusal_through_the_sync_operator(
    servers: list[RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = serve(servers, 200, {"Content-Type": "application/json"}, LIST_BODY)
    omni = serve(servers, 307, {"Location": elsewhere.url + "/api/v1/user-attributes"})
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(omni.url, max_retries=0))
    op = SyncOmniUserAttributesOperator(
        task_id="s", rows=[{"userName": "a@example.com", "region": "x"}], attributes=["region"]
    )
    with pytest.raises(AirflowFailException, match=r"redirected to http://127\.0\.0\.1; not following"):
        op.execute({})  # type: ignore[arg-type]
    assert elsewhere.accepted == 0


def test_same_origin_redirect_is_followed_with_the_key(servers: list[RecordingServer]) -> None:
    """The contrast: a redirect within the same origin is followed (Omni may normalise paths)."""
    omni = serve(servers, 308, {}, b"")
    omni.answer = (308, {"Location": omni.url + "/api/scim/v2/Users"}, b"")
    omni.RequestHandlerClass = _answer_then((200, {"Content-Type": "application/json"}, LIST_BODY))
    with OmniScimClient(omni.url, TEST_API_KEY, retry_policy=RetryPolicy(max_attempts=1)) as client:
        assert client.list_users_page().total_results == 0
    assert [path for _m, path, _h in omni.requests] == [
        "/api/scim/v2/users?startIndex=1&count=100",
        "/api/scim/v2/Users",
    ]
    assert all(h["Authorization"] == f"Bearer {TEST_API_KEY}" for _m, _p, h in omni.requests)


def _answer_then(final: tuple[int, dict[str, str], bytes]) -> type[_Recorder]:
    """A handler that gives the server's canned answer once, then ``final``."""

    class AnswerThen(_Recorder):
        def _any(self) -> None:
            super()._any()
            self.server.answer = final

        do_GET = _any

    return AnswerThen


# ============================================================================ TLS


class TlsEmulator(EmulatorServer):
    """The emulator served over HTTPS on loopback with a certificate from a private CA."""

    def __init__(self, config: EmulatorConfig, certfile: Path, keyfile: Path) -> None:
        super().__init__(config)
        self._certfile, self._keyfile = certfile, keyfile

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            ssl_certfile=str(self._certfile),
            ssl_keyfile=str(self._keyfile),
        )
        self._server = uvicorn.Server(config)
        return self._server

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(files["key"]))
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    other = trustme.CA()  # a CA that did not sign the server's certificate
    files["other_ca"] = folder / "other-ca.pem"
    other.cert_pem.write_to_path(str(files["other_ca"]))
    wrong_name = ca.issue_cert("omni.example.com")  # signed by the right CA, for another host name
    files["wrong_name_cert"] = folder / "wrong-name.pem"
    files["wrong_name_key"] = folder / "wrong-name-key.pem"
    wrong_name.cert_chain_pems[0].write_to_path(str(files["wrong_name_cert"]))
    wrong_name.private_key_pem.write_to_path(str(files["wrong_name_key"]))
    return files


@pytest.fixture
def tls_emulator(private_ca: dict[str, Path]) -> Iterator[TlsEmulator]:
    config = EmulatorConfig(api_keys=[TEST_API_KEY], rate_limit_enabled=False)
    with TlsEmulator(config, private_ca["cert"], private_ca["key"]) as emu:
        emu.state.add_user("ada@example.com", "Ada", {"region": "us-east"})
        yield emu


def run_update(region: str) -> dict[str, Any]:
    op = UpdateOmniUserOperator(task_id="u", user_name="ada@example.com", attributes={"region": region})
    return op.execute({})  # type: ignore[arg-type]


def test_tls_verified_by_default_and_works_with_the_ca_bundle(
    tls_emulator: TlsEmulator, private_ca: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = tls_emulator
    assert emu.base_url.startswith("https://")

    # Default: refused during the handshake, so no HTTP request (and no key) ever reached the server.
    sleeps: list[float] = []
    client = OmniScimClient(emu.base_url, TEST_API_KEY, sleep=sleeps.append, rate_limit_per_minute=1e6)
    with client, pytest.raises(OmniTransportError) as info:
        client.list_users_page()
    message = str(info.value)
    assert "TLS certificate verification failed" in message and "ca_bundle" in message
    assert info.value.tls_verification_failed
    assert client.stats.snapshot()["requests"] == 1 and sleeps == []  # not retried: it cannot get better

    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
    with pytest.raises(AirflowFailException, match="TLS certificate verification failed") as failed:
        run_update("eu-west")
    assert type(failed.value) is AirflowFailException  # a task retry cannot fix trust either
    ok, text = OmniScimHook().test_connection()
    assert not ok and "TLS certificate is not trusted" in text and "ca_bundle" in text
    assert emu.stats.snapshot()["requests_total"] == 0
    assert emu.state.find_by_email("ada@example.com").attributes["region"] == "us-east"  # type: ignore[union-attr]

    # A bundle of another CA does not help.
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, ca_bundle=str(private_ca["other_ca"]))
    )
    with pytest.raises(AirflowFailException, match="TLS certificate verification failed"):
        run_update("eu-west")
    assert emu.stats.snapshot()["requests_total"] == 0

    # The right bundle: through the connection extra, and to the client directly.
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url, ca_bundle=str(private_ca["ca"]))
    )
    assert OmniScimHook().test_connection()[0] is True
    assert run_update("eu-west")["action"] == "updated"
    assert emu.state.find_by_email("ada@example.com").attributes["region"] == "eu-west"  # type: ignore[union-attr]
    with OmniScimClient(emu.base_url, TEST_API_KEY, verify=str(private_ca["ca"])) as trusted:
        assert trusted.find_user_by_email("ADA@example.com") is not None


def test_tls_host_name_still_checked_with_the_bundle(private_ca: dict[str, Path]) -> None:
    """A certificate from the trusted CA but for another host name is refused too."""
    config = EmulatorConfig(api_keys=[TEST_API_KEY], rate_limit_enabled=False)
    with TlsEmulator(config, private_ca["wrong_name_cert"], private_ca["wrong_name_key"]) as emu:
        client = OmniScimClient(
            emu.base_url, TEST_API_KEY, verify=str(private_ca["ca"]), sleep=lambda s: None
        )
        with (
            client,
            pytest.raises(OmniTransportError, match=r"TLS certificate verification failed \(.*mismatch"),
        ):
            client.list_users_page()
        assert emu.stats.snapshot()["requests_total"] == 0


def test_plain_http_to_the_https_port_is_a_transport_error(tls_emulator: TlsEmulator) -> None:
    """``http://127.0.0.1`` (allowed: loopback) to a TLS port: a clear transport error, not a crash."""
    url = tls_emulator.base_url.replace("https://", "http://")
    client = OmniScimClient(url, TEST_API_KEY, retry_policy=RetryPolicy(max_attempts=1))
    with client, pytest.raises(OmniTransportError, match="no answer from Omni"):
        client.list_users_page()
