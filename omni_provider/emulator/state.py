"""In-memory users and attribute definitions, with JSON-file load/save.

Records are immutable: every write stores a new ``UserRecord``. That lets the background saver
take a consistent snapshot by copying a list of references under the lock (cheap even with
10,000 users) and serialise it outside the lock, so writes never wait for disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .attributes import AttributeDefinition, default_catalogue
from .group_store import GroupRecord, GroupStore
from .recipient_store import RecipientRecord, RecipientStore

STATE_FORMAT = "omni-emulator-state"
STATE_VERSION = 1

_SEED_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
_DEPARTMENTS = ("Sales", "Finance", "Engineering", "Marketing", "Support")
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman")


def iso_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, as Omni's ``meta`` fields."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DuplicateEmailError(ValueError):
    """A user with this email (compared case-insensitively) already exists."""


@dataclasses.dataclass(frozen=True)
class UserRecord:
    """One stored user. ``attributes`` holds only values set on the user (no defaults)."""

    id: str
    user_name: str
    display_name: str
    active: bool = True
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created: str = dataclasses.field(default_factory=iso_timestamp)
    last_modified: str = ""
    last_login: str | None = None
    groups: tuple[Mapping[str, str], ...] = ()
    # Only embed users carry these.
    embed_email: str | None = None
    embed_entity: str | None = None
    embed_external_id: str | None = None

    def __post_init__(self) -> None:
        if not self.last_modified:
            object.__setattr__(self, "last_modified", self.created)

    def evolve(self, **changes: Any) -> UserRecord:
        """A copy with ``changes`` applied and ``last_modified`` bumped."""
        changes.setdefault("last_modified", iso_timestamp())
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userName": self.user_name,
            "displayName": self.display_name,
            "active": self.active,
            "attributes": dict(self.attributes),
            "created": self.created,
            "lastModified": self.last_modified,
            "lastLogin": self.last_login,
            "groups": [dict(g) for g in self.groups],
            "embedEmail": self.embed_email,
            "embedEntity": self.embed_entity,
            "embedExternalId": self.embed_external_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserRecord:
        return cls(
            id=str(data["id"]),
            user_name=str(data["userName"]),
            display_name=str(data.get("displayName") or data["userName"]),
            active=bool(data.get("active", True)),
            attributes=dict(data.get("attributes") or {}),
            created=str(data.get("created") or iso_timestamp()),
            last_modified=str(data.get("lastModified") or ""),
            last_login=data.get("lastLogin"),
            groups=tuple(dict(g) for g in data.get("groups") or ()),
            embed_email=data.get("embedEmail"),
            embed_entity=data.get("embedEntity"),
            embed_external_id=data.get("embedExternalId"),
        )


class EmulatorState:
    """Users, embed users and attribute definitions. Safe to use from several threads."""

    def __init__(self, attribute_definitions: Iterable[AttributeDefinition] | None = None) -> None:
        self.lock = threading.RLock()
        # Bumped on every change; the saver compares it with the last saved version.
        self.version = 0
        self._users: dict[str, UserRecord] = {}  # insertion order == creation order
        self._by_email: dict[str, str] = {}
        self._embed_users: dict[str, UserRecord] = {}
        defs = default_catalogue() if attribute_definitions is None else attribute_definitions
        self._definitions: dict[str, AttributeDefinition] = {d.name: d for d in defs}
        self.groups = GroupStore(self.lock)
        #: Email-only users (``/api/v1/users/email-only``).
        self.recipients = RecipientStore(self.lock)

    # ----------------------------------------------------------------- reads
    @property
    def attribute_definitions(self) -> dict[str, AttributeDefinition]:
        with self.lock:
            return dict(self._definitions)

    def users(self) -> list[UserRecord]:
        with self.lock:
            return list(self._users.values())

    def embed_users(self) -> list[UserRecord]:
        with self.lock:
            return list(self._embed_users.values())

    def user_count(self) -> int:
        return len(self._users)

    def get_user(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    def get_embed_user(self, user_id: str) -> UserRecord | None:
        return self._embed_users.get(user_id)

    def find_by_email(self, email: str) -> UserRecord | None:
        with self.lock:
            user_id = self._by_email.get(email.lower())
            return self._users.get(user_id) if user_id else None

    # ----------------------------------------------------------------- writes
    def add_user(
        self,
        email: str,
        display_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        active: bool = True,
        user_id: str | None = None,
        created: str | None = None,
    ) -> UserRecord:
        """Create a user without attribute checks (for tests and seeding).

        Raises DuplicateEmailError when the email exists (case-insensitively).
        """
        attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
        record = UserRecord(
            id=user_id or str(uuid.uuid4()),
            user_name=email,
            display_name=display_name if display_name is not None else email,
            active=active,
            attributes=attrs,
            created=created or iso_timestamp(),
        )
        return self.insert_user(record)

    def insert_user(self, record: UserRecord) -> UserRecord:
        key = record.user_name.lower()
        with self.lock:
            if key in self._by_email:
                raise DuplicateEmailError(record.user_name)
            if record.id in self._users:
                raise ValueError(f"duplicate user id {record.id}")
            self._users[record.id] = record
            self._by_email[key] = record.id
            self.version += 1
        return record

    def replace_user(self, record: UserRecord) -> UserRecord:
        """Store a new version of an existing user (the email must be unchanged, any case)."""
        with self.lock:
            old = self._users.get(record.id)
            if old is None:
                raise KeyError(record.id)
            if old.user_name.lower() != record.user_name.lower():
                raise ValueError("userName cannot change")
            self._users[record.id] = record
            self.version += 1
        return record

    def delete_user(self, user_id: str) -> bool:
        with self.lock:
            record = self._users.pop(user_id, None)
            if record is None:
                return False
            self._by_email.pop(record.user_name.lower(), None)
            self.version += 1
            return True

    def add_embed_user(
        self,
        external_id: str,
        *,
        entity: str = "acme",
        email: str | None = None,
        display_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> UserRecord:
        """Embed users come from the embed SSO flow in Omni; here tests create them directly."""
        digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{entity}/{external_id}").hex[:16]
        record = UserRecord(
            id=str(uuid.uuid4()),
            user_name=f"embed-user-{digest}@emulator.embed-exploreomni.co",
            display_name=display_name or external_id,
            attributes=dict(attributes or {}),
            groups=({"display": "All Embed Users", "value": "4GcvQ2D9"},),
            embed_email=email,
            embed_entity=entity,
            embed_external_id=external_id,
        )
        with self.lock:
            self._embed_users[record.id] = record
            self.version += 1
        return record

    def delete_embed_user(self, user_id: str) -> bool:
        with self.lock:
            if self._embed_users.pop(user_id, None) is None:
                return False
            self.version += 1
            return True

    def seed_users(self, n: int, seed: int = 0) -> list[UserRecord]:
        """Create ``n`` deterministic users ``user00001@example.com``...; existing emails are skipped."""
        rng = random.Random(seed)  # noqa: S311 - deterministic test data, not security
        created: list[UserRecord] = []
        with self.lock:
            for i in range(1, n + 1):
                # Draw for every index so a user's data does not depend on which ones exist.
                user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
                attrs: dict[str, Any] = {"region": rng.choice(_REGIONS)}
                if rng.random() < 0.7:
                    attrs["department"] = rng.choice(_DEPARTMENTS)
                email = f"user{i:05d}@example.com"
                if email in self._by_email or user_id in self._users:
                    continue
                stamp = iso_timestamp(_SEED_EPOCH + timedelta(minutes=i))
                created.append(
                    self.insert_user(
                        UserRecord(
                            id=user_id, user_name=email, display_name=name, attributes=attrs, created=stamp
                        )
                    )
                )
        return created

    def clear(self) -> None:
        with self.lock:
            self._users.clear()
            self._by_email.clear()
            self._embed_users.clear()
            self.groups.clear()
            self.recipients.clear()
            self.version += 1

    # ----------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        with self.lock:
            users, embed, defs = self._snapshot()
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "attribute_definitions": [d.to_json() for d in defs],
            "users": [u.to_json() for u in users],
            "embed_users": [u.to_json() for u in embed],
            "groups": [g.to_json() for g in self.groups.groups()],
            "email_only_users": [r.to_json() for r in self.recipients.all()],
        }

    def _snapshot(self) -> tuple[list[UserRecord], list[UserRecord], list[AttributeDefinition]]:
        return list(self._users.values()), list(self._embed_users.values()), list(self._definitions.values())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError("not an omni emulator state file")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state file version {data.get('version')!r}")
        defs = [AttributeDefinition.from_json(d) for d in data.get("attribute_definitions", [])]
        state = cls(defs)
        for raw in data.get("users", []):
            state.insert_user(UserRecord.from_json(raw))
        for raw in data.get("embed_users", []):
            record = UserRecord.from_json(raw)
            state._embed_users[record.id] = record
        for raw in data.get("groups", []):
            state.groups.insert(GroupRecord.from_json(raw))
        for raw in data.get("email_only_users", []):
            state.recipients.insert(RecipientRecord.from_json(raw))
        state.version = 0
        return state

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write atomically (temp file + os.replace); return the version that was saved.

        Each record is encoded separately so this thread releases the GIL between records
        and request handling on the server thread is not stalled by one large dump.
        """
        target = Path(path)
        with self.lock:
            version = self.version
            users, embed, defs = self._snapshot()
            groups = self.groups.groups()
            recipients = self.recipients.all()
        header = json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION})[:-1]
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(header)
                _write_list(fh, "attribute_definitions", (d.to_json() for d in defs))
                _write_list(fh, "users", (u.to_json() for u in users))
                _write_list(fh, "embed_users", (u.to_json() for u in embed))
                _write_list(fh, "groups", (g.to_json() for g in groups))
                _write_list(fh, "email_only_users", (r.to_json() for r in recipients))
                fh.write("}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return version

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EmulatorState:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(json.load(fh))

    @classmethod
    def load_or_new(cls, path: str | os.PathLike[str] | None) -> EmulatorState:
        if path is not None and Path(path).exists():
            return cls.load(path)
        return cls()


def _write_list(fh: Any, key: str, items: Iterable[dict[str, Any]]) -> None:
    fh.write(f', "{key}": [')
    for i, item in enumerate(items):
        fh.write(",\n  " if i else "\n  ")
        fh.write(json.dumps(item, separators=(",", ":")))
    fh.write("\n]")
