"""``UpdateOmniUserOperator``: set attributes (and optionally name / active flag) of one Omni user.

A thin adapter: it renders and parses its template fields, builds the client from the hook, and runs the
single-user core (``omni_provider.sync.users.single.update_one_user``) that the Dagster resource runs too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from omni_provider._compat import AirflowSkipException, BaseOperator, Context
from omni_provider.airflow_support.templating import (
    parse_attributes,
    parse_bool,
    parse_optional_bool,
    parse_optional_text,
    parse_user_id,
    parse_user_name,
)
from omni_provider.client import OmniError, OmniValidationError, UserNotFoundError
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators.common import fail_or_retry
from omni_provider.sync.users.single import update_one_user


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
            if self.if_missing not in ("fail", "skip"):
                raise OmniValidationError(f"if_missing must be 'fail' or 'skip', got {self.if_missing!r}")
            # Every template field parsed and checked before the hook is even built.
            arguments = self._arguments()
            self._hook = OmniScimHook(omni_conn_id=self.omni_conn_id)
            return update_one_user(
                self._hook.get_conn(), validate_attributes=self.validate_attributes, log=self.log, **arguments
            )
        except UserNotFoundError as exc:
            if self.if_missing == "skip":
                raise AirflowSkipException(f"no Omni user matches {exc.user}") from None
            raise fail_or_retry(exc) from None
        except OmniError as exc:
            raise fail_or_retry(exc) from None
        finally:
            if self._hook is not None:
                self._hook.close()

    def _arguments(self) -> dict[str, Any]:
        """The rendered template fields as the core's typed arguments: template text is parsed here."""
        return {
            "user_id": parse_user_id(self.user_id),
            "user_name": parse_user_name(self.user_name),
            "attributes": parse_attributes(self.attributes),
            "display_name": parse_optional_text(self.display_name, what="display_name"),
            "active": parse_optional_bool(self.active, what="active"),
            "dry_run": parse_bool(self.dry_run, what="dry_run"),
        }

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.cancel()
            self._hook.close()
