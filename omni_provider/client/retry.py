"""Which failures are retried, and how long to wait, on top of tenacity."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import tenacity

from omni_provider.errors import (
    OmniApiError,
    OmniRateLimitError,
    OmniTransportError,
    tls_verification_error,
)

log = logging.getLogger("omni_provider.client")

T = TypeVar("T")

#: Answers worth another try. 500 is included for idempotent requests only (see ``is_retryable``).
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """Caps that keep one outage from turning into a storm: attempts and total wait both bound a call."""

    max_attempts: int = 5
    max_total_wait: float = 120.0
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: Longest ``Retry-After`` we obey; a larger one fails the call instead of hanging a worker.
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("max_total_wait", "backoff_initial", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")


def is_retryable(exc: BaseException, method: str, *, repeat_is_harmless: bool | None = None) -> bool:
    """Transport failures and timeouts (but a certificate that failed verification), 429 and 502/503/504
    always; 500 when repeating the request is harmless (by default: an idempotent method).

    A POST's 500 is not retried by default: ``OmniScimClient.create_user`` looks the user up before sending
    it again, and says so with ``repeat_is_harmless=True``.
    """
    if isinstance(exc, httpx.TransportError):
        return tls_verification_error(exc) is None  # an untrusted certificate stays untrusted
    if isinstance(exc, OmniTransportError):
        return not exc.tls_verification_failed
    if isinstance(exc, OmniApiError):
        if exc.status_code in RETRYABLE_STATUS:
            return True
        harmless = method in IDEMPOTENT_METHODS if repeat_is_harmless is None else repeat_is_harmless
        return exc.status_code == 500 and harmless
    return False


def backoff_wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    jitter = tenacity.wait_random_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def wait(state: tenacity.RetryCallState) -> float:
        backoff = float(jitter(state))
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float):
            # The server knows best; jitter on top so many workers do not come back at the same instant.
            return min(policy.max_retry_after, max(float(retry_after), backoff))
        return backoff

    return wait


class _StopWhenWaitsWouldExceed(tenacity.stop.stop_base):
    """Stop before a wait that would take the call's summed back-off past ``limit`` seconds."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.idle_for + retry_state.upcoming_sleep > self.limit


class _StopOnHugeRetryAfter(tenacity.stop.stop_base):
    """Give up at once when Omni asks us to wait longer than we are willing to hold a worker."""

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return (
            isinstance(exc, OmniRateLimitError)
            and exc.retry_after is not None
            and exc.retry_after > self.limit
        )


def make_retrying(
    policy: RetryPolicy,
    method: str,
    path: str,
    *,
    sleep: Callable[[float], None],
    on_retry: Callable[[BaseException | None], None] | None = None,
    repeat_is_harmless: bool | None = None,
) -> tenacity.Retrying:
    def log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if on_retry is not None:
            on_retry(exc)
        why = f"HTTP {exc.status_code}" if isinstance(exc, OmniApiError) else type(exc).__name__
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Omni %s %s failed (%s); retry %d/%d in %.1fs",
            method,
            path,
            why,
            state.attempt_number,
            policy.max_attempts - 1,
            wait,
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: is_retryable(e, method, repeat_is_harmless=repeat_is_harmless)
        ),
        wait=backoff_wait(policy),
        stop=(
            tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.max_total_wait)
            | _StopWhenWaitsWouldExceed(policy.max_total_wait)
            | _StopOnHugeRetryAfter(policy.max_retry_after)
        ),
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )


class GiveUp(Exception):
    """Raised by an attempt to end the call at once with ``error``, whatever the policy would say (e.g. the
    look-up before a resend failed after its own retries: retrying around it would multiply requests)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def call_with_retries(
    policy: RetryPolicy,
    method: str,
    path: str,
    attempt: Callable[[bool], T],
    *,
    sleep: Callable[[float], None],
    on_retry: Callable[[BaseException | None], None] | None = None,
    repeat_is_harmless: bool | None = None,
) -> T:
    """Run ``attempt`` under ``policy``: the one retry engine of the client.

    ``attempt(retried)`` learns whether an earlier attempt failed in a way that may still have taken
    effect (no answer, 5xx, 429), which is the hook a non-idempotent call needs: create looks the user up
    before POSTing again, delete takes a 404 as "an earlier attempt already did it". An attempt raising
    ``GiveUp(error)`` ends the call with ``error``.
    """
    retried = False

    def once() -> T:
        nonlocal retried
        try:
            return attempt(retried)
        finally:
            retried = True

    retrying = make_retrying(
        policy, method, path, sleep=sleep, on_retry=on_retry, repeat_is_harmless=repeat_is_harmless
    )
    try:
        return retrying(once)
    except GiveUp as stop:
        raise stop.error from None
