"""Files the engine writes (the per-row report, the snapshot): a local path, or a URL through fsspec.

One place for the rules they follow: what counts as a URL, where a local path points, that a location is
checked before any request, that a snapshot is replaced atomically (a reader sees the old file or the new
one, never half of one), and that a report is written beside, never over, an earlier one
(``write_beside``: an orchestrator's retry of the same run keeps the first attempt's failed rows).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, ClassVar

from omni_provider.errors import OmniValidationError


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


#: How many names ``write_beside`` tries before it gives up.
MAX_NAME_ATTEMPTS = 100
#: Opens a new file for writing, or returns None when the name is taken.
OpenNew = Callable[[str], AbstractContextManager[IO[str]] | None]


def names_beside(target: str, tag: str = "") -> list[str]:
    """``target``, then fresh names beside it: ``<stem><tag><suffix>``, ``<stem><tag>.2<suffix>``, ...
    (``tag``, e.g. ``.try2``, names the attempt; it is not repeated when the name already ends with it)."""
    head, slash, name = target.rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    suffix = f".{suffix}" if suffix else ""
    if stem.endswith(tag):
        tag = ""
    names = [name]
    if tag:
        names.append(f"{stem}{tag}{suffix}")
    names += [f"{stem}{tag}.{n}{suffix}" for n in range(2, MAX_NAME_ATTEMPTS)]
    return [head + slash + n for n in names]


def open_new(location: str) -> AbstractContextManager[IO[str]] | None:
    """A new file at ``location`` (local path or fsspec URL) open for writing; None when it exists.

    Local files are created exclusively; on object stores an ``exists`` check picks the name, as close to
    "never replace" as a store without conditional writes allows."""
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        if fs.exists(path):
            return None
        return fsspec.open(location, "w", encoding="utf-8")  # type: ignore[no-any-return]
    target = local_path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return target.open("x", encoding="utf-8")
    except FileExistsError:
        return None


def write_beside(
    target: str, fill: Callable[[IO[str]], object], *, tag: str = "", opener: OpenNew = open_new
) -> tuple[str, bool]:
    """Write through ``fill`` to ``target``, or to the first free name beside it: never over an existing
    file (an earlier attempt's report). Returns the location written and whether it was renamed."""
    for attempt, candidate in enumerate(names_beside(target, tag)):
        stream = opener(candidate)
        if stream is None:
            continue
        with stream as opened:
            fill(opened)
        return candidate, attempt > 0
    raise FileExistsError(f"{target!r} and {MAX_NAME_ATTEMPTS} fresh names beside it all exist")


class StoredFile:
    """One file replaced whole (a snapshot, a plan): at a local path, or through fsspec at a URL such as
    ``s3://bucket/omni/plan.json`` (written to a temporary name beside it, then moved over it: an object
    store's copy is all-or-nothing). ``option`` names the argument in messages; ``noun`` in labels."""

    option: ClassVar[str] = "path"
    noun: ClassVar[str] = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.label = f"{self.noun} {self.path}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def check(self) -> None:
        check_file_location(self.path, self.option)

    def _filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and the path in it, for a URL."""
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.path)
        return fs, path

    def read(self) -> bytes | None:
        """The file's bytes; None when there is none yet."""
        if is_url(self.path):
            fs, path = self._filesystem()
            if not fs.exists(path):
                return None
            data: bytes = fs.cat_file(path)
            return data
        try:
            return local_path(self.path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: str) -> None:
        """Replace the file atomically: a reader sees the old one or the new one, never a mix."""
        if is_url(self.path):
            fs, path = self._filesystem()
            temporary = f"{path}.tmp-{uuid.uuid4().hex}"
            fs.pipe_file(temporary, data.encode("utf-8"))
            try:
                fs.mv(temporary, path)
            finally:
                if fs.exists(temporary):
                    fs.rm(temporary)
            return
        replace_atomically(local_path(self.path), lambda stream: stream.write(data))
