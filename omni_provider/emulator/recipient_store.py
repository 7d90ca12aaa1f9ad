"""Stored email-only users (delivery recipients without an Omni login) and their store. Imports nothing of
the emulator, so ``state.py`` can hold a store without an import cycle (as ``group_store.py``)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Literal

#: What an upsert does to an existing recipient's ``userAttributes`` (Omni does not document it):
#: "merge" sets the attributes sent (``null`` unsets) and keeps the others; "replace" makes the custom
#: attributes exactly the ones sent (``omni_user_timezone`` is kept unless sent: it is not a custom one).
UpsertMode = Literal["merge", "replace"]
UPSERT_MODES: tuple[UpsertMode, ...] = ("merge", "replace")
TIMEZONE = "omni_user_timezone"


@dataclasses.dataclass(frozen=True)
class RecipientRecord:
    email: str
    user_id: str
    #: Values set on the recipient (custom ones, and ``omni_user_timezone`` when set); no defaults.
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Creation order: the listing's sort key and its cursor.
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "userId": self.user_id,
            "attributes": dict(self.attributes),
            "seq": self.seq,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecipientRecord:
        return cls(
            str(data["email"]), str(data["userId"]), dict(data.get("attributes") or {}), int(data["seq"])
        )


def upserted(
    current: Mapping[str, Any], changes: Mapping[str, Any] | None, mode: UpsertMode
) -> dict[str, Any]:
    """The attributes after an upsert of normalised ``changes`` (None: "unset"); ``changes`` None (no
    ``userAttributes`` in the body) leaves them as they are in either mode."""
    if changes is None:
        return dict(current)
    base = dict(current) if mode == "merge" else {k: v for k, v in current.items() if k == TIMEZONE}
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


class RecipientStore:
    """Recipients in creation order, by email (case-insensitive); uses the state's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._by_email: dict[str, RecipientRecord] = {}
        self._next_seq = 1

    def all(self) -> list[RecipientRecord]:
        with self.lock:
            return sorted(self._by_email.values(), key=lambda r: r.seq)

    def get(self, email: str) -> RecipientRecord | None:
        return self._by_email.get(email.lower())

    def upsert(
        self, email: str, changes: Mapping[str, Any] | None, mode: UpsertMode
    ) -> tuple[RecipientRecord, bool]:
        """Create or update one recipient; (its record, whether it was created)."""
        with self.lock:
            old = self._by_email.get(email.lower())
            if old is None:
                record = RecipientRecord(
                    email, str(uuid.uuid4()), upserted({}, changes, mode), self._next_seq
                )
                self._next_seq += 1
            else:
                record = dataclasses.replace(old, attributes=upserted(old.attributes, changes, mode))
            self._by_email[email.lower()] = record
            return record, old is None

    def add(self, email: str, attributes: Mapping[str, Any] | None = None) -> RecipientRecord:
        """Seed one recipient (no checks; for tests)."""
        return self.upsert(email, {k: v for k, v in (attributes or {}).items() if v is not None}, "replace")[
            0
        ]

    def insert(self, record: RecipientRecord) -> None:
        with self.lock:
            self._by_email[record.email.lower()] = record
            self._next_seq = max(self._next_seq, record.seq + 1)

    def clear(self) -> None:
        with self.lock:
            self._by_email.clear()
            self._next_seq = 1
