"""JSON shapes of users and list responses, as in Omni's docs examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .state import UserRecord

CORE_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
USER_ATTRIBUTE_URN = "urn:omni:params:1.0:UserAttribute"
OMNI_EXTENSION_URN = "urn:omni:params:scim:schemas:extension:user:2.0"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def user_json(user: UserRecord, *, embed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "active": user.active,
        "displayName": user.display_name,
        "emails": [{"primary": True, "value": user.user_name}],
        "groups": [dict(g) for g in user.groups],
        "id": user.id,
        "meta": {"created": user.created, "lastModified": user.last_modified, "resourceType": "User"},
        "schemas": [CORE_USER_SCHEMA, USER_ATTRIBUTE_URN, OMNI_EXTENSION_URN],
        "userName": user.user_name,
        USER_ATTRIBUTE_URN: dict(user.attributes),
        OMNI_EXTENSION_URN: {"lastLogin": user.last_login},
    }
    if embed:
        body["embedEmail"] = user.embed_email
        body["embedEntity"] = user.embed_entity
        body["embedExternalId"] = user.embed_external_id
    return body


def list_response(
    page: Sequence[UserRecord], *, start_index: int, total: int, embed: bool = False
) -> dict[str, Any]:
    return {
        "Resources": [user_json(u, embed=embed) for u in page],
        "itemsPerPage": len(page),
        "schemas": [LIST_RESPONSE_SCHEMA],
        "startIndex": start_index,
        "totalResults": total,
    }
