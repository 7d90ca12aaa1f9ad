"""``deferrable=True`` for the sync operators: while Omni's rate window is full, the task hands the wait to
Airflow's triggerer and frees its worker slot (and pool slot).

The engine does the pausing (``sync.engine.steps``): it sends what the window allows now and, when the next
request would wait at least ``min_defer_seconds``, saves the run's state at ``state_path`` and raises
``RunDeferred``. Here that becomes ``self.defer(trigger=DateTimeTrigger(when the window is empty again),
method_name="execute_complete", kwargs={"state_path": ..., "deferrals": n}, timeout=...)``: the trigger's
arguments stay small, the plan is never in them or in XCom. ``execute_complete`` runs on a fresh operator
instance (any worker), loads the state and goes on.

``execution_timeout`` counts from the run's first step, across deferrals (Airflow resets a deferred task's
``start_date``, so the deadline is kept in the state): a window that frees only after it ends the run with a
complete report instead of deferring, and ``defer`` gets the time left as its ``timeout``. A retry whose
state is younger than ``resume_within`` continues from it without listing Omni again.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from omni_provider._compat import AirflowFailException, Context, conf, datetime_trigger
from omni_provider.airflow_support.report_sinks import DEFAULT_FALLBACK_DIR, ReportNaming, report_target
from omni_provider.client import OmniValidationError
from omni_provider.sync.engine.checks import check_count
from omni_provider.sync.engine.pause import DEFAULT_MIN_DEFER_SECONDS, Deferral, RunDeferred
from omni_provider.sync.engine.state import DEFAULT_RESUME_WITHIN, RunStateStore

#: The method a deferred sync task resumes in.
RESUME_METHOD = "execute_complete"


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (False unless configured)."""
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


def state_file_name(naming: ReportNaming) -> str:
    """``<dag>.<task>[.map<i>].<run id>.state.json``: no try number, so a retry finds it."""
    return dataclasses.replace(naming, try_number=None).file_name().removesuffix(".jsonl") + ".state.json"


def state_location(task: Any, naming: ReportNaming) -> str:
    """``state_path`` (a folder when it ends with ``/``), else beside the report, else in the fallback
    report folder."""
    name = state_file_name(naming)
    if task.state_path:
        path = str(task.state_path)
        return path.rstrip("/") + "/" + name if path.endswith("/") else path
    if task.report_path:
        head, slash, _ = report_target(str(task.report_path), naming).rpartition("/")
        return f"{head}{slash}{name}" if slash else name
    folder = Path(task.fallback_report_dir) if task.fallback_report_dir else DEFAULT_FALLBACK_DIR
    return str(folder.expanduser().resolve() / name)


def _seconds(value: Any, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise OmniValidationError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    return float(seconds)


def deferral_for(task: Any, naming: ReportNaming, state_path: str | None = None) -> Deferral | None:
    """The run's deferral settings (None unless ``deferrable``), checked before any request. The deadline
    is this try's ``execution_timeout`` from now; a resumed step takes the one saved in the state."""
    # The recipients operator offers no ``deferrable`` (its target keeps no run state): never deferred.
    if not getattr(task, "deferrable", False):
        return None
    check_count("max_workers", task.max_workers)
    timeout = task.execution_timeout
    return Deferral(
        RunStateStore(state_path or state_location(task, naming)),
        min_defer_seconds=_seconds(task.min_defer_seconds, "min_defer_seconds"),
        resume_within=_seconds(task.resume_within, "resume_within"),
        deadline=time.time() + timeout.total_seconds() if timeout is not None else None,
    )


def defer_task(task: Any, paused: RunDeferred) -> NoReturn:
    """Hand the wait to the triggerer: resume in ``execute_complete`` when the window is empty again."""
    moment = datetime.fromtimestamp(paused.resume_at, tz=UTC)
    timeout = None
    if paused.deadline is not None:
        timeout = timedelta(seconds=max(1.0, paused.deadline - time.time()))
    task.defer(
        trigger=datetime_trigger(moment),
        method_name=RESUME_METHOD,
        kwargs={"state_path": paused.state_path, "deferrals": paused.deferrals},
        timeout=timeout,
    )
    raise AssertionError("defer() returned")  # pragma: no cover - defer always raises TaskDeferred


def load_state(task: Any, context: Context, state_path: str | None) -> tuple[str, dict[str, Any]]:
    """A resumed step's state path and state, or a failure Airflow does not retry (the state was removed
    or damaged). ``state_path``: the trigger's argument; without it (``dag.test()`` on Airflow 3.3 resumes
    with the event only) the same path ``execute`` used, from the task and the context."""
    if not state_path:
        state_path = state_location(task, ReportNaming.from_context(context, task.task_id))
    document = RunStateStore(state_path).load()
    if document is None:
        raise AirflowFailException(
            f"The deferred sync cannot resume: no run state at {state_path} (removed or unreadable); "
            "re-run the task to sync from the start"
        )
    return state_path, document


__all__ = [
    "DEFAULT_MIN_DEFER_SECONDS",
    "DEFAULT_RESUME_WITHIN",
    "RESUME_METHOD",
    "Context",
    "default_deferrable",
    "defer_task",
    "deferral_for",
    "load_state",
    "state_location",
]
