"""Stored SCIM groups (immutable records, like users) and their store. Imports nothing of the emulator, so
``state.py`` can hold a store without an import cycle."""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"


def _now() -> str:
    # Same format as users' meta (state.iso_timestamp), which cannot be imported here without a cycle.
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DuplicateGroupError(ValueError):
    """A group with this name (compared case-insensitively) already exists."""


@dataclasses.dataclass(frozen=True)
class GroupRecord:
    id: str
    display_name: str
    #: Member user ids, in the order they joined.
    members: tuple[str, ...] = ()
    created: str = dataclasses.field(default_factory=_now)
    last_modified: str = ""

    def __post_init__(self) -> None:
        if not self.last_modified:
            object.__setattr__(self, "last_modified", self.created)

    def evolve(self, **changes: Any) -> GroupRecord:
        changes.setdefault("last_modified", _now())
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "members": list(self.members),
            "created": self.created,
            "lastModified": self.last_modified,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupRecord:
        return cls(
            id=str(data["id"]),
            display_name=str(data["displayName"]),
            members=tuple(str(m) for m in data.get("members") or ()),
            created=str(data.get("created") or _now()),
            last_modified=str(data.get("lastModified") or ""),
        )


class GroupStore:
    """Groups in creation order; uses the state's lock so user and group writes never interleave."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._groups: dict[str, GroupRecord] = {}

    def groups(self) -> list[GroupRecord]:
        with self.lock:
            return list(self._groups.values())

    def get(self, group_id: str) -> GroupRecord | None:
        return self._groups.get(group_id)

    def named(self, name: str) -> list[GroupRecord]:
        wanted = name.strip().lower()
        with self.lock:
            return [g for g in self._groups.values() if g.display_name.strip().lower() == wanted]

    def add_group(
        self, name: str, members: Iterable[str] = (), *, group_id: str | None = None
    ) -> GroupRecord:
        """Create a group (no checks on members: for seeding). Raises DuplicateGroupError."""
        with self.lock:
            if self.named(name):
                raise DuplicateGroupError(name)
            new_id = group_id or self._new_id()
            record = GroupRecord(id=new_id, display_name=name, members=tuple(dict.fromkeys(members)))
            self._groups[record.id] = record
            return record

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            if candidate not in self._groups:
                return candidate

    def replace(self, record: GroupRecord) -> GroupRecord:
        with self.lock:
            if record.id not in self._groups:
                raise KeyError(record.id)
            clash = [g for g in self.named(record.display_name) if g.id != record.id]
            if clash:
                raise DuplicateGroupError(record.display_name)
            self._groups[record.id] = record
            return record

    def delete(self, group_id: str) -> bool:
        with self.lock:
            return self._groups.pop(group_id, None) is not None

    def clear(self) -> None:
        with self.lock:
            self._groups.clear()

    def insert(self, record: GroupRecord) -> None:
        with self.lock:
            self._groups[record.id] = record
