"""The rejected-rows sink: one JSON line per rejected row (row, key, field, reason, code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from peak_provider.result import Rejection


class RejectedRowsSink:
    """Write rejections as JSON Lines to a local path or an ``ObjectStoragePath`` URL (``s3://…``).

    The file is created on the first rejection, so a clean load leaves nothing behind.
    """

    def __init__(self, path: str, resource: str):
        self.path = path
        self.resource = resource
        self.count = 0
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if "://" in self.path and not self.path.startswith("file://"):
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            target = ObjectStoragePath(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            return target.open("w")
        local = Path(self.path.removeprefix("file://"))
        local.parent.mkdir(parents=True, exist_ok=True)
        return local.open("w", encoding="utf-8")

    def write(self, rejection: Rejection) -> None:
        if self._file is None:
            self._file = self._open()
        record: dict[str, Any] = {"resource": self.resource, **rejection.summary(), "row": rejection.row}
        self._file.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
