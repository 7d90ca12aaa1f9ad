"""Where a deferrable run keeps its state between steps: one JSON document at ``state_path``.

A step of a deferrable run (Airflow's ``execute`` / ``execute_complete``, a Dagster step retry) starts in a
fresh process: nothing in memory survives, so everything the next step needs is here. What the
document holds (``format`` and ``version`` say which layout):

- ``run``: what the state belongs to (target, Omni host, a fingerprint of the sync's options), when the run
  started and was saved, how often it deferred, its deadline (``execution_timeout``), its summary so far
  and the client counters so far;
- ``progress``: every item settled so far (by plan index, with its outcome) and the kinds of write the
  canary gate has seen work (``verified``; a resume after a crash drops them: its first write is a canary
  again);
- ``plan``: the plan as the one plan file format (``plan_artifact``: header, the planned writes, a
  digest checked when a step resumes), the same object a reviewed plan is stored as;
- ``detail``: what a resumed step needs beyond it: every plan item in order (the report also lists the
  unchanged and rejected ones) and the Omni states the writes are based on (users, groups).

The plan is never in XCom or a trigger's arguments, only here. The document is written atomically (a
reader sees the old one or the new one), is checked writable before any request, and is removed when the
run ends. A retry finds it by the same ``state_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from omni_provider.sync.engine.files import (
    check_file_location,
    is_url,
    local_path,
    replace_atomically,
)
from omni_provider.sync.engine.outcome import ReportRecord, write_jsonl

STATE_FORMAT = "omni-provider/run-state"
STATE_VERSION = 1
#: A retry continues from a state younger than this (seconds); older state is discarded.
DEFAULT_RESUME_WITHIN = 3600.0

_log = logging.getLogger("omni_provider.sync")


def fingerprint(*parts: object) -> str:
    """A digest of what a state was made for (target, host, options): a retry with other arguments does
    not continue someone else's run."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class RunStateStore:
    """The state document at ``path`` (a local path or an fsspec URL such as ``s3://bucket/omni/x.json``)."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.label = f"run state {self.path}"

    def __repr__(self) -> str:
        return f"RunStateStore({self.path!r})"

    @property
    def report_path(self) -> str:
        """Where every item's outcome so far is kept while the run is deferred (removed at the end): a run
        cancelled while deferred still leaves a report of every row."""
        return self.path + ".report.jsonl"

    def check(self) -> None:
        """Before any request: the location can be written."""
        check_file_location(self.path, "state_path")

    def save(self, document: dict[str, Any]) -> None:
        text = json.dumps(document, default=str, ensure_ascii=False)
        self._write(self.path, text)

    def save_report(self, outcomes: list[ReportRecord]) -> None:
        buffer = io.StringIO()
        write_jsonl(outcomes, buffer)
        self._write(self.report_path, buffer.getvalue())

    def _write(self, location: str, text: str) -> None:
        if is_url(location):
            # An object store's PUT replaces the whole object at once: a reader never sees half of it.
            import fsspec

            with fsspec.open(location, "w", encoding="utf-8") as stream:
                stream.write(text)
            return
        replace_atomically(local_path(location), lambda stream: stream.write(text))

    def load(self) -> dict[str, Any] | None:
        """The document, or None when there is none (or it is not a run state of this version)."""
        try:
            if is_url(self.path):
                import fsspec

                fs, path = fsspec.core.url_to_fs(self.path)
                if not fs.exists(path):
                    return None
                with fsspec.open(self.path, "r", encoding="utf-8") as stream:
                    document = json.load(stream)
            else:
                target = local_path(self.path)
                if not target.exists():
                    return None
                with target.open(encoding="utf-8") as stream:
                    document = json.load(stream)
        except (OSError, ValueError) as exc:
            _log.warning("Ignoring the unreadable run state at %s (%s)", self.path, type(exc).__name__)
            return None
        if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
            _log.warning("Ignoring %s: not an omni-provider run state", self.path)
            return None
        if document.get("version") != STATE_VERSION:
            _log.warning("Ignoring the run state at %s: version %r", self.path, document.get("version"))
            return None
        return document

    def remove(self) -> None:
        """The run ended: its state (and the interim report) go."""
        for location in (self.path, self.report_path):
            try:
                if is_url(location):
                    import fsspec

                    fs, path = fsspec.core.url_to_fs(location)
                    if fs.exists(path):
                        fs.rm(path)
                else:
                    Path(local_path(location)).unlink(missing_ok=True)
            except OSError as exc:
                _log.warning("Could not remove %s (%s)", location, type(exc).__name__)


def age_seconds(document: dict[str, Any]) -> float:
    return time.time() - float(document["run"]["saved_at"])
