"""``OmniScimClient``: Omni's SCIM user API on one pooled httpx client, paced, retried, typed."""

from __future__ import annotations

import functools
import logging
import math
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
from omni_provider.client.listing import E, FetchPage, walk_listing
from omni_provider.client.pacing import KeyPacer
from omni_provider.client.retry import GiveUp, RetryPolicy, call_with_retries
from omni_provider.client.settings import DEFAULT_SETTINGS, validate_settings
from omni_provider.client.transport import (
    ACCEPTED_ENCODINGS,
    CappedStream,
    RequestDeadline,
    deadline_transport,
    read_capped,
)
from omni_provider.client.urls import normalize_base_url, same_origin
from omni_provider.domain.diff import ChangeSet, ConcurrentChange, compute_changes, judge_write
from omni_provider.domain.identity import (
    email_lookup_spellings,
    emails_match,
    scim_string_literal,
    validate_email,
    validate_user_id,
)
from omni_provider.domain.models import (
    USER_ATTRIBUTES_URN,
    AttributeDefinition,
    AttributeValue,
    OmniUser,
    PatchForm,
    PatchRequest,
    UserListPage,
    attributes_patch,
)
from omni_provider.errors import (
    AmbiguousUserError,
    OmniCancelledError,
    OmniConfigurationError,
    OmniConflictError,
    OmniError,
    OmniListingDriftError,
    OmniNotFoundError,
    OmniRateLimitError,
    OmniRedirectError,
    OmniResponseError,
    OmniTimeoutError,
    OmniTransportError,
    OmniValidationError,
    OmniWrongUserError,
    error_from_response,
)

log = logging.getLogger("omni_provider.client")

USERS_PATH = "/scim/v2/users"
EMBED_USERS_PATH = "/scim/v2/embed/users"
USER_ATTRIBUTES_PATH = "/v1/user-attributes"
MAX_REDIRECTS = 3
#: Full reads of a list whose pages shifted under us (users deleted or created between pages).
MAX_LISTING_READS = 3


def listing_page_count(total: int, page_size: int) -> int:
    """Requests one drift-checked read of a list of ``total`` entries takes: each page after the first
    starts on the last entry already read (see ``listing.walk_listing``), so it brings
    ``page_size - 1`` new ones."""
    if total <= page_size or page_size < 2:
        return max(1, math.ceil(total / max(page_size, 1)))
    return 1 + math.ceil((total - page_size) / (page_size - 1))


_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")
#: Headers describing the wire form of a body, dropped once the client holds the decoded body.
_BODY_ENCODING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass
class ClientStats:
    """What the client sent, for reports and benchmarks. Thread-safe counters."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    #: Listings read again because their pages shifted while they were read.
    listing_rereads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "transport_errors": self.transport_errors,
                "listing_rereads": self.listing_rereads,
                "by_method": dict(self.by_method),
                "by_status": {str(k): v for k, v in self.by_status.items()},
            }


@dataclass(frozen=True)
class UpdateResult:
    """What ``update_user`` did, with the old and new value of each changed field or attribute."""

    user: OmniUser
    action: Literal["updated", "unchanged"]
    changes: ChangeSet
    #: Unsent attributes another writer changed between our read and our write (not errors).
    concurrent_changes: tuple[ConcurrentChange, ...] = ()
    #: The write was judged on a fresh GET after it, not only on the PATCH answer.
    confirmed_by_read: bool = False

    @property
    def changed_keys(self) -> list[str]:
        return list(self.changes.report())


def _header_problem(text: str) -> str | None:
    """What stops ``text`` from going into an HTTP header, and roughly where; never the text itself."""
    for index, ch in enumerate(text):
        if ch.isspace():
            kind = "whitespace"
        elif not ch.isascii():
            kind = "a non-ASCII character"
        elif not ch.isprintable():
            kind = "a control character"
        else:
            continue
        where = ("near the start", "in the middle", "near the end")[3 * index // len(text)]
        return f"{kind} {where}"
    return None


def _secret(value: str | SecretStr, *, number: int, count: int, owner: str) -> SecretStr:
    """The key, checked to fit an ``Authorization`` header: a key that cannot would fail on the first
    request with an encoding error holding the whole header, and be retried as if Omni were down."""
    secret = value if isinstance(value, SecretStr) else SecretStr(str(value))
    text = secret.get_secret_value().strip()  # a pasted key often ends with a newline
    which = f"{owner}: API key" + (f" {number} of {count}" if count > 1 else "")
    if not text:
        raise OmniConfigurationError(f"{which} is empty")
    problem = _header_problem(text)
    if problem is not None:
        raise OmniConfigurationError(
            f"{which} contains {problem}, which an HTTP header cannot carry; "
            "paste the Organization API key again (the key is not shown here)"
        )
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
        timeout: float = DEFAULT_SETTINGS.timeout,
        connect_timeout: float = DEFAULT_SETTINGS.connect_timeout,
        rate_limit_per_minute: float = DEFAULT_SETTINGS.rate_limit_per_minute,
        rate_window_seconds: float = DEFAULT_SETTINGS.rate_window_seconds,
        rate_limit_margin: float = DEFAULT_SETTINGS.rate_limit_margin,
        retry_policy: RetryPolicy | None = None,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        page_size: int = DEFAULT_SETTINGS.page_size,
        max_response_bytes: int = DEFAULT_SETTINGS.max_response_bytes,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        owner: str = "Omni client",
        patch_form: PatchForm = DEFAULT_SETTINGS.patch_form,
    ) -> None:
        """Every setting's default and range is ``ClientSettings``'s (``settings.py``); ``retry_policy``
        defaults to its ``max_retries`` retries. ``timeout``: the longest one request (one attempt) may
        take, connect to last byte; retries aside, every call ends by then with ``OmniTimeoutError``.
        ``max_response_bytes``: the largest answer read (``OmniResponseTooLargeError`` beyond). ``owner``
        names the configuration in errors, e.g. "connection 'omni_default'"."""
        self.base_url = normalize_base_url(base_url)
        self._cancelled = threading.Event()
        # The default wait ends early on ``cancel()``, so a stopping task is not held by a retry back-off.
        sleep = sleep or self._wait
        keys = [api_key] if isinstance(api_key, str | SecretStr) else list(api_key)
        if not keys:
            raise OmniConfigurationError(f"{owner}: at least one Omni API key is needed")
        self._keys = [_secret(k, number=i, count=len(keys), owner=owner) for i, k in enumerate(keys, 1)]
        settings = validate_settings(
            {
                "timeout": timeout,
                "connect_timeout": connect_timeout,
                "rate_limit_per_minute": rate_limit_per_minute,
                "rate_window_seconds": rate_window_seconds,
                "rate_limit_margin": rate_limit_margin,
                "page_size": page_size,
                "max_response_bytes": max_response_bytes,
                "patch_form": patch_form,
            },
            describe={"patch_form": f"{owner}: patch_form"},
        )
        self.page_size = settings.page_size
        self.timeout = settings.timeout
        self.max_response_bytes = settings.max_response_bytes
        #: How attribute changes are written (see ``models.attributes_patch``).
        self.patch_form: PatchForm = settings.patch_form
        self.retry_policy = retry_policy or DEFAULT_SETTINGS.retry_policy()
        self.pacer = KeyPacer(
            len(self._keys),
            settings.rate_limit_per_minute,
            window_seconds=settings.rate_window_seconds,
            margin=settings.rate_limit_margin,
            clock=clock,
            sleep=sleep,
        )
        self.stats = ClientStats()
        self._sleep = sleep
        self._base = httpx.URL(self.base_url)
        self._deadline = RequestDeadline()
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=8)
        tls = _ssl_verify(verify)
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            # httpx follows redirects; ``_check_answer`` refuses any that would take the key elsewhere.
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"response": [self._check_answer]},
            verify=tls,
            transport=transport or deadline_transport(self._deadline, verify=tls, limits=limits),
            headers={
                "User-Agent": f"omni-provider/{__version__}",
                "Accept": "application/json",
                "Accept-Encoding": ", ".join(ACCEPTED_ENCODINGS),
            },
            limits=limits,
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
        self.pacer.cancel()

    def _wait(self, seconds: float) -> None:
        self._cancelled.wait(seconds)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def _url(self, path: str) -> httpx.URL:
        return self._base.copy_with(path=self._base.path.rstrip("/") + path)

    def _api_path(self, url: httpx.URL) -> str:
        """``/scim/v2/users`` for ``https://host/api/scim/v2/users``: the path as our errors name it."""
        prefix = self._base.path.rstrip("/")
        return url.path[len(prefix) :] if url.path.startswith(prefix + "/") else url.path

    def _check_answer(self, response: httpx.Response) -> None:
        """httpx event hook, run on every answer before its body is read and before httpx follows a
        redirect: caps the body, and refuses a redirect to another origin (it would carry the key) or
        one that would turn a write into a GET (httpx does so on 301/302/303, as browsers do)."""
        request = response.request
        method, path = request.method, self._api_path(request.url)
        response.stream = CappedStream(response, self.max_response_bytes, method=method, path=path)
        if not (response.is_redirect and response.has_redirect_location):
            return
        target = request.url.join(response.headers["location"])
        if not same_origin(request.url, target):
            raise OmniRedirectError(
                f"{method} {path}: Omni redirected to {target.scheme}://{target.host}; "
                "not following, since the request carries the API key"
            )
        becomes_get = response.status_code in (302, 303) or (response.status_code == 301 and method == "POST")
        if becomes_get and method not in ("GET", "HEAD"):
            raise OmniRedirectError(
                f"{method} {path}: Omni answered HTTP {response.status_code}, which would turn the "
                f"{method} into a GET; not following"
            )

    def _send(
        self, method: str, path: str, *, params: Mapping[str, Any] | None, body: Any, user: str | None
    ) -> httpx.Response:
        """One attempt: wait for a paced slot, then send and read the answer within ``timeout`` seconds
        and ``max_response_bytes``; same-origin redirects are followed (``_check_answer``)."""
        index = self.pacer.acquire()
        try:
            return self._send_with_key(index, method, path, params=params, body=body, user=user)
        finally:
            self.pacer.release(index)  # the request counts against the key until a window after this

    def _send_with_key(
        self,
        index: int,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        body: Any,
        user: str | None,
    ) -> httpx.Response:
        if self._cancelled.is_set():
            raise OmniCancelledError(f"{method} {path}: not sent, the run is being stopped")
        headers = {"Authorization": "Bearer " + self._keys[index].get_secret_value()}
        with self.stats._lock:
            self.stats.requests += 1
            self.stats.by_method[method] += 1
        try:
            url = self._url(path)
            with (
                self._deadline.until(time.monotonic() + self.timeout),
                self._http.stream(method, url, params=params, json=body, headers=headers) as answer,
            ):
                limit = self.max_response_bytes
                content = read_capped(answer, limit, self._deadline, method=method, path=path)
        except httpx.TimeoutException as exc:
            self._count_transport_error()
            raise OmniTimeoutError(method, path, exc, seconds=self.timeout, user=user) from None
        except httpx.TransportError as exc:
            self._count_transport_error()
            raise OmniTransportError(method, path, exc, user=user) from None
        except httpx.TooManyRedirects:
            raise OmniRedirectError(f"{method} {path}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.DecodingError:  # e.g. a body that claims gzip but is not: a bad body like others
            raise OmniResponseError(f"{method} {path}: Omni's answer could not be decoded") from None
        # The body is decoded already, so the headers that described its encoding no longer apply.
        kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in _BODY_ENCODING_HEADERS]
        response = httpx.Response(answer.status_code, headers=kept, content=content, request=answer.request)
        with self.stats._lock:
            self.stats.by_status[response.status_code] += 1
        log.debug("Omni %s %s -> %d (key #%d)", method, path, response.status_code, index + 1)
        if response.status_code >= 400:
            secrets = [k.get_secret_value() for k in self._keys]
            error = error_from_response(response, method=method, path=path, user=user, secrets=secrets)
            if isinstance(error, OmniRateLimitError):
                with self.stats._lock:
                    self.stats.rate_limited += 1
                # The key rests until its window frees (Retry-After, else one window); others carry on.
                self.pacer.rest(index, error.retry_after)
            raise error
        return response

    def _count_transport_error(self) -> None:
        with self.stats._lock:
            self.stats.transport_errors += 1

    def _count_retry(self, _exc: BaseException | None) -> None:
        with self.stats._lock:
            self.stats.retries += 1

    def _retrying_call(
        self, method: str, path: str, attempt: Callable[[bool], _T], *, repeat_is_harmless: bool | None = None
    ) -> _T:
        return call_with_retries(
            self.retry_policy,
            method,
            path,
            attempt,
            sleep=self._sleep,
            on_retry=self._count_retry,
            repeat_is_harmless=repeat_is_harmless,
        )

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
        """Send with retries (when ``retry``); ``OmniTransportError`` (``OmniTimeoutError`` for a timeout)
        when no complete answer ever came."""

        def attempt(_retried: bool) -> httpx.Response:
            return self._send(method, path, params=params, body=body, user=user)

        if not retry:
            return attempt(False)
        return self._retrying_call(method, path, attempt)

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

    def _read_listing(
        self, fetch: FetchPage[E], page_size: int | None, what: str, *, kind: str = "user"
    ) -> list[E]:
        """A whole 1-based SCIM list (users, or groups with ``kind="group"``), read again (bounded) when its
        pages shifted while it was read.

        Offset paging skips an entry when one before the read position is deleted between two pages (and
        repeats one when an entry is inserted there). That entry would then look absent: "no Omni user", a
        create into a 409, or, in a mirror run, nothing. So a shifted listing is never used.
        """
        for attempt in range(1, MAX_LISTING_READS + 1):
            entries, drift = self._walk_listing(fetch, page_size, kind=kind)
            if drift is None:
                if attempt > 1:
                    log.warning("Omni's %s read consistently on attempt %d", what, attempt)
                return entries
            again = attempt < MAX_LISTING_READS
            log.warning(
                "Omni's %s shifted while it was read (%s): %ss were deleted or created between pages; "
                "%s (read %d of %d)",
                what,
                drift,
                kind,
                "reading it again" if again else "giving up",
                attempt,
                MAX_LISTING_READS,
            )
            if again:
                with self.stats._lock:
                    self.stats.listing_rereads += 1
        raise OmniListingDriftError(
            f"Omni's {what} kept shifting while it was read ({MAX_LISTING_READS} attempts): {kind}s are "
            "being deleted or created right now. Nothing was written; run again when that has settled"
        )

    def _walk_listing(
        self, fetch: FetchPage[E], page_size: int | None, *, kind: str = "user"
    ) -> tuple[list[E], str | None]:
        """One drift-checked read of a list (see ``listing.walk_listing``); with several keys the pages
        after the first are read concurrently, one thread per key."""
        return walk_listing(fetch, page_size or self.page_size, parallel=self.key_count, kind=kind)

    def iter_users(self, *, page_size: int | None = None) -> Iterator[OmniUser]:
        """Every standard user; the list is read whole first, so a shifted listing can be read again."""
        return iter(self.list_users(page_size=page_size))

    def list_users(self, *, page_size: int | None = None) -> list[OmniUser]:
        """Every standard user, page by page (about ceil(N / page) requests), never a shifted listing."""
        return self._read_listing(lambda s, c: self.list_users_page(s, c), page_size, "user list")

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
            listed = self._read_listing(
                functools.partial(self.list_users_page, filter=flt), None, "filtered list"
            )
            for u in listed:
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
        A 409 after such a retry means our earlier attempt won; we return that user. A 409 on the first
        attempt raises ``OmniConflictError``. Retries follow the client's one policy (``client/retry.py``).
        """
        user_name = validate_email(user_name)
        if not display_name or not display_name.strip():
            raise OmniValidationError("a display name is required to create a user", user=user_name)
        body: dict[str, Any] = {"userName": user_name, "displayName": display_name}
        if attributes:
            body[USER_ATTRIBUTES_URN] = dict(attributes)

        def look_up() -> OmniUser | None:
            try:
                return self.find_user_by_email(user_name)
            except OmniError as exc:  # already retried on its own: retrying around it would multiply
                raise GiveUp(exc) from None

        def attempt(retried: bool) -> OmniUser:
            # Hook of the retry engine: an earlier POST may have created the user although its answer
            # was lost, so look before sending again; a POST is never repeated blindly.
            existing = look_up() if retried else None
            if existing is not None:
                return existing
            try:
                response = self._send("POST", USERS_PATH, params=None, body=body, user=user_name)
            except OmniConflictError:
                # A 409 on a first attempt is the caller's business; after a retry, it means our earlier
                # attempt won the race with the look-up.
                existing = look_up() if retried else None
                if existing is None:
                    raise
                return existing
            try:
                created = self._parse(OmniUser, self._json(response, "POST", USERS_PATH), "POST", USERS_PATH)
            except OmniResponseError:
                # A 2xx means the user was created even if the body is unreadable: fetch it rather than
                # leave the caller to POST again into a 409.
                existing = look_up()
                if existing is None:
                    raise
                return existing
            if not emails_match(created.user_name, user_name):
                raise GiveUp(
                    OmniWrongUserError(
                        user=user_name,
                        field="userName",
                        old=user_name,
                        new=created.user_name,
                        problem="Omni's answer to the create names another user",
                        hint="compare the user in Omni's UI with the sync report",
                    )
                )
            return created

        # The look-up before each resend makes repeating the POST harmless, 500 included.
        return self._retrying_call("POST", USERS_PATH, attempt, repeat_is_harmless=True)

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

        def attempt(retried: bool) -> None:
            try:
                self._send("DELETE", path, params=None, body=None, user=user_id)
            except OmniNotFoundError:
                # Hook of the retry engine: after an attempt whose answer was lost, a 404 means it worked.
                if not retried:
                    raise

        self._retrying_call("DELETE", path, attempt)

    def update_user(
        self,
        user: str | OmniUser,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        display_name: str | None = None,
        active: bool | None = None,
        definitions: Mapping[str, AttributeDefinition] | None = None,
        confirm_with_read: bool | None = None,
        base_is_stale: bool = False,
    ) -> UpdateResult:
        """Change exactly the given fields and attribute keys; leave everything else as it was.

        HTTP calls, and why:
        1. ``GET /scim/v2/users/{id}`` (skipped when ``user`` is an ``OmniUser`` that carries its attribute
           map, e.g. from a listing): the current values, to send nothing when nothing would change and
           to report old -> new.
        2. ``PATCH /scim/v2/users/{id}`` with only the changed keys, in the client's ``patch_form``
           (per-attribute path ops, or one no-path replace of the map). Never PUT: Omni's PUT has replaced
           the whole user in some versions of its docs and merged in others.
        3. ``GET /scim/v2/users/{id}`` again when ``confirm_with_read`` is true, or (``None``, the default)
           when the PATCH answer left out the attribute map: the write is then judged on a fresh read.
        The write is judged on what it sent (``diff.judge_write``): a value other than sent, an unsent
        attribute gone or reset, or an unsent user field changed raises ``OmniWriteSemanticsError``; an
        unsent attribute another writer changed meanwhile is returned in ``concurrent_changes``.
        ``base_is_stale``: ``user`` is what an earlier sync left, not a read of Omni; only what is sent is
        judged, and unsent differences come back as ``concurrent_changes`` (see ``judge_write``).
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
        patch = attributes_patch(
            changes.new_attributes(),
            display_name=changes.display_name[1] if changes.display_name else None,
            active=changes.active[1] if changes.active else None,
            form=self.patch_form,
        )
        try:
            answer: OmniUser | None = self.patch_user(current.id, patch, user=who)
        except OmniResponseError as exc:
            # A 2xx whose body cannot be read: the write most likely landed. Judge it on a fresh read
            # rather than fail (for good) a write that landed.
            log.warning("User %s: %s; checking the write on a fresh read", who, exc)
            answer = None
        updated = answer if answer is not None else current
        concurrent: tuple[ConcurrentChange, ...] = ()
        if answer is not None:
            concurrent = self._check_after_update(current, answer, changes, definitions, base_is_stale)
        read_back = (
            answer is None
            or bool(confirm_with_read)
            or (confirm_with_read is None and not answer.attributes_present)
        )
        if read_back:
            updated = self.get_user(current.id)
            concurrent = self._check_after_update(current, updated, changes, definitions, base_is_stale)
        return UpdateResult(
            user=updated,
            action="updated",
            changes=changes,
            concurrent_changes=concurrent,
            confirmed_by_read=read_back,
        )

    def _check_after_update(
        self,
        before: OmniUser,
        after: OmniUser,
        changes: ChangeSet,
        definitions: Mapping[str, AttributeDefinition] | None,
        stale_base: bool = False,
    ) -> tuple[ConcurrentChange, ...]:
        return judge_write(
            before, after, changes, definitions=definitions, form=self.patch_form, stale_base=stale_base
        )

    # -- embed users and attribute definitions ------------------------------------------------------------

    def list_embed_users_page(self, start_index: int = 1, count: int | None = None) -> UserListPage:
        params = {"startIndex": max(1, start_index), "count": count or self.page_size}
        response = self.request("GET", EMBED_USERS_PATH, params=params)
        return self._parse(
            UserListPage, self._json(response, "GET", EMBED_USERS_PATH), "GET", EMBED_USERS_PATH
        )

    def iter_embed_users(self, *, page_size: int | None = None) -> Iterator[OmniUser]:
        return iter(
            self._read_listing(lambda s, c: self.list_embed_users_page(s, c), page_size, "embed list")
        )

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
