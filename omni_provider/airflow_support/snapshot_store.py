"""The sync's snapshot on Airflow's storage: a local path, or any ObjectStoragePath URL (``s3://``,
``gs://``, ``s3://conn_id@bucket/...``), read and written with the credentials of Airflow's connections."""

from __future__ import annotations

from typing import Any

from omni_provider._compat import object_storage_path
from omni_provider.airflow_support.report_sinks import check_url_location
from omni_provider.sync.engine.files import is_url
from omni_provider.sync.snapshot.format import FileSnapshotStore


class ObjectStorageSnapshotStore(FileSnapshotStore):
    """``FileSnapshotStore`` whose URLs go through Airflow's ObjectStoragePath (the same atomic write: a
    temporary object beside the snapshot, then moved over it)."""

    def check(self) -> None:
        if is_url(self.path):
            check_url_location(self.path, "snapshot_path")
            return
        super().check()

    def _filesystem(self) -> tuple[Any, str]:
        path = object_storage_path(self.path)
        return path.fs, str(path.path)
