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
parameters in the driver's own placeholder style, never formatted into the SQL text (what each driver
expects: :mod:`peak_provider.drivers`).

The operator works through one :class:`IncrementalLoad` per run: it checks the run's window, builds the
query, tracks the high-water mark while rows stream and records what was loaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from peak_provider.drivers import bound_value, paramstyle_of, placeholder
from peak_provider.exceptions import PeakConfigError, PeakEmptyIntervalError
from peak_provider.ledger import Interval, Ledger, LedgerPlan, asset_state_accessor
from peak_provider.sql_source import Query

log = logging.getLogger(__name__)

MODES = ("interval", "watermark")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EMPTY_INTERVAL_HELP = (
    "The data interval of this run is empty (data_interval_start == data_interval_end), so an 'interval' "
    "incremental load would send nothing. Airflow 3 schedules cron presets such as '@daily' with "
    "CronTriggerTimetable, whose runs have no interval. Use schedule=CronDataIntervalTimetable('0 0 * * *', "
    "timezone='UTC') (from airflow.timetables.interval), or incremental_mode='watermark'."
)


def sql_identifier(name: str, what: str = "incremental_column") -> str:
    """``name`` if it is a plain SQL identifier (letters, digits, ``_``), safe to write into the SQL text.

    :raises PeakConfigError: anything else; ``what`` names the argument in the message.
    """
    if not _IDENTIFIER.match(name):
        raise PeakConfigError(f"{what} {name!r} must be a plain column name (letters, digits, _)")
    return name


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
    (several windows in one query).

    A query without parameters (``None``) given bounds in the ``format``/``pyformat`` style has its ``%``
    doubled: the driver then reads ``%`` as a placeholder and ``%%`` as ``%``, so ``LIKE 'PROD%'`` runs as
    written. A query with parameters is already escaped for the driver and is left alone; when no bound is
    added, the parameters are returned as given (``None`` stays ``None``)."""
    positional = isinstance(parameters, list | tuple)
    new_params: Any = list(parameters) if positional else dict(parameters or {})  # type: ignore[arg-type]

    def clause(name: str, operator: str, value: Any) -> str:
        position = len(new_params) + 1 if positional else 0
        text = f"peak_src.{column} {operator} {placeholder(name, position, paramstyle, positional)}"
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
    if not conditions and not any(alternatives):
        new_params = parameters  # no bound added: the driver reads the query as the user wrote it
    elif parameters is None and paramstyle in ("format", "pyformat"):
        body = body.replace("%", "%%")
    where = f"\nWHERE {' AND '.join(clauses)}" if clauses else ""
    columns = ", ".join(f"peak_src.{sql_identifier(c, 'ORDER BY column')}" for c in order_by)
    order = f"\nORDER BY {columns}" if order_by else ""
    return f"SELECT * FROM (\n{body}\n) peak_src{where}{order}", new_params


def interval_bounds(context: Mapping[str, Any]) -> Interval:
    """This run's data interval.

    :raises PeakEmptyIntervalError: it is empty or missing.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or start >= end:
        raise PeakEmptyIntervalError(EMPTY_INTERVAL_HELP)
    return start, end


class MaxTracker:
    """Passes rows through while remembering the largest value of one column (the new watermark).

    :param skip: ``[start, end, …]`` ranges of read positions not to count: rows an earlier attempt settled,
        which a resumed load skips (their current values were not sent; the earlier attempts' own maximum
        comes from the checkpoint).
    """

    def __init__(self, index: int, skip: Sequence[Sequence[int]] = ()):
        self.index = index
        self.skip = sorted(list(r) for r in skip)
        self.maximum: Any = None

    def track(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        index = self.index
        if self.skip:
            yield from self._track_skipping(rows)
            return
        for row in rows:
            value = row[index]
            if value is not None and (self.maximum is None or value > self.maximum):
                self.maximum = value
            yield row

    def _track_skipping(self, rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        index, ranges = self.index, iter(self.skip)
        current = next(ranges, None)
        for position, row in enumerate(rows):
            while current is not None and position >= current[1]:
                current = next(ranges, None)
            value = row[index]
            skipped = current is not None and current[0] <= position
            if not skipped and value is not None and (self.maximum is None or value > self.maximum):
                self.maximum = value
            yield row


def later_mark(earlier: Any, current: Any) -> Any:
    """The later of two marks in their JSON form (one from a checkpoint, one from this attempt's rows)."""
    if earlier is None or current is None:
        return current if earlier is None else earlier
    try:
        return earlier if earlier > current else current
    except TypeError:  # the column's type changed between attempts: this attempt's rows decide
        return current


def column_index(columns: Sequence[str], column: str) -> int:
    """Where ``column`` is among the query's ``columns`` (case-insensitively)."""
    lowered = [c.lower() for c in columns]
    if column.lower() not in lowered:
        raise PeakConfigError(f"incremental_column {column!r} is not among the query's columns {list(columns)}")
    return lowered.index(column.lower())


def mark_to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


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


@dataclass
class IncrementalLoad:
    """The incremental side of one run of a load, in the order the operator calls it.

    :meth:`begin` checks the run before the warehouse is read (an empty interval, the missed-window
    ledger's policy); :meth:`query` wraps the user's query with the run's filter; :meth:`track` remembers
    the high-water mark while rows stream; :meth:`record_sent` records the loaded windows in the ledger once
    the rows were sent; :meth:`commit` stores the new mark once the task succeeded. ``IncrementalLoad()`` is
    a full load: no filter, and every other step does nothing.

    :param column: the incremental column (a plain identifier), ``None`` for a full load.
    :param zone: the warehouse's zone (:attr:`~peak_provider.connection.PeakSettings.source_zone`); SQLite
        compares text bounds written in it.
    :param watermark: ``watermark`` mode: where the mark is read and stored.
    :param ledger: ``interval`` mode: the task's missed-window ledger, and ``plan``: what this run loads.
    :param dry_run: nothing is recorded or stored.
    """

    column: str | None = None
    zone: tzinfo = UTC
    _: KW_ONLY
    watermark: WatermarkStore | None = None
    ledger: Ledger | None = None
    plan: LedgerPlan | None = None
    dry_run: bool = False
    _tracker: MaxTracker | None = field(default=None, init=False, repr=False)

    @classmethod
    def begin(
        cls,
        context: Mapping[str, Any],
        column: str,
        mode: str,
        *,
        zone: tzinfo,
        keys: Sequence[str],
        dag_id: str,
        task_id: str,
        policy: str,
        operation: str,
        serialized: bool,
        dry_run: bool,
    ) -> IncrementalLoad:
        """The load of this run of task ``dag_id.task_id`` in ``mode`` (:data:`MODES`), before the warehouse
        is read. ``keys``: the target's asset names, the current one first (see :class:`WatermarkStore`);
        ``policy``, ``operation``, ``serialized``: see :meth:`Ledger.plan <peak_provider.ledger.Ledger.plan>`.

        :raises PeakEmptyIntervalError: ``interval`` mode and the run's data interval is empty.
        :raises PeakMissedWindowsError: ``policy="fail"`` and the ledger found windows missing (or, under
            APPEND, overlapping).
        """
        if mode == "watermark":
            store = WatermarkStore(context, keys, f"peak_watermark__{dag_id}__{task_id}")
            return cls(column, zone, watermark=store, dry_run=dry_run)
        window = interval_bounds(context)
        ledger = Ledger(context, keys[0], dag_id, task_id)
        plan = ledger.plan(window, policy=policy, operation=operation, serialized=serialized)
        return cls(column, zone, ledger=ledger, plan=plan, dry_run=dry_run)

    def query(
        self,
        sql: str,
        parameters: Sequence[Any] | Mapping[str, Any] | None,
        driver: str,
        order_by: Sequence[str] = (),
    ) -> Query:
        """``sql`` wrapped with this run's filter (one condition per window, or ``column >`` the stored
        mark), its bounds bound in ``driver``'s style, and ``ORDER BY order_by``; see :func:`add_filter`."""
        conditions: list[tuple[str, str, Any]] = []
        alternatives: list[list[tuple[str, str, Any]]] = []
        if self.plan is not None:
            windows = self.plan.windows
            for i, (start, end) in enumerate(windows):
                suffix = f"_{i}" if len(windows) > 1 else ""
                alternatives.append(
                    [
                        (f"peak_lower{suffix}", ">=", bound_value(start, driver, self.zone)),
                        (f"peak_upper{suffix}", "<", bound_value(end, driver, self.zone)),
                    ]
                )
                log.info("Interval load: %s >= %s and < %s", self.column, start, end)
            if len(alternatives) == 1:
                conditions, alternatives = alternatives[0], []
        elif self.watermark is not None:
            mark = self.watermark.get()
            log.info("Watermark load: %s > %s (from %s)", self.column, mark, self.watermark.backend)
            if mark is not None:
                conditions = [("peak_mark", ">", mark)]
        return add_filter(sql, parameters, self.column, conditions, paramstyle_of(driver), order_by, alternatives)

    def track(
        self, rows: Iterator[Sequence[Any]], columns: Sequence[str], skip: Sequence[Sequence[int]] = ()
    ) -> Iterator[Sequence[Any]]:
        """``rows`` (in the order of ``columns``) passed through; in ``watermark`` mode the largest value of
        the column is remembered as they go, but for the positions in ``skip`` (see :class:`MaxTracker`).

        :raises PeakConfigError: the query does not select the incremental column.
        """
        if self.watermark is None or self.column is None:
            return rows
        self._tracker = MaxTracker(column_index(columns, self.column), skip)
        return self._tracker.track(rows)

    def mark(self, earlier: Any = None) -> Any:
        """The mark so far, in its JSON form: the later of ``earlier`` (an earlier attempt's, from the
        checkpoint) and the largest value tracked; ``None`` in ``interval`` mode or before any row."""
        if self._tracker is None:
            return earlier
        current = self._tracker.maximum
        return later_mark(earlier, mark_to_json(current) if current is not None else None)

    def record_sent(self) -> dict[str, Any]:
        """Once every row was sent and the counts reconcile: ``interval`` mode records the windows in the
        ledger (not on a dry run), even if a threshold fails the task afterwards, since the rows were sent.
        Returns the summary's ledger keys (:meth:`~peak_provider.ledger.LedgerPlan.report`), if any."""
        if self.ledger is None or self.plan is None:
            return {}
        report = self.plan.report()
        if not self.dry_run:
            self.ledger.record(self.plan.windows)
        return report

    def commit(self, earlier: Any = None) -> None:
        """Once the task succeeded: ``watermark`` mode stores the largest value read as the new mark, or
        ``earlier`` (the mark of the rows earlier attempts settled, when this one resumed) if later (not on a
        dry run, nor when no row was read), so a failed task loads the same rows again next time."""
        if self.watermark is None or self._tracker is None or self.dry_run:
            return
        mark = self.mark(earlier)
        if mark is None:
            return
        self.watermark.set(mark)
        log.info("Stored watermark %s in %s", mark, self.watermark.backend)
