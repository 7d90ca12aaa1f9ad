"""Background saving of the state file.

Saving on every request would make writes slow with large states, so a daemon thread saves
at most every ``interval`` seconds when something changed, and ``stop()`` always flushes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .state import EmulatorState

log = logging.getLogger(__name__)


class StateSaver:
    def __init__(self, state: EmulatorState, path: str | os.PathLike[str], interval: float = 0.5) -> None:
        self.state = state
        self.path = Path(path)
        self.interval = interval
        self._saved_version: int | None = None
        self._save_lock = threading.Lock()  # a flush request and the timer must not interleave
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.saves = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="omni-emulator-saver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer and write any unsaved change."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self, *, force: bool = False) -> bool:
        """Save now if the state changed since the last save (or always with ``force``)."""
        with self._save_lock:
            if not force and self._saved_version == self.state.version and self.path.exists():
                return False
            self._saved_version = self.state.save(self.path)
            self.saves += 1
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # keep serving; the next tick or stop() retries
                log.exception("could not save emulator state to %s", self.path)
