"""Base-URL normalisation and the transport-safety rules (https only, except to loopback)."""

from __future__ import annotations

import httpx
import pytest
from omni_fakes import TEST_API_KEY, list_json

from omni_provider.client import OmniConfigurationError, OmniScimClient
from omni_provider.client.urls import is_loopback_host, normalize_base_url, same_origin

CANONICAL = "https://acme.omniapp.co/api"


@pytest.mark.parametrize(
    "raw",
    [
        "acme.omniapp.co",
        "acme.omniapp.co/",
        "acme.omniapp.co/api",
        "acme.omniapp.co/api/",
        "https://acme.omniapp.co",
        "https://acme.omniapp.co/",
        "https://acme.omniapp.co/api",
        "https://acme.omniapp.co/api/",
        "  https://acme.omniapp.co/api/  ",
        "HTTPS://ACME.omniapp.co",
        "https://acme.omniapp.co/API",
        "https://acme.omniapp.co/Api/",
    ],
)
def test_instance_url_forms_normalise_to_one_base(raw: str) -> None:
    assert normalize_base_url(raw) == CANONICAL


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://acme.omniapp.co:8443", "https://acme.omniapp.co:8443/api"),
        ("https://acme.playground.exploreomni.dev/api", "https://acme.playground.exploreomni.dev/api"),
        ("https://proxy.example.com/omni/", "https://proxy.example.com/omni/api"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/api"),
        ("http://127.0.0.1:8765/api/", "http://127.0.0.1:8765/api"),
        ("http://127.3.2.1:8765", "http://127.3.2.1:8765/api"),
        ("http://localhost:9000", "http://localhost:9000/api"),
        ("http://LOCALHOST:9000/api", "http://localhost:9000/api"),
        ("http://[::1]:9000", "http://[::1]:9000/api"),
        ("http://[::1]:9000/api/", "http://[::1]:9000/api"),
    ],
)
def test_ports_prefixes_and_loopback_http(raw: str, expected: str) -> None:
    assert normalize_base_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://acme.omniapp.co",
        "http://acme.omniapp.co/api",
        "http://10.0.0.1:8080",
        "http://192.168.1.20",
        "http://[2001:db8::1]:8080",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
    ],
)
def test_plain_http_refused_for_non_loopback_hosts(raw: str) -> None:
    with pytest.raises(OmniConfigurationError, match="unencrypted"):
        normalize_base_url(raw)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://acme.omniapp.co", "https"),
        ("ht!tp://acme.omniapp.co", "https"),
        ("https://acme.omniapp.co/api?token=abc", "query"),
        ("https://acme.omniapp.co/api#frag", "fragment"),
        ("https://", "host"),
        ("https://acme omniapp.co", "contains a space"),
        ("acme.omniapp.co /api", "contains a space"),
        ("https://acme.omniapp.co/a\tb", "contains a space"),
    ],
)
def test_malformed_urls_refused(raw: str, match: str) -> None:
    with pytest.raises(OmniConfigurationError, match=match):
        normalize_base_url(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "https://admin:s3cr3t-pw@acme.omniapp.co",
        "https://:s3cr3t-pw@acme.omniapp.co/api",
        "https://s3cr3t-pw@acme.omniapp.co",
        "s3cr3t-pw:x@acme.omniapp.co",
        "http://u:s3cr3t-pw@127.0.0.1:8000",
        # Malformed as well: the refusal must not echo the credentials either.
        "https://u:s3cr3t-pw@/api",
        "https://u:s3cr3t-pw@acme.omniapp.co:notaport",
    ],
)
def test_credentials_in_url_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(OmniConfigurationError) as info:
        normalize_base_url(raw)
    assert "s3cr3t-pw" not in str(info.value)


def test_loopback_detection() -> None:
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("[::1]")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("api.localhost")  # resolved through DNS, so not trusted to be local
    assert not is_loopback_host("10.0.0.1")
    assert not is_loopback_host("localhost.example.com")
    assert not is_loopback_host("acme.omniapp.co")


def test_same_origin_compares_scheme_host_and_port() -> None:
    base = httpx.URL("https://acme.omniapp.co/api/x")
    assert same_origin(base, httpx.URL("https://acme.omniapp.co/other"))
    assert not same_origin(base, httpx.URL("http://acme.omniapp.co/api/x"))
    assert not same_origin(base, httpx.URL("https://acme.omniapp.co:8443/api/x"))
    assert not same_origin(base, httpx.URL("https://evil.omniapp.co/api/x"))


@pytest.mark.parametrize("raw", ["acme.omniapp.co", "https://acme.omniapp.co/api/", "acme.omniapp.co/api"])
def test_requests_go_to_api_path_once(raw: str) -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=list_json([], 0, 1))

    with OmniScimClient(
        raw, TEST_API_KEY, transport=httpx.MockTransport(handler), rate_limit_per_minute=1e6
    ) as client:
        client.list_users_page()
    assert [(u.scheme, u.host, u.path) for u in seen] == [("https", "acme.omniapp.co", "/api/scim/v2/users")]


@pytest.mark.parametrize(
    "key", ["", "   ", "two words", "line\nbreak", "tab\tkey"], ids=["empty", "blank", "space", "nl", "tab"]
)
def test_empty_or_whitespace_keys_refused(key: str) -> None:
    with pytest.raises(OmniConfigurationError) as info:
        OmniScimClient("acme.omniapp.co", key)
    if key.strip():
        assert key not in str(info.value)


def test_no_keys_refused() -> None:
    with pytest.raises(OmniConfigurationError, match="at least one"):
        OmniScimClient("acme.omniapp.co", [])


def test_surrounding_whitespace_stripped_from_key() -> None:
    headers: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers["authorization"])
        return httpx.Response(200, json=list_json([], 0, 1))

    with OmniScimClient(
        "acme.omniapp.co",
        f"  {TEST_API_KEY}\n",
        transport=httpx.MockTransport(handler),
        rate_limit_per_minute=1e6,
    ) as client:
        client.list_users_page()
    assert headers == [f"Bearer {TEST_API_KEY}"]
