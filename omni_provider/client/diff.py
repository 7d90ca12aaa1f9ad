"""What an update would change: pure, shared by ``update_user`` and dry runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omni_provider.client.models import AttributeDefinition, AttributeValue, OmniUser
from omni_provider.client.values import values_equal


@dataclass(frozen=True)
class ChangeSet:
    """Old and new values of what differs. Attributes are kept apart from the two user fields so an
    attribute that happens to be called ``active`` can never be mistaken for the flag."""

    attributes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    display_name: tuple[Any, Any] | None = None
    active: tuple[Any, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.attributes) or self.display_name is not None or self.active is not None

    def new_attributes(self) -> dict[str, AttributeValue]:
        return {name: new for name, (_old, new) in self.attributes.items()}

    def report(self) -> dict[str, dict[str, Any]]:
        """JSON-safe ``{name: {"old": .., "new": ..}}``; user fields as ``displayName`` / ``active``."""
        out = {name: {"old": old, "new": new} for name, (old, new) in self.attributes.items()}
        if self.display_name is not None:
            out["displayName"] = {"old": self.display_name[0], "new": self.display_name[1]}
        if self.active is not None:
            out["active"] = {"old": self.active[0], "new": self.active[1]}
        return out


def compute_changes(
    current: OmniUser,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    display_name: str | None = None,
    active: bool | None = None,
    definitions: Mapping[str, AttributeDefinition] | None = None,
) -> ChangeSet:
    """What differs between ``current`` and the request; a ``None`` attribute value means unset."""
    changed = {
        name: (current.attributes.get(name), new)
        for name, new in (attributes or {}).items()
        if not values_equal(current.attributes.get(name), new, definitions.get(name) if definitions else None)
    }
    return ChangeSet(
        attributes=changed,
        display_name=(current.display_name, display_name)
        if display_name is not None and display_name != current.display_name
        else None,
        active=(current.active, active) if active is not None and active != current.active else None,
    )
