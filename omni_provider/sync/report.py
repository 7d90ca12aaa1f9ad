"""Where a sync run's per-row report goes: a small protocol, and a JSON-lines file sink.

Each orchestrator adds its own sinks (Airflow: ObjectStoragePath and a SQL table); the engine only calls
``check`` before any request and ``write`` once every row has its outcome, also when the run was
interrupted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from omni_provider.client.errors import OmniValidationError
from omni_provider.sync.outcome import RowOutcome, write_jsonl


class ReportLocationError(OmniValidationError):
    """The report location cannot be written; raised before the sync sends anything."""


def check_writable_directory(directory: Path, target: str) -> None:
    """Create ``directory`` if needed and prove a file can be made in it, or raise ``ReportLocationError``
    naming ``target`` (the report path as the user gave it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A real probe: os.access() says yes to root on a read-only mount and ignores ACLs.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".omni-report-probe-"):
            pass
    except OSError as exc:
        raise ReportLocationError(
            f"report_path {target!r}: cannot write to directory {str(directory)!r} "
            f"({type(exc).__name__}: {exc.strerror or exc}). Nothing was sent to Omni"
        ) from None


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

    @property
    def is_url(self) -> bool:
        return "://" in self.path and not self.path.startswith("file://")

    def check(self) -> None:
        if not self.path.strip():
            raise OmniValidationError("report_path is empty")
        if self.is_url:
            try:
                import fsspec  # noqa: F401
            except ImportError:
                raise OmniValidationError(
                    f"report_path {self.path!r} is a URL, which needs fsspec and the filesystem's package "
                    "(e.g. s3fs); or give a local path"
                ) from None
            return
        check_writable_directory(self._local().parent, self.path)

    def _local(self) -> Path:
        return Path(self.path.removeprefix("file://")).expanduser().resolve()

    def write(self, outcomes: Sequence[RowOutcome], *, run_id: str) -> dict[str, Any]:
        if self.is_url:
            import fsspec

            with fsspec.open(self.path, "w", encoding="utf-8") as stream:
                write_jsonl(outcomes, stream)
            return {"report_path": self.path}
        target = self._local()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                write_jsonl(outcomes, stream)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return {"report_path": str(target)}
