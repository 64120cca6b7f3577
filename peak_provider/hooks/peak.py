"""PeakHook: a ``peak`` connection -> a configured session, ingest calls, schema calls, connection test."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from peak_provider import api
from peak_provider.api import ADD_ATTRIBUTE_PATH, ATTRIBUTE_TYPES, SCHEMA_PATH, SOLUTIONS_PATH
from peak_provider.connection import PeakSettings, parse_extra
from peak_provider.exceptions import PeakConfigError, PeakError, PeakSourceError, PeakStoppedError
from peak_provider.extras import CONN_TYPE, DEFAULT_CONN_ID, EXTRAS
from peak_provider.ingest import Progress, SendingWindow
from peak_provider.ratecontrol import AdaptivePacer, RateControl, SharedBudget, budget_key
from peak_provider.reply import Failure, excerpt, index_by_key, json_or_none, read_ingest_reply
from peak_provider.resources import Application, Resource, get_application
from peak_provider.result import IngestResult, Rejection
from peak_provider.resume import Skipper
from peak_provider.transport import Counters, DeadlineAdapter, PayloadTooLarge, Transport
from peak_provider.wire import RowEncoder


def _escaped_char(char: str) -> str:
    """A regex for one token character as it may be echoed: itself, behind backslashes, or escaped."""
    if char.isalnum():
        return re.escape(char)
    code = ord(char)
    forms = [re.escape(char), f"(?i:%{code:02x})", f"(?i:\\\\u{code:04x})"]
    if char == " ":
        forms.append(r"\+")
    alternatives = "|".join(forms)
    return rf"(?:\\*(?:{alternatives}))"


class _LibraryLogScrubber(logging.Filter):
    """Removes the token of every live hook from urllib3's log records: urllib3 quotes a header line it cannot
    parse, which a server can make echo the token (Airflow's masker misses its repr-escaped forms)."""

    LOGGERS = ("urllib3.connection", "urllib3.connectionpool", "urllib3.response")

    def __init__(self) -> None:
        super().__init__()
        self.hooks: weakref.WeakSet[PeakHook] = weakref.WeakSet()
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        hooks = list(self.hooks)
        if hooks:
            text = record.getMessage()
            trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else record.exc_text
            for hook in hooks:
                text = hook._scrub(text)
                trace = hook._scrub(trace) if trace else trace
            record.msg, record.args, record.exc_info, record.exc_text = text, None, None, trace
        return True


_library_logs = _LibraryLogScrubber()


def _carry(exc: BaseException, result: IngestResult) -> None:
    """Attach the load's counts to ``exc`` (``exc.result``), whatever its type (one that takes no attribute
    goes without)."""
    with contextlib.suppress(AttributeError):
        exc.result = result  # type: ignore[attr-defined]


class PeakHook(BaseHook):
    """Talk to the Peak (UiPath) Supply Chain & Retail data ingestion API.

    The connection is read and validated when the hook is built, so a missing or invalid extra fails
    here with the connection id and the extra's name, not deep inside a request.

    :param peak_conn_id: id of a connection of type ``peak`` (Password = Personal Access Token,
        Host = API base URL, extras: ``solution_name``, ``application``, ``prefix``, ``suffix``, …).
    """

    conn_name_attr = "peak_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Peak Ingestion API"

    def __init__(self, peak_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.peak_conn_id = peak_conn_id
        conn = self.get_connection(peak_conn_id)
        if conn.conn_type not in (CONN_TYPE, None, ""):
            raise PeakConfigError(f"Connection {peak_conn_id!r} has type {conn.conn_type!r}, expected 'peak'")
        self.settings = PeakSettings.from_parts(peak_conn_id, conn.host, conn.port, parse_extra(conn.extra))
        if conn.password:
            mask_secret(conn.password)
        token = (conn.password or "").strip()  # a token pasted with a newline or a space still works
        if not token:
            raise PeakConfigError(f"Peak connection {peak_conn_id!r}: password: the Personal Access Token is missing")
        if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise PeakConfigError(
                f"Peak connection {peak_conn_id!r}: password: the Personal Access Token contains a space, control "
                "or non-ASCII character; paste the token alone"
            )
        self.__token: str = token
        # the token as echoed raw or escaped (JSON \\uXXXX or \\/, repr, URL %XX, doubly escaped): each
        # character other than a letter or digit may come with backslashes or as an escape
        self.__secret = re.compile("".join(_escaped_char(c) for c in token))
        for form in {token, json.dumps(token)[1:-1], repr(token)[1:-1], quote(token, safe=""), quote_plus(token)}:
            mask_secret(form)
        self.application: Application = get_application(self.settings.application)
        self.timestamp_format = self.application.timestamp_format_with(self.settings.timestamp_format)
        self._session: requests.Session | None = None
        self._transport: Transport | None = None
        _library_logs.hooks.add(self)
        self._window: SendingWindow | None = None  # the load in progress, for stop()
        self._stopped: str | None = None  # stop()'s reason: sticky, so a stop before the load starts holds

    def __repr__(self) -> str:
        return f"PeakHook(peak_conn_id={self.peak_conn_id!r}, base_url={self.settings.base_url!r})"

    def _scrub(self, text: str) -> str:
        """``text`` with the token removed in every form it can take (raw, JSON-, repr- or URL-escaped)."""
        return self.__secret.sub("***", text)

    # --- connection ------------------------------------------------------------------------------

    def get_conn(self) -> requests.Session:
        """The hook's one pooled session, with the raw token in ``Authorization`` (no ``Bearer``)."""
        if self._session is None:
            session = requests.Session()
            pool = max(self.settings.max_in_flight, 2)
            session.mount("https://", DeadlineAdapter(pool_connections=1, pool_maxsize=pool, pool_block=True))
            session.mount("http://", DeadlineAdapter(pool_connections=1, pool_maxsize=pool, pool_block=True))
            session.headers.update({"Authorization": self.__token, "Content-Type": "application/json"})
            self._session = session
        return self._session

    def _rate_control(self) -> RateControl:
        """How this process paces requests to the tenant: from a shared Redis budget, from this host's budget
        (``rate_limit_scope`` ``host``, the default) or alone (``process``), adaptive in every case."""
        s = self.settings
        key = budget_key(s.base_url, self.__token, s.rate_limit_tenant)
        rate = s.requests_per_second
        if s.rate_limit_conn_id:
            try:
                budget = SharedBudget.shared(self.get_connection(s.rate_limit_conn_id), key, rate)
                self.log.info(
                    "Peak rate limit: %g requests/s for the tenant, drawn from the shared request budget in Redis "
                    "(connection %r) by every worker",
                    rate,
                    s.rate_limit_conn_id,
                )
                return budget
            except Exception as exc:  # the budget store must never fail a load
                self.log.warning(
                    "Peak rate limit: shared budget %r unusable (%s); pacing this process adaptively",
                    s.rate_limit_conn_id,
                    excerpt(f"{type(exc).__name__}: {exc}", self._scrub, 200),
                )
        elif s.rate_limit_scope == "host":
            budget = SharedBudget.on_host(key, rate)
            self.log.info(
                "Peak rate limit: %g requests/s for the tenant, drawn from this host's request budget (%s) by "
                "every process of the host, each adapting to throttling",
                rate,
                budget.name,
            )
            return budget
        self.log.info("Peak rate limit: %g requests/s for the tenant, paced by this process alone (adaptive)", rate)
        return AdaptivePacer.shared(key, rate)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            s = self.settings
            self._transport = Transport(
                self.get_conn(),
                self._rate_control(),
                max_throttle_wait=s.max_throttle_wait,
                timeout=s.timeout,
                deadline=s.request_deadline,
                max_retries=s.max_retries,
                backoff=s.retry_backoff,
                backoff_max=s.retry_backoff_max,
                verify=s.verify,
                conn_id=self.peak_conn_id,
                scrub=self._scrub,
            )
        return self._transport

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
            self._transport = None

    # --- names -----------------------------------------------------------------------------------

    def resource(self, name: str) -> Resource:
        """The catalogue entry of ``name`` in the connection's application (error lists known names)."""
        try:
            return self.application.resource(name)
        except ValueError as exc:
            raise PeakConfigError(str(exc)) from None

    def object_name(self, resource: str) -> str:
        """``prefix + RESOURCE + suffix``: ``products`` -> ``INV_PRODUCTS_OOTB`` for INV_/_OOTB."""
        return api.object_name(self.settings.prefix, self.resource(resource).object, self.settings.suffix)

    def ingest_url(self, resource: str) -> str:
        return self.settings.base_url + self.settings.ingest_path.format(object=self.object_name(resource))

    def report_lineage(self, resource: str) -> None:
        """Report ``resource``'s object (``peak://<host>/<solution>/<OBJECT>``) as this hook's output to
        Airflow's hook lineage collector, which OpenLineage reads (a no-op where nothing collects)."""
        from peak_provider.lineage import peak_object_of_hook, report_hook_output

        report_hook_output(self, peak_object_of_hook(self, resource))

    # --- ingest ----------------------------------------------------------------------------------

    def upsert(self, resource: str, rows: Iterable[Any], **kwargs: Any) -> IngestResult:
        """:meth:`ingest` with the UPSERT operation."""
        return self.ingest(resource, rows, operation=api.UPSERT, **kwargs)

    def append(self, resource: str, rows: Iterable[Any], **kwargs: Any) -> IngestResult:
        """:meth:`ingest` with the APPEND operation."""
        return self.ingest(resource, rows, operation=api.APPEND, **kwargs)

    def ingest(
        self,
        resource: str,
        rows: Iterable[Any],
        *,
        operation: str | None = None,
        dry_run: bool = False,
        columns: Sequence[str] | None = None,
        column_map: Mapping[str, str] | None = None,
        custom_attributes: Mapping[str, str] | None = None,
        on_rejected: Callable[[Rejection], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resume_from: Progress | None = None,
    ) -> IngestResult:
        """Validate, serialise and send ``rows`` to the resource's object, streaming.

        Rows are consumed one at a time and at most ``max_in_flight`` batches are held, so a generator
        of any length runs in flat memory. Every row read ends up accepted, rejected, in doubt or unsent
        (see :class:`IngestResult`); rejected and in-doubt rows go to ``on_rejected`` as they happen. A
        row is never applied before an earlier-read row with the same primary key. While it sends, the
        objects alive before are frozen out of the cycle collector (see :func:`~peak_provider.ingest.frozen_heap`).

        :param resource: catalogue name, e.g. ``products`` or ``sale``.
        :param rows: mappings (column -> value), or sequences in the order of ``columns``.
        :param operation: ``UPSERT`` or ``APPEND``; default: the catalogue's for the resource.
        :param dry_run: ask the API to validate only (``"dryRun": true``); nothing is written.
        :param columns: column names when rows are sequences (e.g. straight from a DB cursor).
        :param column_map: source column -> field name, for columns named differently in the warehouse.
        :param custom_attributes: UPPERCASE custom attribute -> type (see :meth:`add_attribute`).
        :param on_rejected: called with each rejected or in-doubt :class:`Rejection` (a rejected-rows sink).
        :param on_progress: called with the :class:`~peak_provider.ingest.Progress` (rows settled for good)
            whenever it grows, and once more when the load ends or stops: a checkpoint to resume from.
        :param resume_from: an earlier attempt's progress: its rows are skipped (after checking their keys)
            and its counts carried into this result. ``rows`` must yield the same rows in the same order.
        :raises PeakHTTPError: a batch failed for good (:class:`PeakAuthError` for a refused token).
        :raises PeakSourceError: iterating ``rows`` raised.
        Every error carries ``exc.result``, the counts so far, whose buckets add up to the rows read.
        """
        res = self.resource(resource)
        op = (operation or res.default_operation).upper()
        if op not in api.OPERATIONS:
            raise PeakConfigError(f"{resource}: operation must be one of {', '.join(api.OPERATIONS)}, got {op!r}")
        s = self.settings
        encoder = RowEncoder(res, self.timestamp_format, s.source_zone, custom_attributes, column_map)
        object_name = self.object_name(resource)
        result = IngestResult(resource=res.name, object_name=object_name, operation=op, dry_run=dry_run)
        head = b'{"solutionName":' + json.dumps(s.solution_name).encode() + b',"data":['
        tail = b'],"operationType":"' + op.encode() + b'"' + (b',"dryRun":true' if dry_run else b"") + b"}"
        counters = Counters()
        control = self.transport.control
        waited_before = control.throttle_wait_seconds
        positional_plan = encoder.plan(columns, positional=True) if columns is not None else None

        def plan_of(row: Any) -> Any:
            return positional_plan or encoder.plan_of(row)

        def describe(row: Any, field: str | None, reason: str, code: str | None, outcome: str) -> Rejection:
            rejection = encoder.reject(row, plan_of(row), field, reason.removeprefix(f"{res.name}: "))
            return replace(rejection, code=code, outcome=outcome)

        skipper = Skipper(resume_from, result) if resume_from is not None else None
        if skipper is not None and on_progress is not None:  # a checkpoint keeps the earlier ranges not walked
            report = on_progress
            on_progress = lambda progress: report(skipper.pending(progress))  # noqa: E731
        window = SendingWindow(
            self._batch_sender(self.ingest_url(resource), head, tail, op, object_name, res.primary_key, counters),
            describe,
            result,
            max_rows=s.max_rows_per_request,
            room=s.max_request_bytes - len(head) - len(tail),
            max_request_bytes=s.max_request_bytes,
            max_in_flight=s.max_in_flight,
            in_doubt_settles=op == api.APPEND,
            scrub=self._scrub,
            on_rejected=on_rejected,
            on_progress=on_progress,
        )
        if not dry_run:  # a dry run writes nothing
            self.report_lineage(resource)  # before sending, so a failed load still reports its output
        self._window = window
        if self._stopped is not None:  # stopped before the window existed: nothing is sent
            window.stop(PeakStoppedError(f"The load was stopped: {self._stopped}"))
        started = time.monotonic()
        position = -1  # of the last row read

        def read_by(last: int) -> int:
            """Rows read up to ``last``, less those of an earlier range not walked to its end (see Skipper)."""
            return last + 1 - (skipper.unfinished(last) if skipper is not None else 0)

        encode, add, room = encoder.encode, window.add, window.room  # the per-row loop, kept lean
        try:
            iterator = iter(rows)
            while True:
                try:
                    row = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:
                    raise PeakSourceError(
                        f"Reading the rows to load failed after {position + 1} rows: "
                        f"{type(exc).__name__}: {excerpt(str(exc), self._scrub)}"
                    ) from exc
                position += 1
                plan = positional_plan or encoder.plan_of(row)
                if skipper is not None and skipper.skips(position):
                    key = encoder.last_key if type(encode(row, plan)) is bytes else None
                    window.skip(position, *skipper.check(position, key))
                    continue
                encoded = encode(row, plan)
                if not isinstance(encoded, bytes):
                    window.reject(position, encoded)
                elif len(encoded) > room:
                    reason = f"row is {len(encoded)} bytes encoded, over max_request_bytes ({s.max_request_bytes})"
                    window.reject(position, describe(row, None, reason, None, "rejected"))
                else:
                    add(position, encoder.last_key, encoded, row)
            if skipper is not None:
                skipper.finish(position)
            window.finish()
        except BaseException as exc:  # a Peak error, a task timeout, a bug: the counts so far go with it
            try:
                window.abort()
            except BaseException as during:  # e.g. a task timeout while the batches in flight settle
                _carry(during, result)
                raise
            # raised between reading a row and handing it to the window: that row is unsent
            if not isinstance(exc, PeakError) and result.rows_counted == read_by(position) - 1:
                result.rows_unsent += 1
            _carry(exc, result)
            raise
        finally:
            self._window = None
            result.rows_read = read_by(position)  # resumed rows included, once their range was walked
            window.close()
            result.requests, result.retries, result.bytes_sent = (
                counters.requests,
                counters.retries,
                counters.bytes_sent,
            )
            result.throttled = counters.throttled
            result.throttle_wait_seconds = round(control.throttle_wait_seconds - waited_before, 3)
            result.seconds = round(time.monotonic() - started, 3)
            if window.repeated_keys:
                self.log.warning(
                    "Peak ingest: %d rows repeated the primary key (as sent) of a row still in flight; they were "
                    "sent after it, in read order. Timestamps are sent in whole seconds, so versions less than "
                    "a second apart share a key.",
                    window.repeated_keys,
                )
            result.repeated_keys = window.repeated_keys
            result.ambiguous_times = encoder.ambiguous_times
            result.nonexistent_times = encoder.nonexistent_times
            result.truncated_subseconds = encoder.truncated_subseconds
        self.log.info("Peak ingest: %s", result)
        return result

    def stop(self, reason: str) -> None:
        """Stop the load in progress, or the next one to start (safe from a signal handler or another thread):
        no batch is sent after the one being added, the batches in flight settle, and :meth:`ingest` raises
        :class:`PeakStoppedError` carrying the counts."""
        self._stopped = reason
        window = self._window
        if window is not None:
            window.stop(PeakStoppedError(f"The load was stopped: {reason}"))

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped is not None

    def _batch_sender(
        self,
        url: str,
        head: bytes,
        tail: bytes,
        op: str,
        object_name: str,
        primary_key: Sequence[str],
        counters: Counters,
    ) -> Callable[[list[bytes]], list[Failure]]:
        """The function a worker thread calls to POST one batch and read which rows the API rejected."""
        transport = self.transport  # built here, not lazily by several worker threads at once
        what = f"ingest {op} {object_name}"
        scrub = self._scrub

        def send(rows: list[bytes]) -> list[Failure]:
            body = head + b",".join(rows) + tail

            def read(status: int, answer: bytes) -> list[Failure]:
                return read_ingest_reply(status, answer, len(rows), scrub, index_by_key(rows, primary_key))

            return transport.request(
                "POST", url, what=what, body=body, idempotent=op == api.UPSERT, counters=counters, read=read
            )

        return send

    # --- schema ----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        max_retries: int | None = None,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        answer: bytes
        _, answer = self.transport.request(
            method,
            self.settings.base_url + path,
            what=f"{method} {path}",
            body=data,
            params=params,
            idempotent=method == "GET",
            counters=Counters(),
            max_retries=max_retries,
        )
        return json_or_none(answer)

    def list_solutions(self) -> Any:
        """``GET /api/v2/schema/solutions``: the tenant's rolled-out solutions."""
        return self._call("GET", SOLUTIONS_PATH)

    def get_schema(self, solution_name: str | None = None) -> Any:
        """``GET /api/v2/schema?solutionName=…`` (default: the connection's solution)."""
        return self._call("GET", SCHEMA_PATH, params={"solutionName": solution_name or self.settings.solution_name})

    def add_attribute(
        self,
        resource: str,
        column_name: str,
        data_type: str,
        default_value: str | None = None,
        validations: list[dict[str, Any]] | None = None,
    ) -> Any:
        """Add a custom column to an object (``POST /api/v2/schema/{OBJECT}/add-attribute``).

        :param column_name: upper-cased, as the API requires.
        :param data_type: one of :data:`ATTRIBUTE_TYPES` (``timestamp`` is taken as ``datetime``).
        :param validations: e.g. ``[{"type": "maxLength", "value": 20}]``.
        """
        dtype = {"timestamp": "datetime"}.get(data_type.lower(), data_type.lower())
        if dtype not in ATTRIBUTE_TYPES:
            raise PeakConfigError(f"add_attribute: data_type {data_type!r} is not one of {', '.join(ATTRIBUTE_TYPES)}")
        body: dict[str, Any] = {
            "solutionName": self.settings.solution_name,
            "columnName": column_name.upper(),
            "dataType": dtype,
        }
        if default_value is not None:
            body["defaultValue"] = default_value
        if validations:
            body["validations"] = validations
        path = ADD_ATTRIBUTE_PATH.format(object=self.resource(resource).object)
        return self._call("POST", path, body=body)

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated GET (the solutions list), not retried; ``(False, reason)`` on any failure.

        The reason is the transport's own classification (cause, status and the underlying reason).
        """
        try:
            payload = self._call("GET", SOLUTIONS_PATH, max_retries=0)
        except PeakError as exc:
            return False, str(exc)
        except PayloadTooLarge:
            return False, f"HTTP 413 from {self.settings.host} for a GET: not the Peak API?"
        solutions = payload.get("solutions") if isinstance(payload, dict) else None
        if not isinstance(solutions, list):
            return False, f"{self.settings.host} answered, but not with the API's solutions list: not the Peak API?"
        names = [s.get("solutionName") for s in solutions if isinstance(s, dict)]
        if solutions and not names:
            return False, f"{self.settings.host} answered, but not with the API's solutions list: not the Peak API?"
        if not names:
            return False, (
                f"Connected, but the tenant lists no rolled-out solution, so {self.settings.solution_name!r} "
                "cannot be loaded (roll its schema out first)"
            )
        if self.settings.solution_name not in names:
            listed = excerpt(", ".join(str(n) for n in names), self._scrub, 300)
            return False, f"Connected, but solution {self.settings.solution_name!r} is not one of: {listed}"
        return True, f"Connected to {self.settings.host}; solution {self.settings.solution_name!r} is available"

    # --- legacy UI metadata (Airflow < 3.2; newer versions read conn-fields from the provider info) --

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from peak_provider.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
            "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
            "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from wtforms import BooleanField, IntegerField, StringField

        widgets: dict[str, Any] = {}
        for name, spec in EXTRAS.items():
            if spec.type == "boolean":
                widgets[name] = BooleanField(spec.label, default=spec.default, description=spec.description)
            elif spec.type == "integer":
                widgets[name] = IntegerField(
                    spec.label, widget=BS3TextFieldWidget(), default=spec.default, description=spec.description
                )
            else:
                widgets[name] = StringField(
                    spec.label, widget=BS3TextFieldWidget(), default=spec.default, description=spec.description
                )
        return widgets
