"""Base-URL normalisation and the transport-safety rules that go with it."""

from __future__ import annotations

import ipaddress

import httpx

from omni_provider.errors import OmniConfigurationError

#: Names the hosts file maps to loopback. Not "*.localhost": glibc (hosts: files dns) asks DNS for those, and
#: a DNS answer pointing elsewhere would carry the key over plain http:// to another machine.
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    """The URL for an error message, unless it may carry credentials (``user:password@``)."""
    return "(not shown: it contains '@')" if "@" in value else repr(value)


def normalize_base_url(value: str) -> str:
    """``acme.omniapp.co``, ``https://acme.omniapp.co`` or ``.../api`` -> ``https://acme.omniapp.co/api``.

    Plain ``http://`` is refused unless the host is a loopback address (the local emulator): the key is a
    bearer secret that would cross the network in clear text.
    """
    raw = (value or "").strip()
    if not raw:
        raise OmniConfigurationError("Omni base URL is empty; expected e.g. https://acme.omniapp.co")
    if any(char.isspace() for char in raw):
        # httpx would percent-encode a space into the host name and the request would fail as unreachable.
        raise OmniConfigurationError(
            f"Omni base URL {_shown(value)} contains a space; expected e.g. https://acme.omniapp.co"
        )
    if "://" not in raw:
        raw = "https://" + raw
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as exc:
        raise OmniConfigurationError(f"Omni base URL {_shown(value)} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise OmniConfigurationError(f"Omni base URL must use https, got scheme {url.scheme!r}")
    if not url.host:
        raise OmniConfigurationError(f"Omni base URL {_shown(value)} has no host")
    if url.userinfo:
        raise OmniConfigurationError("Omni base URL must not carry credentials; put the key in the password")
    if url.query or url.fragment:
        raise OmniConfigurationError("Omni base URL must not have a query string or fragment")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise OmniConfigurationError(
            f"refusing plain http:// to {url.host}: the API key would travel unencrypted; use https://"
        )
    path = url.path.rstrip("/")
    # Omni's paths are lower case; "/API" must not get a second "/api".
    path = path[:-4] + "/api" if path.lower().endswith("/api") else path + "/api"
    return str(url.copy_with(path=path))


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
