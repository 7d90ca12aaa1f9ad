"""What the engine and every target need of a logger."""

from __future__ import annotations

from typing import Protocol


class RunLog(Protocol):
    """What the engine needs of a logger: ``logging.Logger``, Airflow's task log and Dagster's
    ``context.log`` all fit."""

    def info(self, msg: str, /, *args: object) -> object: ...
    def warning(self, msg: str, /, *args: object) -> object: ...
    def error(self, msg: str, /, *args: object) -> object: ...
    def exception(self, msg: str, /, *args: object) -> object: ...
