"""Server-side row validation, compiled once per object into a plan of per-column checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from peak_provider.emulator import errors

#: Longest string the (emulated) warehouse stores; a server-side-only rule.
STRING_MAX_LENGTH = 65535

_TIMESTAMP_PATTERNS = {
    "YYYY-MM-DD HH:MM:SS": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"),
    "YYYY-MM-DDTHH:MM:SSZ": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"),
    "YYYY-MM-DD HH:MM:SS+00:00": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\+00:00"),
}
_DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

#: Distinct key shapes a validator remembers (rows of one object rarely have more than a handful).
_MAX_SHAPES = 64

RowError = dict[str, Any]
Check = Callable[[Any], RowError | None]


@dataclass(frozen=True)
class Column:
    """One column of an object as the emulator checks it (catalogue field or custom attribute)."""

    name: str
    type: str
    required: bool
    nullable: bool
    primary_key: bool = False
    custom: bool = False
    min_length: int | None = None
    max_length: int | None = None
    default: Any = None
    validations: tuple[dict[str, Any], ...] = field(default=())


def valid_timestamp(fmt: str, value: str) -> bool:
    """``value`` is exactly in ``fmt`` and names a real date and time.

    The pattern pins every character, so ``fromisoformat`` of the first 19 only checks the ranges
    (month 13, 31 April, 25 o'clock); no cache, real rows rarely repeat a timestamp.
    """
    if _TIMESTAMP_PATTERNS[fmt].fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def valid_date(value: str) -> bool:
    """``value`` is ``YYYY-MM-DD`` and a real date."""
    if _DATE_PATTERN.fullmatch(value) is None:
        return False
    try:
        date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


def _err(code: str, field_name: str | None, message: str) -> RowError:
    return {"code": code, "category": "VALIDATION", "field": field_name, "message": message}


_JSON_TYPE_NAMES = {str: "string", int: "integer", float: "float", bool: "boolean", dict: "object", list: "array"}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _type_check(col: Column, timestamp_format: str) -> Check:
    """A check for a non-null value of ``col``'s type (plus its length rules)."""
    name, kind = col.name, col.type
    max_len = STRING_MAX_LENGTH if col.max_length is None else min(col.max_length, STRING_MAX_LENGTH)
    min_len = col.min_length or 0

    def wrong(value: Any) -> RowError:
        return _err(errors.WRONG_TYPE, name, f"{name!r} must be {kind}, got {_json_type(value)}")

    if kind == "string":

        def check_string(value: Any) -> RowError | None:
            if type(value) is not str:
                return wrong(value)
            n = len(value)
            if n > max_len or n < min_len:
                return _err(errors.LENGTH_RULE, name, f"{name!r} has length {n}; allowed {min_len}..{max_len}")
            return None

        return check_string
    if kind == "integer":
        return lambda value: None if type(value) is int else wrong(value)
    if kind == "float":
        return lambda value: None if type(value) is float or type(value) is int else wrong(value)
    if kind == "boolean":
        return lambda value: None if type(value) is bool else wrong(value)
    if kind == "timestamp":

        def check_timestamp(value: Any) -> RowError | None:
            if type(value) is not str:
                return wrong(value)
            if valid_timestamp(timestamp_format, value):
                return None
            return _err(
                errors.BAD_FORMAT,
                name,
                f"{name!r} must be a timestamp formatted {timestamp_format}, got {value[:40]!r}",
            )

        return check_timestamp
    if kind == "date":

        def check_date(value: Any) -> RowError | None:
            if type(value) is not str:
                return wrong(value)
            if valid_date(value):
                return None
            return _err(errors.BAD_FORMAT, name, f"{name!r} must be a date YYYY-MM-DD, got {value[:40]!r}")

        return check_date
    if kind == "json":
        return lambda value: None
    raise ValueError(f"Unknown column type {kind!r}")


def _null_error(col: Column) -> RowError | None:
    """The error for ``null`` in ``col``, or ``None`` when null is allowed."""
    if col.primary_key:
        return _err(errors.PRIMARY_KEY_MISSING, col.name, f"primary-key attribute {col.name!r} is null")
    if not col.nullable:
        return _err(errors.NULL_NOT_ALLOWED, col.name, f"{col.name!r} must not be null")
    return None


class RowValidator:
    """Validates rows of one object; built once per (object, custom-attribute set)."""

    def __init__(self, columns: Sequence[Column], primary_key: Sequence[str], timestamp_format: str):
        self.columns = tuple(columns)
        self.primary_key = tuple(primary_key)
        entries = {c.name: (c.name, _type_check(c, timestamp_format), _null_error(c)) for c in columns}
        self._exact = dict(entries)
        self._lower = {name.lower(): entry for name, entry in entries.items()}
        self._required = frozenset(c.name for c in columns if c.required and not c.primary_key)
        self._needed = self._required | frozenset(self.primary_key)  # a row without one fails whatever its values
        self._shapes: dict[tuple[str, ...], tuple[tuple[Check, RowError | None], ...]] = {}

    def _shape_checks(self, keys: tuple[str, ...]) -> tuple[tuple[Check, RowError | None], ...] | None:
        """The value checks of rows whose keys are exactly ``keys``, in order, or ``None`` when such a row
        fails whatever its values (a key unknown or not spelt as its column, a required or key column
        missing). Only passing shapes are remembered (a batch's rows nearly always share one), at most
        ``_MAX_SHAPES``, so junk keys neither hold memory nor crowd out the real shapes."""
        checks = self._shapes.get(keys)
        if checks is not None:
            return checks
        exact = self._exact
        if not (all(k in exact for k in keys) and self._needed.issubset(keys)):
            return None
        checks = tuple((exact[k][1], exact[k][2]) for k in keys)
        if len(self._shapes) < _MAX_SHAPES:
            self._shapes[keys] = checks
        return checks

    def validate(self, rows: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split rows into valid rows (keys normalised to column names) and failure entries."""
        exact, lower, required, pk = self._exact, self._lower, self._required, self.primary_key
        valid: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            if type(row) is not dict:
                failed.append(
                    {
                        "index": index,
                        "row": row,
                        "errors": [_err(errors.ROW_NOT_OBJECT, None, f"row must be an object, got {_json_type(row)}")],
                    }
                )
                continue
            checks = self._shape_checks(tuple(row))
            if checks is not None:
                # Fast path: every key is its column's own spelling, so ``row`` is already normalised;
                # any failing value sends the row through the full pass below for its complete errors.
                for (check, null_error), value in zip(checks, row.values(), strict=True):
                    if (null_error if value is None else check(value)) is not None:
                        break
                else:
                    valid.append(row)
                    continue
            out: dict[str, Any] = {}
            row_errors: list[RowError] | None = None
            for key, value in row.items():
                entry = exact.get(key) or lower.get(key.lower())
                if entry is None:
                    row_errors = row_errors or []
                    row_errors.append(_err(errors.UNKNOWN_ATTRIBUTE, key, f"unknown attribute {key!r}"))
                    continue
                name, check, null_error = entry
                if name in out:
                    row_errors = row_errors or []
                    message = f"attribute {name!r} given twice (keys are case-insensitive)"
                    row_errors.append(_err(errors.DUPLICATE_ATTRIBUTE, key, message))
                    continue
                out[name] = value
                problem = null_error if value is None else check(value)
                if problem is not None:
                    row_errors = row_errors or []
                    row_errors.append(problem)
            if not out.keys() >= required:
                row_errors = row_errors or []
                for name in sorted(required - out.keys()):
                    row_errors.append(_err(errors.MISSING_REQUIRED, name, f"required attribute {name!r} is missing"))
            for name in pk:
                if name not in out:
                    row_errors = row_errors or []
                    row_errors.append(
                        _err(errors.PRIMARY_KEY_MISSING, name, f"primary-key attribute {name!r} is missing")
                    )
            if row_errors:
                failed.append({"index": index, "row": row, "errors": row_errors})
            else:
                valid.append(out)
        return valid, failed
