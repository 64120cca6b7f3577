"""The wire format: a warehouse row -> the JSON object the API documents for a resource.

:class:`RowEncoder` checks and converts each value by its field's catalogue type and returns the row's
compact UTF-8 JSON, or a :class:`~peak_provider.result.Rejection` naming the field and the problem.
Whatever Python value a field holds, ``encode()`` does not raise: a value that cannot be sent rejects its
row alone, with the row's key, the field and a reason quoting at most ~200 characters of the value
(:func:`~peak_provider.describe.describe`).

- ``string``: text as it is, NUL included (sent as ``\\u0000``). A lone surrogate (``'\\ud800'``, left by
  decoding with ``surrogateescape``) is not Unicode text and UTF-8 cannot carry it: the row is rejected.
- ``timestamp``: the application's format (inventory ``YYYY-MM-DD HH:MM:SS``, b2c ``YYYY-MM-DDTHH:MM:SSZ``),
  in UTC and in whole seconds; aware datetimes are converted to UTC, naive ones are read in
  ``source_timezone``; ISO strings are parsed. One whose UTC instant is outside years 1..9999 (the
  ``9999-12-31 23:59:59`` "valid to" placeholder read in America/New_York) is rejected. Sub-seconds are
  dropped, so two versions 0.5 s apart get the same timestamp: counted in
  :attr:`RowEncoder.truncated_subseconds`.
- Naive datetimes in a zone with DST: a naive value has already lost which instant it was, so a wall time
  the clock showed twice (the fall-back hour) or never (the spring-forward gap) cannot be read back for
  sure. Such a value is read as :mod:`zoneinfo` reads ``fold=0`` (a value carrying ``fold=1`` gets the later
  reading): an ambiguous time is the earlier instant, a non-existent one is shifted forward by the gap
  (02:30 on New York's spring-forward day is sent as 07:30 UTC, i.e. 03:30 EDT). It is sent, not rejected,
  since the row is otherwise good, and counted (:attr:`RowEncoder.ambiguous_times`,
  :attr:`RowEncoder.nonexistent_times`). ``source_timezone=UTC`` skips the check.
- ``date``: ``YYYY-MM-DD``. ``integer``: integral values only (2.0 -> 2; 2.5 is rejected) within int64: the
  API reference does not give the range of Peak's ``integer``, so int64 is our assumption.
- ``float``: floats as their shortest repr; a ``Decimal`` as its own digits (``Decimal('2.50')`` -> ``2.50``),
  so nothing is rounded on the way. A non-zero value a double reads as 0 (``Decimal('1E-400')``) or as
  infinity (``Decimal('1E+400')``, an int over 1.8e308) is rejected; zero is zero.
- NaN and Infinity are rejected everywhere. ``None`` -> ``null`` where the field is nullable.
- Column names match case-insensitively; columns not selected are omitted (never sent as null; whether
  Peak's UPSERT then keeps their stored values is not documented). Unknown columns reject the row unless they are
  declared custom attributes (UPPERCASE names, as the API requires).
"""

from __future__ import annotations

import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from peak_provider.describe import QUOTE_LIMIT, clip, describe
from peak_provider.exceptions import PeakConfigError
from peak_provider.resources import FIELD_TYPES, Field, Resource
from peak_provider.result import Rejection

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_quote: Callable[[str], str] = json.encoder.encode_basestring  # the C quoting json.dumps uses; UTF-8 kept as is
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # our assumption for Peak's integer (the API reference is silent)
_FLOAT_MAX = sys.float_info.max
_REASON_LIMIT = 300  # longest reason a Rejection carries, resource name included
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Bad(Exception):
    """A value that cannot be sent; the message is the reason."""


def _failure(exc: BaseException) -> str:
    """An unforeseen exception as a bounded reason: its type and the start of its message."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    return f"{type(exc).__name__}: {clip(text, QUOTE_LIMIT)}"


# --- value converters, one per catalogue type: a non-null value -> its JSON text -------------------
# Each tests the common exact type first (this runs for every value of every row), then the rest.


def _string(value: Any) -> str:
    if type(value) is str:
        return _quote(value)
    if isinstance(value, str):
        return _quote(str.__str__(value))
    if isinstance(value, bool) or not isinstance(value, int | Decimal | uuid.UUID):
        raise _Bad(f"expected a string, got {describe(value)}")
    if isinstance(value, int):
        return _quote(_int_text(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise _Bad(f"{describe(value)} is not a finite number")
    return _quote(str(value))


def _int_text(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:  # past Python's int-to-str digit limit (4,300 by default)
        raise _Bad(f"{describe(value)} has too many digits to write") from None


def _outside_int64(value: Any) -> _Bad:
    return _Bad(f"{describe(value)} is outside int64, the range we assume for Peak's integer (the API gives none)")


def _integer(value: Any) -> str:
    if type(value) is int:
        # int64; small ints first, as one-digit ints compare fastest
        if -0x3FFF_FFFF <= value <= 0x3FFF_FFFF or -0x8000_0000_0000_0000 <= value <= 0x7FFF_FFFF_FFFF_FFFF:
            return int.__repr__(value)
        raise _outside_int64(value)
    if isinstance(value, bool):
        raise _Bad(f"expected an integer, got {describe(value)}")
    if isinstance(value, int):
        return _integer(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad(f"{describe(value)} is not a finite number")
        if not float.is_integer(value):
            raise _Bad(f"{describe(value)} is not an integer")
        integral = int(value)
        if not _INT64_MIN <= integral <= _INT64_MAX:
            raise _outside_int64(value)
        return int.__repr__(integral)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Bad(f"{describe(value)} is not a finite number")
        if value.adjusted() > 18:  # 1E+19 or more: past int64 (and int() of 1E+999999999 would take minutes)
            raise _outside_int64(value)
        integral = int(value)
        if value != integral:
            raise _Bad(f"{describe(value)} is not an integer")
        if not _INT64_MIN <= integral <= _INT64_MAX:
            raise _outside_int64(value)
        return int.__repr__(integral)
    raise _Bad(f"expected an integer, got {describe(value)}")


def _float(value: Any) -> str:
    """Floats and ints as they are; a ``Decimal`` as its own digits (exact, and 10x cheaper than via float)."""
    kind = type(value)
    if kind is Decimal:
        if not value.is_finite():
            raise _Bad(f"{describe(value)} is not a finite number")
        if -308 < value.adjusted() < 308:  # 1E-307 <= |value| < 1E+308: a normal, finite double
            return value.__str__()
        return _extreme_decimal(value)
    if kind is float:
        if not math.isfinite(value):
            raise _Bad(f"{describe(value)} is not a finite number")
        return float.__repr__(value)
    if kind is int:
        if -_FLOAT_MAX <= value <= _FLOAT_MAX:
            return int.__repr__(value)
        raise _Bad(f"{describe(value)} is too large for a float (a double reads it as infinity)")
    if isinstance(value, bool):
        raise _Bad(f"expected a number, got {describe(value)}")
    if isinstance(value, int):
        return _float(int(value))
    if isinstance(value, float):  # subclasses, such as numpy.float64
        return _float(float(value))
    if isinstance(value, Decimal):
        return _float(Decimal(value))
    raise _Bad(f"expected a number, got {describe(value)}")


def _extreme_decimal(value: Decimal) -> str:
    """A finite Decimal outside 1E-307..1E+308: sent if a double reads it as itself, not as 0 or infinity."""
    if value.is_zero():
        return value.__str__()
    as_double = float(value)
    if as_double == 0.0:
        raise _Bad(f"{describe(value)} is too small for a float (a double reads it as 0)")
    if math.isinf(as_double):
        raise _Bad(f"{describe(value)} is too large for a float (a double reads it as infinity)")
    return value.__str__()


_BOOLEAN_WORDS = {"true": True, "t": True, "yes": True, "1": True, "false": False, "f": False, "no": False, "0": False}


def _boolean(value: Any) -> str:
    flag = value if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)) else None
    if isinstance(value, str):
        flag = _BOOLEAN_WORDS.get(value.strip().lower())
    if flag is None:
        raise _Bad(f"expected a boolean, got {describe(value)}")
    return "true" if flag else "false"


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        if value.time() != time(0):
            raise _Bad(f"{datetime.isoformat(value)} has a time of day; the field is a date")
        return f'"{value.date().isoformat()}"'
    if isinstance(value, date):
        return f'"{value.isoformat()}"'
    if isinstance(value, str):
        try:
            return f'"{date.fromisoformat(value.strip()).isoformat()}"'
        except ValueError:
            raise _Bad(f"cannot parse {describe(value)} as a date (YYYY-MM-DD)") from None
    raise _Bad(f"expected a date, got {describe(value)}")


def _json(value: Any) -> str:
    if isinstance(value, Decimal | float):
        return _float(value)
    if isinstance(value, str | int | dict | list):
        try:
            return _JSON.encode(value)
        except (ValueError, TypeError, RecursionError) as exc:  # NaN, a set, a cycle, a huge int, deep nesting
            raise _Bad(f"not JSON-serialisable: {_failure(exc)}") from None
    raise _Bad(f"expected a JSON value, got {describe(value)}")


_CLOCK = tuple(f"{i:02d}:" for i in range(60))  # "HH:" and "MM:"
_UNSEEN: Any = object()


class _TimeCounts:
    """Timestamps sent as something other than exactly what was read (see :class:`RowEncoder`'s counters)."""

    __slots__ = ("ambiguous", "nonexistent", "truncated")

    def __init__(self) -> None:
        self.ambiguous = self.nonexistent = self.truncated = 0


def _timestamp_converter(fmt: str, source_tz: tzinfo, counts: _TimeCounts) -> Callable[[Any], str]:
    """A converter from datetime/date/ISO string to ``fmt`` in UTC.

    Its text is the calendar day's, kept per day (rows of a load share few days; cleared past 10,000 of
    them), then the clock from tables of ``HH:``/``MM:`` and ``SS"`` strings: 5x faster than ``%02d`` or
    ``strftime``.
    A naive value is moved to UTC by its local day's one UTC offset (kept per day, several times cheaper
    than ``astimezone``); only on a day when the zone's offset changes is each value read and checked alone.
    """
    sep, tail = fmt[10], fmt[19:] + '"'  # each format spells its shape: "YYYY-MM-DD?HH:MM:SS<suffix>"
    clock = _CLOCK
    seconds = tuple(f"{i:02d}{tail}" for i in range(60))  # "SS" and the format's tail
    days: dict[date, str] = {}
    offsets: dict[date, timedelta | None] = {}  # local day -> its one UTC offset, None if it changes that day
    naive_is_utc = source_tz is UTC
    unseen = _UNSEEN

    def convert(value: Any) -> str:
        if type(value) is not datetime:  # subclasses (pendulum), dates and strings take the long way
            value = _as_datetime(value)
        if value.microsecond:
            counts.truncated += 1
        zone = value.tzinfo
        try:
            if zone is None:
                if not naive_is_utc:
                    local_day = value.date()
                    offset = offsets.get(local_day, unseen)
                    if offset is unseen:
                        if len(offsets) >= 10_000:
                            offsets.clear()
                        offset = offsets[local_day] = _day_offset(source_tz, local_day)
                    value = value - offset if offset is not None else _local_to_utc(value, source_tz, counts)
            elif zone is not UTC and value.utcoffset():  # not UTC already (a zero timedelta is false)
                value = value.astimezone(UTC)
        except OverflowError:
            where = "" if zone is not None else f" in {source_tz}"
            raise _Bad(f"{datetime.isoformat(value)}{where} is outside years 1..9999 once converted to UTC") from None
        day = value.date()
        head = days.get(day)
        if head is None:
            if len(days) >= 10_000:
                days.clear()
            head = days[day] = f'"{day.isoformat()}{sep}'
        return f"{head}{clock[value.hour]}{clock[value.minute]}{seconds[value.second]}"

    return convert


def _day_offset(zone: tzinfo, day: date) -> timedelta | None:
    """The UTC offset of every wall time of ``day`` in ``zone``, or None when the offset changes that day.

    It probes both readings (``fold``) of the day's start, noon and end: the zone database never changes
    an offset twice within four days, so equal probes mean one offset all day.
    """
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    if day == date.max:
        return None  # no next midnight to probe: read value by value
    end = start + timedelta(days=1)
    noon = start.replace(hour=12)
    probes = {t.utcoffset() for p in (start, noon, end) for t in (p, p.replace(fold=1))}
    return probes.pop() if len(probes) == 1 else None


def _local_to_utc(value: datetime, zone: tzinfo, counts: _TimeCounts) -> datetime:
    """A naive wall time in ``zone`` -> UTC by the ``fold`` rule of the module docstring, counting the unsure."""
    local = value.replace(tzinfo=zone)
    first, second = local.replace(fold=0).utcoffset(), local.replace(fold=1).utcoffset()
    if first is not None and second is not None and first != second:  # the clock showed it twice, or never
        if first > second:  # the offset fell: a repeated hour
            counts.ambiguous += 1
        else:
            counts.nonexistent += 1
    return local.astimezone(UTC)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(0))
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(f"cannot parse {describe(value)} as a timestamp") from None
    raise _Bad(f"expected a timestamp, got {describe(value)}")


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


class Plan:
    """How to turn rows with one particular column layout into wire rows (built once per layout)."""

    __slots__ = ("columns", "key_of_parts", "key_positions", "problem")

    def __init__(
        self,
        columns: list[_Column],
        key_positions: list[tuple[str, Any]],
        problem: tuple[str | None, str] | None,
    ):
        self.columns = columns
        self.key_positions = key_positions  # (pk field name, source key or index)
        self.problem = problem  # a (field, reason) that rejects every row of this layout
        self.key_of_parts = _key_of_parts([c[1] for c in columns], [name for name, _ in key_positions])


def _key_of_parts(names: list[str], key: list[str]) -> Callable[[list[str]], Any]:
    """The primary key as sent, from an encoded row's parts (``"name":value`` texts, one per column, each
    behind ``{`` or ``,``); ``None`` when the layout does not select the whole key."""
    if not key or any(name not in names for name in key):
        return lambda parts: None
    at = [names.index(name) for name in key]
    if len(at) == 1:
        (i,) = at
        return lambda parts: parts[i][1:]
    if len(at) == 2:
        i, j = at
        return lambda parts: (parts[i][1:], parts[j][1:])
    if len(at) == 3:
        i, j, k = at
        return lambda parts: (parts[i][1:], parts[j][1:], parts[k][1:])
    return lambda parts: tuple(parts[i][1:] for i in at)


class RowEncoder:
    """Encode rows of one resource to wire JSON.

    Counters of timestamps sent as something other than exactly what was read (every value encoded
    counts, including one of a row rejected for another field): :attr:`ambiguous_times`,
    :attr:`nonexistent_times`, :attr:`truncated_subseconds`.

    :param resource: the catalogue resource.
    :param timestamp_format: one of :data:`~peak_provider.resources.TIMESTAMP_FORMATS`.
    :param source_zone: the zone naive datetimes are in (:attr:`PeakSettings.source_zone
        <peak_provider.connection.PeakSettings.source_zone>`); :data:`datetime.UTC` skips the DST checks.
    :param custom_attributes: UPPERCASE custom attribute name -> catalogue type.
    :param column_map: source column -> field name, applied before matching.
    """

    def __init__(
        self,
        resource: Resource,
        timestamp_format: str,
        source_zone: tzinfo = UTC,
        custom_attributes: Mapping[str, str] | None = None,
        column_map: Mapping[str, str] | None = None,
    ):
        self.resource = resource
        self._counts = _TimeCounts()
        self.last_key: Any = None  # the primary key (as sent) of the row ``encode`` last returned bytes for
        self._converters = {
            **_CONVERTERS,
            "timestamp": _timestamp_converter(timestamp_format, source_zone, self._counts),
        }
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
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._not_a_row = Plan([], [(name, None) for name in resource.primary_key], (None, "the row is not a mapping"))

    def plan_of(self, row: Any) -> Plan:
        """The plan of a mapping row, by its keys (cached). A row that is not a mapping of column names
        (``None``, a number) gets a plan that rejects it."""
        try:
            cache_key = (False, *row)
            plan = self._plans.get(cache_key)
        except TypeError:  # not iterable, or a sequence with an unhashable item (not column names either)
            return self._not_a_row
        if plan is None:
            plan = self._plans[cache_key] = self._build_plan(cache_key[1:], positional=False)
        return plan

    def plan(self, columns: Sequence[str], positional: bool) -> Plan:
        """Match a column layout to fields (cached). ``positional``: rows are sequences, not mappings."""
        cache_key = (positional, *columns)
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = self._plans[cache_key] = self._build_plan(columns, positional)
        return plan

    def _build_plan(self, columns: Sequence[str], positional: bool) -> Plan:
        planned: list[_Column] = []
        seen: dict[str, str] = {}
        problem: tuple[str | None, str] | None = None
        for i, col in enumerate(columns):
            if not isinstance(col, str):
                problem = problem or (None, f"a column name is not text: {describe(col, 60)}")
                continue
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
            problem = (
                missing[0],
                f"required field {missing[0]!r} is missing (columns: {', '.join(map(str, columns))})",
            )
        if not planned and problem is None:
            problem = (None, "no columns to send")
        key_positions = [(name, _source_of(planned, name)) for name in self.resource.primary_key]
        return Plan(planned, key_positions, problem)

    @property
    def ambiguous_times(self) -> int:
        """Naive timestamps of a wall time the clock showed twice (DST fall-back), sent as the earlier one."""
        return self._counts.ambiguous

    @property
    def nonexistent_times(self) -> int:
        """Naive timestamps of a wall time the clock skipped (DST spring-forward), shifted forward by the gap."""
        return self._counts.nonexistent

    @property
    def truncated_subseconds(self) -> int:
        """Timestamps whose fraction of a second was dropped (the wire format has whole seconds)."""
        return self._counts.truncated

    def encode(self, row: Any, plan: Plan) -> bytes | Rejection:
        """One row -> its wire JSON bytes, or the :class:`Rejection` that says why it cannot be sent.

        After bytes, :attr:`last_key` is the row's primary key as sent (``None`` if not all selected).

        Never raises for any value: a converter's failure, foreseen or not, rejects the row.
        """
        if plan.problem is not None:
            return self.reject(row, plan, *plan.problem)
        parts: list[str] = []
        for source, name, key_text, convert, null_reason in plan.columns:
            try:
                value = row[source]
                if value is None:
                    if null_reason is not None:
                        return self.reject(row, plan, name, null_reason)
                    parts.append(key_text + "null")
                    continue
                parts.append(key_text + convert(value))
            except _Bad as exc:
                return self.reject(row, plan, name, str(exc))
            except Exception as exc:  # the last line of defence: a failure no converter foresaw
                return self.reject(row, plan, name, f"cannot convert the value: {_failure(exc)}")
        self.last_key = plan.key_of_parts(parts)
        parts.append("}")
        try:
            return "".join(parts).encode()
        except UnicodeEncodeError:  # a lone surrogate: found here, so the common path pays nothing for it
            return self._reject_surrogate(row, plan, parts)

    def _reject_surrogate(self, row: Any, plan: Plan, parts: list[str]) -> Rejection:
        for (source, name, *_), part in zip(plan.columns, parts, strict=False):
            try:
                part.encode()
            except UnicodeEncodeError as exc:
                code = ord(exc.object[exc.start])
                try:
                    value = row[source]
                except Exception:
                    value = exc.object
                found = _SURROGATE.search(value) if isinstance(value, str) else None
                where = f" at character {found.start():,}" if found else ""
                return self.reject(
                    row,
                    plan,
                    name,
                    f"{describe(value, 60)} has a lone surrogate (U+{code:04X}){where}, which is not text "
                    "UTF-8 can carry (decoded with 'surrogateescape'?)",
                )
        return self.reject(row, plan, None, "the row cannot be encoded as UTF-8")  # not reached

    def reject(self, row: Any, plan: Plan, field: str | None, reason: str) -> Rejection:
        """A Rejection of ``row``; never raises, whatever the row holds."""
        try:
            key: dict[str, Any] | None = {
                name: _jsonable(row[src]) if src is not None else None for name, src in plan.key_positions
            }
        except Exception:  # a positional row shorter than its columns, a mapping that raises
            key = None
        try:
            as_read = dict(row) if isinstance(row, Mapping) else {c[1]: row[c[0]] for c in plan.columns}
        except Exception:
            as_read = None
        return Rejection(
            key=key,
            field=None if field is None else clip(field, QUOTE_LIMIT),
            reason=clip(f"{self.resource.name}: {reason}", _REASON_LIMIT),
            row=as_read,
        )

    def key_of(self, wire_row: Mapping[str, Any]) -> dict[str, Any]:
        """The primary key of a row as sent (used to name rows the API rejected)."""
        return {name: wire_row.get(name) for name in self.resource.primary_key}


def _source_of(planned: list[_Column], name: str) -> Any:
    """Where a field's value sits in the source row (key or index), or None if not selected."""
    return next((p[0] for p in planned if p[1] == name), None)


def _jsonable(value: Any) -> Any:
    """A key part as a user searches the warehouse with it: JSON-safe and bounded (~200 characters)."""
    try:
        if value is None or type(value) is bool:
            return value
        if type(value) is int:
            return value if _INT64_MIN <= value <= _INT64_MAX else describe(value)
        if type(value) is float:
            return value if math.isfinite(value) else float.__repr__(value)
        if isinstance(value, str):
            return clip(str.__getitem__(value, slice(0, QUOTE_LIMIT + 1)), QUOTE_LIMIT)
        if isinstance(value, datetime | date):
            return clip(value.isoformat(), QUOTE_LIMIT)
        if isinstance(value, Decimal | uuid.UUID):
            return clip(str(value), QUOTE_LIMIT)
    except Exception:
        pass
    return describe(value)
