"""The wire format: a warehouse row -> the JSON object the API documents for a resource.

:class:`RowEncoder` checks and converts each value by its field's catalogue type and returns the row's
compact UTF-8 JSON, or a :class:`~peak_provider.result.Rejection` naming the field and the problem.

- ``timestamp``: the application's format (inventory ``YYYY-MM-DD HH:MM:SS``, b2c ``YYYY-MM-DDTHH:MM:SSZ``);
  aware datetimes are converted to UTC, naive ones are read in ``source_timezone``; ISO strings are parsed.
- ``date``: ``YYYY-MM-DD``. ``integer``: integral values only (2.0 -> 2; 2.5 is rejected).
- ``float``: floats as their shortest repr; a ``Decimal`` as its own digits (``Decimal('2.50')`` -> ``2.50``), so
  nothing is rounded on the way; one too large for a float is rejected.
- NaN and Infinity are rejected everywhere. ``None`` -> ``null`` where the field is nullable.
- Column names match case-insensitively; columns not selected are omitted (never sent as null), so an
  UPSERT does not blank fields the query did not select. Unknown columns reject the row unless they are
  declared custom attributes (UPPERCASE names, as the API requires).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from peak_provider.exceptions import PeakConfigError
from peak_provider.resources import FIELD_TYPES, Field, Resource
from peak_provider.result import Rejection

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_quote: Callable[[str], str] = json.encoder.encode_basestring  # the C quoting json.dumps uses; UTF-8 kept as is
_FLOAT_MAX_EXPONENT = 307  # a Decimal of 1E+308 or more would be read back as infinity


class _Bad(Exception):
    """A value that cannot be sent; the message is the reason."""


def _type_name(value: Any) -> str:
    return type(value).__name__


# --- value converters, one per catalogue type: a non-null value -> its JSON text -------------------
# Each tests the common exact type first (this runs for every value of every row), then the rest.


def _string(value: Any) -> str:
    if type(value) is str:
        return _quote(value)
    if isinstance(value, str):
        return _quote(str(value))
    if isinstance(value, bool) or not isinstance(value, int | Decimal | uuid.UUID):
        raise _Bad(f"expected a string, got {_type_name(value)} {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise _Bad(f"{value} is not a finite number")
    return _quote(str(value))


def _integer(value: Any) -> str:
    if type(value) is int:
        return int.__repr__(value)
    if isinstance(value, bool):
        raise _Bad(f"expected an integer, got bool {value!r}")
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise _Bad(f"{value} is not a finite number")
        if value != int(value):
            raise _Bad(f"{value} is not an integer")
        return int.__repr__(int(value))
    raise _Bad(f"expected an integer, got {_type_name(value)} {value!r}")


def _float(value: Any) -> str:
    """Floats and ints as they are; a ``Decimal`` as its own digits (exact, and 10x cheaper than via float)."""
    kind = type(value)
    if kind is Decimal:
        if not value.is_finite():
            raise _Bad(f"{value} is not a finite number")
        if value.adjusted() > _FLOAT_MAX_EXPONENT:
            raise _Bad(f"{value} is too large for a float")
        return value.__str__()
    if kind is float:
        if not math.isfinite(value):
            raise _Bad(f"{value} is not a finite number")
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if isinstance(value, bool):
        raise _Bad(f"expected a number, got bool {value!r}")
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):  # subclasses, such as numpy.float64
        return _float(float(value))
    if isinstance(value, Decimal):
        return _float(Decimal(value))
    raise _Bad(f"expected a number, got {_type_name(value)} {value!r}")


_TRUE = {"true": True, "t": True, "yes": True, "1": True, "false": False, "f": False, "no": False, "0": False}


def _boolean(value: Any) -> str:
    flag = value if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)) else None
    if isinstance(value, str):
        flag = _TRUE.get(value.strip().lower())
    if flag is None:
        raise _Bad(f"expected a boolean, got {_type_name(value)} {value!r}")
    return "true" if flag else "false"


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise _Bad(f"{value.isoformat()} has a time of day; the field is a date")
        return f'"{value.date().isoformat()}"'
    if isinstance(value, date):
        return f'"{value.isoformat()}"'
    if isinstance(value, str):
        try:
            return f'"{date.fromisoformat(value.strip()).isoformat()}"'
        except ValueError:
            raise _Bad(f"cannot parse {value!r} as a date (YYYY-MM-DD)") from None
    raise _Bad(f"expected a date, got {_type_name(value)} {value!r}")


def _json(value: Any) -> str:
    if isinstance(value, Decimal | float):
        return _float(value)
    if isinstance(value, str | int | dict | list):
        try:
            return _JSON.encode(value)
        except (ValueError, TypeError) as exc:
            raise _Bad(f"not JSON-serialisable: {exc}") from None
    raise _Bad(f"expected a JSON value, got {_type_name(value)}")


_TWO_DIGITS = tuple(f"{i:02d}" for i in range(60))


def _timestamp_converter(fmt: str, source_tz: tzinfo) -> Callable[[Any], str]:
    """A converter from datetime/date/ISO string to ``fmt`` in UTC.

    Its text is the calendar day's, kept per day (rows of a load share few days; cleared past 10,000 of
    them), then the clock from a table of two-digit strings: 5x faster than ``%02d`` or ``strftime``.
    """
    sep = "T" if fmt == "YYYY-MM-DDTHH:MM:SSZ" else " "
    tail = {"YYYY-MM-DDTHH:MM:SSZ": "Z", "YYYY-MM-DD HH:MM:SS+00:00": "+00:00"}.get(fmt, "") + '"'
    digits = _TWO_DIGITS
    days: dict[date, str] = {}
    naive_is_utc = source_tz is UTC

    def convert(value: Any) -> str:
        if type(value) is not datetime:  # subclasses (pendulum), dates and strings take the long way
            value = _as_datetime(value)
        zone = value.tzinfo
        if zone is None:
            if not naive_is_utc:
                value = value.replace(tzinfo=source_tz).astimezone(UTC)
        elif zone is not UTC and value.utcoffset():  # not UTC already (a zero timedelta is false)
            value = value.astimezone(UTC)
        day = value.date()
        head = days.get(day)
        if head is None:
            if len(days) >= 10_000:
                days.clear()
            head = days[day] = f'"{day.isoformat()}{sep}'
        return f"{head}{digits[value.hour]}:{digits[value.minute]}:{digits[value.second]}{tail}"

    return convert


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(0))
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(f"cannot parse {value!r} as a timestamp") from None
    raise _Bad(f"expected a timestamp, got {_type_name(value)} {value!r}")


_CONVERTERS: dict[str, Callable[[Any], str]] = {
    "string": _string,
    "integer": _integer,
    "float": _float,
    "boolean": _boolean,
    "date": _date,
    "json": _json,
}


# --- the per-column plan and the encoder -----------------------------------------------------------

#: One planned column: (source key or index, field name, '"name":' JSON text, converter, reason null is refused
#: or None where null is allowed).
_Column = tuple[Any, str, str, Callable[[Any], str], str | None]


class _Plan:
    """How to turn rows with one particular column layout into wire rows (built once per layout)."""

    __slots__ = ("columns", "key_positions", "problem")

    def __init__(
        self,
        columns: list[_Column],
        key_positions: list[tuple[str, Any]],
        problem: tuple[str | None, str] | None,
    ):
        self.columns = columns
        self.key_positions = key_positions  # (pk field name, source key or index)
        self.problem = problem  # a (field, reason) that rejects every row of this layout


class RowEncoder:
    """Encode rows of one resource to wire JSON.

    :param resource: the catalogue resource.
    :param timestamp_format: one of :data:`~peak_provider.resources.TIMESTAMP_FORMATS`.
    :param source_timezone: the zone naive datetimes are in.
    :param custom_attributes: UPPERCASE custom attribute name -> catalogue type.
    :param column_map: source column -> field name, applied before matching.
    """

    def __init__(
        self,
        resource: Resource,
        timestamp_format: str,
        source_timezone: str = "UTC",
        custom_attributes: Mapping[str, str] | None = None,
        column_map: Mapping[str, str] | None = None,
    ):
        self.resource = resource
        tz: tzinfo = UTC if source_timezone.upper() == "UTC" else ZoneInfo(source_timezone)
        self._converters = {**_CONVERTERS, "timestamp": _timestamp_converter(timestamp_format, tz)}
        self._fields: dict[str, Field] = {f.name.lower(): f for f in resource.fields}
        for name, type_ in (custom_attributes or {}).items():
            if name != name.upper():
                raise PeakConfigError(
                    f"{resource.name}: custom attribute {name!r} must be UPPERCASE (the API requires it)"
                )
            if type_ not in FIELD_TYPES:
                raise PeakConfigError(
                    f"{resource.name}: custom attribute {name!r} has unknown type {type_!r}; "
                    f"use one of {', '.join(FIELD_TYPES)}"
                )
            self._fields.setdefault(name.lower(), Field(name, type_, required=False, nullable=True))
        self._column_map = {k.lower(): v for k, v in (column_map or {}).items()}
        self._pk = set(resource.primary_key)
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    def plan(self, columns: Sequence[str], positional: bool) -> _Plan:
        """Match a column layout to fields (cached). ``positional``: rows are sequences, not mappings."""
        cache_key = (positional, *columns)
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = self._plans[cache_key] = self._build_plan(columns, positional)
        return plan

    def _build_plan(self, columns: Sequence[str], positional: bool) -> _Plan:
        planned: list[_Column] = []
        seen: dict[str, str] = {}
        problem: tuple[str | None, str] | None = None
        for i, col in enumerate(columns):
            name = self._column_map.get(col.lower(), col)
            field = self._fields.get(name.lower())
            if field is None:
                problem = problem or (
                    col,
                    f"unknown column {col!r} for {self.resource.name} (custom attributes must be declared "
                    "and UPPERCASE)",
                )
                continue
            if field.name in seen:
                problem = problem or (field.name, f"columns {seen[field.name]!r} and {col!r} both map to it")
                continue
            seen[field.name] = col
            source = i if positional else col
            null_reason: str | None = None
            if field.name in self._pk:
                null_reason = "primary-key part is null"
            elif not field.nullable:
                null_reason = "null is not allowed"
            key_text = ("," if planned else "{") + _quote(field.name) + ":"
            planned.append((source, field.name, key_text, self._converters[field.type], null_reason))
        missing = [f.name for f in self.resource.fields if f.required and f.name not in seen]
        if missing and problem is None:
            problem = (missing[0], f"required field {missing[0]!r} is missing (columns: {', '.join(columns)})")
        if not planned and problem is None:
            problem = (None, "no columns to send")
        key_positions = [(name, _source_of(planned, name)) for name in self.resource.primary_key]
        return _Plan(planned, key_positions, problem)

    def encode(self, row: Any, plan: _Plan) -> bytes | Rejection:
        """One row -> its wire JSON bytes, or the :class:`Rejection` that says why it cannot be sent."""
        if plan.problem is not None:
            return self._reject(row, plan, *plan.problem)
        parts = []
        for source, name, key_text, convert, null_reason in plan.columns:
            value = row[source]
            if value is None:
                if null_reason is not None:
                    return self._reject(row, plan, name, null_reason)
                parts.append(key_text + "null")
                continue
            try:
                parts.append(key_text + convert(value))
            except (_Bad, ValueError) as exc:  # ValueError: an int past Python's 4,300-digit str() limit
                return self._reject(row, plan, name, str(exc))
        parts.append("}")
        return "".join(parts).encode()

    def _reject(self, row: Any, plan: _Plan, field: str | None, reason: str) -> Rejection:
        key = {name: _jsonable(row[src]) if src is not None else None for name, src in plan.key_positions}
        as_read = dict(row) if isinstance(row, Mapping) else {c[1]: row[c[0]] for c in plan.columns}
        return Rejection(key=key, field=field, reason=f"{self.resource.name}: {reason}", row=as_read)

    def key_of(self, wire_row: Mapping[str, Any]) -> dict[str, Any]:
        """The primary key of a row as sent (used to name rows the API rejected)."""
        return {name: wire_row.get(name) for name in self.resource.primary_key}


def _source_of(planned: list[_Column], name: str) -> Any:
    """Where a field's value sits in the source row (key or index), or None if not selected."""
    return next((p[0] for p in planned if p[1] == name), None)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# --- the API's answer ----------------------------------------------------------------------------------

_INDEX_KEYS = ("index", "rowIndex", "row_index", "idx", "position")
_ROW_KEYS = ("row", "record", "data")
_FIELD_KEYS = ("field", "column", "attribute", "columnName")
_MESSAGE_KEYS = ("message", "reason", "errorMessage", "error", "description")
_CODE_KEYS = ("code", "errorCode", "error_code")


def failed_entries(payload: Any) -> list[dict[str, Any]]:
    """The ``failed`` array of an ingest response, each entry normalised to index/row/field/code/reason.

    The real response shape is only partly documented, so this reads it tolerantly: an entry may carry
    an index or the row itself, one error or a list of them; an entry of unknown shape is kept whole in
    the reason rather than dropped.
    """
    if not isinstance(payload, dict):
        return []
    raw: list[Any] = next(
        (payload[k] for k in ("failed", "failedRows", "failed_rows") if isinstance(payload.get(k), list)), []
    )
    return [_normalise_failed(entry) for entry in raw]


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _normalise_failed(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        return {
            "index": None,
            "row": None,
            "field": None,
            "code": None,
            "reason": f"API rejected a row: {entry!r}"[:500],
        }
    index = _first(entry, _INDEX_KEYS)
    row = _first(entry, _ROW_KEYS)
    errors = entry.get("errors")
    if isinstance(errors, list) and errors:
        parts = [e if isinstance(e, dict) else {"message": str(e)} for e in errors]
    elif isinstance(entry.get("error"), dict):
        parts = [entry["error"]]
    else:
        parts = [entry]
    reasons = []
    for part in parts:
        message = _first(part, _MESSAGE_KEYS)
        category = part.get("category")
        field = _first(part, _FIELD_KEYS)
        if message is None:
            message = json.dumps({k: v for k, v in part.items() if k not in _ROW_KEYS}, default=str)
        reasons.append(
            " ".join(str(p) for p in (f"[{category}]" if category else None, field and f"{field}:", message) if p)
        )
    first = parts[0]
    return {
        "index": index if isinstance(index, int) and not isinstance(index, bool) else None,
        "row": row if isinstance(row, dict) else None,
        "field": _first(first, _FIELD_KEYS),
        "code": _first(first, _CODE_KEYS),
        "reason": "; ".join(reasons)[:500],
    }
