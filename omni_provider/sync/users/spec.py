"""What a sync manages: how rows match Omni users, which columns feed which attributes, and the mode.

Validated on construction so a misconfigured DAG fails at parse/plan time with one clear message, before
any row is read or any request is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from omni_provider.domain.values import is_valid_attribute_name
from omni_provider.errors import OmniValidationError

MatchOn = Literal["userName", "id"]
MATCH_ON_VALUES: tuple[MatchOn, ...] = ("userName", "id")


class SyncMode(StrEnum):
    #: Only users that already exist in Omni are written; unknown emails are rejected rows.
    UPDATE = "update"
    #: Like update, and missing users are created (needs a display name column).
    UPSERT = "upsert"
    #: Like update, and Omni users absent from the input get their managed attributes unset.
    MIRROR = "mirror"


def item_nouns(item_noun: str) -> tuple[str, str]:
    """The plural of what a sync's items are, long and short, for messages: "Omni user" -> ("Omni users",
    "users"), "email-only recipient" -> ("email-only recipients", "recipients")."""
    return f"{item_noun}s", f"{item_noun.split()[-1]}s"


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSpec:
    """Configuration of one sync. ``attributes`` maps row column -> Omni attribute reference name."""

    attributes: Mapping[str, str]
    match_on: MatchOn = "userName"
    mode: SyncMode = SyncMode.UPDATE
    #: Column holding the display name of users to create (upsert only; ignored otherwise).
    display_name_column: str | None = None
    #: Column holding the match key; defaults to the ``match_on`` name ("userName" or "id").
    key_column: str | None = None
    #: Whether creating needs a display name (SCIM users do; email-only recipients have none).
    display_name_required: bool = True
    #: What the rows are matched to, in rejection reasons ("no Omni user with this email").
    item_noun: str = "Omni user"
    #: Mirror mode also creates what is missing (recipients: the table is the whole list); SCIM users: no.
    mirror_creates: bool = False
    # Derived: attribute -> column, for the planner.
    columns_by_attribute: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.match_on not in MATCH_ON_VALUES:
            raise OmniValidationError(f"match_on must be one of {MATCH_ON_VALUES}, got {self.match_on!r}")
        try:
            mode = SyncMode(self.mode)
        except ValueError:
            allowed = ", ".join(m.value for m in SyncMode)
            raise OmniValidationError(f"mode must be one of {allowed}; got {self.mode!r}") from None
        # Copies: the spec is frozen, so later edits to the caller's dict must not leak in.
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "attributes", dict(self.attributes))
        object.__setattr__(self, "columns_by_attribute", self._validate_mapping())
        self._validate_columns()

    @property
    def key(self) -> str:
        """The row column holding the match key."""
        return self.key_column or self.match_on

    @property
    def creates_missing(self) -> bool:
        """Whether a row matching nothing in Omni is created (else rejected)."""
        return self.mode is SyncMode.UPSERT or (self.mode is SyncMode.MIRROR and self.mirror_creates)

    @property
    def managed_attributes(self) -> tuple[str, ...]:
        """The only attribute keys this sync ever writes, in mapping order."""
        return tuple(self.attributes.values())

    def _validate_mapping(self) -> dict[str, str]:
        if not self.attributes:
            raise OmniValidationError("attributes mapping is empty: name at least one column -> attribute")
        by_attribute: dict[str, str] = {}
        for column, attribute in self.attributes.items():
            if not isinstance(column, str) or not column:
                raise OmniValidationError(f"column names must be non-empty strings, got {column!r}")
            if not is_valid_attribute_name(attribute):
                raise OmniValidationError(
                    f"column {column!r} maps to {attribute!r}, which is not a valid attribute reference name "
                    "(letters, digits, _; not starting with a digit)"
                )
            if attribute in by_attribute:
                raise OmniValidationError(
                    f"columns {by_attribute[attribute]!r} and {column!r} both map to attribute {attribute!r}"
                )
            by_attribute[attribute] = column
        return by_attribute

    def _validate_columns(self) -> None:
        if self.key_column is not None and (not isinstance(self.key_column, str) or not self.key_column):
            raise OmniValidationError(f"key_column must be a non-empty string, got {self.key_column!r}")
        if self.key in self.attributes:
            raise OmniValidationError(
                f"match column {self.key!r} is also mapped as an attribute; it only identifies the user"
            )
        if self.display_name_column is not None and (
            not isinstance(self.display_name_column, str) or not self.display_name_column
        ):
            raise OmniValidationError("display_name_column must be a non-empty string when given")
        if self.mode is SyncMode.UPSERT:
            if self.match_on == "id":
                raise OmniValidationError(
                    "mode 'upsert' needs match_on='userName': Omni assigns ids, so none can be created by id"
                )
            if self.display_name_column is None and self.display_name_required:
                raise OmniValidationError(
                    "mode 'upsert' needs display_name_column: Omni requires a displayName to create a user"
                )

    @classmethod
    def from_user_args(
        cls,
        attributes: Mapping[str, str] | Sequence[str],
        *,
        match_on: str = "userName",
        mode: SyncMode | str = SyncMode.UPDATE,
        display_name_column: str | None = None,
        key_column: str | None = None,
        display_name_required: bool = True,
        item_noun: str = "Omni user",
        mirror_creates: bool = False,
    ) -> SyncSpec:
        """Build from operator arguments: a list of names means each column feeds the same-named attribute.

        Template text (JSON rendered by Jinja) is the orchestrator adapter's to parse; a string is refused.
        """
        mapping: dict[str, str]
        if isinstance(attributes, Mapping):
            mapping = dict(attributes)
        elif isinstance(attributes, Sequence) and not isinstance(attributes, str):
            names = list(attributes)
            duplicates = sorted({n for n in names if names.count(n) > 1}, key=str)
            if duplicates:
                raise OmniValidationError(f"attributes list names {duplicates} more than once")
            mapping = {name: name for name in names}
        else:
            raise OmniValidationError(
                f"attributes must be a mapping or a list of names, got {type(attributes).__name__}"
            )
        if match_on not in MATCH_ON_VALUES:
            raise OmniValidationError(f"match_on must be one of {MATCH_ON_VALUES}, got {match_on!r}")
        try:
            parsed_mode = SyncMode(mode)
        except ValueError:
            allowed = ", ".join(m.value for m in SyncMode)
            raise OmniValidationError(f"mode must be one of {allowed}; got {mode!r}") from None
        return cls(
            attributes=mapping,
            match_on=match_on,
            mode=parsed_mode,
            display_name_column=display_name_column,
            key_column=key_column,
            display_name_required=display_name_required,
            item_noun=item_noun,
            mirror_creates=mirror_creates,
        )
