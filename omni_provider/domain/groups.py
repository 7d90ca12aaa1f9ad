"""Pydantic models of Omni's SCIM groups, the group PATCH bodies, and the checks on group names and ids.

The PATCH forms are the ones Omni documents for ``PATCH /scim/v2/groups/{id}`` (and its published OpenAPI,
``ScimGroupsPatchBody``): ``add`` with path ``members`` and a list of ``{value}``; ``remove`` with path
``members[value eq "<uuid>"]`` (one user per op, no ``value``). A whole-list ``replace`` of ``members`` and
a PUT are never built here: they rewrite every member, so a concurrent edit would be lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from omni_provider.domain.identity import normalized_text, validate_user_id
from omni_provider.domain.models import LIST_RESPONSE_SCHEMA, PATCH_OP_SCHEMA, _ScimModel
from omni_provider.errors import OmniValidationError

CORE_GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
#: Omni's docs: a group's displayName must be 64 characters or fewer.
MAX_GROUP_NAME_LENGTH = 64
#: Omni's group ids are short opaque strings ("mEhXj6ZI", "nqGuU_uh"); anything else could re-target a URL.
_GROUP_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def validate_group_id(value: object) -> str:
    if not isinstance(value, str) or not _GROUP_ID_RE.fullmatch(value.strip()):
        raise OmniValidationError(f"group id {value!r} is not an Omni group id (letters, digits, _ and -)")
    return value.strip()


def group_name_problem(value: object) -> str | None:
    """Why ``value`` cannot be an Omni group name, or None when it can (after stripping)."""
    if not isinstance(value, str):
        return f"group name must be text, got {type(value).__name__}"
    text = value.strip()
    if not text:
        return "group name is empty"
    if len(text) > MAX_GROUP_NAME_LENGTH:
        return f"group name is longer than {MAX_GROUP_NAME_LENGTH} characters (Omni's limit)"
    if _CONTROL_RE.search(text):
        return "group name contains control characters"
    return None


def validate_group_name(value: object) -> str:
    """The name as sent: NFC, stripped (the identity rule's spelling; case kept)."""
    problem = group_name_problem(value)
    if problem is not None:
        raise OmniValidationError(problem)
    assert isinstance(value, str)
    return normalized_text(value)


class GroupMember(_ScimModel):
    #: The member's user id (a UUID).
    value: str
    #: Omni fills in the user's email; optional on writes.
    display: str | None = None


class OmniGroup(_ScimModel):
    """A group as Omni returns it (GET, POST, PATCH)."""

    id: str
    display_name: str = Field(alias="displayName")
    members: list[GroupMember] = Field(default_factory=list)
    meta: dict[str, Any] | None = None
    schemas: list[str] = Field(default_factory=list)
    #: Whether the answer carried ``members`` at all (``excludedAttributes=members`` drops it).
    members_present: bool = Field(default=False, exclude=True)

    def model_post_init(self, __context: Any) -> None:
        self.members_present = "members" in self.model_fields_set

    @property
    def member_ids(self) -> set[str]:
        return {m.value.strip().lower() for m in self.members}


class GroupListPage(_ScimModel):
    resources: list[OmniGroup] = Field(default_factory=list, alias="Resources")
    total_results: int = Field(alias="totalResults")
    start_index: int = Field(default=1, alias="startIndex")
    items_per_page: int | None = Field(default=None, alias="itemsPerPage")
    schemas: list[str] = Field(default_factory=lambda: [LIST_RESPONSE_SCHEMA])


class GroupPatchOperation(BaseModel):
    op: Literal["add", "remove"]
    path: str
    value: list[GroupMember] | None = None

    def to_scim(self) -> dict[str, Any]:
        body: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.value is not None:
            body["value"] = [m.model_dump(exclude_none=True) for m in self.value]
        return body


class GroupPatch(BaseModel):
    """One PATCH of a group's members: one ``add`` op with every added user, one ``remove`` op per removal."""

    operations: list[GroupPatchOperation] = Field(min_length=1)

    def to_scim(self) -> dict[str, Any]:
        return {"schemas": [PATCH_OP_SCHEMA], "Operations": [op.to_scim() for op in self.operations]}


def remove_member_path(user_id: str) -> str:
    return f'members[value eq "{validate_user_id(user_id)}"]'


def members_patch(
    add: Iterable[str] = (), remove: Iterable[str] = (), *, display: Mapping[str, str] | None = None
) -> GroupPatch:
    """The PATCH adding ``add`` and removing ``remove`` (user ids), checked before anything is sent."""
    added = list(dict.fromkeys(validate_user_id(u) for u in add))
    removed = list(dict.fromkeys(validate_user_id(u) for u in remove))
    both = set(added) & set(removed)
    if both:
        raise OmniValidationError(f"user(s) {sorted(both)} both added to and removed from one group")
    operations: list[GroupPatchOperation] = []
    if added:
        members = [GroupMember(value=u, display=(display or {}).get(u)) for u in added]
        operations.append(GroupPatchOperation(op="add", path="members", value=members))
    operations.extend(GroupPatchOperation(op="remove", path=remove_member_path(u)) for u in removed)
    if not operations:
        raise OmniValidationError("a group PATCH needs at least one member to add or remove")
    return GroupPatch(operations=operations)


def create_group_body(name: str, members: Iterable[str] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"displayName": validate_group_name(name)}
    ids = list(dict.fromkeys(validate_user_id(u) for u in members))
    if ids:
        body["members"] = [{"value": u} for u in ids]
    return body
