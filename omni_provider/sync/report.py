"""Where a sync run's per-row report goes: a small protocol, and a JSON-lines file sink.

Each orchestrator adds its own sinks (Airflow: ObjectStoragePath and a SQL table); the engine only calls
``check`` before any request and ``write`` once every row has its outcome, also when the run was
interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from omni_provider.sync.files import (
    ReportLocationError,
    check_file_location,
    check_writable_directory,
    is_url,
    local_path,
    replace_atomically,
)
from omni_provider.sync.outcome import RowOutcome, write_jsonl


@runtime_checkable
class ReportSink(Protocol):
    #: What the sink writes to, for messages ("report file s3://...").
    label: str

    def check(self) -> None:
        """Refuse a bad configuration (raise ``OmniValidationError``); called before any request."""

    def write(self, outcomes: Sequence[RowOutcome], *, run_id: str) -> dict[str, Any]:
        """Deliver the per-row outcomes; return what the run's summary says about it (e.g. the path)."""


class JsonlFileSink:
    """One JSON object per row, to a local path or, through fsspec when it is installed, to a URL such as
    ``s3://bucket/omni/run.jsonl``. A local file is replaced atomically, so a reader never sees half a
    report."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.label = f"report file {self.path}"

    def __repr__(self) -> str:
        return f"JsonlFileSink({self.path!r})"

    def check(self) -> None:
        check_file_location(self.path, "report_path")

    def write(self, outcomes: Sequence[RowOutcome], *, run_id: str) -> dict[str, Any]:
        if is_url(self.path):
            import fsspec

            with fsspec.open(self.path, "w", encoding="utf-8") as stream:
                write_jsonl(outcomes, stream)
            return {"report_path": self.path}
        target = local_path(self.path)
        replace_atomically(target, lambda stream: write_jsonl(outcomes, stream))
        return {"report_path": str(target)}


__all__ = ["JsonlFileSink", "ReportLocationError", "ReportSink", "check_writable_directory"]
