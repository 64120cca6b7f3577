"""PeakHook: a ``peak`` connection -> a configured session, ingest calls, schema calls, connection test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests.adapters import HTTPAdapter

from peak_provider.connection import PeakSettings, parse_extra
from peak_provider.exceptions import PeakConfigError, PeakError, PeakHTTPError
from peak_provider.extras import CONN_TYPE, DEFAULT_CONN_ID, EXTRAS
from peak_provider.resources import OPERATIONS, Application, Resource, get_application
from peak_provider.result import IngestResult, Rejection
from peak_provider.transport import Batch, Batcher, Counters, PayloadTooLarge, RateLimiter, Transport, json_or_none
from peak_provider.wire import RowEncoder, failed_entries

#: Data types ``add-attribute`` accepts (``timestamp`` is accepted as an alias of ``datetime``).
ATTRIBUTE_TYPES = ("string", "integer", "float", "boolean", "datetime", "date")

_TOO_LARGE = object()  # marks a single row the API refused with 413


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
        if not conn.password:
            raise PeakConfigError(f"Peak connection {peak_conn_id!r}: password: the Personal Access Token is missing")
        mask_secret(conn.password)
        self.__token: str = conn.password
        self.application: Application = get_application(self.settings.application)
        self.timestamp_format = self.settings.timestamp_format or self.application.timestamp_format
        self._session: requests.Session | None = None
        self._transport: Transport | None = None

    def __repr__(self) -> str:
        return f"PeakHook(peak_conn_id={self.peak_conn_id!r}, base_url={self.settings.base_url!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text

    # --- connection ------------------------------------------------------------------------------

    def get_conn(self) -> requests.Session:
        """The hook's one pooled session, with the raw token in ``Authorization`` (no ``Bearer``)."""
        if self._session is None:
            session = requests.Session()
            pool = max(self.settings.max_in_flight, 2)
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=pool, pool_block=True))
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=pool, pool_block=True))
            session.headers.update({"Authorization": self.__token, "Content-Type": "application/json"})
            self._session = session
        return self._session

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            s = self.settings
            self._transport = Transport(
                self.get_conn(),
                RateLimiter.shared(f"{s.base_url}|{s.solution_name}", s.requests_per_second),
                timeout=s.timeout,
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
        return f"{self.settings.prefix}{self.resource(resource).object}{self.settings.suffix}"

    def ingest_url(self, resource: str) -> str:
        return self.settings.base_url + self.settings.ingest_path.format(object=self.object_name(resource))

    # --- ingest ----------------------------------------------------------------------------------

    def upsert(self, resource: str, rows: Iterable[Any], **kwargs: Any) -> IngestResult:
        """:meth:`ingest` with ``operation="UPSERT"``."""
        return self.ingest(resource, rows, operation="UPSERT", **kwargs)

    def append(self, resource: str, rows: Iterable[Any], **kwargs: Any) -> IngestResult:
        """:meth:`ingest` with ``operation="APPEND"``."""
        return self.ingest(resource, rows, operation="APPEND", **kwargs)

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
        on_progress: Callable[[int], None] | None = None,
    ) -> IngestResult:
        """Validate, serialise and send ``rows`` to the resource's object, streaming.

        Rows are consumed one at a time and at most ``max_in_flight`` batches are held, so a generator
        of any length runs in flat memory. Every row read ends up accepted or rejected; rejections go
        to ``on_rejected`` as they happen and are counted (with a bounded sample) in the result.

        :param resource: catalogue name, e.g. ``products`` or ``sale``.
        :param rows: mappings (column -> value), or sequences in the order of ``columns``.
        :param operation: ``UPSERT`` or ``APPEND``; default: the catalogue's for the resource.
        :param dry_run: ask the API to validate only (``"dryRun": true``); nothing is written.
        :param columns: column names when rows are sequences (e.g. straight from a DB cursor).
        :param column_map: source column -> field name, for columns named differently in the warehouse.
        :param custom_attributes: UPPERCASE custom attribute -> type (see :meth:`add_attribute`).
        :param on_rejected: called with each :class:`Rejection` (to write a rejected-rows sink).
        :param on_progress: called with ``n`` whenever the first ``n`` rows read are all settled
            (accepted or rejected); a checkpoint from which a retry can resume.
        :raises PeakAuthError: the token was refused (not retried).
        :raises PeakHTTPError: a batch failed for good; ``exc.result`` holds the counts so far.
        """
        res = self.resource(resource)
        op = (operation or res.default_operation).upper()
        if op not in OPERATIONS:
            raise PeakConfigError(f"{resource}: operation must be one of {', '.join(OPERATIONS)}, got {op!r}")
        s = self.settings
        encoder = RowEncoder(res, self.timestamp_format, s.source_timezone, custom_attributes, column_map)
        result = IngestResult(resource=res.name, object_name=self.object_name(resource), operation=op, dry_run=dry_run)
        url = self.ingest_url(resource)
        head = b'{"solutionName":' + json.dumps(s.solution_name).encode() + b',"data":['
        tail = b'],"operationType":"' + op.encode() + b'"' + (b',"dryRun":true' if dry_run else b"") + b"}"
        batcher = Batcher(s.max_rows_per_request, s.max_request_bytes, len(head) + len(tail))
        counters = Counters()
        transport = self.transport  # built here, not lazily by several worker threads at once
        settled = 0  # the first `settled` rows read are all accepted or rejected
        # in-flight batch -> (its first row, its sequence number)
        pending: dict[Future[list[tuple[list[bytes], Any]]], tuple[int, int]] = {}
        submitted = 0

        def reject(rejection: Rejection) -> None:
            result.add_rejection(rejection)
            if on_rejected is not None:
                on_rejected(rejection)

        def settle(done: set[Future[list[tuple[list[bytes], Any]]]]) -> None:
            nonlocal settled
            for future in done:
                del pending[future]
                for sent, payload in future.result():
                    self._reconcile(encoder, sent, payload, result, reject)
            if on_progress is not None:
                open_first = batcher.open_first_row
                firsts = [first for first, _ in pending.values()]
                prefix = min([*firsts, *([open_first] if open_first is not None else []), result.rows_read])
                if prefix > settled:
                    settled = prefix
                    on_progress(prefix)

        def window_full() -> bool:
            # with on_progress, every batch after the oldest unsettled one also counts (even if answered),
            # so what a resumed retry re-sends stays within max_in_flight batches
            if on_progress is None or not pending:
                return len(pending) >= s.max_in_flight
            return submitted - min(seq for _, seq in pending.values()) >= s.max_in_flight

        def submit(batch: Batch) -> None:
            nonlocal submitted
            while window_full():
                settle(wait(pending, return_when=FIRST_COMPLETED)[0])
            future = pool.submit(self._send_batch, transport, url, head, tail, batch.rows, op == "UPSERT", counters)
            pending[future] = (batch.first_row, submitted)
            submitted += 1

        started = time.monotonic()
        positional_plan = encoder.plan(columns, positional=True) if columns is not None else None
        pool = ThreadPoolExecutor(max_workers=s.max_in_flight, thread_name_prefix="peak-ingest")
        try:
            for row in rows:
                result.rows_read += 1
                plan = positional_plan or encoder.plan(tuple(row), positional=False)
                encoded = encoder.encode(row, plan)
                if isinstance(encoded, Rejection):
                    reject(encoded)
                elif not batcher.fits_alone(encoded):
                    reject(self._oversized(encoder, encoded, s.max_request_bytes))
                elif (closed := batcher.add(encoded, result.rows_read - 1)) is not None:
                    submit(closed)
            if (last := batcher.flush()) is not None:
                submit(last)
            while pending:
                settle(wait(pending, return_when=FIRST_COMPLETED)[0])
            if on_progress is not None and result.rows_read > settled:
                on_progress(result.rows_read)
        except PeakError as exc:
            for future in pending:
                future.cancel()
            if isinstance(exc, PeakHTTPError):
                exc.result = result
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            result.requests, result.retries, result.bytes_sent = (
                counters.requests,
                counters.retries,
                counters.bytes_sent,
            )
            result.seconds = round(time.monotonic() - started, 3)
        self.log.info("Peak ingest: %s", result)
        return result

    def _send_batch(
        self,
        transport: Transport,
        url: str,
        head: bytes,
        tail: bytes,
        rows: list[bytes],
        idempotent: bool,
        counters: Counters,
    ) -> list[tuple[list[bytes], Any]]:
        """POST one batch (worker thread); on 413 split it in halves and send those."""
        try:
            response = transport.request(
                "POST", url, body=head + b",".join(rows) + tail, idempotent=idempotent, counters=counters
            )
        except PayloadTooLarge:
            if len(rows) == 1:
                return [(rows, _TOO_LARGE)]
            mid = len(rows) // 2
            return [
                *self._send_batch(transport, url, head, tail, rows[:mid], idempotent, counters),
                *self._send_batch(transport, url, head, tail, rows[mid:], idempotent, counters),
            ]
        return [(rows, json_or_none(response))]

    @staticmethod
    def _oversized(encoder: RowEncoder, encoded: bytes, limit: int) -> Rejection:
        row = json.loads(encoded)
        return Rejection(
            key=encoder.key_of(row),
            field=None,
            reason=f"{encoder.resource.name}: row is {len(encoded)} bytes encoded, over max_request_bytes ({limit})",
            row=row,
        )

    @staticmethod
    def _reconcile(
        encoder: RowEncoder,
        sent: list[bytes],
        payload: Any,
        result: IngestResult,
        reject: Callable[[Rejection], None],
    ) -> None:
        """Count one answered batch: rows in the API's ``failed`` array are rejected, the rest accepted."""
        name = encoder.resource.name
        if payload is _TOO_LARGE:
            row = json.loads(sent[0])
            reject(Rejection(encoder.key_of(row), None, f"{name}: the API answered 413 for this row alone", row=row))
            return
        result.rows_sent += len(sent)
        rejected_indexes: set[int] = set()
        failed = 0
        for entry in failed_entries(payload):
            if failed >= len(sent):
                break
            index = entry["index"]
            if index is not None and 0 <= index < len(sent):
                if index in rejected_indexes:
                    continue
                rejected_indexes.add(index)
                row = json.loads(sent[index])
            else:
                row = entry["row"]
            failed += 1
            reject(
                Rejection(
                    key=encoder.key_of(row) if row else None,
                    field=entry["field"],
                    reason=f"{name}: rejected by the API: {entry['reason']}",
                    code=entry["code"],
                    row=row,
                )
            )
        result.rows_accepted += len(sent) - failed

    # --- schema ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        response = self.transport.request(
            method,
            self.settings.base_url + path,
            body=data,
            params=params,
            idempotent=method == "GET",
            counters=Counters(),
        )
        return json_or_none(response)

    def list_solutions(self) -> Any:
        """``GET /api/v2/schema/solutions``: the tenant's rolled-out solutions."""
        return self._call("GET", "/api/v2/schema/solutions")

    def get_schema(self, solution_name: str | None = None) -> Any:
        """``GET /api/v2/schema?solutionName=…`` (default: the connection's solution)."""
        return self._call(
            "GET", "/api/v2/schema", params={"solutionName": solution_name or self.settings.solution_name}
        )

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
        return self._call("POST", f"/api/v2/schema/{self.resource(resource).object}/add-attribute", body=body)

    def test_connection(self) -> tuple[bool, str]:
        """A cheap authenticated GET (the solutions list); ``(False, reason)`` on any failure."""
        try:
            response = self.get_conn().get(
                self.settings.base_url + "/api/v2/schema/solutions",
                timeout=min(self.settings.timeout, 30),
                verify=self.settings.verify,
            )
        except requests.exceptions.SSLError as exc:
            return False, f"TLS error talking to {self.settings.host}: {self._scrub(str(exc))[:300]}"
        except requests.Timeout:
            return False, f"No answer from {self.settings.host} within {min(self.settings.timeout, 30)}s"
        except requests.ConnectionError as exc:
            return False, f"Cannot reach {self.settings.host} (DNS or network): {self._scrub(str(exc))[:300]}"
        if response.status_code in (401, 403):
            return False, f"HTTP {response.status_code}: Peak refused the Personal Access Token"
        if response.status_code >= 300:
            return False, f"HTTP {response.status_code}: {self._scrub(response.text[:300])}"
        names = [
            s.get("solutionName") for s in (json_or_none(response) or {}).get("solutions", []) if isinstance(s, dict)
        ]
        if names and self.settings.solution_name not in names:
            return False, f"Connected, but solution {self.settings.solution_name!r} is not one of {names}"
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
