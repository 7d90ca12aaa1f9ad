"""User attribute definitions and the value rules Omni documents for them.

Rules (docs: email-only user pages, applied here to the SCIM attribute map as well):
only ``omni_user_timezone`` among system attributes is writable; Number attributes take JSON
numbers; multi-valued attributes take arrays; ``null``, ``""`` (String) and ``[]`` (multi-valued)
unset a value.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from .errors import bad_request

AttributeType = Literal["String", "Number"]

WRITABLE_SYSTEM_ATTRIBUTES = frozenset({"omni_user_timezone"})

# Omni documents no size limit on attribute values; these are the emulator's (and the client's own
# pre-send checks use the same numbers), so an oversized value is a 400 here as on any bounded server.
MAX_VALUE_CHARS = 10_000
MAX_VALUES = 1_000

# Stable ids for the seeded catalogue, so runs and state files agree.
_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")


@dataclasses.dataclass(frozen=True)
class AttributeDefinition:
    name: str
    label: str
    type: AttributeType = "String"
    multiple_values: bool = False
    default_value: Any = None
    description: str | None = None
    system: bool = False
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "id": self.id,
            "type": self.type,
            "multiple_values": self.multiple_values,
            "default_value": self.default_value,
            "description": self.description,
            "system": self.system,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributeDefinition:
        kind = data.get("type", "String")
        if kind not in ("String", "Number"):
            raise ValueError(f"attribute {data.get('name')!r}: type must be String or Number")
        return cls(
            name=str(data["name"]),
            label=str(data.get("label", data["name"])),
            type=kind,
            multiple_values=bool(data.get("multiple_values", False)),
            default_value=data.get("default_value"),
            description=data.get("description"),
            system=bool(data.get("system", False)),
            id=str(data.get("id", "")),
        )


def custom_attribute(
    name: str,
    label: str,
    type: AttributeType = "String",
    *,
    multiple_values: bool = False,
    default_value: Any = None,
    description: str | None = None,
) -> AttributeDefinition:
    return AttributeDefinition(
        name=name,
        label=label,
        type=type,
        multiple_values=multiple_values,
        default_value=default_value,
        description=description,
        id=str(uuid.uuid5(_ID_NAMESPACE, name)),
    )


def _system(name: str, label: str, description: str) -> AttributeDefinition:
    return AttributeDefinition(name=name, label=label, description=description, system=True)


def default_catalogue() -> list[AttributeDefinition]:
    """The definitions a fresh emulator starts with."""
    return [
        custom_attribute("region", "Region", description="User region for row-level security"),
        custom_attribute("department", "Department"),
        custom_attribute("seat_tier", "Seat tier"),
        custom_attribute("cost_centre", "Cost centre", "Number"),
        custom_attribute("regions", "Regions", multiple_values=True),
        custom_attribute("allowed_ids", "Allowed ids", "Number", multiple_values=True),
        _system("omni_is_org_admin", "Is org admin", "Whether the user is an Org Admin"),
        _system("omni_user_email", "User email", "The user's email"),
        _system("omni_user_embed_entity", "Embed entity", "Embed entity of an embed user"),
        _system("omni_user_groups", "User groups", "Groups the user belongs to"),
        _system("omni_user_id", "User id", "The user's id"),
        _system("omni_user_name", "User name", "The user's name"),
        _system("omni_user_timezone", "User timezone", "The user's timezone (settable)"),
    ]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_unset(definition: AttributeDefinition | None, value: object) -> bool:
    if value is None:
        return True
    if definition is None:  # lenient mode without a definition: treat every documented unset form alike
        return value == "" or value == []
    if definition.multiple_values:
        return value == []
    return definition.type == "String" and value == ""


def normalise_changes(
    definitions: Mapping[str, AttributeDefinition],
    changes: Mapping[str, Any],
    *,
    strict: bool,
) -> dict[str, Any]:
    """Check a requested attribute map; return name -> value, where ``None`` means "unset".

    Raises ApiError(400) on the first invalid entry, so a write is all-or-nothing.
    """
    out: dict[str, Any] = {}
    for name, value in changes.items():
        definition = definitions.get(name)
        _check_size(name, value)  # in lenient mode too: Omni stores nothing unbounded
        if strict:
            _check_value(name, definition, value)
        out[name] = None if _is_unset(definition, value) else value
    return out


def _check_size(name: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_VALUES:
        raise bad_request(f"User attribute {name} takes at most {MAX_VALUES} values")
    if any(isinstance(v, str) and len(v) > MAX_VALUE_CHARS for v in values):
        raise bad_request(f"User attribute {name}: a value is longer than {MAX_VALUE_CHARS} characters")


def _check_value(name: str, definition: AttributeDefinition | None, value: Any) -> None:
    if definition is None:
        raise bad_request(f"Unknown user attribute: {name}")
    if definition.system and name not in WRITABLE_SYSTEM_ATTRIBUTES:
        raise bad_request(f"User attribute {name} is a system attribute and is read-only")
    if value is None:
        return
    scalar_ok = _is_number if definition.type == "Number" else _is_str
    if definition.multiple_values:
        if not isinstance(value, list) or not all(scalar_ok(v) for v in value):
            raise bad_request(
                f"User attribute {name} takes multiple values: expected an array of {definition.type}"
            )
        return
    if isinstance(value, list):
        raise bad_request(f"User attribute {name} does not take multiple values")
    if not scalar_ok(value):
        raise bad_request(f"User attribute {name} expects a {definition.type} value")


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def apply_changes(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge normalised changes into an attribute map (``None`` removes the key)."""
    merged = dict(current)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
