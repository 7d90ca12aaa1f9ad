"""The plan artifact: every write a planned run would send, what it was planned against, and a digest.

One versioned JSON format for every sync target (user attributes, group membership, and the next). A
plan task stores it; a reviewer approves it; the apply task reads it back and writes exactly its items,
after refusing (before any request) a plan whose digest differs from the approved one, a plan older than
``max_age`` or a plan made for another Omni. The format (version 1)::

    {"format": "omni-provider/plan", "format_version": 1,
     "header": {"target": "user_attributes" | "group_membership" | ...,
                "omni": <base URL, normalised by the client's one URL rule>,
                "managed": [sorted managed attributes or groups], "mode": ..., "options": {...},
                "created_at": <ISO 8601 UTC>, "run_id": ..., "rows": <input rows>,
                "counts": {<action>: n, ...}, "writes": <items>},
     "items": [<one planned write, the target's shape>, ...],
     "digest": "sha256:<hex>"}

The digest is sha256 over the canonical serialisation (``canonical_json``: sorted keys, no spaces,
UTF-8) of everything but the digest itself, so any edit of the header or an item changes it. The digest
stored in the file is checked when it is read (a file edited by hand without recomputing it is refused);
the apply also compares the digest it computes with the one the reviewer approved.

An item's shape is the target's (``sync.users.plan_file``, ``sync.groups.plan_file``); this module only
requires each to be a JSON object. Files follow the engine's rules (``files.StoredFile``: URL or local
path, checked before any request, replaced atomically).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import from_json

from omni_provider.client.urls import normalize_base_url
from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.files import StoredFile

PLAN_FORMAT = "omni-provider/plan"
PLAN_FORMAT_VERSION = 1
#: How old a plan the apply accepts by default.
DEFAULT_MAX_AGE = timedelta(hours=24)
_DIGEST_PREFIX = "sha256:"
#: Why an apply does not send a planned write: Omni no longer holds what the plan saw (every target).
CHANGED_SINCE_PLAN = "changed in Omni since the plan"
#: Why an apply does not send a planned write it no longer needs (every target).
ALREADY_AS_PLANNED = "Omni already holds the planned values (an earlier attempt, or another writer)"


class PlanRefusedError(OmniValidationError):
    """The plan cannot be applied (edited, expired, for another Omni, unreadable); raised before any
    write. Never worth a retry: the same file gives the same answer."""


def canonical_json(value: Any) -> str:
    """The one serialisation the digest is computed over: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PlanHeader:
    """What a plan was made against."""

    #: The target's name ("user_attributes", "group_membership").
    target: str
    #: Omni's base URL, as the client's one URL rule (``normalize_base_url``) writes it.
    omni: str
    #: The managed attributes or groups, sorted.
    managed: tuple[str, ...]
    mode: str
    created_at: str
    run_id: str = ""
    #: Input rows read.
    rows: int = 0
    #: The plan's items per action (unchanged and rejected included: the review shows them).
    counts: Mapping[str, int] = field(default_factory=dict)
    #: The target's options that shaped the plan (e.g. ``match_on``), for the apply and the review.
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, writes: int) -> dict[str, Any]:
        return {
            "target": self.target,
            "omni": self.omni,
            "managed": list(self.managed),
            "mode": self.mode,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "rows": self.rows,
            "counts": dict(self.counts),
            "writes": writes,
            "options": dict(self.options),
        }


@dataclass(frozen=True, slots=True)
class PlanArtifact:
    """A plan as stored: its header and its items (each planned write, the target's JSON shape)."""

    header: PlanHeader
    items: tuple[Mapping[str, Any], ...]

    @classmethod
    def build(
        cls,
        *,
        target: str,
        omni: str,
        managed: Iterable[str],
        mode: str,
        items: Iterable[Mapping[str, Any]],
        rows: int = 0,
        counts: Mapping[str, int] | None = None,
        options: Mapping[str, Any] | None = None,
        run_id: str = "",
        created_at: datetime | None = None,
    ) -> PlanArtifact:
        """A new plan; ``omni`` goes through the client's URL rule, the time defaults to now (UTC)."""
        header = PlanHeader(
            target=target,
            omni=normalize_base_url(omni),
            managed=tuple(sorted(set(managed))),
            mode=mode,
            created_at=(created_at or _now()).astimezone(UTC).isoformat(timespec="seconds"),
            run_id=run_id,
            rows=rows,
            counts=dict(counts or {}),
            options=dict(options or {}),
        )
        # Through JSON once: the artifact holds what the file holds (tuples become lists, and so on).
        return cls(header, tuple(from_json(canonical_json(list(items)))))

    def content(self) -> dict[str, Any]:
        """Everything the digest covers."""
        return {
            "format": PLAN_FORMAT,
            "format_version": PLAN_FORMAT_VERSION,
            "header": self.header.to_json(len(self.items)),
            "items": list(self.items),
        }

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the canonical serialisation of ``content()``."""
        return _DIGEST_PREFIX + hashlib.sha256(canonical_json(self.content()).encode("utf-8")).hexdigest()

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.header.created_at)

    def render(self) -> str:
        """The file's text: the content and its digest."""
        return canonical_json({**self.content(), "digest": self.digest})


def parse_plan(data: bytes | str, *, where: str = "the plan") -> PlanArtifact:
    """Read a plan file; ``PlanRefusedError`` when it is not one, is of an unknown version, or its content
    no longer matches its own digest (edited after it was written)."""
    try:
        # A file's text (never template text): pydantic's parser, as for the snapshot.
        document = from_json(data)
    except ValueError as exc:
        raise PlanRefusedError(f"{where} is not a plan file (not JSON: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise PlanRefusedError(f"{where} is not an omni-provider plan file (format {PLAN_FORMAT!r})")
    version = document.get("format_version")
    if version != PLAN_FORMAT_VERSION:
        raise PlanRefusedError(
            f"{where} has plan format version {version!r}; this omni-provider reads version "
            f"{PLAN_FORMAT_VERSION}: apply it with the version that planned it, or plan again"
        )
    try:
        raw_header = document["header"]
        header = PlanHeader(
            target=str(raw_header["target"]),
            omni=str(raw_header["omni"]),
            managed=tuple(raw_header["managed"]),
            mode=str(raw_header["mode"]),
            created_at=str(raw_header["created_at"]),
            run_id=str(raw_header.get("run_id", "")),
            rows=int(raw_header.get("rows", 0)),
            counts=dict(raw_header.get("counts", {})),
            options=dict(raw_header.get("options", {})),
        )
        datetime.fromisoformat(header.created_at)
        items = document["items"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise TypeError("items must be a list of objects")
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanRefusedError(f"{where} is not a valid plan file ({type(exc).__name__}: {exc})") from None
    artifact = PlanArtifact(header, tuple(items))
    if document.get("digest") != artifact.digest:
        raise PlanRefusedError(
            f"{where} was changed after it was written: its content does not match its digest. Plan again"
        )
    if artifact.content() != {key: document[key] for key in artifact.content()}:
        raise PlanRefusedError(f"{where} is not a valid plan file (its header has unexpected fields)")
    return artifact


def check_plan_for_apply(
    artifact: PlanArtifact,
    *,
    omni: str,
    plan_digest: str | None = None,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    targets: Sequence[str] = (),
    now: datetime | None = None,
) -> None:
    """Refuse (``PlanRefusedError``) before any write: a digest other than the approved ``plan_digest``, a
    plan older than ``max_age`` (None: any age), one made for another Omni than ``omni`` (compared after the
    URL rule), or for a target not in ``targets`` (when given)."""
    if plan_digest is not None and artifact.digest != plan_digest.strip():
        raise PlanRefusedError(
            f"the plan's digest is {artifact.digest}, not the approved {plan_digest.strip()}: the plan file "
            "was replaced or edited after review. Nothing was sent to Omni"
        )
    if targets and artifact.header.target not in targets:
        raise PlanRefusedError(
            f"the plan is for target {artifact.header.target!r}, not {' or '.join(map(repr, targets))}"
        )
    here = normalize_base_url(omni)
    if artifact.header.omni != here:
        raise PlanRefusedError(
            f"the plan was made for Omni {artifact.header.omni}, not {here} (this connection). Nothing was "
            "sent to Omni"
        )
    if max_age is not None:
        age = (now or _now()) - artifact.created
        if age > max_age:
            raise PlanRefusedError(
                f"the plan was made at {artifact.header.created_at}, {_hours(age)} ago: older than max_age "
                f"({_hours(max_age)}). Omni may have moved since; plan again. Nothing was sent to Omni"
            )


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


class PlanStore(StoredFile):
    """Where a plan file lives (a local path or a URL), with the engine's file rules."""

    option = "plan_path"
    noun = "plan"

    def save(self, artifact: PlanArtifact) -> str:
        """Write the plan (atomically) and return its digest."""
        self.write(artifact.render())
        return artifact.digest

    def load(self) -> PlanArtifact:
        """Read and check the plan (``parse_plan``); ``PlanRefusedError`` when there is none."""
        try:
            data = self.read()
        except OSError as exc:
            raise PlanRefusedError(f"cannot read the plan at {self.path!r} ({type(exc).__name__})") from None
        if data is None:
            raise PlanRefusedError(f"there is no plan at {self.path!r}")
        return parse_plan(data, where=f"the plan at {self.path!r}")
