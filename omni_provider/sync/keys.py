"""Match keys: normalising the row's key column and indexing current Omni users by the same key.

Omni matches users by email case-insensitively, so emails are stripped and lower-cased on both sides, as the
server compares them (``str.lower``, not ``casefold``: casefolding also equates "straße" with "strasse",
which Omni holds as two users, so it would write one user's row to another); ids are UUIDs compared in
lower case. Anything else is refused here so it can never reach a URL path.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omni_provider.client.identity import email_key
from omni_provider.client.models import OmniUser
from omni_provider.sync.spec import MatchOn, SyncSpec

#: RFC 5321 path limit is 254; 320 (64 + 1 + 255) is the loosest reading, so real addresses always pass.
MAX_EMAIL_LENGTH = 320
_SHOWN_KEY_CHARS = 100
# Exactly one @, non-empty parts, no whitespace or control characters. Quotes stay legal (RFC 5322).
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class KeyProblem:
    reason: str
    #: The raw key, clipped, for the report.
    shown: str
    #: The lower-cased text of a malformed but non-empty key: still "present" for mirror mode.
    loose_key: str | None = None


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_KEY_CHARS else text[: _SHOWN_KEY_CHARS - 1] + "…"


def normalize_key(row: Mapping[str, Any], spec: SyncSpec) -> str | KeyProblem:
    """The row's normalised match key, or why the row cannot be matched."""
    raw = row.get(spec.key, _MISSING)
    if raw is _MISSING:
        return KeyProblem(f"missing column {spec.key!r}", "")
    if spec.match_on == "id":
        return normalize_id(raw)
    return normalize_email(raw)


def normalize_email(raw: object) -> str | KeyProblem:
    if raw is None:
        return KeyProblem("empty match key", "")
    if not isinstance(raw, str):
        return KeyProblem(f"match key must be text (an email), got {type(raw).__name__}", _clip(str(raw)))
    text = raw.strip()
    if not text:
        return KeyProblem("empty match key", "")
    if len(text) <= MAX_EMAIL_LENGTH and _EMAIL_RE.fullmatch(text):
        return email_key(text)
    return KeyProblem(_email_problem(text), _clip(text), email_key(text))


def _email_problem(text: str) -> str:
    # Only on the failure path, so the common case costs one regex match.
    if len(text) > MAX_EMAIL_LENGTH:
        return f"not an email: longer than {MAX_EMAIL_LENGTH} characters"
    if _CONTROL_RE.search(text):
        return "not an email: contains control characters"
    if any(c.isspace() for c in text):
        return "not an email: contains whitespace"
    return "not an email: needs exactly one @ with text on both sides"


def normalize_id(raw: object) -> str | KeyProblem:
    if raw is None:
        return KeyProblem("empty match key", "")
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if not isinstance(raw, str):
        return KeyProblem(f"match key must be a user id (UUID), got {type(raw).__name__}", _clip(str(raw)))
    text = raw.strip()
    if not text:
        return KeyProblem("empty match key", "")
    if _UUID_RE.fullmatch(text):
        return text.lower()
    # Strict on purpose: the id goes into a URL path, so '/', '..', '?' or '#' must never get through.
    return KeyProblem(
        "not an Omni user id (expected a UUID like 9e8719d9-276a-4964-9395-a493189a247c)",
        _clip(text),
        text.lower(),
    )


def user_key(user: OmniUser, match_on: MatchOn) -> str:
    return user.id.strip().lower() if match_on == "id" else email_key(user.user_name)


class UserIndex:
    """Current Omni users by normalised key; a key with several distinct users is ambiguous."""

    def __init__(self, users: Iterable[OmniUser], match_on: MatchOn) -> None:
        self._by_key: dict[str, list[OmniUser]] = {}
        for user in users:
            key = user_key(user, match_on)
            bucket = self._by_key.get(key)
            if bucket is None:
                self._by_key[key] = [user]
            elif all(other.id != user.id for other in bucket):
                bucket.append(user)
            # else: the same user listed twice (pages shifting during the read); it is still one user.

    def get(self, key: str) -> Sequence[OmniUser]:
        return self._by_key.get(key, ())

    def items(self) -> Iterator[tuple[str, list[OmniUser]]]:
        return iter(self._by_key.items())

    @property
    def user_count(self) -> int:
        return sum(len(bucket) for bucket in self._by_key.values())
