"""Checks on user identifiers, made before any request so bad input never reaches Omni."""

from __future__ import annotations

import uuid

from omni_provider.client.errors import OmniValidationError


def validate_user_id(value: object) -> str:
    """An Omni user id is a UUID. Anything else (``/``, ``..``, ``?``, ``#``) could re-target the URL."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # native Jinja rendering turns digit-only strings into ints
    if not isinstance(value, str):
        raise OmniValidationError(f"user id must be a string UUID, got {type(value).__name__}")
    text = value.strip()
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        raise OmniValidationError(f"user id {value!r} is not a UUID") from None
    if str(parsed) != text.lower():  # uuid.UUID also accepts braces, urn: prefixes and missing hyphens
        raise OmniValidationError(f"user id {value!r} is not in canonical UUID form")
    return text.lower()


def validate_email(value: object) -> str:
    """A plausible email, surrounding spaces removed. Omni matches emails case-insensitively."""
    if not isinstance(value, str):
        raise OmniValidationError(f"email must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise OmniValidationError("email is empty")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise OmniValidationError(f"email {text!r} contains whitespace or control characters")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip(".") or domain.startswith("."):
        raise OmniValidationError(f"{text!r} is not an email address")
    if len(text) > 320:
        raise OmniValidationError("email is longer than 320 characters")
    return text


def email_key(email: str) -> str:
    """The form in which Omni compares emails: stripped, case-insensitive by ``str.lower``. Never looser
    than the server: ``casefold`` would also equate "straße" and "strasse", two different Omni users."""
    return email.strip().lower()


def emails_match(a: str, b: str) -> bool:
    return email_key(a) == email_key(b)


def scim_string_literal(value: str) -> str:
    """A SCIM filter string literal (RFC 7644 section 3.4.2.2 uses JSON string rules)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
