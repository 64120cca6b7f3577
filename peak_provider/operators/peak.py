"""SqlToPeakOperator: stream a warehouse query into one Peak object."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, AssetAlias, BaseOperator

from peak_provider.api import APPEND, OPERATIONS
from peak_provider.exceptions import (
    PeakConfigError,
    PeakError,
    PeakRejectedRowsError,
    PeakResumeError,
    PeakStoppedError,
)
from peak_provider.hooks.peak import PeakHook
from peak_provider.incremental import MODES, IncrementalLoad, sql_identifier
from peak_provider.ledger import POLICIES
from peak_provider.lineage import PeakObject, output_dataset, peak_object_of_hook
from peak_provider.preflight import UNKNOWN_COLUMNS, CheckedColumns, check_columns, live_columns
from peak_provider.rejected import RejectedRowsSink
from peak_provider.resources import CatalogueError, applications_with, get_application
from peak_provider.result import IngestResult
from peak_provider.resume import Checkpoint, fingerprint
from peak_provider.sql_source import Query, stream_query

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

log = logging.getLogger(__name__)

#: Summary keys that also go into the asset event's ``extra`` when present.
_LEDGER_EXTRA = ("missing_intervals", "filled_intervals", "overlapping_intervals", "dropped_columns")


def peak_asset_uri(hook: PeakHook, resource: str) -> str:
    """``peak://<host>/<solution>/<OBJECT>`` of a resource's object. It reads the connection (through
    ``hook``), so it is computed at run time, never when the DAG is parsed."""
    return peak_object_of_hook(hook, resource).uri


def peak_asset_alias(peak_conn_id: str, resource: str) -> str:
    """The name of the ``AssetAlias`` a load's asset events go through: ``peak/<conn_id>/<resource>``."""
    return f"peak/{peak_conn_id}/{resource.lower()}"


def check_resource(resource: str, application: str | None) -> None:
    """Check ``resource`` against ``application``'s catalogue, or against every application's when
    none is given, without reading any connection (this runs when the DAG is parsed).

    :raises PeakConfigError: an unknown application or resource; the error lists the known names.
    """
    try:
        if application is not None:
            get_application(application).resource(resource)
        else:
            applications_with([resource])
    except CatalogueError as exc:
        raise PeakConfigError(str(exc)) from None


class SqlToPeakOperator(BaseOperator):
    """Run a SQL query on any common-sql connection and upsert (or append) its rows into a Peak object.

    Rows stream from a server-side cursor (PostgreSQL) or ``fetchmany`` (others) straight into
    :meth:`PeakHook.ingest`, so memory stays flat however large the table. The task returns a small
    summary (never rows) and emits an asset event for the Peak object with the counts (not on a dry run,
    which writes nothing and has no outlet). On SIGTERM (``on_kill``) the load stops sending and the task
    fails with the counts so far in its log.

    Building the operator reads no connection, variable or network: ``resource`` is checked against the
    catalogue of ``application`` (or of every application), and the outlet is the ``AssetAlias``
    ``peak/<peak_conn_id>/<resource>``. At run time the task adds to it the asset
    ``peak://<host>/<solution>/<OBJECT>``, read from the connection, with the counts as the event's
    ``extra``. A downstream DAG schedules on either::

        schedule=[AssetAlias("peak/peak_inventory/products")]  # every load through this alias
        schedule=[Asset("peak://service.peak.ai/INV_OOTB/INV_PRODUCTS_OOTB")]  # that object, by any task

    :param resource: catalogue name of the target, e.g. ``products`` (object ``{prefix}PRODUCTS{suffix}``).
    :param application: the catalogue ``resource`` is checked against when the DAG is parsed (``inventory``,
        ``b2c_pricing``, …); default: every application's. The connection's ``application`` decides at run
        time.
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
    :param asset_uri: pin the outlet to this asset (``peak://<host>/<solution>/<OBJECT>``) instead of the
        alias; the task then updates that asset whatever the connection says.
    :param resumable: order the query by the primary key and checkpoint settled rows in the task's
        ``task_state_store`` (Airflow >= 3.3), so a retry resumes instead of re-sending. Default: on for
        APPEND (a retry must not append rows twice; the ORDER BY costs the warehouse a sort), off for
        UPSERT (re-sending is harmless). ``resumable=False`` on APPEND is allowed, with a warning.
    :param max_in_doubt_rows: the task fails after the load when more rows than this are in doubt (sent,
        outcome unknown; they are written to ``rejected_rows_path`` with ``"outcome": "in_doubt"``).
    :param missed_windows: ``interval`` mode: what to do about windows no run loaded (and, under APPEND,
        windows loaded twice), per the task's ledger (:mod:`peak_provider.ledger`): ``warn`` (default: log
        them, list them in the summary and the asset event), ``fail`` (before reading the warehouse) or
        ``fill`` (load them too, in this run). ``fill`` sets ``max_active_tis_per_dag=1`` unless given.
    :param unknown_columns: ``fail`` (default): a query column that is not a field of the resource (after
        ``column_map``) nor a custom attribute fails the task before anything is sent; ``drop``: such
        columns are not sent (see :mod:`peak_provider.preflight`).
    :param schema_check: fetch the tenant's live schema once and check the query's columns against it
        before sending: live custom attributes need no declaration, a column the live object lacks or a
        type conflict fails the task.
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
        application: str | None = None,
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
        resumable: bool | None = None,
        max_in_doubt_rows: int = 0,
        missed_windows: str | None = None,
        unknown_columns: str = "fail",
        schema_check: bool = False,
        **kwargs: Any,
    ) -> None:
        if incremental_mode is not None and incremental_mode not in MODES:
            raise PeakConfigError(f"incremental_mode must be one of {', '.join(MODES)}, got {incremental_mode!r}")
        if incremental_mode is not None and incremental_column is None:
            raise PeakConfigError("incremental_mode needs incremental_column (e.g. 'updated_at')")
        if operation is not None and operation.upper() not in OPERATIONS:
            raise PeakConfigError(f"operation must be UPSERT or APPEND, got {operation!r}")
        if missed_windows is not None and missed_windows not in POLICIES:
            raise PeakConfigError(f"missed_windows must be one of {', '.join(POLICIES)}, got {missed_windows!r}")
        if missed_windows is not None and (incremental_column is None or incremental_mode == "watermark"):
            raise PeakConfigError("missed_windows applies to incremental_mode='interval' (watermark loads cannot miss)")
        if unknown_columns not in UNKNOWN_COLUMNS:
            raise PeakConfigError(
                f"unknown_columns must be one of {', '.join(UNKNOWN_COLUMNS)}, got {unknown_columns!r}"
            )
        if missed_windows == "fill":
            kwargs.setdefault("max_active_tis_per_dag", 1)  # one run at a time fills, never two the same window
        check_resource(resource, application)
        self.outlet: Asset | AssetAlias = (
            Asset(asset_uri) if asset_uri else AssetAlias(peak_asset_alias(peak_conn_id, resource))
        )
        if not dry_run:  # a dry run writes nothing: no asset event, so no consumer DAG is triggered
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), self.outlet]
        super().__init__(**kwargs)
        self.resource = resource.lower()
        self.application = application
        self.asset_uri = asset_uri
        self._peak_object: PeakObject | None = None  # the target, once execute() has read the connection
        self._peak_result: dict[str, Any] | None = None  # the last load's summary, for OpenLineage
        self._hook: PeakHook | None = None  # while execute() runs, for on_kill()
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.peak_conn_id = peak_conn_id
        self.parameters = parameters
        self.operation = operation.upper() if operation else None
        self.peak_dry_run = dry_run  # BaseOperator.dry_run() is a method
        self.column_map = dict(column_map or {})
        self.custom_attributes = dict(custom_attributes or {})
        self.incremental_column = sql_identifier(incremental_column) if incremental_column else None
        self.incremental_mode = (incremental_mode or "interval") if incremental_column else None
        self.max_rejected_rows = max_rejected_rows
        self.rejected_rows_path = rejected_rows_path
        self.fetch_size = fetch_size
        self.resumable = resumable
        self.max_in_doubt_rows = max_in_doubt_rows
        self.missed_windows = (missed_windows or "warn") if self.incremental_mode == "interval" else None
        self.unknown_columns = unknown_columns
        self.schema_check = schema_check

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            with closing(PeakHook(self.peak_conn_id)) as hook:  # its HTTP session is closed whatever fails
                self._hook = hook
                return self._load(context, hook)
        finally:
            self._hook = None

    def on_kill(self) -> None:
        """Stop the load (Airflow calls this on SIGTERM): nothing more is sent, the batches in flight settle,
        and the task fails with the counts so far in its log."""
        hook = self._hook
        if hook is not None:
            hook.stop("the task was killed (on_kill)")

    def _load(self, context: Context, hook: PeakHook) -> dict[str, Any]:
        """Preflight, stream, send, then record: the task's work, with ``hook`` closed by :meth:`execute`."""
        # an unknown resource fails here, before the warehouse is touched
        operation = (self.operation or hook.resource(self.resource).default_operation).upper()
        load = self._incremental_load(context, hook, operation)  # an empty interval or missed windows fail here
        live = hook.get_schema() if self.schema_check else None
        resumable = self.resumable if self.resumable is not None else operation == APPEND
        if operation == APPEND and not resumable:
            self.log.warning("resumable=False: a retry of this APPEND task sends every row again (duplicates)")
        if hook.stopped:  # killed during the preflight: the query is not run
            raise PeakStoppedError("The load was stopped before it started: the task was killed (on_kill)")
        with stream_query(self.sql_conn_id, self._query(load, hook, resumable), self.fetch_size) as stream:
            checked = self._preflight(hook, stream.columns, live)
            checkpoint = self._checkpoint(context, stream.query, operation) if resumable else None
            settled = checkpoint.earlier.ranges if checkpoint is not None and checkpoint.earlier else []
            # a query without the incremental column fails here; the rows a retry skips do not move the mark
            rows = load.track(stream.rows, stream.columns, skip=settled)
            sink = None
            if self.rejected_rows_path:
                resuming = checkpoint is not None and checkpoint.earlier is not None
                sink = RejectedRowsSink(self.rejected_rows_path, self.resource, append=resuming)
            result = self._send(hook, rows, checked, operation, checkpoint, sink, load)
        if not result.reconciled:
            raise PeakError(f"Counts do not reconcile (a bug, please report it): {result}")
        summary = self._summary(result, checked, checkpoint, sink)
        summary.update(load.record_sent())  # recorded even if a threshold below fails the task: the rows were sent
        self._emit_asset_event(context, hook, summary)
        if checkpoint is not None:
            checkpoint.clear()  # the load completed; a later run (or a cleared task) starts from the top
        self._check_thresholds(result, summary, sink)
        load.commit(checkpoint.earlier_mark if checkpoint is not None else None)
        return summary

    def _incremental_load(self, context: Context, hook: PeakHook, operation: str) -> IncrementalLoad:
        """This run's :class:`IncrementalLoad` (a full load without ``incremental_column``)."""
        if self.incremental_column is None or self.incremental_mode is None:
            return IncrementalLoad(dry_run=self.peak_dry_run)
        return IncrementalLoad.begin(
            context,
            self.incremental_column,
            self.incremental_mode,
            zone=hook.settings.source_zone,
            keys=self._watermark_keys(hook),
            dag_id=self.dag_id,
            task_id=self.task_id,
            dry_run=self.peak_dry_run,
            **self._ledger_args(operation),
        )

    def _query(self, load: IncrementalLoad, hook: PeakHook, resumable: bool) -> Callable[[str], Query]:
        """The query to run for a driver: the user's, wrapped with the incremental filter and, when resumable,
        an ORDER BY the primary key (as named in the source)."""
        order_by: list[str] = []
        if resumable:
            source_of = {field.lower(): column for column, field in self.column_map.items()}
            order_by = [source_of.get(pk, pk) for pk in hook.resource(self.resource).primary_key]
        return lambda driver: load.query(self.sql, self.parameters, driver, order_by)

    def _checkpoint(self, context: Context, query: Query, operation: str) -> Checkpoint:
        """The checkpoint of this query, loaded with what earlier attempts settled (``earlier``; see
        :mod:`peak_provider.resume`)."""
        checkpoint = Checkpoint(context, fingerprint(*query), operation)
        if not checkpoint.available:
            self.log.warning(
                "No task_state_store (Airflow < 3.3): a retry of this task starts over%s",
                " and a retried APPEND can duplicate rows" if operation == APPEND else "",
            )
        if checkpoint.load() is not None:
            self.log.info(
                "Resuming (attempt %d): %d rows were settled by earlier attempts and are skipped",
                checkpoint.attempts,
                checkpoint.rows_skipped,
            )
        return checkpoint

    def _send(
        self,
        hook: PeakHook,
        rows: Iterator[Sequence[Any]],
        checked: CheckedColumns,
        operation: str,
        checkpoint: Checkpoint | None,
        sink: RejectedRowsSink | None,
        load: IncrementalLoad,
    ) -> IngestResult:
        """Stream ``rows`` into the Peak object (skipping what the checkpoint says earlier attempts settled,
        and saving with each checkpoint the watermark of the rows read so far); closes the sink and the hook
        whatever happens."""
        try:
            return hook.ingest(
                self.resource,
                checked.project(rows),
                columns=checked.columns,
                operation=operation,
                dry_run=self.peak_dry_run,
                column_map=self.column_map,
                custom_attributes=checked.custom_attributes,
                on_rejected=sink.write if sink else None,
                on_progress=(lambda p: checkpoint.save(p, load.mark(checkpoint.earlier_mark))) if checkpoint else None,
                resume_from=checkpoint.earlier if checkpoint else None,
            )
        except BaseException as exc:  # a Peak error, a task timeout, a bug: each carries the counts so far
            if isinstance(exc, PeakResumeError) and checkpoint is not None:
                checkpoint.clear()
            result = getattr(exc, "result", None)
            if result is not None:
                where = f"; rejected and in-doubt rows are in {sink.path}" if sink and sink.count else ""
                why = "" if isinstance(exc, PeakError) else f" ({type(exc).__name__})"
                self.log.error("Peak load failed%s: %s%s", why, result, where)
            self._remember_failure(exc)
            raise
        finally:
            if sink:
                sink.close()
            hook.close()

    @staticmethod
    def _summary(
        result: IngestResult, checked: CheckedColumns, checkpoint: Checkpoint | None, sink: RejectedRowsSink | None
    ) -> dict[str, Any]:
        """The task's return value (XCom): the counts, and how the load resumed, where rejections went and
        which columns were dropped."""
        summary = result.to_dict()
        if checkpoint is not None:
            summary["rows_resumed"] = checkpoint.rows_skipped
            summary["attempts"] = checkpoint.attempts
        if sink and sink.count:
            summary["rejected_rows_path"] = sink.path
        if checked.dropped:
            summary["dropped_columns"] = checked.dropped
        return summary

    def _check_thresholds(self, result: IngestResult, summary: dict[str, Any], sink: RejectedRowsSink | None) -> None:
        """Fail the task (without retries) past ``max_rejected_rows`` or ``max_in_doubt_rows``."""
        where = f"; rows written to {sink.path}" if sink and sink.count else ""
        if result.rows_rejected > self.max_rejected_rows:
            raise PeakRejectedRowsError(
                f"{result.rows_rejected} rows rejected (max_rejected_rows={self.max_rejected_rows}): {result}"
                f"{where}. First rejections: {result.rejected_sample[:5]}",
                summary,
            )
        if result.rows_in_doubt > self.max_in_doubt_rows:
            raise PeakRejectedRowsError(
                f"{result.rows_in_doubt} rows are in doubt (max_in_doubt_rows={self.max_in_doubt_rows}): they were "
                f"sent but their outcome is unknown, so they may or may not be in Peak. Look them up by key before "
                f"sending them again{where}. {result}",
                summary,
            )

    def _emit_asset_event(self, context: Context, hook: PeakHook, summary: dict[str, Any]) -> None:
        """Emit the asset event of the load (counts in its ``extra``; none for a dry run, which has no outlet)
        and keep the summary for lineage."""
        self._peak_object = peak_object_of_hook(hook, self.resource)
        self._peak_result = summary
        if self.peak_dry_run:
            return
        extra = {k: summary[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "operation", "dry_run")}
        extra.update({k: summary[k] for k in _LEDGER_EXTRA if k in summary})
        if isinstance(self.outlet, AssetAlias):
            uri = self._peak_object.uri
            context["outlet_events"][self.outlet].add(Asset(uri), extra=extra)
        else:
            context["outlet_events"][self.outlet].extra = extra

    def _ledger_args(self, operation: str) -> dict[str, Any]:
        """Ledger.plan()'s policy arguments; ``serialized``: no two runs of this task can run at once."""
        dag = self.dag if self.has_dag() else None
        serialized = self.max_active_tis_per_dag == 1 or getattr(dag, "max_active_runs", None) == 1
        return {"policy": self.missed_windows or "warn", "operation": operation, "serialized": serialized}

    def _preflight(self, hook: PeakHook, columns: list[str], live_schema: Any) -> CheckedColumns:
        """The query's columns checked against the resource (and the live schema), before any row is sent."""
        res = hook.resource(self.resource)
        object_name = hook.object_name(self.resource)
        live = live_columns(live_schema, object_name, res.object) if self.schema_check else None
        return check_columns(
            res,
            object_name,
            columns,
            column_map=self.column_map,
            custom_attributes=self.custom_attributes,
            unknown_columns=self.unknown_columns,
            live=live,
        )

    def _remember_failure(self, exc: BaseException) -> None:
        """Keep the counts a failed load carries (``exc.result``, an ``IngestResult``) for lineage."""
        result = getattr(exc, "result", None)
        if result is not None:
            self._peak_result = result.to_dict() if hasattr(result, "to_dict") else dict(result)

    def _watermark_keys(self, hook: PeakHook) -> list[str]:
        """Asset names the watermark is read from, the current one first, then those earlier versions
        keyed it by: the URI read when the DAG was parsed (the same object, host as the connection
        spells it) and the fallback ``peak://<conn_id>/<RESOURCE>`` used where no connection was defined."""
        obj = peak_object_of_hook(hook, self.resource)
        keys = [
            self.asset_uri or obj.uri,
            obj.uri,
            f"peak://{hook.settings.host}/{obj.solution}/{obj.object_name}",
            f"peak://{self.peak_conn_id}/{self.resource.upper()}",
        ]
        return list(dict.fromkeys(keys))

    # --- OpenLineage (apache-airflow-providers-openlineage, optional) ------------------------------

    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        """Inputs parsed from the SQL (as common-sql's operators do) and the Peak object as output."""
        return self._openlineage(with_counts=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """:meth:`get_openlineage_facets_on_start` plus the load's output statistics."""
        return self._openlineage(with_counts=True)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """As on completion, with the counts so far when the failed load reported them."""
        return self._openlineage(with_counts=True)

    def _openlineage(self, *, with_counts: bool) -> OperatorLineage | None:
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        inputs = self._openlineage_inputs()
        target = self._peak_object
        if target is None:
            try:
                target = peak_object_of_hook(PeakHook(self.peak_conn_id), self.resource)
            except Exception as exc:
                self.log.debug("OpenLineage: no Peak output (%s)", exc)
        outputs = [output_dataset(target, self._peak_result if with_counts else None)] if target else []
        return OperatorLineage(
            inputs=inputs.inputs if inputs else [],
            outputs=outputs,
            run_facets=inputs.run_facets if inputs else {},
            job_facets=inputs.job_facets if inputs else {},
        )

    def _openlineage_inputs(self) -> OperatorLineage | None:
        """The tables the query reads, by common-sql's recipe: ``SQLParser`` with the warehouse hook's
        database info, dialect and default schema. Hooks without OpenLineage support (SQLite) get
        ``<conn_type>://<host>`` as namespace and are not queried for table schemas."""
        from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser

        from peak_provider.sql_source import get_db_hook

        if not isinstance(self.sql, str) or not self.sql.strip():
            return None
        try:
            db_hook = get_db_hook(self.sql_conn_id)
            connection = db_hook.get_connection(getattr(db_hook, db_hook.conn_name_attr))
            database_info = db_hook.get_openlineage_database_info(connection)
            use_connection = database_info is not None
            if database_info is None:
                authority = f"{connection.host}:{connection.port}" if connection.port else connection.host
                database_info = DatabaseInfo(scheme=connection.conn_type, authority=authority or None)
            if connection.conn_type == "sqlite":
                default_schema: str | None = "main"
            else:
                default_schema = db_hook.get_openlineage_default_schema()
            if use_connection:
                try:
                    from airflow.providers.openlineage.utils.utils import should_use_external_connection

                    use_connection = should_use_external_connection(db_hook)
                except ImportError:
                    pass
            dialect = "sqlite" if connection.conn_type == "sqlite" else None
            parser = SQLParser(
                dialect=dialect or db_hook.get_openlineage_database_dialect(connection), default_schema=default_schema
            )
            return parser.generate_openlineage_metadata_from_sql(
                sql=self.sql,
                hook=db_hook,
                database_info=database_info,
                sqlalchemy_engine=db_hook.get_sqlalchemy_engine() if use_connection else None,
                use_connection=use_connection,
            )
        except Exception as exc:
            self.log.warning("OpenLineage: could not read the query's input tables: %s", exc)
            return None
