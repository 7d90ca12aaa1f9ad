"""Where a sync run's per-row report goes: a small protocol, and a JSON-lines file sink.

Each orchestrator adds its own sinks (Airflow: ObjectStoragePath and a SQL table); the engine only calls
``check`` before any request and ``write`` once every row has its outcome, also when the run was
interrupted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from omni_provider.sync.engine.files import (
    ReportLocationError,
    check_file_location,
    check_writable_directory,
    is_url,
    local_path,
    write_beside,
)
from omni_provider.sync.engine.outcome import ReportRecord, write_jsonl

_log = logging.getLogger("omni_provider.sync")


@runtime_checkable
class ReportSink(Protocol):
    #: What the sink writes to, for messages ("report file s3://...").
    label: str

    def check(self) -> None:
        """Refuse a bad configuration (raise ``OmniValidationError``); called before any request."""

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        """Deliver the per-row outcomes; return what the run's summary says about it (e.g. the path). A
        file is written beside, never over, an existing one (``files.write_beside``)."""


class JsonlFileSink:
    """One JSON object per row, to a local path or, through fsspec when it is installed, to a URL such as
    ``s3://bucket/omni/run.jsonl``. Never over an existing file: when the name is taken (an earlier
    attempt of the same run, e.g. an orchestrator's retry) the report goes to a fresh name beside it
    (``run.<attempt>.jsonl`` / ``run.2.jsonl``), and the summary's ``report_path`` says which."""

    def __init__(self, path: str | os.PathLike[str], *, attempt: str = "", log: Any = None) -> None:
        self.path = os.fspath(path)
        #: Names the attempt in a fresh name (e.g. ``.retry1``); empty: a counter only.
        self.attempt = attempt
        self.log = log or _log
        self.label = f"report file {self.path}"

    def __repr__(self) -> str:
        return f"JsonlFileSink({self.path!r})"

    def check(self) -> None:
        check_file_location(self.path, "report_path")

    def write(self, outcomes: Sequence[ReportRecord], *, run_id: str) -> dict[str, Any]:
        written, renamed = write_beside(
            self.path, lambda stream: write_jsonl(outcomes, stream), tag=self.attempt
        )
        if not is_url(written):
            written = str(local_path(written))
        if renamed:
            self.log.warning(
                "A report already exists at %s (an earlier attempt?); it is kept and this report is %s",
                self.path,
                written,
            )
        return {"report_path": written}


__all__ = ["JsonlFileSink", "ReportLocationError", "ReportSink", "check_writable_directory"]
