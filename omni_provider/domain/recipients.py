"""Email-only users (delivery recipients without an Omni login) as Omni's ``/api/v1/users/email-only``
returns them: snake_case, with the system attributes among the attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from omni_provider.domain.models import AttributeDefinition
from omni_provider.domain.values import WRITABLE_SYSTEM_ATTRIBUTES

#: The system attributes Omni documents (omni-api.md section 10), for when the definitions cannot be read.
KNOWN_SYSTEM_ATTRIBUTES = frozenset(
    {
        "omni_is_org_admin",
        "omni_user_email",
        "omni_user_embed_entity",
        "omni_user_groups",
        "omni_user_id",
        "omni_user_name",
        "omni_user_timezone",
    }
)


class _Model(BaseModel):
    # Omni adds fields over time; a client that refuses unknown fields breaks on the next release.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EmailOnlyUser(_Model):
    email: str
    user_id: str
    user_attributes: dict[str, Any] = Field(default_factory=dict)


class EmailOnlyPageInfo(_Model):
    has_next_page: bool = Field(alias="hasNextPage")
    next_cursor: str | None = Field(default=None, alias="nextCursor")
    page_size: int | None = Field(default=None, alias="pageSize")
    total_records: int | None = Field(default=None, alias="totalRecords")


class EmailOnlyPage(_Model):
    page_info: EmailOnlyPageInfo = Field(alias="pageInfo")
    records: list[EmailOnlyUser] = Field(default_factory=list)


class EmailOnlyResult(_Model):
    """One upserted recipient in Omni's answer (``{email, userId}``)."""

    email: str
    user_id: str = Field(alias="userId")


def is_system_attribute(name: str, definitions: Mapping[str, AttributeDefinition] | None) -> bool:
    """Whether ``name`` is a system attribute: by its definition when read, else by Omni's documented
    list (an ``omni_`` name without a definition is taken for one too: never sent back)."""
    if definitions is not None and name in definitions:
        return definitions[name].system
    return name in KNOWN_SYSTEM_ATTRIBUTES or name.startswith("omni_")


def custom_attributes(
    attributes: Mapping[str, Any], definitions: Mapping[str, AttributeDefinition] | None
) -> dict[str, Any]:
    """What a recipient's upsert body may carry back of its current attributes: the custom ones, and
    ``omni_user_timezone`` (the one settable system attribute) is left to the caller to add when managed."""
    return {name: value for name, value in attributes.items() if not is_system_attribute(name, definitions)}


__all__ = [
    "KNOWN_SYSTEM_ATTRIBUTES",
    "WRITABLE_SYSTEM_ATTRIBUTES",
    "EmailOnlyPage",
    "EmailOnlyPageInfo",
    "EmailOnlyResult",
    "EmailOnlyUser",
    "custom_attributes",
    "is_system_attribute",
]
