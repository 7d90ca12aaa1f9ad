"""Files the engine writes (the per-row report, the snapshot): a local path, or a URL through fsspec.

One place for the rules both follow: what counts as a URL, where a local path points, that a location is
checked before any request, and that a local file is replaced atomically (a reader sees the old file or
the new one, never half of one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from omni_provider.client.errors import OmniValidationError


class ReportLocationError(OmniValidationError):
    """A report or snapshot location cannot be written; raised before the sync sends anything."""


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> Path:
    return Path(path.removeprefix("file://")).expanduser().resolve()


def check_writable_directory(directory: Path, target: str, what: str = "report_path") -> None:
    """Create ``directory`` if needed and prove a file can be made in it, or raise ``ReportLocationError``
    naming ``target`` (the path as the user gave it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A real probe: os.access() says yes to root on a read-only mount and ignores ACLs.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".omni-report-probe-"):
            pass
    except OSError as exc:
        raise ReportLocationError(
            f"{what} {target!r}: cannot write to directory {str(directory)!r} "
            f"({type(exc).__name__}: {exc.strerror or exc}). Nothing was sent to Omni"
        ) from None


def check_file_location(path: str, what: str) -> None:
    """Before any request: a URL needs fsspec; a local file's folder must be writable."""
    if not path.strip():
        raise OmniValidationError(f"{what} is empty")
    if is_url(path):
        try:
            import fsspec  # noqa: F401
        except ImportError:
            raise OmniValidationError(
                f"{what} {path!r} is a URL, which needs fsspec and the filesystem's package (e.g. s3fs); "
                "or give a local path"
            ) from None
        return
    local = local_path(path)
    if local.is_dir():
        raise ReportLocationError(f"{what} {path!r} is a directory; name a file in it")
    check_writable_directory(local.parent, path, what)


def replace_atomically(target: Path, fill: Callable[[IO[str]], object]) -> None:
    """Write through ``fill`` to a temporary file beside ``target``, flush it to disk, then rename it over
    ``target`` (atomic on POSIX and Windows)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            fill(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
