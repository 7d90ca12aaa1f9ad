"""Turning POST/PUT/PATCH bodies into new user records (pure functions, no I/O).

Every function validates the whole request before returning, so a rejected request
never leaves a half-applied change behind.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from .attributes import AttributeDefinition, apply_changes, normalise_changes
from .config import PatchSemantics, PutMode
from .errors import ApiError, bad_request
from .resources import PATCH_OP_SCHEMA, USER_ATTRIBUTE_URN
from .state import UserRecord

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_PATCH_OPS = frozenset({"add", "replace", "remove"})
# Keys some SCIM clients echo back in a no-path value; harmless, so ignored.
_IGNORED_PATCH_KEYS = frozenset({"id", "schemas"})


@dataclasses.dataclass(frozen=True)
class AttributeRules:
    definitions: Mapping[str, AttributeDefinition]
    strict: bool = True

    def normalise(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        return normalise_changes(self.definitions, changes, strict=self.strict)


@dataclasses.dataclass(frozen=True)
class NewUser:
    user_name: str
    display_name: str
    attributes: dict[str, Any]


def invalid_body(detail: str) -> ApiError:
    return bad_request(f"Invalid request body: {detail}")


def invalid_patch(detail: str | None = None) -> ApiError:
    return bad_request("Invalid patch operations" + (f": {detail}" if detail else ""))


def parse_create(body: Any, rules: AttributeRules) -> NewUser:
    obj = _object(body)
    user_name = obj.get("userName")
    if not isinstance(user_name, str) or not _EMAIL.match(user_name):
        raise invalid_body("userName must be an email address")
    display_name = _display_name(obj, required=True)
    assert display_name is not None
    attrs = rules.normalise(_attribute_map(obj, invalid_body) or {})
    return NewUser(user_name=user_name, display_name=display_name, attributes=apply_changes({}, attrs))


def apply_put(user: UserRecord, body: Any, mode: PutMode, rules: AttributeRules) -> UserRecord:
    """PUT: "merge" sets only what is sent (legacy docs); "replace" resets omitted fields (current docs)."""
    obj = _object(body)
    _same_user_name(user, obj.get("userName"), required=True, error=invalid_body)
    display_name = _display_name(obj, required=False)
    active = obj.get("active")
    if active is not None and not isinstance(active, bool):
        raise invalid_body("active must be a boolean")
    changes = rules.normalise(_attribute_map(obj, invalid_body) or {})
    if mode == "replace":
        return user.evolve(
            display_name=display_name if display_name is not None else user.user_name,
            active=active if active is not None else True,
            attributes=apply_changes({}, changes),
        )
    return user.evolve(
        display_name=display_name if display_name is not None else user.display_name,
        active=active if active is not None else user.active,
        attributes=apply_changes(user.attributes, changes),
    )


@dataclasses.dataclass
class _Draft:
    display_name: str
    active: bool
    attributes: dict[str, Any]
    #: "other": play the semantics the client does not assume (see ``config.PatchSemantics``).
    other: bool = False


def apply_patch(
    user: UserRecord, body: Any, rules: AttributeRules, semantics: PatchSemantics = "assumed"
) -> UserRecord:
    """PATCH with RFC 7644 operations; see the package README for the supported forms."""
    if not isinstance(body, dict):
        raise invalid_patch()
    schemas, operations = body.get("schemas"), body.get("Operations")
    if not isinstance(schemas, list) or PATCH_OP_SCHEMA not in schemas:
        raise invalid_patch()
    if not isinstance(operations, list) or not operations:
        raise invalid_patch()
    draft = _Draft(user.display_name, user.active, dict(user.attributes), other=semantics == "other")
    for operation in operations:
        _apply_operation(user, draft, operation, rules)
    return user.evolve(display_name=draft.display_name, active=draft.active, attributes=draft.attributes)


def _apply_operation(user: UserRecord, draft: _Draft, operation: Any, rules: AttributeRules) -> None:
    if not isinstance(operation, dict):
        raise invalid_patch("each operation must be an object")
    op = operation.get("op")
    if not isinstance(op, str) or op.lower() not in _PATCH_OPS:
        raise invalid_patch(f"unsupported op {op!r}")
    op = op.lower()
    path = operation.get("path")
    if path is not None and not isinstance(path, str):
        raise invalid_patch("path must be a string")
    if op != "remove" and "value" not in operation:
        raise invalid_patch(f"{op} needs a value")
    value = operation.get("value")
    if not path:
        if op == "remove":
            raise invalid_patch("remove needs a path")
        if not isinstance(value, dict):
            raise invalid_patch("an operation without a path needs an object value")
        for key, item in value.items():
            if key not in _IGNORED_PATCH_KEYS:
                _set_target(user, draft, _resolve(key), item, rules)
        return
    target = _resolve(path)
    if draft.other and target[0] == "attribute":
        raise invalid_patch(f"unsupported path {path!r}")
    if op != "remove":
        _set_target(user, draft, target, value, rules)
    elif target == ("attributes", None):
        draft.attributes = {}
    elif target[0] == "attribute":
        draft.attributes = apply_changes(draft.attributes, rules.normalise({str(target[1]): None}))
    else:
        raise invalid_patch(f"cannot remove {path}")


def _resolve(path: str) -> tuple[str, str | None]:
    """Map a patch path (or a no-path value key) to a target."""
    simple = {"active": "active", "displayname": "displayName", "username": "userName"}
    if path.lower() in simple:
        return (simple[path.lower()], None)
    if path.lower().startswith(USER_ATTRIBUTE_URN.lower()):
        rest = path[len(USER_ATTRIBUTE_URN) :]
        if not rest:
            return ("attributes", None)
        # Both the RFC 7644 URN form (":key") and the dotted form (".key") appear in Omni material.
        if rest[0] in ":." and rest[1:]:
            return ("attribute", rest[1:])
    raise invalid_patch(f"unsupported path {path!r}")


def _set_target(
    user: UserRecord, draft: _Draft, target: tuple[str, str | None], value: Any, rules: AttributeRules
) -> None:
    kind, key = target
    if kind == "active":
        if not isinstance(value, bool):
            raise invalid_patch("active must be a boolean")
        draft.active = value
    elif kind == "displayName":
        if not isinstance(value, str) or not value:
            raise invalid_patch("displayName must be a non-empty string")
        draft.display_name = value
    elif kind == "userName":
        _same_user_name(user, value, required=True, error=invalid_patch)
    elif kind == "attributes":
        if not isinstance(value, dict):
            raise invalid_patch(f"{USER_ATTRIBUTE_URN} must be an object")
        # "other": the map given replaces the whole map, as a server reading "replace" literally would.
        base = {} if draft.other else draft.attributes
        draft.attributes = apply_changes(base, rules.normalise(value))
    else:
        assert key is not None
        draft.attributes = apply_changes(draft.attributes, rules.normalise({key: value}))


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_body("expected a JSON object")
    return body


def _display_name(obj: Mapping[str, Any], *, required: bool) -> str | None:
    value = obj.get("displayName")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid_body("displayName must be a non-empty string")
    return value


def _attribute_map(obj: Mapping[str, Any], error: Callable[[str], ApiError]) -> dict[str, Any] | None:
    value = obj.get(USER_ATTRIBUTE_URN)
    if value is not None and not isinstance(value, dict):
        raise error(f"{USER_ATTRIBUTE_URN} must be an object")
    return value


def _same_user_name(
    user: UserRecord, value: Any, *, required: bool, error: Callable[[str], ApiError]
) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise error("userName is required")
    if value.lower() != user.user_name.lower():
        raise error("userName must equal the user's current email; it cannot be changed")
