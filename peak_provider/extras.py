"""The ``peak`` connection's extras: one table, read by settings validation and by the UI form.

This module imports nothing from Airflow: ``get_provider_info()`` uses it while Airflow is still starting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peak_provider.api import INGEST_PATHS, MAX_REQUEST_BYTES, MAX_ROWS_PER_REQUEST, REQUESTS_PER_SECOND
from peak_provider.resources import APPLICATIONS, TIMESTAMP_FORMATS

CONN_TYPE = "peak"
DEFAULT_CONN_ID = "peak_default"
DEFAULT_HOST = "https://service.peak.ai/ingestion-api"
#: ``rate_limit_scope``: one request budget per host (the default), or each process on its own.
RATE_LIMIT_SCOPES = ("host", "process")


@dataclass(frozen=True)
class Extra:
    """One connection extra: its JSON type, default and the text the UI shows."""

    label: str
    type: str  # "string" | "integer" | "number" | "boolean"
    default: Any
    description: str
    enum: tuple[str, ...] | None = None
    minimum: float | None = None


EXTRAS: dict[str, Extra] = {
    "solution_name": Extra(
        "Solution name", "string", None, "Required. The solution to ingest into, e.g. INV_OOTB or QP_OOTB."
    ),
    "application": Extra(
        "Application",
        "string",
        "inventory",
        "Schema family: picks the resource catalogue and the timestamp format.",
        enum=APPLICATIONS,
    ),
    "prefix": Extra("Object prefix", "string", "", "Prepended to object names, e.g. INV_ (may be empty)."),
    "suffix": Extra("Object suffix", "string", "", "Appended to object names, e.g. _OOTB (may be empty)."),
    "ingest_path": Extra(
        "Ingest path",
        "string",
        INGEST_PATHS[0],
        "Path template of the ingest call; {object} is the full object name.",
        enum=INGEST_PATHS,
    ),
    "max_rows_per_request": Extra(
        "Max rows per request",
        "integer",
        MAX_ROWS_PER_REQUEST,
        f"Rows per POST (API limit {MAX_ROWS_PER_REQUEST}).",
        minimum=1,
    ),
    "max_request_bytes": Extra(
        "Max request bytes",
        "integer",
        MAX_REQUEST_BYTES,
        f"Encoded body size cap per POST (API limit {MAX_REQUEST_BYTES:,} bytes).",
        minimum=1024,
    ),
    "requests_per_second": Extra(
        "Requests per second",
        "number",
        REQUESTS_PER_SECOND,
        f"Tenant-wide request rate (API limit {REQUESTS_PER_SECOND}/s); see rate_limit_scope and rate_limit_conn_id.",
        minimum=0.1,
    ),
    "rate_limit_scope": Extra(
        "Rate limit scope",
        "string",
        RATE_LIMIT_SCOPES[0],
        "Without rate_limit_conn_id: host shares requests_per_second among every process of this machine that "
        "loads the tenant (one budget in a local file); process paces each process alone. Both adapt to throttling.",
        enum=RATE_LIMIT_SCOPES,
    ),
    "rate_limit_conn_id": Extra(
        "Shared rate limit (Redis connection id)",
        "string",
        None,
        "Optional: a redis connection; every worker on every machine then draws from one request budget per "
        "tenant there (needs the [redis] extra). Unreachable Redis falls back to adaptive pacing.",
    ),
    "rate_limit_tenant": Extra(
        "Shared rate limit tenant",
        "string",
        None,
        "Optional: name the budget explicitly (e.g. when several API hosts or tokens share one tenant's limit).",
    ),
    "max_throttle_wait": Extra(
        "Max throttle wait (s)",
        "number",
        900,
        "How long a request may keep being throttled (429) before the load fails as 'tenant saturated'.",
        minimum=1,
    ),
    "max_in_flight": Extra(
        "Max in-flight requests",
        "integer",
        16,
        f"Concurrent requests per task: 16 reach {REQUESTS_PER_SECOND} requests/s at up to ~300 ms per request.",
        minimum=1,
    ),
    "timeout": Extra(
        "Timeout (s)", "number", 60, "Longest wait for the connection or for the next bytes of an answer.", minimum=0.1
    ),
    "request_deadline": Extra(
        "Request deadline (s)",
        "number",
        300,
        "Total time one request may take: connect, send and the whole answer (a trickling server is cut off).",
        minimum=1,
    ),
    "max_retries": Extra("Max retries", "integer", 5, "Retries per batch for retryable failures.", minimum=0),
    "retry_backoff": Extra(
        "Retry backoff (s)", "number", 1.0, "First retry delay; doubles each time, with jitter.", minimum=0
    ),
    "retry_backoff_max": Extra("Retry backoff cap (s)", "number", 60.0, "Longest delay between retries.", minimum=0),
    "verify": Extra("Verify TLS", "boolean", True, "Verify the server's TLS certificate."),
    "timestamp_format": Extra(
        "Timestamp format",
        "string",
        None,
        "Override the application's timestamp wire format.",
        enum=TIMESTAMP_FORMATS,
    ),
    "source_timezone": Extra("Source time zone", "string", "UTC", "Time zone of naive datetimes from the warehouse."),
}


def conn_fields() -> dict[str, dict[str, Any]]:
    """The ``conn-fields`` entry of the provider info: a JSON Schema per extra (Airflow >= 3.2 UI)."""
    fields: dict[str, dict[str, Any]] = {}
    for name, spec in EXTRAS.items():
        schema: dict[str, Any] = {"type": spec.type if name == "solution_name" else [spec.type, "null"]}
        if spec.default is not None:
            schema["default"] = spec.default
        if spec.enum:
            schema["enum"] = list(spec.enum)
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        fields[name] = {"label": spec.label, "description": spec.description, "schema": schema}
    return fields
