"""The connection id the user typed, while Airflow's Test button runs the hook under a temporary one.

Both Airflow 2.11 (``/api/v1/connections/test``) and 3.x (``/api/v2/connections/test``) rename the
connection being tested to a random id before calling ``test_connection()``, so a message naming the hook's
own id would name one the user never saw. The typed id is only ever shown in the Test message, never used to
look anything up.
"""

from __future__ import annotations

import importlib
from contextvars import ContextVar
from typing import Any

TEST_PATH_SUFFIX = "/connections/test"

#: Set by the Airflow 3.x API-server plugin (``airflow_support/plugin.py``) for the request it is handing on.
typed_id: ContextVar[str | None] = ContextVar("omni_tested_connection_id", default=None)


def connection_id_of(body: Any) -> str | None:
    """The ``connection_id`` of a Test request's JSON body, if it names one."""
    value = body.get("connection_id") if isinstance(body, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def typed_connection_id() -> str | None:
    """The id typed in the form being tested, where Airflow gives it; None outside a Test request."""
    typed = typed_id.get()
    if typed:
        return typed
    try:  # Airflow 2.11 tests inside the Flask request that carries the form (no Flask on Airflow 3)
        flask = importlib.import_module("flask")
    except ImportError:
        return None
    if not flask.has_request_context() or not flask.request.path.endswith(TEST_PATH_SUFFIX):
        return None
    return connection_id_of(flask.request.get_json(silent=True))
