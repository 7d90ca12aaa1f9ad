"""Drive a deferrable operator as Airflow does (import as ``deferral_testkit``): ``execute`` ->
``TaskDeferred`` -> wait for the trigger's moment -> a fresh operator instance's ``execute_complete`` ->
... -> the summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omni_provider._compat import TaskDeferred


@dataclass
class Driven:
    summary: dict[str, Any] | None = None
    #: Every deferral, in order (the exception Airflow saw).
    deferrals: list[TaskDeferred] = field(default_factory=list)
    error: BaseException | None = None


def trigger_moment(deferred: TaskDeferred) -> float:
    """The epoch second the ``DateTimeTrigger`` fires at."""
    return float(deferred.trigger.moment.timestamp())


def drive(
    make: Callable[[], Any],
    context: dict[str, Any],
    *,
    steps: int = 1000,
    before_step: Callable[[int, TaskDeferred], bool] | None = None,
) -> Driven:
    """Run ``make()``'s task to its end; ``before_step(n, deferred)`` may return False to stop (the task is
    cancelled while deferred: nothing of it runs again)."""
    driven = Driven()
    try:
        driven.summary = make().execute(context)
        return driven
    except TaskDeferred as deferred:
        driven.deferrals.append(deferred)
    except Exception as exc:
        driven.error = exc
        return driven
    for step in range(steps):
        deferred = driven.deferrals[-1]
        if before_step is not None and not before_step(step, deferred):
            return driven
        time.sleep(max(0.0, trigger_moment(deferred) - time.time()))  # the triggerer's wait
        resume = getattr(make(), deferred.method_name)
        try:
            driven.summary = resume(context, event=deferred.trigger.moment, **(deferred.kwargs or {}))
            return driven
        except TaskDeferred as again:
            driven.deferrals.append(again)
        except Exception as exc:
            driven.error = exc
            return driven
    raise AssertionError(f"still deferred after {steps} steps")
