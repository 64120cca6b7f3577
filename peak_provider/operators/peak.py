"""SqlToPeakOperator: stream a warehouse query into one Peak object."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, Asset, BaseOperator

from peak_provider.exceptions import PeakConfigError, PeakRejectedRowsError
from peak_provider.hooks.peak import PeakHook
from peak_provider.incremental import (
    MODES,
    MaxTracker,
    WatermarkStore,
    add_filter,
    bound_value,
    check_column,
    interval_bounds,
    mark_to_json,
)
from peak_provider.rejected import RejectedRowsSink
from peak_provider.resume import Checkpoint, fingerprint
from peak_provider.sql_source import Query, paramstyle_of, stream_query

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

log = logging.getLogger(__name__)


def peak_asset_uri(peak_conn_id: str, resource: str) -> str:
    """``peak://<host>/<solution>/<OBJECT>`` for a resource of a connection.

    Read when the DAG is parsed. Where the connection is not defined in the parsing environment (a DAG
    integrity test, say), the URI falls back to ``peak://<conn_id>/<RESOURCE>`` with a warning, rather
    than failing the import; pass ``asset_uri`` to pin it.
    """
    try:
        hook = PeakHook(peak_conn_id)
    except AirflowNotFoundException:
        log.warning("Peak connection %r is not defined here; asset URI falls back to the connection id", peak_conn_id)
        return f"peak://{peak_conn_id}/{resource.upper()}"
    return f"peak://{hook.settings.host}/{hook.settings.solution_name}/{hook.object_name(resource)}"


class SqlToPeakOperator(BaseOperator):
    """Run a SQL query on any common-sql connection and upsert (or append) its rows into a Peak object.

    Rows stream from a server-side cursor (PostgreSQL) or ``fetchmany`` (others) straight into
    :meth:`PeakHook.ingest`, so memory stays flat however large the table. The task returns a small
    summary (never rows) and emits an asset event for the Peak object with the counts.

    :param resource: catalogue name of the target, e.g. ``products`` (object ``{prefix}PRODUCTS{suffix}``).
    :param sql: the query, or a path ending in ``.sql`` (templated).
    :param sql_conn_id: the warehouse connection (SQLite, PostgreSQL, Snowflake, …).
    :param peak_conn_id: the ``peak`` connection.
    :param parameters: bind parameters of ``sql`` (templated).
    :param operation: ``UPSERT`` or ``APPEND``; default: the catalogue's for the resource.
    :param dry_run: the API validates but writes nothing.
    :param column_map: source column -> Peak field, for differently named columns.
    :param custom_attributes: UPPERCASE custom attribute -> type (string, integer, float, …).
    :param incremental_column: e.g. ``updated_at``; turns on incremental loading.
    :param incremental_mode: ``interval`` (default) or ``watermark``; see :mod:`peak_provider.incremental`.
    :param max_rejected_rows: the task fails after the load when more rows than this were rejected.
    :param rejected_rows_path: write every rejected row as JSON Lines here (local path or object-storage
        URL; templated, e.g. ``/data/rejects/{{ ds }}/products.jsonl``).
    :param fetch_size: rows fetched from the warehouse per round trip.
    :param asset_uri: URI of the outlet asset; default ``peak://<host>/<solution>/<OBJECT>`` (read from
        the connection when the DAG is parsed).
    :param resumable: order the query by the primary key and checkpoint settled rows in the task's
        ``task_state_store`` (Airflow >= 3.3), so a retry after a crash resumes instead of re-sending.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "sql_conn_id", "rejected_rows_path")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}
    ui_color = "#5b3fd9"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        resource: str,
        sql: str,
        sql_conn_id: str,
        peak_conn_id: str = PeakHook.default_conn_name,
        parameters: Sequence[Any] | Mapping[str, Any] | None = None,
        operation: str | None = None,
        dry_run: bool = False,
        column_map: Mapping[str, str] | None = None,
        custom_attributes: Mapping[str, str] | None = None,
        incremental_column: str | None = None,
        incremental_mode: str | None = None,
        max_rejected_rows: int = 0,
        rejected_rows_path: str | None = None,
        fetch_size: int = 5000,
        asset_uri: str | None = None,
        resumable: bool = False,
        **kwargs: Any,
    ) -> None:
        if incremental_mode is not None and incremental_mode not in MODES:
            raise PeakConfigError(f"incremental_mode must be one of {', '.join(MODES)}, got {incremental_mode!r}")
        if incremental_mode is not None and incremental_column is None:
            raise PeakConfigError("incremental_mode needs incremental_column (e.g. 'updated_at')")
        if operation is not None and operation.upper() not in ("UPSERT", "APPEND"):
            raise PeakConfigError(f"operation must be UPSERT or APPEND, got {operation!r}")
        self.asset = Asset(asset_uri or peak_asset_uri(peak_conn_id, resource))
        kwargs["outlets"] = [*(kwargs.get("outlets") or []), self.asset]
        super().__init__(**kwargs)
        self.resource = resource.lower()
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.peak_conn_id = peak_conn_id
        self.parameters = parameters
        self.operation = operation.upper() if operation else None
        self.peak_dry_run = dry_run  # BaseOperator.dry_run() is a method
        self.column_map = dict(column_map or {})
        self.custom_attributes = dict(custom_attributes or {})
        self.incremental_column = check_column(incremental_column) if incremental_column else None
        self.incremental_mode = (incremental_mode or "interval") if incremental_column else None
        self.max_rejected_rows = max_rejected_rows
        self.rejected_rows_path = rejected_rows_path
        self.fetch_size = fetch_size
        self.resumable = resumable

    def execute(self, context: Context) -> dict[str, Any]:
        hook = PeakHook(self.peak_conn_id)
        hook.resource(self.resource)  # fail before touching the warehouse if the name is wrong
        watermark = None
        if self.incremental_mode == "watermark":
            watermark = WatermarkStore(context, self.asset, f"peak_watermark__{self.dag_id}__{self.task_id}")
        bounds = interval_bounds(context) if self.incremental_mode == "interval" else None
        sink = RejectedRowsSink(self.rejected_rows_path, self.resource) if self.rejected_rows_path else None
        tracker: MaxTracker | None = None
        checkpoint: Checkpoint | None = None

        def build(driver: str) -> Query:
            nonlocal checkpoint
            query = self._query_for(driver, hook, bounds, watermark)
            if self.resumable:
                checkpoint = Checkpoint(context, fingerprint(*query))
                if not checkpoint.available:
                    self.log.warning("resumable=True needs Airflow >= 3.3 (task_state_store); a retry starts over")
            return query

        with stream_query(self.sql_conn_id, build, self.fetch_size) as stream:
            rows = stream.rows
            if checkpoint is not None and (skip := checkpoint.load()):
                self.log.info("Resuming: the first %d rows were settled by an earlier attempt", skip)
                rows = islice(rows, skip, None)
            if watermark is not None and self.incremental_column is not None:
                tracker = MaxTracker(self._column_index(stream.columns, self.incremental_column))
                rows = tracker.track(rows)
            try:
                result = hook.ingest(
                    self.resource,
                    rows,
                    columns=stream.columns,
                    operation=self.operation,
                    dry_run=self.peak_dry_run,
                    column_map=self.column_map,
                    custom_attributes=self.custom_attributes,
                    on_rejected=sink.write if sink else None,
                    on_progress=checkpoint.advance if checkpoint else None,
                )
            finally:
                if sink:
                    sink.close()
                hook.close()

        summary = result.to_dict()
        if checkpoint is not None:
            summary["rows_resumed"] = checkpoint.skipped
        if sink and sink.count:
            summary["rejected_rows_path"] = sink.path
        if not result.reconciled:
            raise PeakConfigError(f"Counts do not reconcile (a bug, please report it): {result}")
        context["outlet_events"][self.asset].extra = {
            k: summary[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "operation", "dry_run")
        }
        if checkpoint is not None:
            checkpoint.clear()  # the load completed; a later run (or a cleared task) starts from the top
        if result.rows_rejected > self.max_rejected_rows:
            where = f"; rejected rows written to {sink.path}" if sink and sink.count else ""
            raise PeakRejectedRowsError(
                f"{result.rows_rejected} rows rejected (max_rejected_rows={self.max_rejected_rows}): {result}"
                f"{where}. First rejections: {result.rejected_sample[:5]}",
                summary,
            )
        if watermark is not None and tracker is not None and tracker.maximum is not None and not self.peak_dry_run:
            watermark.set(mark_to_json(tracker.maximum))
            self.log.info("Stored watermark %s in %s", tracker.maximum, watermark.backend)
        return summary

    def _query_for(
        self, driver: str, hook: PeakHook, bounds: tuple[Any, Any] | None, watermark: WatermarkStore | None
    ) -> Query:
        """The SQL and parameters to run: the user's, wrapped with the incremental filter and, when
        resumable, an ORDER BY the primary key (as named in the source)."""
        tz = hook.settings.source_timezone
        order_by: list[str] = []
        if self.resumable:
            source_of = {field.lower(): column for column, field in self.column_map.items()}
            order_by = [source_of.get(pk, pk) for pk in hook.resource(self.resource).primary_key]
        conditions: list[tuple[str, str, Any]] = []
        if bounds is not None:
            start, end = bounds
            conditions = [
                ("peak_lower", ">=", bound_value(start, driver, tz)),
                ("peak_upper", "<", bound_value(end, driver, tz)),
            ]
            self.log.info("Interval load: %s >= %s and < %s", self.incremental_column, start, end)
        elif watermark is not None:
            mark = watermark.get()
            self.log.info("Watermark load: %s > %s (from %s)", self.incremental_column, mark, watermark.backend)
            if mark is not None:
                conditions = [("peak_mark", ">", mark)]
        return add_filter(
            self.sql, self.parameters, self.incremental_column, conditions, paramstyle_of(driver), order_by
        )

    @staticmethod
    def _column_index(columns: list[str], column: str) -> int:
        lowered = [c.lower() for c in columns]
        if column.lower() not in lowered:
            raise PeakConfigError(f"incremental_column {column!r} is not among the query's columns {columns}")
        return lowered.index(column.lower())
