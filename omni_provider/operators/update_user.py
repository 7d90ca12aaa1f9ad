"""``UpdateOmniUserOperator``: set attributes (and optionally name / active flag) of one Omni user."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from omni_provider._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseOperator,
    Context,
)
from omni_provider.client import (
    AttributeDefinition,
    OmniApiError,
    OmniError,
    OmniScimClient,
    OmniTransportError,
    OmniUser,
    UserNotFoundError,
)
from omni_provider.client.diff import ChangeSet, compute_changes
from omni_provider.client.errors import (
    OmniAuthenticationError,
    OmniListingDriftError,
    OmniPermissionError,
    OmniValidationError,
)
from omni_provider.client.identity import emails_match
from omni_provider.client.values import normalize_attributes
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.rendered import (
    parse_attributes,
    parse_bool,
    parse_optional_bool,
    parse_optional_text,
    parse_user_id,
    parse_user_name,
)

#: Errors a task retry cannot fix (bad input, bad key, missing user): fail at once instead of retrying.
_PERMANENT_STATUS = frozenset({400, 401, 403, 404, 409, 422})


def fail_or_retry(exc: OmniError) -> AirflowException:
    """The Airflow exception for an Omni error: retryable only when waiting could help (429, 5xx, network)."""
    message = str(exc)
    if isinstance(exc, OmniListingDriftError):
        return AirflowException(message)  # users were being added or removed; a later read settles
    if isinstance(exc, OmniTransportError):
        # A certificate the worker does not trust needs a configuration change, not another try.
        return AirflowFailException(message) if exc.tls_verification_failed else AirflowException(message)
    if isinstance(exc, OmniApiError) and exc.status_code not in _PERMANENT_STATUS:
        return AirflowException(message)
    return AirflowFailException(message)


def result_changes(changes: ChangeSet) -> dict[str, dict[str, dict[str, Any]]]:
    """The XCom form of a change: attributes and user fields in separate maps, both always present, so an
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


def load_definitions(client: OmniScimClient, log: Any) -> dict[str, AttributeDefinition] | None:
    """Attribute definitions when the key may read them; None (checks skipped, said in the log) otherwise."""
    try:
        return client.attribute_definitions_by_name()
    except (OmniPermissionError, OmniAuthenticationError) as exc:
        log.warning(
            "Cannot read Omni's attribute definitions (HTTP %s); attribute names and types are not "
            "checked before writing",
            exc.status_code,
        )
    except OmniApiError as exc:
        if exc.status_code != 404:
            raise
        log.warning("This Omni instance has no /api/v1/user-attributes; attribute checks are skipped")
    return None


class UpdateOmniUserOperator(BaseOperator):
    """Set user attributes of one Omni user; every other attribute and field stays as it was.

    :param user_id: Omni user id (UUID). Give this or ``user_name``; if both, they must be the same user.
    :param user_name: the user's email, matched case-insensitively.
    :param attributes: attribute reference name -> value (string, number or a list of them; ``None``
        unsets). A mapping, or a string holding JSON (as plain Jinja renders it).
    :param display_name: new display name (optional).
    :param active: set the active flag (optional; ``None`` leaves it alone).
    :param if_missing: ``"fail"`` (default) or ``"skip"`` when no such user exists.
    :param dry_run: read, validate and report the change without writing.
    :param validate_attributes: check names and types against Omni's attribute definitions before
        writing (``None``: when the key may read them).

    Returns to XCom ``{"user_id", "user_name", "action", "changes"}`` where action is ``updated``,
    ``unchanged`` or ``dry_run`` and changes is ``{"attributes": {name: {"old", "new"}}, "user":
    {"displayName" | "active": {"old", "new"}}}`` (attributes and user fields never share one map).

    Mapped over users with ``.partial(...).expand_kwargs(...)`` it makes one task instance (and at least
    two requests) per user and stops at Airflow's ``max_map_length`` (1024); for tables use
    ``SyncOmniUserAttributesOperator``.
    """

    template_fields: Sequence[str] = (
        "user_id",
        "user_name",
        "attributes",
        "display_name",
        "active",
        "dry_run",
        "omni_conn_id",
    )
    template_fields_renderers = {"attributes": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        user_id: str | None = None,
        user_name: str | None = None,
        attributes: Mapping[str, Any] | str | None = None,
        display_name: str | None = None,
        active: bool | str | None = None,
        omni_conn_id: str = OmniScimHook.default_conn_name,
        dry_run: bool | str = False,
        if_missing: Literal["fail", "skip"] = "fail",
        validate_attributes: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Assigned verbatim: templates render after __init__, so checks belong in execute().
        self.user_id = user_id
        self.user_name = user_name
        self.attributes = attributes
        self.display_name = display_name
        self.active = active
        self.omni_conn_id = omni_conn_id
        # Shadows BaseOperator.dry_run(), a legacy method nothing in Airflow 3.3 calls (checked); the
        # parameter name is the public interface.
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.if_missing = if_missing
        self.validate_attributes = validate_attributes
        self._hook: OmniScimHook | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._execute()
        except OmniError as exc:
            raise fail_or_retry(exc) from None
        finally:
            if self._hook is not None:
                self._hook.close()

    def _execute(self) -> dict[str, Any]:
        # 1. Everything that can be checked without Omni, before any request.
        if self.if_missing not in ("fail", "skip"):
            raise OmniValidationError(f"if_missing must be 'fail' or 'skip', got {self.if_missing!r}")
        user_id = parse_user_id(self.user_id)
        user_name = parse_user_name(self.user_name)
        if user_id is None and user_name is None:
            raise OmniValidationError("give user_id (UUID) or user_name (email) of the Omni user to update")
        who = user_name or user_id
        raw_attributes = parse_attributes(self.attributes)
        attributes = normalize_attributes(raw_attributes, user=who)  # shapes and values, no definitions yet
        display_name = parse_optional_text(self.display_name, what="display_name")
        active = parse_optional_bool(self.active, what="active")
        dry_run = parse_bool(self.dry_run, what="dry_run")
        if not attributes and display_name is None and active is None:
            raise OmniValidationError(f"nothing to update for {who}: no attributes, display_name or active")

        self._hook = OmniScimHook(omni_conn_id=self.omni_conn_id)
        client = self._hook.get_conn()

        # 2. Reads: definitions (to check names and types) and the user.
        definitions: dict[str, AttributeDefinition] | None = None
        if attributes and self.validate_attributes is not False:
            definitions = load_definitions(client, self.log)
            if definitions is None and self.validate_attributes:
                raise OmniValidationError(
                    "validate_attributes=True but the attribute definitions are unreadable"
                )
            if definitions is not None:
                attributes = normalize_attributes(raw_attributes, definitions=definitions, user=who)
        user = self._find_user(client, user_id, user_name)
        if user is None:
            message = f"no Omni user matches {who}"
            if self.if_missing == "skip":
                raise AirflowSkipException(message)
            raise UserNotFoundError(who or "")

        # 3. The change: reported for a dry run, applied otherwise.
        if dry_run:
            changes = compute_changes(
                user, attributes=attributes, display_name=display_name, active=active, definitions=definitions
            )
            action = "dry_run"
            self.log.info(
                "Dry run for %s: would change %s",
                user.user_name,
                describe_changes(changes.report(), empty="nothing"),
            )
        else:
            result = client.update_user(
                user, attributes=attributes, display_name=display_name, active=active, definitions=definitions
            )
            changes, action = result.changes, result.action
            for change in result.concurrent_changes:
                # Decision: judged on what was sent; another writer's change to an unsent key is not ours.
                self.log.warning(
                    "%s: another writer changed attribute %r between our read and our write (%r -> %r); "
                    "left as it is",
                    user.user_name,
                    change.attribute,
                    change.before,
                    change.after,
                )
            self.log.info(
                "%s %s: %s", action.capitalize(), user.user_name, describe_changes(changes.report())
            )
        return {
            "user_id": user.id,
            "user_name": user.user_name,
            "action": action,
            "changes": result_changes(changes),
        }

    @staticmethod
    def _find_user(client: OmniScimClient, user_id: str | None, user_name: str | None) -> OmniUser | None:
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

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.cancel()
            self._hook.close()
