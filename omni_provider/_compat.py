"""Airflow imports in one place (Airflow 3 Task SDK paths)."""

from airflow.sdk import BaseHook, BaseOperator, Connection, Context
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)
from airflow.sdk.log import mask_secret

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "Connection",
    "Context",
    "mask_secret",
]
