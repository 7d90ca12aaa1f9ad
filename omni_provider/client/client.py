"""``OmniScimClient``: Omni's SCIM user API on one pooled httpx client, paced, retried, typed."""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from omni_provider import __version__
from omni_provider.client.diff import ChangeSet, compute_changes
from omni_provider.client.errors import (
    AmbiguousUserError,
    OmniApiError,
    OmniCancelledError,
    OmniConfigurationError,
    OmniConflictError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniRedirectError,
    OmniResponseError,
    OmniTransportError,
    OmniUnexpectedStateError,
    OmniValidationError,
    error_from_response,
)
from omni_provider.client.identity import (
    email_lookup_spellings,
    emails_match,
    scim_string_literal,
    validate_email,
    validate_user_id,
)
from omni_provider.client.models import (
    USER_ATTRIBUTES_URN,
    AttributeDefinition,
    AttributeValue,
    OmniUser,
    PatchRequest,
    UserListPage,
    attributes_patch,
)
from omni_provider.client.pacing import KeyPacer
from omni_provider.client.retry import RetryPolicy, is_retryable, make_retrying
from omni_provider.client.urls import normalize_base_url, same_origin
from omni_provider.client.values import values_equal

log = logging.getLogger("omni_provider.client")

USERS_PATH = "/scim/v2/users"
EMBED_USERS_PATH = "/scim/v2/embed/users"
USER_ATTRIBUTES_PATH = "/v1/user-attributes"
DEFAULT_PAGE_SIZE = 100
MAX_REDIRECTS = 3
#: Stops a paging loop against a server that never reports the end.
MAX_PAGES = 100_000

_M = TypeVar("_M", bound=BaseModel)


@dataclass
class ClientStats:
    """What the client sent, for reports and benchmarks. Thread-safe counters."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "transport_errors": self.transport_errors,
                "by_method": dict(self.by_method),
                "by_status": {str(k): v for k, v in self.by_status.items()},
            }


@dataclass(frozen=True)
class UpdateResult:
    """What ``update_user`` did, with the old and new value of each changed field or attribute."""

    user: OmniUser
    action: Literal["updated", "unchanged"]
    changes: ChangeSet

    @property
    def changed_keys(self) -> list[str]:
        return list(self.changes.report())


def _secret(value: str | SecretStr) -> SecretStr:
    secret = value if isinstance(value, SecretStr) else SecretStr(str(value))
    text = secret.get_secret_value().strip()
    if not text:
        raise OmniConfigurationError("the Omni API key is empty")
    if any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise OmniConfigurationError("the Omni API key contains whitespace or control characters")
    return SecretStr(text)


def _ssl_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)  # a CA bundle path
    return verify


class OmniScimClient:
    """Omni's SCIM user API.

    One pooled ``httpx.Client`` with explicit timeouts; requests paced per API key (several keys spread the
    load); transient failures retried with tenacity; every error typed (see ``errors``). Never prints, logs
    or ``repr``s the key. Thread-safe: the sync engine calls it from worker threads.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr | Sequence[str | SecretStr],
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        rate_limit_per_minute: float = 60.0,
        rate_window_seconds: float = 60.0,
        retry_policy: RetryPolicy | None = None,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._cancelled = threading.Event()
        # The default wait ends early on ``cancel()``, so a stopping task is not held by a retry back-off.
        sleep = sleep or self._wait
        keys = [api_key] if isinstance(api_key, str | SecretStr) else list(api_key)
        if not keys:
            raise OmniConfigurationError("at least one Omni API key is needed")
        self._keys = [_secret(k) for k in keys]
        if timeout <= 0 or connect_timeout <= 0:
            raise OmniConfigurationError("timeouts must be positive")
        if not 1 <= page_size <= 1000:
            raise OmniConfigurationError("page_size must be between 1 and 1000")
        self.page_size = page_size
        self.retry_policy = retry_policy or RetryPolicy()
        self.pacer = KeyPacer(
            len(self._keys),
            rate_limit_per_minute,
            window_seconds=rate_window_seconds,
            clock=clock,
            sleep=sleep,
        )
        self.stats = ClientStats()
        self._sleep = sleep
        self._base = httpx.URL(self.base_url)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # Redirects are handled in ``_send`` so the key can never follow one to another host.
            follow_redirects=False,
            verify=_ssl_verify(verify),
            transport=transport,
            headers={"User-Agent": f"omni-provider/{__version__}", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    # -- plumbing -----------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"OmniScimClient(base_url={self.base_url!r}, keys={len(self._keys)})"

    def __enter__(self) -> OmniScimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def cancel(self) -> None:
        """Stop for good (the task is being killed): waits for a slot or a retry end at once, and no
        further request is sent (each raises ``OmniCancelledError``); a request on the wire finishes."""
        self._cancelled.set()

    def _wait(self, seconds: float) -> None:
        self._cancelled.wait(seconds)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def _url(self, path: str) -> httpx.URL:
        return self._base.copy_with(path=self._base.path.rstrip("/") + path)

    def _send(
        self, method: str, path: str, *, params: Mapping[str, Any] | None, body: Any, user: str | None
    ) -> httpx.Response:
        """One attempt: wait for a paced slot, send, follow same-origin redirects only, type the error."""
        index = self.pacer.acquire()
        if self._cancelled.is_set():
            raise OmniCancelledError(f"{method} {path}: not sent, the run is being stopped")
        headers = {"Authorization": "Bearer " + self._keys[index].get_secret_value()}
        url = self._url(path)
        with self.stats._lock:
            self.stats.requests += 1
            self.stats.by_method[method] += 1
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                response = self._http.request(method, url, params=params, json=body, headers=headers)
            except httpx.TransportError:
                with self.stats._lock:
                    self.stats.transport_errors += 1
                raise
            except httpx.DecodingError:  # e.g. a body that claims gzip but is not: a bad body like others
                raise OmniResponseError(f"{method} {path}: Omni's answer could not be decoded") from None
            if response.is_redirect and response.has_redirect_location:
                target = url.join(response.headers["location"])
                response.close()
                if not same_origin(url, target):
                    raise OmniRedirectError(
                        f"{method} {path}: Omni redirected to {target.scheme}://{target.host}; "
                        "not following, since the request carries the API key"
                    )
                url, params = target, None
                continue
            break
        else:
            raise OmniRedirectError(f"{method} {path}: more than {MAX_REDIRECTS} redirects")
        with self.stats._lock:
            self.stats.by_status[response.status_code] += 1
        log.debug("Omni %s %s -> %d (key #%d)", method, path, response.status_code, index + 1)
        if response.status_code >= 400:
            secrets = [k.get_secret_value() for k in self._keys]
            error = error_from_response(response, method=method, path=path, user=user, secrets=secrets)
            if isinstance(error, OmniRateLimitError):
                with self.stats._lock:
                    self.stats.rate_limited += 1
                # Without Retry-After, rest this key for a few slots; the others carry on meanwhile.
                self.pacer.penalize(index, error.retry_after or 4 * self.pacer.interval)
            raise error
        return response

    def _count_retry(self, _exc: BaseException | None) -> None:
        with self.stats._lock:
            self.stats.retries += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        user: str | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send with retries (when ``retry``); raise ``OmniTransportError`` when no answer ever came."""
        try:
            if not retry:
                return self._send(method, path, params=params, body=body, user=user)
            retrying = make_retrying(
                self.retry_policy, method, path, sleep=self._sleep, on_retry=self._count_retry
            )
            return retrying(self._send, method, path, params=params, body=body, user=user)
        except httpx.TransportError as exc:
            raise OmniTransportError(method, path, exc, user=user) from None

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise OmniResponseError(
                f"{method} {path}: HTTP {response.status_code} with a body that is not valid JSON "
                f"({len(response.content)} bytes)"
            ) from None

    def _parse(self, model: type[_M], data: Any, method: str, path: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # Field locations only: the input values are other people's data.
            where = sorted({".".join(str(p) for p in e["loc"]) or "<body>" for e in exc.errors()})
            raise OmniResponseError(
                f"{method} {path}: Omni's answer lacks or mistypes field(s) {', '.join(where[:5])}"
            ) from None

    # -- users --------------------------------------------------------------------------------------------

    def list_users_page(
        self, start_index: int = 1, count: int | None = None, *, filter: str | None = None
    ) -> UserListPage:
        params: dict[str, Any] = {"startIndex": max(1, start_index), "count": count or self.page_size}
        if filter is not None:
            params["filter"] = filter
        response = self.request("GET", USERS_PATH, params=params)
        return self._parse(UserListPage, self._json(response, "GET", USERS_PATH), "GET", USERS_PATH)

    def _iter_pages(
        self, fetch: Callable[[int, int], UserListPage], page_size: int | None
    ) -> Iterator[OmniUser]:
        """Walk a 1-based SCIM list to ``totalResults``, advancing by what each page really held.

        The server may clamp ``count``: stopping on "fewer than asked for" would then end after one page.
        """
        count = page_size or self.page_size
        start = 1
        for _page in range(MAX_PAGES):
            page = fetch(start, count)
            yield from page.resources
            got = len(page.resources)
            start += got
            if got == 0 or start > page.total_results:
                return
        raise OmniResponseError(f"paging did not end after {MAX_PAGES} pages")

    def iter_users(self, *, page_size: int | None = None) -> Iterator[OmniUser]:
        """Every standard user, page by page (ceil(N / page) requests)."""
        return self._iter_pages(lambda s, c: self.list_users_page(s, c), page_size)

    def list_users(self, *, page_size: int | None = None) -> list[OmniUser]:
        return list(self.iter_users(page_size=page_size))

    def get_user(self, user_id: str) -> OmniUser:
        user_id = validate_user_id(user_id)
        path = f"{USERS_PATH}/{quote(user_id, safe='')}"
        response = self.request("GET", path, user=user_id)
        return self._parse(OmniUser, self._json(response, "GET", path), "GET", path)

    def find_user_by_email(self, email: str) -> OmniUser | None:
        """The user whose ``userName`` equals ``email`` case-insensitively; None when there is none.

        The server filter is re-checked here so a lenient server match can never pick the wrong user, and
        several matches raise ``AmbiguousUserError`` rather than choose one.
        """
        email = validate_email(email)
        # Each Unicode spelling of a non-ASCII email is asked for (one request each), since the server's
        # filter may compare code points; the re-check below uses the one identity rule.
        found: dict[str, OmniUser] = {}
        for spelling in email_lookup_spellings(email):
            flt = f"userName eq {scim_string_literal(spelling)}"
            for u in self._iter_pages(functools.partial(self.list_users_page, filter=flt), None):
                if emails_match(u.user_name, email):
                    found.setdefault(u.id, u)
        matches = list(found.values())
        if len(matches) > 1:
            raise AmbiguousUserError(email, len(matches))
        return matches[0] if matches else None

    def create_user(
        self,
        user_name: str,
        display_name: str,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> OmniUser:
        """POST a new user, never twice.

        A POST is not idempotent, so it is not retried blindly: after a failure that may have created the
        user (no answer, 5xx, 429), we look the email up first and only POST again if it is still absent.
        A 409 after such a retry means our earlier attempt won; we return that user.
        """
        user_name = validate_email(user_name)
        if not display_name or not display_name.strip():
            raise OmniValidationError("a display name is required to create a user", user=user_name)
        body: dict[str, Any] = {"userName": user_name, "displayName": display_name}
        if attributes:
            body[USER_ATTRIBUTES_URN] = dict(attributes)
        policy = self.retry_policy
        uncertain = False
        last: BaseException | None = None
        for attempt in range(1, policy.max_attempts + 1):
            if uncertain:
                existing = self.find_user_by_email(user_name)
                if existing is not None:
                    return existing
            try:
                response = self.request("POST", USERS_PATH, body=body, user=user_name, retry=False)
            except OmniConflictError:
                if uncertain:
                    existing = self.find_user_by_email(user_name)
                    if existing is not None:
                        return existing
                raise
            except (OmniTransportError, OmniApiError) as exc:
                # The look-up before each resend makes repeating the POST harmless.
                retryable = is_retryable(exc, "POST", repeat_is_harmless=True)
                if not retryable or attempt == policy.max_attempts:
                    raise
                last = exc
                uncertain = True
                with self.stats._lock:
                    self.stats.retries += 1
                wait = min(policy.backoff_max, policy.backoff_initial * 2 ** (attempt - 1))
                if isinstance(exc, OmniApiError) and exc.retry_after is not None:
                    wait = min(policy.max_retry_after, max(wait, exc.retry_after))
                log.warning("Omni POST %s failed (%s); checking before retry in %.1fs", USERS_PATH, exc, wait)
                self._sleep(wait)
                continue
            try:
                return self._parse(OmniUser, self._json(response, "POST", USERS_PATH), "POST", USERS_PATH)
            except OmniResponseError:
                # A 2xx means the user was created even if the body is unreadable: fetch it rather than
                # leave the caller to POST again into a 409.
                existing = self.find_user_by_email(user_name)
                if existing is None:
                    raise
                return existing
        raise AssertionError("unreachable") from last

    def replace_user(self, user_id: str, body: Mapping[str, Any]) -> OmniUser:
        """Raw PUT. Omni's docs disagree on whether it merges or replaces the whole user (omni-api.md
        section 4), so under the current docs any field left out is reset. Prefer ``update_user``."""
        user_id = validate_user_id(user_id)
        path = f"{USERS_PATH}/{quote(user_id, safe='')}"
        response = self.request("PUT", path, body=dict(body), user=user_id)
        return self._parse(OmniUser, self._json(response, "PUT", path), "PUT", path)

    def patch_user(self, user_id: str, patch: PatchRequest, *, user: str | None = None) -> OmniUser:
        """PATCH with a SCIM PatchOp. Retried: our replace operations set absolute values (idempotent)."""
        user_id = validate_user_id(user_id)
        path = f"{USERS_PATH}/{quote(user_id, safe='')}"
        response = self.request("PATCH", path, body=patch.to_scim(), user=user or user_id)
        return self._parse(OmniUser, self._json(response, "PATCH", path), "PATCH", path)

    def delete_user(self, user_id: str) -> None:
        """DELETE; a 404 on a retry means an earlier attempt already deleted the user."""
        user_id = validate_user_id(user_id)
        path = f"{USERS_PATH}/{quote(user_id, safe='')}"
        retried = False

        def once() -> None:
            nonlocal retried
            try:
                self._send("DELETE", path, params=None, body=None, user=user_id)
            except OmniNotFoundError:
                if not retried:
                    raise
            finally:
                retried = True

        try:
            make_retrying(self.retry_policy, "DELETE", path, sleep=self._sleep, on_retry=self._count_retry)(
                once
            )
        except httpx.TransportError as exc:
            raise OmniTransportError("DELETE", path, exc, user=user_id) from None

    def update_user(
        self,
        user: str | OmniUser,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        display_name: str | None = None,
        active: bool | None = None,
        definitions: Mapping[str, AttributeDefinition] | None = None,
    ) -> UpdateResult:
        """Change exactly the given fields and attribute keys; leave everything else as it was.

        HTTP calls, and why:
        1. ``GET /scim/v2/users/{id}`` (skipped when ``user`` is an ``OmniUser`` that carries its attribute
           map, e.g. from a listing): the current values, to send nothing when nothing would change and
           to report old -> new.
        2. ``PATCH /scim/v2/users/{id}`` with one no-path ``replace`` op holding only the changed keys
           (``None`` unsets a key). Never PUT: Omni's PUT has replaced the whole user in some versions of
           its docs and merged in others, and a replace would reset every field and attribute we did
           not send. PATCH is partial in both.
        The PATCH answer is then checked: if Omni reports a changed key with another value, or an untouched
        key changed, ``OmniUnexpectedStateError`` says so instead of reporting success.
        """
        if isinstance(user, OmniUser) and user.attributes_present:
            current = user
        else:
            current = self.get_user(user.id if isinstance(user, OmniUser) else user)
        who = current.user_name or current.id
        changes = compute_changes(
            current, attributes=attributes, display_name=display_name, active=active, definitions=definitions
        )
        if not changes:
            return UpdateResult(user=current, action="unchanged", changes=changes)
        sent = changes.new_attributes()
        patch = attributes_patch(
            sent,
            display_name=changes.display_name[1] if changes.display_name else None,
            active=changes.active[1] if changes.active else None,
        )
        updated = self.patch_user(current.id, patch, user=who)
        self._check_after_update(current, updated, sent, definitions)
        return UpdateResult(user=updated, action="updated", changes=changes)

    @staticmethod
    def _check_after_update(
        before: OmniUser,
        after: OmniUser,
        sent: Mapping[str, AttributeValue],
        definitions: Mapping[str, AttributeDefinition] | None,
    ) -> None:
        if not after.attributes_present:
            return  # Omni's PATCH example omits the map; nothing to check against
        wrong = [
            k
            for k, v in sent.items()
            if not values_equal(after.attributes.get(k), v, definitions.get(k) if definitions else None)
        ]
        lost = [
            k
            for k, v in before.attributes.items()
            if k not in sent
            and not values_equal(after.attributes.get(k), v, definitions.get(k) if definitions else None)
        ]
        if wrong or lost:
            raise OmniUnexpectedStateError(
                f"user {after.user_name}: after PATCH Omni reports "
                + "; ".join(
                    part
                    for part in (
                        f"other values than sent for {sorted(wrong)}" if wrong else "",
                        f"changed attributes we did not touch: {sorted(lost)}" if lost else "",
                    )
                    if part
                )
            )

    # -- embed users and attribute definitions ------------------------------------------------------------

    def list_embed_users_page(self, start_index: int = 1, count: int | None = None) -> UserListPage:
        params = {"startIndex": max(1, start_index), "count": count or self.page_size}
        response = self.request("GET", EMBED_USERS_PATH, params=params)
        return self._parse(
            UserListPage, self._json(response, "GET", EMBED_USERS_PATH), "GET", EMBED_USERS_PATH
        )

    def iter_embed_users(self, *, page_size: int | None = None) -> Iterator[OmniUser]:
        return self._iter_pages(lambda s, c: self.list_embed_users_page(s, c), page_size)

    def get_embed_user(self, user_id: str) -> OmniUser:
        user_id = validate_user_id(user_id)
        path = f"{EMBED_USERS_PATH}/{quote(user_id, safe='')}"
        response = self.request("GET", path, user=user_id)
        return self._parse(OmniUser, self._json(response, "GET", path), "GET", path)

    def list_attribute_definitions(self) -> list[AttributeDefinition]:
        """``GET /api/v1/user-attributes``: every definition, system ones included."""
        response = self.request("GET", USER_ATTRIBUTES_PATH)
        data = self._json(response, "GET", USER_ATTRIBUTES_PATH)
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise OmniResponseError(f"GET {USER_ATTRIBUTES_PATH}: answer has no 'records' list")
        return [self._parse(AttributeDefinition, r, "GET", USER_ATTRIBUTES_PATH) for r in records]

    def attribute_definitions_by_name(self) -> dict[str, AttributeDefinition]:
        return {d.name: d for d in self.list_attribute_definitions()}
