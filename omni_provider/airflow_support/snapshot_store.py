"""The sync's files on Airflow's storage (the snapshot, the plan): a local path, or any ObjectStoragePath
URL (``s3://``, ``gs://``, ``s3://conn_id@bucket/...``), read and written with the credentials of Airflow's
connections."""

from __future__ import annotations

from typing import Any

from omni_provider._compat import object_storage_path
from omni_provider.airflow_support.report_sinks import check_url_location
from omni_provider.sync.engine.files import StoredFile, is_url
from omni_provider.sync.engine.plan_artifact import PlanStore
from omni_provider.sync.snapshot.format import FileSnapshotStore


class ObjectStorageFile(StoredFile):
    """A ``StoredFile`` whose URLs go through Airflow's ObjectStoragePath (the same atomic write: a
    temporary object beside the file, then moved over it)."""

    def check(self) -> None:
        if is_url(self.path):
            check_url_location(self.path, self.option)
            return
        super().check()

    def _filesystem(self) -> tuple[Any, str]:
        path = object_storage_path(self.path)
        return path.fs, str(path.path)


class ObjectStorageSnapshotStore(ObjectStorageFile, FileSnapshotStore):
    """The snapshot on Airflow's storage."""


class ObjectStoragePlanStore(ObjectStorageFile, PlanStore):
    """The plan file on Airflow's storage."""
