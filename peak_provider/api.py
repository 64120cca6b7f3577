"""The Peak ingestion API's vocabulary: one home for each fact both the client and the emulator use.

Limits, operations, paths, ``add-attribute`` data types and object naming live here (the resource
catalogue, field types and timestamp formats live in :mod:`peak_provider.resources`). The emulator
imports these facts but writes its *checks* independently, so it stays an oracle for the client.
This module imports nothing from Airflow (``get_provider_info()`` reaches it while Airflow starts).
"""

from __future__ import annotations

#: Documented per-request and per-tenant limits (see ``shared/reference/peak-ingestion-api.md``).
MAX_ROWS_PER_REQUEST = 500
MAX_REQUEST_BYTES = 1_000_000
REQUESTS_PER_SECOND = 50  # per tenant

UPSERT = "UPSERT"
APPEND = "APPEND"
OPERATIONS = (UPSERT, APPEND)

#: Ingest path templates (the documented one first); ``{object}`` is the full object name.
INGEST_PATHS = ("/api/v2/ingest/object/{object}", "/api/v2/objects/{object}")
#: Schema paths: the rolled-out solutions, one solution's schema, and adding a column to an object.
SOLUTIONS_PATH = "/api/v2/schema/solutions"
SCHEMA_PATH = "/api/v2/schema"
ADD_ATTRIBUTE_PATH = "/api/v2/schema/{object}/add-attribute"

#: ``add-attribute`` data types, each with the catalogue field type of the column it creates
#: (``timestamp`` is accepted by the client as an alias of ``datetime``).
ATTRIBUTE_TYPES = {
    "string": "string",
    "integer": "integer",
    "float": "float",
    "boolean": "boolean",
    "datetime": "timestamp",
    "date": "date",
}


def object_name(prefix: str, base: str, suffix: str) -> str:
    """``prefix + BASE + suffix``: ``PRODUCTS`` -> ``INV_PRODUCTS_OOTB`` for ``INV_`` / ``_OOTB``."""
    return f"{prefix}{base}{suffix}"
