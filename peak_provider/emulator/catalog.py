"""The objects each configured solution exposes, their columns and custom attributes."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peak_provider.api import ATTRIBUTE_TYPES
from peak_provider.emulator import errors
from peak_provider.emulator.config import Solution
from peak_provider.emulator.errors import ApiError
from peak_provider.emulator.validation import Column, RowValidator
from peak_provider.resources import Resource, get_application


@dataclass
class ObjectDef:
    """One object of one solution; ``validator`` is swapped whole when an attribute is added."""

    solution: Solution
    resource: Resource
    name: str
    columns: tuple[Column, ...]
    validator: RowValidator

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.resource.primary_key


def _base_columns(resource: Resource) -> tuple[Column, ...]:
    pk = set(resource.primary_key)
    return tuple(Column(f.name, f.type, f.required, f.nullable, primary_key=f.name in pk) for f in resource.fields)


class Catalog:
    """Solutions by name and their objects by full name (custom attributes are per solution+object)."""

    def __init__(self, solutions: Iterable[Solution]):
        self.solutions: dict[str, Solution] = {}
        for s in solutions:
            if s.name in self.solutions:
                raise ValueError(f"Solution {s.name!r} is configured twice")
            self.solutions[s.name] = s
        if not self.solutions:
            raise ValueError("Configure at least one solution")
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, ObjectDef]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget custom attributes."""
        objects: dict[str, dict[str, ObjectDef]] = {}
        for s in self.solutions.values():
            fmt = s.effective_timestamp_format
            objects[s.name] = {}
            for r in get_application(s.application).resources.values():
                cols = _base_columns(r)
                name = s.object_name(r.object)
                objects[s.name][name] = ObjectDef(s, r, name, cols, RowValidator(cols, r.primary_key, fmt))
        with self._lock:
            self._objects = objects

    def object(self, solution: str, name: str) -> ObjectDef | None:
        """The object ``name`` (full name, exact) of ``solution``."""
        return self._objects.get(solution, {}).get(name)

    def find_object(self, solution: str, ref: str) -> ObjectDef | None:
        """Look up by full name or by base name (``PRODUCTS``)."""
        objects = self._objects.get(solution, {})
        if ref in objects:
            return objects[ref]
        return next((o for o in objects.values() if o.resource.object == ref), None)

    def object_names(self) -> list[str]:
        return sorted({n for objs in self._objects.values() for n in objs})

    def add_attribute(self, solution: str, ref: str, spec: Any) -> Column:
        """Add a custom column from an add-attribute body; raises :class:`ApiError`."""
        obj = self.find_object(solution, ref)
        if obj is None:
            raise ApiError(404, errors.UNKNOWN_OBJECT, "NOT_FOUND", f"Unknown object {ref!r} for solution {solution!r}")
        if not isinstance(spec, dict):
            raise _invalid("The body must be a JSON object")
        column = _parse_attribute(spec, obj.solution.effective_timestamp_format)
        with self._lock:
            obj = self._objects[solution][obj.name]
            if any(c.name.lower() == column.name.lower() for c in obj.columns):
                raise ApiError(
                    409, errors.ATTRIBUTE_EXISTS, "CONFLICT", f"Object {obj.name} already has a column {column.name!r}"
                )
            cols = (*obj.columns, column)
            fmt = obj.solution.effective_timestamp_format
            self._objects[solution][obj.name] = ObjectDef(
                obj.solution, obj.resource, obj.name, cols, RowValidator(cols, obj.primary_key, fmt)
            )
        return column

    def solutions_json(self) -> dict[str, Any]:
        return {
            "solutions": [
                {
                    "solutionName": s.name,
                    "prefix": s.prefix,
                    "suffix": s.suffix,
                    "targetSchemaName": "STAGE",
                    "tableCount": len(self._objects[s.name]),
                }
                for s in self.solutions.values()
            ]
        }

    def schema_json(self, solution: str) -> dict[str, Any]:
        return {
            "solutionName": solution,
            "objects": [
                {
                    "objectName": o.name,
                    "baseName": o.resource.object,
                    "primaryKeys": list(o.primary_key),
                    "columns": [column_json(c) for c in o.columns],
                }
                for o in self._objects[solution].values()
            ],
        }


def column_json(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "dataType": c.type,
        "required": c.required,
        "nullable": c.nullable,
        "custom": c.custom,
    }
    if c.custom:
        out["defaultValue"] = c.default
        out["validations"] = list(c.validations)
    return out


def _invalid(message: str) -> ApiError:
    return ApiError(400, errors.INVALID_ATTRIBUTE, "REQUEST", message)


def _parse_attribute(spec: dict[str, Any], timestamp_format: str) -> Column:
    """Turn an add-attribute body into a custom :class:`Column`."""
    name = spec.get("columnName")
    if not isinstance(name, str) or not name or name != name.upper() or not name.replace("_", "").isalnum():
        raise _invalid("'columnName' must be a non-empty UPPERCASE name of letters, digits and underscores")
    data_type = spec.get("dataType")
    if data_type not in ATTRIBUTE_TYPES:
        raise _invalid(f"'dataType' must be one of {', '.join(ATTRIBUTE_TYPES)}")
    kind = ATTRIBUTE_TYPES[data_type]
    validations = spec.get("validations") or []
    if not isinstance(validations, list):
        raise _invalid("'validations' must be a list")
    non_null, min_len, max_len = False, None, None
    for v in validations:
        vtype = v.get("type") if isinstance(v, dict) else None
        if vtype == "nonNull":
            non_null = True
        elif vtype in ("minLength", "maxLength"):
            n = v.get("value")
            if kind != "string":
                raise _invalid(f"{vtype} applies to string columns only")
            if type(n) is not int or n < 0:
                raise _invalid(f"{vtype} needs a non-negative integer 'value'")
            if vtype == "minLength":
                min_len = n
            else:
                max_len = n
        else:
            raise _invalid("each validation must be {'type': 'nonNull'|'minLength'|'maxLength'}")
    default = spec.get("defaultValue")
    if default is not None:
        probe = Column(name, kind, False, True, min_length=min_len, max_length=max_len)
        if RowValidator([probe], (), timestamp_format).validate([{name: default}])[1]:
            raise _invalid(f"'defaultValue' must be a valid {data_type} value")
    return Column(
        name,
        kind,
        required=non_null and default is None,
        nullable=not non_null,
        custom=True,
        min_length=min_len,
        max_length=max_len,
        default=default,
        validations=tuple(validations),
    )
