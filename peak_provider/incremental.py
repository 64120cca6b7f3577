"""Incremental loads keyed on a column such as ``updated_at``.

Two modes:

- ``interval`` (default): rows with ``data_interval_start <= col < data_interval_end``. Each run sends
  exactly the rows changed in its interval, so backfills and re-runs are deterministic. Airflow 3's cron
  presets (``@daily``) use ``CronTriggerTimetable`` whose interval is empty; that is refused up front.
  A window no run ever covered is noticed by the missed-window ledger (:mod:`peak_provider.ledger`).
- ``watermark``: rows with ``col >`` the high-water mark stored after the last successful load (in the
  Asset's ``asset_state_store`` on Airflow >= 3.3; an Airflow Variable before that). It cannot miss a
  window: each load starts where the last successful one ended, whichever runs did or did not happen.

The user's query is wrapped (``SELECT * FROM (<sql>) peak_src WHERE …``) and the bounds are bind
parameters in the driver's own placeholder style, never formatted into the SQL text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from airflow.providers.common.compat.sdk import AirflowFailException

from peak_provider.exceptions import PeakConfigError

log = logging.getLogger(__name__)

MODES = ("interval", "watermark")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EMPTY_INTERVAL_HELP = (
    "The data interval of this run is empty (data_interval_start == data_interval_end), so an 'interval' "
    "incremental load would send nothing. Airflow 3 schedules cron presets such as '@daily' with "
    "CronTriggerTimetable, whose runs have no interval. Use schedule=CronDataIntervalTimetable('0 0 * * *', "
    "timezone='UTC') (from airflow.timetables.interval), or incremental_mode='watermark'."
)


def check_column(column: str) -> str:
    if not _IDENTIFIER.match(column):
        raise PeakConfigError(f"incremental_column {column!r} must be a plain column name (letters, digits, _)")
    return column


def _placeholder(name: str, position: int, paramstyle: str, positional: bool) -> str:
    if positional:
        return {"qmark": "?", "numeric": f":{position}", "named": f":{position}"}.get(paramstyle, "%s")
    return f"%({name})s" if paramstyle in ("pyformat", "format") else f":{name}"


def bound_value(moment: datetime, driver: str, source_timezone: str) -> Any:
    """A datetime bound as the driver compares it: SQLite stores text, so a text timestamp in the
    warehouse's zone; other drivers get an aware UTC datetime."""
    moment = datetime.fromtimestamp(moment.timestamp(), tz=UTC)
    if driver == "sqlite3":
        local = moment if source_timezone.upper() == "UTC" else moment.astimezone(ZoneInfo(source_timezone))
        return local.strftime("%Y-%m-%d %H:%M:%S")
    return moment


def add_filter(
    sql: str,
    parameters: Sequence[Any] | Mapping[str, Any] | None,
    column: str | None,
    conditions: Sequence[tuple[str, str, Any]],
    paramstyle: str,
    order_by: Sequence[str] = (),
    alternatives: Sequence[Sequence[tuple[str, str, Any]]] = (),
) -> tuple[str, Sequence[Any] | Mapping[str, Any] | None]:
    """Wrap ``sql`` with ``WHERE column <op> <bound> AND …`` (``conditions``: name, operator, value) and an
    ``ORDER BY`` (for a deterministic, resumable order); unchanged when there is neither.
    ``alternatives`` adds ``AND ((<group 1>) OR (<group 2>) …)``, each group's conditions joined by ``AND``
    (several windows in one query)."""
    positional = isinstance(parameters, list | tuple)
    new_params: Any = list(parameters) if positional else dict(parameters or {})  # type: ignore[arg-type]

    def clause(name: str, operator: str, value: Any) -> str:
        position = len(new_params) + 1 if positional else 0
        text = f"peak_src.{column} {operator} {_placeholder(name, position, paramstyle, positional)}"
        if positional:
            new_params.append(value)
        else:
            new_params[name] = value
        return text

    clauses = [clause(*condition) for condition in conditions]
    if alternatives:
        groups = [" AND ".join(clause(*condition) for condition in group) for group in alternatives]
        clauses.append("(" + " OR ".join(f"({group})" for group in groups) + ")")
    body = sql.strip().rstrip(";")
    if not clauses and not order_by:
        return body, parameters
    where = f"\nWHERE {' AND '.join(clauses)}" if clauses else ""
    order = f"\nORDER BY {', '.join(f'peak_src.{check_column(c)}' for c in order_by)}" if order_by else ""
    return f"SELECT * FROM (\n{body}\n) peak_src{where}{order}", new_params


def interval_bounds(context: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start >= end:
        raise AirflowFailException(EMPTY_INTERVAL_HELP)
    return start, end


class MaxTracker:
    """Passes rows through while remembering the largest value of one column (the new watermark)."""

    def __init__(self, index: int):
        self.index = index
        self.maximum: Any = None

    def track(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        index = self.index
        for row in rows:
            value = row[index]
            if value is not None and (self.maximum is None or value > self.maximum):
                self.maximum = value
            yield row


def mark_to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def asset_state_accessor(store: Any, name: str) -> Any:
    """The state accessor of the asset named ``name`` in a task's ``asset_state_store``, or ``None``."""
    try:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessor, AssetStateStoreAccessors
    except ImportError:  # Airflow < 3.3
        AssetStateStoreAccessor = AssetStateStoreAccessors = None  # type: ignore[assignment,misc]
    if AssetStateStoreAccessors is not None and isinstance(store, AssetStateStoreAccessors):
        # any asset by name: an AssetAlias outlet gives the task no accessor of its own
        return AssetStateStoreAccessor(name=name)
    try:
        return store[name]
    except (KeyError, TypeError):
        return None


class WatermarkStore:
    """Where a task's high-water mark lives, and where earlier versions of the provider kept it.

    ``keys`` are asset names (``Asset`` objects are accepted too), the current one first. On Airflow >= 3.3
    the mark lives in the current asset's ``asset_state_store``. Where that asset has no mark, the Airflow
    Variable ``variable_key`` is read, then the older keys (``keys[1:]``), so a changed key neither reloads
    history nor skips it. The Variable is where the mark goes when there is no asset state store (Airflow
    < 3.3) or the asset cannot hold state yet: an asset first emitted through an ``AssetAlias`` becomes
    active only when the scheduler next checks asset references.
    """

    KEY = "peak_watermark"

    def __init__(self, context: Mapping[str, Any], keys: Sequence[Any], variable_key: str):
        self.keys = [getattr(key, "name", key) for key in keys]
        self.variable_key = variable_key
        self._store = context.get("asset_state_store")
        self.backend = "asset_state_store" if self._store is not None else "variable"

    def _accessor(self, name: str) -> Any:
        """The state accessor of the asset named ``name``, or ``None``."""
        return asset_state_accessor(self._store, name)

    def _from_asset(self, name: str) -> Any:
        accessor = self._accessor(name) if self._store is not None else None
        return accessor.get(self.KEY) if accessor is not None else None

    def get(self) -> Any:
        """The stored mark: the current asset's, else the Variable's, else one stored under an older key."""
        from airflow.providers.common.compat.sdk import Variable

        current, *older = self.keys
        if (mark := self._from_asset(current)) is not None:
            self.backend = f"asset_state_store of {current}"
            return mark
        # positional default: the keyword differs between Airflow 2 and 3
        if (mark := Variable.get(self.variable_key, None)) is not None:
            self.backend = f"variable {self.variable_key}"
            return mark
        for name in older:
            if (mark := self._from_asset(name)) is not None:
                self.backend = f"asset_state_store of {name} (an earlier key; carried over)"
                return mark
        return None

    def set(self, value: Any) -> None:
        """Store the mark in the current asset's state, or in the Variable where that cannot hold it."""
        from airflow.providers.common.compat.sdk import Variable

        current = self.keys[0]
        accessor = self._accessor(current) if self._store is not None else None
        if accessor is not None:
            try:
                accessor.set(self.KEY, value)
                self.backend = f"asset_state_store of {current}"
                return
            except Exception as exc:  # e.g. the asset is not active yet (404)
                log.info(
                    "Asset %s cannot hold the watermark yet (%s); using Variable %s", current, exc, self.variable_key
                )
        Variable.set(self.variable_key, value)
        self.backend = f"variable {self.variable_key}"
