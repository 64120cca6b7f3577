"""The preflight of a load: the query's columns against its target, after the query runs and before
the first row is sent.

A column the resource does not have, or a required field the query lacks, would reject every row, one
rejection per row, after the whole table was read (and with a high ``max_rejected_rows`` the task would
even succeed having stored nothing). The preflight turns that into one :class:`PeakPreflightError` that
lists every problem and its fix. It checks the cursor's column names, after ``column_map``, against:

- the resource's catalogue fields and the declared ``custom_attributes``: unknown columns (or, with
  ``unknown_columns="drop"``, drops them knowingly), two columns mapped to one field, required fields
  missing;
- with ``schema_check=True``, the tenant's live schema (``GET /api/v2/schema?solutionName=…``, fetched once):
  the object must exist, custom attributes present there are accepted without declaring them, a column
  the live object lacks fails, as does a type the live object gives differently from our catalogue (or
  the declaration) and a column the live object requires that the query lacks.

The live schema's shape is not documented beyond "tables and columns, custom ones included"; this reads
the shape the bundled emulator serves (``objects[].objectName/baseName/columns[].name/dataType/required/
custom``), and tolerates ``tables`` for ``objects`` and ``columnName``/``type`` for the column keys.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from peak_provider.exceptions import PeakPreflightError
from peak_provider.resources import FIELD_TYPES, Resource

log = logging.getLogger(__name__)

UNKNOWN_COLUMNS = ("fail", "drop")

#: Live data types -> the catalogue type they are sent as (same names map to themselves).
LIVE_TYPES = {
    "datetime": "timestamp",
    "timestamp_tz": "timestamp",
    "timestamp_ntz": "timestamp",
    "numeric": "float",
    "decimal": "float",
    "enum": "string",
}


@dataclass(frozen=True)
class LiveColumn:
    """A column of the target object in the tenant's live schema."""

    name: str
    type: str  # as the live schema names it
    required: bool
    custom: bool

    @property
    def sent_as(self) -> str | None:
        """The catalogue type this column's values are sent as, or ``None`` if no catalogue type fits."""
        kind = LIVE_TYPES.get(self.type.lower(), self.type.lower())
        return kind if kind in FIELD_TYPES else None


def live_columns(schema: Any, object_name: str, base_name: str) -> dict[str, LiveColumn]:
    """The columns (by lower-cased name) of ``object_name`` in a live schema (listed by its full name, or by
    ``base_name`` where the schema lists base names).

    :raises PeakPreflightError: the schema is unreadable, or the object is not in it.
    """
    objects = schema.get("objects", schema.get("tables")) if isinstance(schema, Mapping) else None
    if not isinstance(objects, list):
        raise PeakPreflightError(
            f"schema_check: the live schema has no 'objects' list (got {type(schema).__name__}); nothing was sent"
        )
    by_name = {o.get("objectName"): o for o in objects if isinstance(o, Mapping)}
    names = list(by_name)
    found = by_name.get(object_name) or by_name.get(base_name)  # a schema may list base names alone
    if found is None:
        listed = ", ".join(str(n) for n in names[:40]) + (" …" if len(names) > 40 else "")
        raise PeakPreflightError(
            f"schema_check: object {object_name} is not in the solution's live schema (objects: {listed}); "
            "nothing was sent. Check the connection's prefix/suffix, or ask Peak to roll the object out."
        )
    columns: dict[str, LiveColumn] = {}
    for c in found.get("columns") or []:
        if not isinstance(c, Mapping):
            continue
        name = c.get("name", c.get("columnName"))
        if isinstance(name, str) and name:
            kind = str(c.get("dataType", c.get("type", "")))
            columns[name.lower()] = LiveColumn(name, kind, bool(c.get("required")), bool(c.get("custom")))
    return columns


@dataclass(frozen=True)
class CheckedColumns:
    """What passed the preflight: the columns to send and the custom attributes to encode them with.

    :param columns: the query's columns that are sent (all of them unless some were dropped).
    :param keep: their positions in the query's rows, or ``None`` when every column is sent.
    :param custom_attributes: the declared ones plus those accepted from the live schema.
    :param dropped: columns dropped by ``unknown_columns="drop"``.
    """

    columns: list[str]
    keep: list[int] | None
    custom_attributes: dict[str, str]
    dropped: list[str] = field(default_factory=list)

    def project(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        """``rows`` with only the kept columns (unchanged when nothing was dropped)."""
        if self.keep is None:
            return rows
        if len(self.keep) == 1:
            (only,) = self.keep
            return ((row[only],) for row in rows)
        pick = operator.itemgetter(*self.keep)
        return (pick(row) for row in rows)


def check_columns(
    resource: Resource,
    object_name: str,
    columns: Sequence[str],
    *,
    column_map: Mapping[str, str] | None = None,
    custom_attributes: Mapping[str, str] | None = None,
    unknown_columns: str = "fail",
    live: Mapping[str, LiveColumn] | None = None,
) -> CheckedColumns:
    """Check a query's ``columns`` against ``resource`` (and its ``live`` columns, when given).

    :raises PeakPreflightError: one message listing every problem and what to change.
    """
    source_to_field = {k.lower(): v for k, v in (column_map or {}).items()}
    declared = dict(custom_attributes or {})
    known: dict[str, tuple[str, str, str]] = {f.name.lower(): (f.name, f.type, "catalogue") for f in resource.fields}
    for name, kind in declared.items():
        known.setdefault(name.lower(), (name, kind, "custom_attributes"))
    accepted: dict[str, str] = {}  # custom attributes taken from the live schema
    unknown: list[str] = []
    dropped: list[str] = []
    doubled: list[str] = []
    keep: list[int] = []
    sent: dict[str, tuple[str, str, str, str]] = {}  # field (lower) -> (column, field, type, origin)
    for i, column in enumerate(columns):
        name = source_to_field.get(column.lower(), column)
        entry = known.get(name.lower())
        if entry is None and live is not None and (c := live.get(name.lower())) is not None and c.custom:
            entry = (c.name.upper(), c.sent_as or c.type, "live schema")
            if c.sent_as is not None:
                accepted[c.name.upper()] = c.sent_as
        if entry is None:
            (dropped if unknown_columns == "drop" else unknown).append(column)
            continue
        field_name, kind, origin = entry
        if field_name.lower() in sent:
            doubled.append(f"{sent[field_name.lower()][0]!r} and {column!r} both map to {field_name!r}")
            continue
        sent[field_name.lower()] = (column, field_name, kind, origin)
        keep.append(i)

    problems: list[str] = []
    fields_text = ", ".join(f.name for f in resource.fields)
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        example = unknown[0]
        problems.append(
            f"unknown columns {listed}: not fields of {resource.name} ({fields_text}) nor declared custom "
            f"attributes. Rename them to fields with column_map={{{example!r}: '<field>'}}; or add them to the "
            f"object (PeakHook.add_attribute) and declare them, UPPERCASE, in custom_attributes="
            f"{{{example.upper()!r}: 'string'}} (with schema_check=True, custom attributes of the live schema need "
            "no declaration); or remove them from the query; or pass unknown_columns='drop' to drop them knowingly."
        )
    if doubled:
        problems.append(f"columns mapped to the same field: {'; '.join(doubled)}. Keep one of each.")
    missing = [f.name for f in resource.fields if f.required and f.name.lower() not in sent]
    if missing:
        problems.append(
            f"required fields missing from the query: {', '.join(missing)}. Select them, or map the columns that "
            "hold them with column_map."
        )
    if not sent and not problems:
        problems.append("the query selects no column to send.")
    if live is not None:
        absent = [
            f"{field_name} ({origin})" for _, field_name, _, origin in sent.values() if field_name.lower() not in live
        ]
        if absent:
            problems.append(
                f"not in the live schema of {object_name}: {', '.join(absent)}. Add custom attributes with "
                "PeakHook.add_attribute, or remove the columns from the query (a catalogue field missing "
                "there means the tenant's schema is older or customised: ask Peak)."
            )
        conflicts = []
        for _, field_name, kind, origin in sent.values():
            c = live.get(field_name.lower())
            if c is not None and c.sent_as is None:
                conflicts.append(f"{field_name} has the live type {c.type!r}, which this provider cannot send")
            elif c is not None and c.sent_as != kind:
                conflicts.append(f"{field_name} is {kind} in the {origin} but {c.type} in the live schema")
        if conflicts:
            problems.append(
                f"type conflicts: {'; '.join(conflicts)}. Declare custom attributes with their live type; for a "
                "catalogue field, the tenant's schema differs from the API documentation: ask Peak."
            )
        reported = {name.lower() for name in missing}
        required_live = [c.name for c in live.values() if c.required and c.name.lower() not in sent.keys() | reported]
        if required_live:
            problems.append(f"required by the live schema but not selected: {', '.join(required_live)}.")
    if problems:
        where = f"{resource.name} -> {object_name}" + (" (live schema checked)" if live is not None else "")
        lines = "\n".join(f"- {p}" for p in problems)
        raise PeakPreflightError(
            f"The query cannot load into {where}; nothing was sent. Its columns: {', '.join(columns)}.\n{lines}"
        )
    if dropped:
        log.warning("unknown_columns='drop': not sending %s (not fields of %s)", ", ".join(dropped), resource.name)
    if accepted:
        log.info("Custom attributes from the live schema of %s: %s", object_name, accepted)
    return CheckedColumns(
        columns=[columns[i] for i in keep],
        keep=keep if dropped else None,
        custom_attributes={**declared, **accepted},
        dropped=dropped,
    )
