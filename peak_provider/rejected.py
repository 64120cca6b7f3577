"""The rejected-rows sink: one JSON line per rejected row (row, key, field, reason, code)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from peak_provider.describe import describe, printable
from peak_provider.result import Rejection

#: Longest text the sink keeps of one value: a longer string, bytes value or container is cut, with a marker.
MAX_VALUE_CHARS = 10_000


class RejectedRowsSink:
    """Write rejections as JSON Lines to a local path or an ``ObjectStoragePath`` URL (``s3://…``).

    The file is created on the first rejection, so a clean load leaves nothing behind.
    """

    def __init__(self, path: str, resource: str, *, append: bool = False):
        self.path = path
        self.mode = "a" if append else "w"  # a resumed attempt adds to what earlier attempts wrote
        self.resource = resource
        self.count = 0
        self._file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if "://" in self.path and not self.path.startswith("file://"):
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            target = ObjectStoragePath(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            return target.open(self.mode)
        local = Path(self.path.removeprefix("file://"))
        local.parent.mkdir(parents=True, exist_ok=True)
        return local.open(self.mode, encoding="utf-8")

    def write(self, rejection: Rejection) -> None:
        if self._file is None:
            self._file = self._open()
        record: dict[str, Any] = {"resource": self.resource, **rejection.summary(), "row": rejection.row}
        self._file.write(_json_line(record) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of JSON whatever its values: each bounded, none able to fail the write.

    The row is written value by value, so one value that cannot be written (or is cut) spoils nothing else;
    a lone surrogate becomes the JSON escape ``\\udc80``, so the line is valid UTF-8.
    """
    row = record.get("row")
    parts = [f"{_key(k)}:{_value(v)}" for k, v in record.items() if k != "row"]
    if isinstance(row, dict):
        parts.append('"row":{' + ",".join(f"{_key(k)}:{_value(v)}" for k, v in row.items()) + "}")
    else:
        parts.append(f'"row":{_value(row)}')
    return printable("{" + ",".join(parts) + "}")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _quote(_cut(key))
    try:
        return _quote(_leaf(key))
    except Exception:
        return _quote(describe(key))


def _value(value: Any) -> str:
    """One value's JSON text: as it is when small and JSON-able, else bounded text saying what it was."""
    try:
        if isinstance(value, str):
            return _quote(_cut(value))
        if isinstance(value, bytes | bytearray | memoryview):
            return _quote(describe(value, MAX_VALUE_CHARS))
        if isinstance(value, float) and not math.isfinite(value):
            return _quote(float.__repr__(value))  # NaN is not JSON
        text = _DUMPS(value)
    except Exception:  # a cycle, an int past the digit limit, NaN in a list, a __str__ that raises
        return _quote(describe(value, MAX_VALUE_CHARS))
    return text if len(text) <= MAX_VALUE_CHARS else _quote(_cut(text))


def _leaf(value: Any) -> str:
    """What JSON has no type for (datetime, Decimal, bytes, objects): its text, as ``default=str`` wrote it."""
    if isinstance(value, bytes | bytearray | memoryview):
        return describe(value, MAX_VALUE_CHARS)
    return _cut(str(value))


_DUMPS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_leaf).encode
_quote = json.encoder.encode_basestring


def _cut(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return str.__str__(text)
    return f"{str.__getitem__(text, slice(0, MAX_VALUE_CHARS))}… [cut: {len(text):,} characters in all]"
