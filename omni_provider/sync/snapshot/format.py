"""The snapshot a sync keeps of what Omni held for its managed attributes after its last run.

With ``diff_against="snapshot"`` a run diffs the rows against this file instead of listing every Omni
user (see ``omni_view``). The file is JSON:

``{"format": ..., "version": 1, "omni": <base URL>, "attributes": [sorted managed names], "match_on": ...,
"runs_since_full_resync": n, "written_at": ..., "run_id": ..., "user_count": n, "users": [{"id": ...,
"userName": ..., "values": {name: value, ...} | null}, ...]}``

``values`` holds the managed attributes that are set (for the email-only recipients target, ``"target":
"email_recipients"``, every attribute of the recipient a write may carry: its custom ones, managed or not);
``null`` means *uncertain*: a write to this user was
planned and Omni never confirmed its outcome (the run crashed, the write failed), so the next run reads the
user from Omni before planning. Only confirmed states are ever recorded, and every write is atomic: a
reader sees the previous snapshot or the new one, never a mix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from omni_provider.domain.identity import user_id_problem
from omni_provider.domain.models import USER_ATTRIBUTES_URN, AttributeValue, OmniUser, is_unset
from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.files import StoredFile

SNAPSHOT_FORMAT = "omni-provider/user-attribute-snapshot"
SNAPSHOT_VERSION = 1
DEFAULT_FULL_RESYNC_EVERY = 7
DiffAgainst = Literal["omni", "snapshot"]
DIFF_AGAINST_VALUES: tuple[DiffAgainst, ...] = ("omni", "snapshot")
#: Whose snapshot a file is: the attribute sync's (managed values only; a file without ``target`` is one)
#: or the email-only recipients sync's (every attribute a recipient's upsert body carries back).
SnapshotTarget = Literal["user_attributes", "email_recipients"]


class SnapshotUser(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    user_name: str = Field(alias="userName")
    #: The managed attributes that are set; None when the user's state is uncertain (see the module doc).
    values: dict[str, AttributeValue] | None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        # Ids go into URL paths: the one rule the client applies before any request.
        problem = user_id_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class SnapshotFile(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    format: Literal["omni-provider/user-attribute-snapshot"]
    version: Literal[1]
    target: SnapshotTarget = "user_attributes"
    omni: str
    attributes: list[str]
    match_on: str
    runs_since_full_resync: int = Field(ge=0)
    written_at: str = ""
    run_id: str = ""
    #: A token new to every run that writes: tells a run whether another wrote the file meanwhile.
    written_by: str = ""
    #: Two runs of the sync overlapped and wrote it both: its values cannot be trusted, the next run reads
    #: Omni in full.
    overlapping_runs: bool = False
    user_count: int = Field(ge=0)
    users: list[SnapshotUser]


class _Writer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    written_by: str = ""


_SNAPSHOT_ADAPTER = TypeAdapter(SnapshotFile)
_WRITER_ADAPTER = TypeAdapter(_Writer)


def snapshot_writer(data: bytes | str) -> str:
    """The ``written_by`` token of a stored snapshot ("" when it has none or cannot be read)."""
    try:
        return _WRITER_ADAPTER.validate_json(data).written_by
    except ValidationError:
        return ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot read and checked: whose it is, and the users as the planner takes them (an uncertain
    user has no attribute map, so it is read from Omni when the plan depends on it)."""

    omni: str
    attributes: tuple[str, ...]
    runs_since_full_resync: int
    users: list[OmniUser]
    written_at: str = ""
    written_by: str = ""
    overlapping_runs: bool = False

    @property
    def uncertain(self) -> int:
        return sum(1 for user in self.users if not user.attributes_present)


class SnapshotUnusableError(Exception):
    """The snapshot cannot be used for this run; the message says why (the run diffs against Omni)."""


def holds_every_attribute(target: SnapshotTarget) -> bool:
    """Whether the target's snapshot holds every attribute of each user, not only the managed ones."""
    return target == "email_recipients"


def parse_snapshot(
    data: bytes | str,
    *,
    omni: str,
    attributes: Iterable[str],
    match_on: str,
    target: SnapshotTarget = "user_attributes",
) -> Snapshot:
    """Check and read a snapshot; ``SnapshotUnusableError`` when it is corrupt or made for another sync."""
    try:
        parsed = _SNAPSHOT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise SnapshotUnusableError(f"it is not a valid snapshot ({where}: {first['msg']})") from None
    wanted = sorted(set(attributes))
    if parsed.target != target:
        raise SnapshotUnusableError(f"it was made for another target ({parsed.target})")
    if parsed.omni != omni:
        raise SnapshotUnusableError(f"it was made for another Omni ({parsed.omni})")
    if sorted(parsed.attributes) != wanted:
        raise SnapshotUnusableError(f"it was made for other attributes ({sorted(parsed.attributes)})")
    if parsed.match_on != match_on:
        raise SnapshotUnusableError(f"it was made for match_on={parsed.match_on!r}")
    if parsed.user_count != len(parsed.users):
        raise SnapshotUnusableError(f"it says {parsed.user_count} users but holds {len(parsed.users)}")
    every = holds_every_attribute(target)
    users = [_as_user(entry, wanted, every) for entry in parsed.users]
    return Snapshot(
        parsed.omni,
        tuple(wanted),
        parsed.runs_since_full_resync,
        users,
        parsed.written_at,
        parsed.written_by,
        parsed.overlapping_runs,
    )


def _as_user(entry: SnapshotUser, managed: list[str], every: bool) -> OmniUser:
    body: dict[str, Any] = {"id": entry.id, "userName": entry.user_name}
    if entry.values is not None:
        # Every managed attribute, unset ones as None: "not set" is known, unlike an attribute not managed.
        held = {name: entry.values.get(name) for name in managed}
        body[USER_ATTRIBUTES_URN] = {**entry.values, **held} if every else held
    return OmniUser.model_validate(body)


def snapshot_entry(
    user: OmniUser, managed: Iterable[str], *, certain: bool = True, every: bool = False
) -> dict[str, Any]:
    """One user of the file: the managed attributes it holds (``every``: all its attributes), or ``values:
    null`` when uncertain."""
    values: dict[str, AttributeValue] | None = None
    if certain and user.attributes_present:
        names = user.attributes if every else managed
        values = {n: user.attributes[n] for n in names if not is_unset(user.attributes.get(n))}
    return {"id": user.id, "userName": user.user_name, "values": values}


def render_snapshot(
    entries: list[dict[str, Any]],
    *,
    omni: str,
    attributes: Iterable[str],
    match_on: str,
    runs_since_full_resync: int,
    run_id: str,
    written_by: str,
    overlapping_runs: bool = False,
    target: SnapshotTarget = "user_attributes",
) -> str:
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "target": target,
        "omni": omni,
        "attributes": sorted(set(attributes)),
        "match_on": match_on,
        "runs_since_full_resync": runs_since_full_resync,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "written_by": written_by,
        "overlapping_runs": overlapping_runs,
        "user_count": len(entries),
        "users": entries,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)


# -- where the snapshot lives ---------------------------------------------------------------------------


@runtime_checkable
class SnapshotStore(Protocol):
    #: Where the snapshot is, as the user gave it (for the summary).
    path: str
    #: Where the snapshot is, for messages.
    label: str

    def check(self) -> None:
        """Refuse an unusable location (raise ``OmniValidationError``); called before any request."""

    def read(self) -> bytes | None:
        """The snapshot's bytes; None when there is none yet."""

    def write(self, data: str) -> None:
        """Replace the snapshot atomically: a reader sees the old one or the new one, never a mix."""


class FileSnapshotStore(StoredFile):
    """A snapshot at a local path, or, through fsspec when it is installed, at a URL such as
    ``s3://bucket/omni/snapshot.json`` (replaced atomically: ``StoredFile``)."""

    option = "snapshot_path"
    noun = "snapshot"


@dataclass(frozen=True, slots=True)
class SnapshotSettings:
    """``diff_against="snapshot"``: where the snapshot lives and how often Omni is re-read in full."""

    store: SnapshotStore
    full_resync_every: int = DEFAULT_FULL_RESYNC_EVERY


def snapshot_settings(
    diff_against: str,
    snapshot_path: str | None,
    full_resync_every: object,
    make_store: Callable[[str], SnapshotStore] = FileSnapshotStore,
) -> SnapshotSettings | None:
    """The snapshot settings of the three options (checked by ``check_snapshot_args``): None for
    ``"omni"`` (a live diff each run)."""
    check_snapshot_args(diff_against, snapshot_path, full_resync_every)
    if diff_against == "omni":
        return None
    assert isinstance(snapshot_path, str) and isinstance(full_resync_every, int)
    return SnapshotSettings(make_store(snapshot_path), full_resync_every)


def check_snapshot_args(diff_against: str, snapshot_path: str | None, full_resync_every: object) -> None:
    """``diff_against``, ``snapshot_path`` and ``full_resync_every`` checked in one place."""
    if diff_against not in DIFF_AGAINST_VALUES:
        raise OmniValidationError(f"diff_against must be one of {DIFF_AGAINST_VALUES}, got {diff_against!r}")
    if isinstance(full_resync_every, bool) or not isinstance(full_resync_every, int) or full_resync_every < 1:
        raise OmniValidationError(
            f"full_resync_every must be a whole number of runs >= 1, got {full_resync_every!r}"
        )
    if diff_against == "omni":
        if snapshot_path:
            raise OmniValidationError(
                "snapshot_path is only used with diff_against='snapshot'; set both, or neither"
            )
    elif not isinstance(snapshot_path, str) or not snapshot_path.strip():
        raise OmniValidationError("diff_against='snapshot' needs snapshot_path (a local path or a URL)")


def merged_entries(
    base: Mapping[str, OmniUser],
    confirmed: Mapping[str, OmniUser | None],
    uncertain: Iterable[str],
    managed: Iterable[str],
    *,
    every: bool = False,
) -> list[dict[str, Any]]:
    """The next snapshot's users: the run's base states, overridden by what Omni confirmed during the run;
    users written without confirmation are uncertain; users Omni said are gone are dropped. ``every``: the
    entries hold every attribute (``snapshot_entry``)."""
    names = list(managed)
    doubtful = set(uncertain)
    entries: dict[str, dict[str, Any]] = {}
    for user_id, user in base.items():
        entries[user_id] = snapshot_entry(user, names, certain=user_id not in doubtful, every=every)
    for user_id, state in confirmed.items():
        if state is None:
            entries.pop(user_id, None)
        else:
            entries[user_id] = snapshot_entry(state, names, every=every)
    return list(entries.values())
