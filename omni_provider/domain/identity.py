"""The one rule for identities: which emails and ids are valid, and when two emails (or two group names)
name one user (or one group).

The client (before any request), the sync planners (per row) and the single-user operator all call these
functions, so a key the planner accepts is a key the client will send, and two emails the planner takes for
one user are the ones the client's look-ups take for one user.

Comparison (``identity_key``, for emails and group names alike): Unicode NFC normalisation, surrounding
spaces stripped, then ``str.lower``. NFC because
the same address can arrive composed ("ë") from one system and decomposed ("e" + combining diaeresis) from
another, and people never mean two users by that. ``lower`` and not ``casefold``: casefolding also equates
"straße" and "strasse", which Omni holds as two users, so it would write one user's row to another.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from omni_provider.errors import OmniValidationError

#: RFC 5321's path limit is 254; 320 (64 + 1 + 255) is the loosest reading, so real addresses always pass.
MAX_EMAIL_LENGTH = 320
# Exactly one @, non-empty parts, no whitespace or control characters. Quotes stay legal (RFC 5322).
_EMAIL_SHAPE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")


def normalized_text(text: str) -> str:
    """NFC, surrounding spaces removed; the case is kept (Omni stores emails and group names as given)."""
    text = text.strip()
    return text if text.isascii() else unicodedata.normalize("NFC", text).strip()


normalize_email_text = normalized_text


def email_problem(text: str) -> str | None:
    """Why ``text`` (already normalised, non-empty) is not an email Omni can hold; None when it is fine."""
    if len(text) > MAX_EMAIL_LENGTH:
        return f"longer than {MAX_EMAIL_LENGTH} characters"
    local, _, domain = text.partition("@")
    if text.isascii():
        # _EMAIL_SHAPE's answer by str methods, several times faster (the planner checks every row's
        # email): the ASCII characters the regex excludes are exactly "@", the space and the non-printable
        # ones (the control characters and DEL; every ASCII whitespace character but the space is a
        # control character).
        shaped = local != "" and domain != "" and "@" not in domain and text.isprintable() and " " not in text
    else:
        shaped = _EMAIL_SHAPE.fullmatch(text) is not None
    if not shaped:  # the reason is worked out only on failure
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
            return "contains whitespace or control characters"
        return "needs exactly one @ with text on both sides"
    if domain[0] == "." or "." not in domain.strip("."):
        return f"the domain {domain!r} has no dot (Omni needs a full address like ada@example.com)"
    return None


def validate_email(value: object) -> str:
    """The email as the client sends it: NFC, spaces stripped, case kept; ``OmniValidationError`` if bad."""
    if not isinstance(value, str):
        raise OmniValidationError(f"email must be a string, got {type(value).__name__}")
    text = normalize_email_text(value)
    if not text:
        raise OmniValidationError("email is empty")
    problem = email_problem(text)
    if problem is not None:
        raise OmniValidationError(f"{_clip(text)!r} is not an email: {problem}")
    return text


def identity_key(text: str) -> str:
    """The form in which two emails, or two group names, are compared: NFC, stripped, lower-cased (see
    the module docstring). Two names with one key are one user (one group); never two."""
    text = text.strip()
    if text.isascii():  # NFC leaves ASCII as it is: the common case skips the Unicode tables
        return text.lower()
    return unicodedata.normalize("NFC", normalize_email_text(text).lower())


#: Emails and group names follow the one rule.
email_key = identity_key
group_key = identity_key


def emails_match(a: str, b: str) -> bool:
    return email_key(a) == email_key(b)


def email_lookup_spellings(email: str) -> list[str]:
    """The spellings to ask Omni's ``userName eq`` filter for, so a user stored in another Unicode form
    is still found: the email as given, then its NFC and NFD forms (duplicates dropped; one spelling for
    ASCII). Omni's filter compares case-insensitively but is not documented to normalise Unicode."""
    given = email.strip()
    spellings = [given, unicodedata.normalize("NFC", given), unicodedata.normalize("NFD", given)]
    return list(dict.fromkeys(spellings))


def user_id_problem(text: str) -> str | None:
    """Why ``text`` (stripped, non-empty) is not an Omni user id; None when it is a canonical UUID."""
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return "not a UUID"
    if str(parsed) != text.lower():  # uuid.UUID also accepts braces, urn: prefixes and missing hyphens
        return "not in canonical UUID form"
    return None


def validate_user_id(value: object) -> str:
    """An Omni user id is a UUID. Anything else (``/``, ``..``, ``?``, ``#``) could re-target the URL."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # native Jinja rendering turns digit-only strings into ints
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise OmniValidationError(f"user id must be a string UUID, got {type(value).__name__}")
    text = value.strip()
    problem = user_id_problem(text) if text else "empty"
    if problem is not None:
        raise OmniValidationError(f"user id {_clip(value)!r} is {problem}")
    return text.lower()


def scim_string_literal(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 section 3.4.2.2 uses JSON string rules)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
