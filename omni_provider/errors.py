"""Every error omni-provider raises, in one hierarchy: the client's (HTTP, validation, Omni's answers) and
the sync engine's (guards, halted or failed runs), and the one rule of which errors a later run may cure
(``rerun_may_help``), which the orchestrator adapters map to retry or fail.

Every error carries what a person needs to act (HTTP status, Omni's own message, the user involved) and
nothing that must not leak: never the API key, never a whole response body (a SCIM body holds other
people's emails and attributes).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterable
from typing import Any

import httpx

#: Longest slice of Omni's message we repeat; longer text is cut, since it may echo request data.
MAX_MESSAGE_CHARS = 300


class OmniError(Exception):
    """Base of every error raised by omni_provider."""


class OmniConfigurationError(OmniError, ValueError):
    """The client was configured wrongly (bad URL, insecure transport, no key)."""


class OmniValidationError(OmniError, ValueError):
    """Input refused before any request was sent."""

    def __init__(self, message: str, *, user: str | None = None, attribute: str | None = None) -> None:
        self.user = user
        self.attribute = attribute
        prefix = []
        if user:
            prefix.append(f"user {user}")
        if attribute:
            prefix.append(f"attribute {attribute!r}")
        super().__init__(f"{', '.join(prefix)}: {message}" if prefix else message)
        self.reason = message


class AttributeValueError(OmniValidationError):
    """An attribute value cannot be sent to Omni (wrong type, not finite, nested, too long...)."""


class InvalidAttributesError(OmniValidationError):
    """Several attribute problems found at once; ``problems`` lists each as ``(attribute, reason)``."""

    def __init__(
        self, problems: list[tuple[str, str]] | tuple[tuple[str, str], ...], *, user: str | None = None
    ) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        listed = "; ".join(f"{name}: {reason}" for name, reason in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} invalid attribute{'s' if count != 1 else ''}: {listed}", user=user)


class AmbiguousUserError(OmniError):
    """More than one Omni user matches an email case-insensitively."""

    def __init__(self, email: str, count: int) -> None:
        self.user = email
        self.count = count
        super().__init__(f"{count} Omni users match email {email!r} (case-insensitively); refusing to guess")


class UserNotFoundError(OmniError, LookupError):
    """No Omni user matches the given id or email."""

    def __init__(self, user: str) -> None:
        self.user = user
        super().__init__(f"no Omni user matches {user!r}")


def tls_verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under a transport error (httpx wraps it twice), if that is why."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen):
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


class OmniTransportError(OmniError):
    """The request never got an HTTP answer (connection refused, reset, timed out) after retries."""

    def __init__(self, method: str, path: str, cause: BaseException, *, user: str | None = None) -> None:
        self.method = method
        self.path = path
        self.user = user
        self.cause_type = type(cause).__name__
        about = f" (user {user})" if user else ""
        tls = tls_verification_error(cause)
        #: The server's TLS certificate was not trusted (a retry cannot help; a CA bundle may).
        self.tls_verification_failed = tls is not None
        if tls is not None:
            self.tls_detail = str(tls.verify_message or tls.reason or "certificate verify failed")
            super().__init__(
                f"{method} {path}{about}: TLS certificate verification failed ({self.tls_detail}); "
                "nothing was sent. If Omni's certificate comes from a private CA, give its CA bundle "
                "(connection extra 'ca_bundle')"
            )
            return
        super().__init__(f"{method} {path}{about}: no answer from Omni: {self.cause_type}")


class OmniTimeoutError(OmniTransportError):
    """No complete answer within the request deadline (a connect, a read, or the whole exchange took too
    long). Retryable like any transport error; told apart so callers can report a slow Omni as such."""

    def __init__(
        self, method: str, path: str, cause: BaseException, *, seconds: float, user: str | None = None
    ) -> None:
        super().__init__(method, path, cause, user=user)
        self.seconds = seconds
        about = f" (user {user})" if user else ""
        self.args = (
            f"{method} {path}{about}: no complete answer from Omni within {seconds:g} s ({self.cause_type})",
        )


class OmniCancelledError(OmniError):
    """The client was cancelled (its task is being stopped), so this request was not sent."""


class OmniResponseError(OmniError):
    """Omni answered 2xx but the body is not what the API documents (not JSON, truncated, fields missing)."""


class OmniResponseTooLargeError(OmniResponseError):
    """Omni's answer is larger than the client accepts (``max_response_bytes``); reading stopped there."""

    def __init__(self, method: str, path: str, limit: int) -> None:
        self.method = method
        self.path = path
        self.limit = limit
        super().__init__(
            f"{method} {path}: Omni's answer is larger than {limit:,} bytes; stopped reading it "
            "(raise the connection extra 'max_response_bytes' if such answers are expected)"
        )


class OmniUnexpectedStateError(OmniError):
    """After a write, Omni reports values other than the ones we sent or kept (checked on every update)."""


class OmniWriteSemanticsError(OmniUnexpectedStateError):
    """A write changed something it did not ask for, or did not set what it sent: Omni applies the write
    differently than this client assumes. Never retryable: repeating the write repeats the damage.

    Carries the user, the field or attribute, the value before the write, the value after it and a hint of
    what to check, so one message says what happened and where to look.
    """

    def __init__(
        self,
        *,
        user: str,
        field: str,
        old: object,
        new: object,
        problem: str,
        hint: str,
        more: int = 0,
    ) -> None:
        self._set_fields(user=user, field=field, old=old, new=new, problem=problem, hint=hint)
        others = f" (and {more} more field{'s' if more != 1 else ''})" if more else ""
        super().__init__(
            f"user {user}: {problem}: {field!r} was {_shown_value(old)}, Omni now reports "
            f"{_shown_value(new)}{others}. What to check: {hint}"
        )

    def _set_fields(
        self, *, user: str, field: str, old: object, new: object, problem: str, hint: str
    ) -> None:
        self.user = user
        self.field = field
        self.old = old
        self.new = new
        self.problem = problem
        self.hint = hint


class OmniWrongUserError(OmniWriteSemanticsError):
    """A write's answer (or the read before it) names another user than the one the write was meant for:
    the state it was based on (a snapshot restored from a backup, an Omni re-created at the same URL)
    pairs this id with another user. Never retryable; it stops the sync."""


def _shown_value(value: object) -> str:
    """A value for an error message: short, and ``absent`` rather than ``None``."""
    if value is None:
        return "absent"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


class OmniListingDriftError(OmniError):
    """Omni's user or group list kept shifting while it was read page by page (entries deleted or created
    between pages), so no complete listing could be had. Nothing was written; a retry reads it again."""


class OmniRedirectError(OmniError):
    """Omni answered with a redirect we refuse to follow (it would carry the key elsewhere)."""


class OmniApiError(OmniError):
    """Omni answered with an HTTP error status."""

    status_code: int = 0
    hint: str = ""

    def __init__(
        self,
        status_code: int,
        omni_message: str,
        *,
        method: str = "",
        path: str = "",
        user: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.omni_message = omni_message
        self.method = method
        self.path = path
        self.user = user
        self.retry_after = retry_after
        where = f"{method} {path}".strip()
        about = f" (user {user})" if user else ""
        text = f"{where}{about}: HTTP {status_code}"
        if omni_message:
            text += f": {omni_message}"
        if self.hint:
            text += f". {self.hint}"
        super().__init__(text)


class OmniBadRequestError(OmniApiError):
    status_code = 400


class OmniAuthenticationError(OmniApiError):
    status_code = 401
    hint = (
        "Omni's SCIM API needs an Organization API key (Settings > API access); "
        "personal access tokens are refused"
    )


class OmniPermissionError(OmniApiError):
    status_code = 403
    hint = "The key is valid but not allowed to do this; SCIM needs an Organization API key"


class OmniNotFoundError(OmniApiError):
    status_code = 404


class OmniConflictError(OmniApiError):
    status_code = 409


class OmniRateLimitError(OmniApiError):
    status_code = 429


class OmniServerError(OmniApiError):
    """Any 5xx answer."""


_BY_STATUS: dict[int, type[OmniApiError]] = {
    400: OmniBadRequestError,
    401: OmniAuthenticationError,
    403: OmniPermissionError,
    404: OmniNotFoundError,
    409: OmniConflictError,
    429: OmniRateLimitError,
}


def error_class_for(status_code: int) -> type[OmniApiError]:
    if status_code >= 500:
        return OmniServerError
    return _BY_STATUS.get(status_code, OmniApiError)


def _clip(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:  # a server may echo the key it refused; never repeat it
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def extract_omni_message(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """Omni's error message, read defensively from whatever body came back.

    Omni documents only ``{"error", "message"}``; SCIM servers use ``{"detail", "scimType"}``; proxies send
    plain text or HTML. We keep the message fields only, never the rest of the body.
    """
    try:
        raw = response.read()
    except httpx.HTTPError:
        return ""
    if not raw:
        return ""
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = raw.decode("utf-8", errors="replace").strip()
        if "<" in text[:50]:  # an HTML error page says nothing useful and may be large
            return f"(non-JSON {response.headers.get('content-type', 'body')}, {len(raw)} bytes)"
        return _clip(text, secrets)
    if isinstance(body, dict):
        parts: list[str] = []
        for key in ("message", "detail", "error", "scimType"):
            value = body.get(key)
            if isinstance(value, str | int) and str(value) and str(value) not in parts:
                parts.append(str(value))
        if parts:
            return _clip(": ".join(parts[:2]), secrets)
        return "(JSON body without a message)"
    if isinstance(body, str):
        return _clip(body, secrets)
    return "(JSON body without a message)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(
    response: httpx.Response,
    *,
    method: str,
    path: str,
    user: str | None = None,
    secrets: Iterable[str] = (),
) -> OmniApiError:
    status = response.status_code
    cls = error_class_for(status)
    return cls(
        status,
        extract_omni_message(response, secrets),
        method=method,
        path=path,
        user=user,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


class GroupNotFoundError(OmniError, LookupError):
    """No Omni group has the given name."""

    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"no Omni group is named {group!r}")


class AmbiguousGroupError(OmniError):
    """Several Omni groups carry the same display name."""

    def __init__(self, group: str, count: int) -> None:
        self.group = group
        self.count = count
        super().__init__(f"{count} Omni groups are named {group!r}; refusing to guess")


class OmniGroupWriteSemanticsError(OmniWriteSemanticsError):
    """A group write's answer shows a change the write did not ask for (a member it did not touch vanished,
    a member it added is missing, one it removed is still there, or the name changed). Never retryable:
    it means Omni applies group PATCHes differently than this client assumes, and it stops the sync.

    A write-semantics error like a user write's (one ``except OmniWriteSemanticsError`` catches both);
    ``user`` names the members involved, ``field`` is ``members`` or ``displayName``.
    """

    def __init__(
        self,
        group: str,
        problem: str,
        *,
        members: tuple[str, ...] = (),
        old: object = None,
        new: object = None,
    ) -> None:
        self.group = group
        self.members = members
        shown = ", ".join(members[:5]) + (f" and {len(members) - 5} more" if len(members) > 5 else "")
        detail = f" ({shown})" if shown else ""
        if old is not None or new is not None:
            detail += f": was {old!r}, now {new!r}"
        hint = (
            "whether Omni treated the member operations as a replace of the whole member list, or whether "
            "someone else edited this group at the same moment; compare the group in Omni's UI with the "
            "sync report"
        )
        self._set_fields(
            user=shown,
            field="members" if members else "displayName",
            old=old,
            new=new,
            problem=problem,
            hint=hint,
        )
        # Its own message (a group, not a user, was written), so the parent's is not built.
        OmniUnexpectedStateError.__init__(
            self, f"group {group!r}: after PATCH Omni reports {problem}{detail}. What to check: {hint}"
        )


# The sync engine's errors.
class PlanTooLargeError(OmniError):
    """A sync plan would write more users than the configured blast-radius guard allows."""

    def __init__(self, message: str, *, changes: int, limit: int | None, total_users: int) -> None:
        self.changes = changes
        self.limit = limit
        self.total_users = total_users
        super().__init__(message)


class SnapshotWriteError(OmniError):
    """The snapshot could not be written before the writes (to mark the users about to be written
    uncertain); nothing was sent. Worth a retry: storage trouble is often passing."""


class SyncRunError(OmniError):
    """A sync run that ended badly after it started writing; ``summary`` is the run's full summary (the
    same dict a successful run returns), so the numbers can be shown with the failure."""

    #: True when a re-run may fix it (it re-plans against live state).
    retryable: bool = False

    def __init__(self, message: str, *, summary: dict[str, Any]) -> None:
        self.summary = summary
        super().__init__(message)


class SyncFailedError(SyncRunError):
    """The run finished, but more rows did not sync than the thresholds allow.

    ``retryable`` is true when some writes failed: a re-run re-plans against live state and may apply them;
    rows rejected by the planner need a fix in the input instead.
    """

    def __init__(self, reason: str, *, summary: dict[str, Any], retryable: bool) -> None:
        super().__init__(f"Omni sync failed: {reason}", summary=summary)
        self.retryable = retryable


class SyncHaltedError(SyncRunError):
    """The circuit breaker stopped the writes (Omni applied one differently than assumed, or refused the
    form of the first); every row is reported. Never worth an automatic retry: it would send the same kind
    of write again."""


class SyncReportLostError(SyncRunError):
    """The writes are done but a report sink failed; the outcomes went to the fallback (or the log). A
    re-run would only re-diff and report "unchanged", so it is no remedy."""


#: Answers a re-run cannot change (bad input, bad key, missing user, conflict).
_PERMANENT_STATUS = frozenset({400, 401, 403, 404, 409, 422})


def rerun_may_help(exc: OmniError) -> bool:
    """Whether running the same task again later could succeed: 429, 5xx and network trouble, or a sync
    whose failed writes a re-plan may apply. The orchestrator adapters map this to retry or fail."""
    if isinstance(exc, SyncRunError):
        return exc.retryable
    if isinstance(exc, SnapshotWriteError):
        return True
    if isinstance(exc, OmniListingDriftError):
        return True  # users were being added or removed while listing; a later read settles
    if isinstance(exc, OmniTransportError):
        # A certificate the worker does not trust needs a configuration change, not another try.
        return not exc.tls_verification_failed
    return isinstance(exc, OmniApiError) and exc.status_code not in _PERMANENT_STATUS
