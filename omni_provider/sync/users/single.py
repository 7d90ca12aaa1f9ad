"""``update_one_user``: set attributes (and optionally display name / active flag) of one Omni user.

The one core both the Airflow operator and the Dagster resource call; they only turn their own argument
forms (templates, config) into the typed arguments here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from omni_provider.client import (
    AttributeDefinition,
    OmniApiError,
    OmniScimClient,
    OmniUser,
    OmniValidationError,
    UserNotFoundError,
)
from omni_provider.domain.diff import ChangeSet, compute_changes
from omni_provider.domain.identity import emails_match, validate_email, validate_user_id
from omni_provider.domain.values import normalize_attributes
from omni_provider.sync.engine.log import RunLog
from omni_provider.sync.users.definitions import load_definitions

#: Omni's display names are short; a longer one is a mistake in the input, refused before any request.
MAX_DISPLAY_NAME_LENGTH = 256

_default_log = logging.getLogger("omni_provider.sync")


def check_display_name(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise OmniValidationError(f"display_name must be text, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise OmniValidationError("display_name is empty; leave it out to keep the current one")
    if len(text) > MAX_DISPLAY_NAME_LENGTH:
        raise OmniValidationError(f"display_name is longer than {MAX_DISPLAY_NAME_LENGTH} characters")
    return text


def result_changes(changes: ChangeSet) -> dict[str, dict[str, dict[str, Any]]]:
    """The result form of a change: attributes and user fields in separate maps, both always present, so an
    attribute named ``active`` and the user's ``active`` flag are both reported when both change."""
    user: dict[str, dict[str, Any]] = {}
    if changes.display_name is not None:
        user["displayName"] = {"old": changes.display_name[0], "new": changes.display_name[1]}
    if changes.active is not None:
        user["active"] = {"old": changes.active[0], "new": changes.active[1]}
    return {
        "attributes": {name: {"old": old, "new": new} for name, (old, new) in changes.attributes.items()},
        "user": user,
    }


def describe_changes(report: Mapping[str, Mapping[str, Any]], *, empty: str = "no change") -> str:
    """``region: "eu-west" -> "EMEA", cost_centre: (unset) -> 4100``: old -> new per change, for the log."""

    def shown(value: Any) -> str:
        return "(unset)" if value is None else json.dumps(value, ensure_ascii=False, default=str)

    parts = [
        f"{name}: {shown(change['old'])} -> {shown(change['new'])}" for name, change in sorted(report.items())
    ]
    return ", ".join(parts) or empty


def update_one_user(
    client: OmniScimClient,
    *,
    user_id: str | None = None,
    user_name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    display_name: str | None = None,
    active: bool | None = None,
    dry_run: bool = False,
    validate_attributes: bool | None = None,
    log: RunLog = _default_log,
) -> dict[str, Any]:
    """Update one user; every attribute not named, and every field not given, stays as it was.

    ``user_id`` (UUID) or ``user_name`` (email, matched case-insensitively) names the user; with both, they
    must be the same user. ``None`` as an attribute value unsets it. ``validate_attributes`` checks names
    and types against Omni's attribute definitions (``None``: when the key may read them).

    Returns ``{"user_id", "user_name", "action", "changes"}``: action ``updated``, ``unchanged`` or
    ``dry_run``; changes ``{"attributes": {name: {"old", "new"}}, "user": {"displayName" | "active": {"old",
    "new"}}}`` (attributes and user fields never share one map); never the whole user record. Another
    writer's change to an attribute not sent, seen in the answer, is logged at WARNING and left alone. Raises
    ``UserNotFoundError`` when no user matches, ``OmniValidationError`` for bad input (before any
    request), and the client's errors otherwise.
    """
    # 1. Everything that can be checked without Omni, before any request.
    uid = None if user_id is None else validate_user_id(user_id)
    email = None if user_name is None else validate_email(user_name)
    if uid is None and email is None:
        raise OmniValidationError("give user_id (UUID) or user_name (email) of the Omni user to update")
    who = email or uid or ""
    raw_attributes = dict(attributes or {})
    for key in raw_attributes:
        if not isinstance(key, str):
            raise OmniValidationError(f"attribute names must be strings, got {key!r}", user=who)
    checked = normalize_attributes(raw_attributes, user=who)  # shapes and values; no definitions yet
    name = check_display_name(display_name)
    if active is not None and not isinstance(active, bool):
        raise OmniValidationError(f"active must be true, false or None, got {active!r}", user=who)
    if not isinstance(dry_run, bool):
        raise OmniValidationError(f"dry_run must be true or false, got {dry_run!r}", user=who)
    if not checked and name is None and active is None:
        raise OmniValidationError(f"nothing to update for {who}: no attributes, display_name or active")

    # 2. Reads: the definitions (to check names and types), then the user.
    definitions: dict[str, AttributeDefinition] | None = None
    if checked and validate_attributes is not False:
        definitions = load_definitions(client, log)
        if definitions is None and validate_attributes:
            raise OmniValidationError("validate_attributes=True but the attribute definitions are unreadable")
        if definitions is not None:
            checked = normalize_attributes(raw_attributes, definitions=definitions, user=who)
    user = find_user(client, uid, email)
    if user is None:
        raise UserNotFoundError(who)

    # 3. The change: reported for a dry run, applied otherwise.
    if dry_run:
        changes = compute_changes(
            user, attributes=checked, display_name=name, active=active, definitions=definitions
        )
        action = "dry_run"
        log.info(
            "Dry run for %s: would change %s",
            user.user_name,
            describe_changes(changes.report(), empty="nothing"),
        )
    else:
        result = client.update_user(
            user, attributes=checked, display_name=name, active=active, definitions=definitions
        )
        changes, action = result.changes, result.action
        for change in result.concurrent_changes:
            # Judged on what was sent: another writer's change to an unsent key is not ours to undo.
            log.warning(
                "%s: another writer changed attribute %r between our read and our write (%r -> %r); "
                "left as it is",
                user.user_name,
                change.attribute,
                change.before,
                change.after,
            )
        log.info("%s %s: %s", action.capitalize(), user.user_name, describe_changes(changes.report()))
    return {
        "user_id": user.id,
        "user_name": user.user_name,
        "action": action,
        "changes": result_changes(changes),
    }


def find_user(client: OmniScimClient, user_id: str | None, user_name: str | None) -> OmniUser | None:
    """The user by id (checked against the email when both are given) or by email; None when missing."""
    if user_id is not None:
        try:
            user = client.get_user(user_id)
        except OmniApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        if user_name is not None and not emails_match(user.user_name, user_name):
            raise OmniValidationError(
                f"user_id {user_id} belongs to {user.user_name}, not {user_name}; refusing to guess"
            )
        return user
    assert user_name is not None
    return client.find_user_by_email(user_name)
