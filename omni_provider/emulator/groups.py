"""SCIM groups: stored records and the pure rules of POST, PUT and PATCH bodies (no I/O).

As Omni documents them: ``displayName`` required and at most 64 characters, a duplicate name is a 409
(compared case-insensitively here, the stricter reading), members reference existing users by id and show
the user's email as ``display``. PATCH takes ``add`` (path ``members``), ``remove`` (path
``members[value eq "<uuid>"]``), ``replace`` of ``members`` or ``displayName``, and a no-path ``replace``
of ``{displayName}``; op names in any case; a request is all-or-nothing. Adding a present member or
removing an absent one changes nothing.

``group_patch_mode="replace_members"`` plays the other semantics a server could have (an ``add`` that
replaces the whole member list), so tests can prove that a sync stops at the first such answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .errors import ApiError, bad_request
from .group_store import GroupRecord
from .resources import LIST_RESPONSE_SCHEMA, PATCH_OP_SCHEMA

GroupPatchMode = Literal["documented", "replace_members"]
GROUP_PATCH_MODES: tuple[GroupPatchMode, ...] = ("documented", "replace_members")
CORE_GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_GROUP_NAME = 64
_REMOVE_PATH = re.compile(r'^members\[value eq "(.{36})"\]$', re.IGNORECASE)

#: user id -> email of an existing user, or None when there is no such user.
UserLookup = Callable[[str], str | None]


# ------------------------------------------------------------------------------------------- JSON shapes


def group_json(group: GroupRecord, lookup: UserLookup, *, members: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": group.display_name,
        "id": group.id,
        "meta": {"created": group.created, "lastModified": group.last_modified, "resourceType": "Group"},
        "schemas": [CORE_GROUP_SCHEMA],
    }
    if members:
        shown = []
        for user_id in group.members:
            email = lookup(user_id)
            if email is not None:  # a deleted user is no longer a member
                shown.append({"display": email, "value": user_id})
        body["members"] = shown
    return body


def group_list_response(
    page: Sequence[GroupRecord], lookup: UserLookup, *, start_index: int, total: int, members: bool
) -> dict[str, Any]:
    return {
        "Resources": [group_json(g, lookup, members=members) for g in page],
        "itemsPerPage": len(page),
        "schemas": [LIST_RESPONSE_SCHEMA],
        "startIndex": start_index,
        "totalResults": total,
    }


# ------------------------------------------------------------------------------------------ body rules


def _invalid_body(detail: str) -> ApiError:
    return bad_request(f"Invalid request body: {detail}")


def _invalid_patch(detail: str) -> ApiError:
    return bad_request(f"Invalid patch operations: {detail}")


def check_name(value: Any, error: Callable[[str], ApiError]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise error("displayName must be a non-empty string")
    if len(value) > MAX_GROUP_NAME:
        raise error(f"displayName must be {MAX_GROUP_NAME} characters or fewer")
    return value


def member_ids(
    value: Any, lookup: UserLookup, error: Callable[[str], ApiError], *, need_display: bool = False
) -> list[str]:
    """User ids from a ``[{value, display?}]`` list; every one must be an existing user."""
    if not isinstance(value, list):
        raise error("members must be an array")
    ids: list[str] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise error("each member needs a string value (a user id)")
        if need_display and not isinstance(item.get("display"), str):
            raise error("each member needs display and value")
        user_id = item["value"]
        if lookup(user_id) is None:
            raise error(f"no user with id {user_id}")
        ids.append(user_id)
    return list(dict.fromkeys(ids))


def parse_create(body: Any, lookup: UserLookup) -> tuple[str, list[str]]:
    if not isinstance(body, dict):
        raise _invalid_body("expected a JSON object")
    name = check_name(body.get("displayName"), _invalid_body)
    members = member_ids(body.get("members", []), lookup, _invalid_body)
    return name, members


def apply_put(group: GroupRecord, body: Any, lookup: UserLookup) -> GroupRecord:
    """PUT replaces the whole group, membership included (Omni's current docs)."""
    if not isinstance(body, dict):
        raise _invalid_body("expected a JSON object")
    name = check_name(body.get("displayName"), _invalid_body)
    if "members" not in body:
        raise _invalid_body("members is required")
    members = member_ids(body["members"], lookup, _invalid_body, need_display=True)
    return group.evolve(display_name=name, members=tuple(members))


def apply_patch(group: GroupRecord, body: Any, lookup: UserLookup, mode: GroupPatchMode) -> GroupRecord:
    if not isinstance(body, dict):
        raise _invalid_patch("expected a JSON object")
    schemas, operations = body.get("schemas"), body.get("Operations")
    if not isinstance(schemas, list) or PATCH_OP_SCHEMA not in schemas:
        raise _invalid_patch(f"schemas must contain {PATCH_OP_SCHEMA}")
    if not isinstance(operations, list) or not operations:
        raise _invalid_patch("Operations must have at least 1 item")
    name, members = group.display_name, list(group.members)
    for operation in operations:
        if not isinstance(operation, dict):
            raise _invalid_patch("each operation must be an object")
        op = operation.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "remove", "replace"):
            raise _invalid_patch(f"unsupported op {op!r}")
        op, path, value = op.lower(), operation.get("path"), operation.get("value")
        if path is not None and not isinstance(path, str):
            raise _invalid_patch("path must be a string")
        if op == "add":
            if (path or "").lower() != "members":
                raise _invalid_patch("add needs path members")
            added = member_ids(value, lookup, _invalid_patch)
            if mode == "replace_members":
                members = added  # the other semantics: add replaces the list
            else:
                members.extend(u for u in added if u not in members)
        elif op == "remove":
            match = _REMOVE_PATH.match(path or "")
            if match is None:
                raise _invalid_patch('remove needs path members[value eq "<user id>"]')
            members = [u for u in members if u != match.group(1)]
        elif path is None:
            if not isinstance(value, dict):
                raise _invalid_patch("replace without a path needs an object value")
            name = check_name(value.get("displayName"), _invalid_patch)
        elif path.lower() == "displayname":
            name = check_name(value, _invalid_patch)
        elif path.lower() == "members":
            members = member_ids(value, lookup, _invalid_patch)
        else:
            raise _invalid_patch(f"unsupported path {path!r}")
    return group.evolve(display_name=name, members=tuple(dict.fromkeys(members)))
