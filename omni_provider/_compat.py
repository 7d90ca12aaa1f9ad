"""Every Airflow name the package uses, imported in this one place, for Airflow 2.11 and 3.x.

Which shim, and why:

* Core names (hook and operator bases, ``Connection``, ``Context``, exceptions, ``mask_secret``,
  ``ObjectStoragePath``, ``Asset``) come from a small local try/except: the Task SDK path first (3.x),
  then the Airflow 2.11 path. Each is one line either way, mypy sees real classes (common-compat's
  ``sdk`` module resolves names through a lazy ``__getattr__``, which types as ``Any`` and so cannot be
  subclassed under ``mypy --strict``), and importing the hook does not load common-compat's import map.
* Hook lineage comes from ``apache-airflow-providers-common-compat`` (shipped with both Airflow 2.11 and
  3.x): on 2.11 its collector adapter turns the ``add_input_asset`` / ``add_output_asset`` calls into the
  dataset calls Airflow 2 has, which is not a one-liner worth copying. Without it, lineage is skipped
  with a log line, and nothing else changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

#: Airflow 3 moved the authoring API to the Task SDK (``airflow.sdk``) and renamed datasets to assets.
AIRFLOW_V_3_0_PLUS = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.0.0")

log = logging.getLogger(__name__)

if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import Asset, BaseHook, BaseOperator, Connection, Context
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.log import mask_secret
else:  # Airflow 2.11
    from airflow.configuration import conf
    from airflow.datasets import Dataset as Asset
    from airflow.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.models.connection import Connection
    from airflow.utils.context import Context
    from airflow.utils.log.secrets_masker import mask_secret


def object_storage_path(url: str) -> Any:
    """Airflow's fsspec path (s3://, gs://, file://...): ``airflow.sdk`` on 3.x, ``airflow.io.path`` on
    2.11. Imported on use: it loads fsspec."""
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(url)
    from airflow.io.path import ObjectStoragePath as Airflow2ObjectStoragePath

    return Airflow2ObjectStoragePath(url)


def datetime_trigger(moment: Any) -> Any:
    """A trigger firing at ``moment`` (an aware datetime): the standard provider's ``DateTimeTrigger`` when
    installed (Airflow 3.x ships it; 2.11 may have it), else Airflow 2.11's core one."""
    try:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    except ImportError:  # Airflow 2.11 without the standard provider
        from airflow.triggers.temporal import DateTimeTrigger  # type: ignore[no-redef]
    return DateTimeTrigger(moment)


def hook_lineage_collector() -> Any | None:
    """Airflow's hook-lineage collector with the asset API on every supported version, or None when
    ``apache-airflow-providers-common-compat`` is missing or too old to provide it."""
    try:
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
    except ImportError:
        log.info("Hook lineage is not reported: install apache-airflow-providers-common-compat to report it")
        return None
    return get_hook_lineage_collector()  # type: ignore[no-untyped-call]


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "Asset",
    "BaseHook",
    "BaseOperator",
    "Connection",
    "Context",
    "TaskDeferred",
    "conf",
    "datetime_trigger",
    "hook_lineage_collector",
    "mask_secret",
    "object_storage_path",
]
