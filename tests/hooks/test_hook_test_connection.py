"""``OmniScimHook.test_connection()`` against real loopback servers: every outcome, never raising, never
repeating the key."""

from __future__ import annotations

import json
import ssl

import pytest
import trustme
from hook_helpers import PERSONAL_TOKEN, TEST_API_KEY

from omni_provider._compat import AIRFLOW_V_3_0_PLUS
from omni_provider.client import OmniScimClient
from omni_provider.hooks.omni import OmniScimHook

SCIM_LIST = json.dumps(
    {
        "Resources": [],
        "itemsPerPage": 0,
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "startIndex": 1,
        "totalResults": 0,
    }
).encode()
#: The second request of a 401 probe would otherwise wait a paced second.
FAST = {"rate_limit_per_minute": 60000}


def _test(password: str = TEST_API_KEY) -> tuple[bool, str]:
    ok, message = OmniScimHook().test_connection()
    assert isinstance(ok, bool)
    assert isinstance(message, str) and message
    assert password not in message
    assert TEST_API_KEY not in message
    return ok, message


def test_success_against_emulator(set_conn, emulator) -> None:
    emulator.reset(seed_users=7)
    set_conn(host=emulator.base_url)
    ok, message = _test()
    assert ok is True
    assert emulator.base_url in message
    assert "7 users" in message
    # one cheap read: GET /scim/v2/users?count=1
    assert emulator.stats.snapshot()["requests_by_method"] == {"GET": 1}


def test_success_with_api_suffix_and_extras(set_conn, emulator) -> None:
    set_conn(host=emulator.base_url + "/api/", extra={"timeout": "5", "max_retries": "3"})
    assert _test()[0] is True


def test_bad_url(set_conn) -> None:
    set_conn(host="ht!tp://acme.omniapp.co")
    ok, message = _test()
    assert ok is False
    assert "Invalid Omni URL" in message


def test_plain_http_to_remote_host_refused(set_conn) -> None:
    set_conn(host="http://acme.omniapp.co")
    ok, message = _test()
    assert ok is False
    assert "https" in message


def test_unreachable_host(set_conn, closed_port) -> None:
    set_conn(host=f"http://127.0.0.1:{closed_port}")
    ok, message = _test()
    assert ok is False
    assert "Cannot reach Omni" in message
    assert "ConnectError" in message


def test_wrong_key(set_conn, emulator) -> None:
    wrong = "omni-wrong-key-1234567890"
    set_conn(host=emulator.base_url, password=wrong, extra=FAST)
    ok, message = _test(wrong)
    assert ok is False
    assert "401" in message
    assert "rejected the API key" in message
    assert "personal" not in message.lower()


def test_personal_token(set_conn, emulator) -> None:
    set_conn(host=emulator.base_url, password=PERSONAL_TOKEN, extra=FAST)
    ok, message = _test(PERSONAL_TOKEN)
    assert ok is False
    assert "personal access token" in message
    assert "Organization API key" in message
    # it asked SCIM, then /api/v1 to tell a personal token from a wrong key
    assert emulator.stats.snapshot()["requests_total"] == 2


def test_not_omni_wrong_path_prefix(set_conn, emulator) -> None:
    set_conn(host=emulator.base_url + "/not-omni")
    ok, message = _test()
    assert ok is False
    assert "404" in message
    assert "No Omni SCIM API" in message


def test_not_omni_some_other_http_server(set_conn, tiny_server) -> None:
    base = tiny_server(404)
    set_conn(host=base)
    ok, message = _test()
    assert ok is False
    assert "No Omni SCIM API" in message
    assert base in message


def test_forbidden(set_conn, tiny_server) -> None:
    set_conn(
        host=tiny_server(403, b'{"error":"Forbidden","message":"Permission denied"}', "application/json")
    )
    ok, message = _test()
    assert ok is False
    assert "403" in message


def test_server_error_reported_without_retry(set_conn, emulator) -> None:
    emulator.context.faults.set_fail_next([{"status": 500, "count": 5}])
    set_conn(host=emulator.base_url)
    ok, message = _test()
    assert ok is False
    assert "HTTP 500" in message
    assert "Injected fault" in message
    assert emulator.stats.snapshot()["requests_total"] == 1


def test_html_200_is_unexpected_answer(set_conn, tiny_server) -> None:
    set_conn(host=tiny_server(200, b"<html><body>Welcome to nginx! secret-page</body></html>"))
    ok, message = _test()
    assert ok is False
    assert "Unexpected answer" in message
    assert "nginx" not in message


def test_missing_key(set_conn) -> None:
    set_conn(password=None)
    ok, message = _test()
    assert ok is False
    assert "no Organization API key" in message
    # 2.11's Edit page never sends a saved key back to Test: the answer says to type it again (3.x sends it)
    assert ("type it again" in message) is not AIRFLOW_V_3_0_PLUS


def test_bad_extra(set_conn) -> None:
    set_conn(extra={"timeout": "soon"})
    ok, message = _test()
    assert ok is False
    assert "timeout" in message


def test_missing_connection(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_OMNI_DEFAULT", raising=False)
    ok, message = OmniScimHook().test_connection()
    assert ok is False
    assert "omni_default" in message


def test_never_raises(set_conn, monkeypatch) -> None:
    set_conn()

    def explode(self, *args, **kwargs):
        raise RuntimeError(f"boom with {TEST_API_KEY[:3]}")

    monkeypatch.setattr(OmniScimClient, "list_users_page", explode)
    ok, message = _test()
    assert ok is False
    assert "RuntimeError" in message


@pytest.fixture
def tls_server(tiny_server, tmp_path):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "omni-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return tiny_server(200, SCIM_LIST, "application/json", tls=server_ctx), str(ca_file)


def test_https_with_ca_bundle_extra(set_conn, tls_server) -> None:
    base, ca_file = tls_server
    set_conn(host=base, extra={"ca_bundle": ca_file})
    ok, message = _test()
    assert ok is True, message


def test_https_without_ca_bundle_fails_verification(set_conn, tls_server) -> None:
    base, _ = tls_server
    set_conn(host=base)
    ok, message = _test()
    assert ok is False
    assert "Cannot reach Omni" in message
