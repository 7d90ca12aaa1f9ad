"""What the Omni operators share: Omni errors mapped to Airflow's retry or fail, and the summary to XCom.

Each operator imports from here, never from another operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omni_provider._compat import AirflowException, AirflowFailException, Context
from omni_provider.client import OmniError
from omni_provider.sync.errors import rerun_may_help


def fail_or_retry(exc: OmniError) -> AirflowException:
    """The Airflow exception for an Omni error: retryable only when a later try could succeed (429, 5xx,
    network, users being added while listing, failed writes a re-plan may apply)."""
    message = str(exc)
    return AirflowException(message) if rerun_may_help(exc) else AirflowFailException(message)


def push_summary(
    context: Context, summary: Mapping[str, Any], log: Any, *, key: str = "sync_summary"
) -> None:
    """The run's summary to XCom, also when the task fails; a failing push never hides the run's outcome."""
    ti = context.get("ti")
    if ti is None:
        return
    try:
        ti.xcom_push(key=key, value=dict(summary))
    except Exception:
        log.exception("Could not push %s to XCom", key)
