"""Acceptance: rows with DB-driver types, sent by PeakHook.upsert, arrive exactly as each seed page shows."""

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from peak_provider.hooks.peak import PeakHook
from peak_provider.resources import get_application

SEEDS = json.loads((Path(__file__).parents[1] / "fixtures" / "seed_examples.json").read_text())
APP_OF = {"INV_OOTB": ("inventory", "INV_", "_OOTB"), "QP_OOTB": ("b2c_pricing", "QP_", "_OOTB")}


def driver_row(app: str, resource: str, example: dict) -> dict:
    """The example row as a DB driver would return it: datetime, date, Decimal, int, None."""
    res = get_application(app).resource(resource)
    row = {}
    for name, value in example.items():
        kind = res.field(name).type
        if value is None:
            row[name] = None
        elif kind == "timestamp":
            row[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))  # aware for Z, naive otherwise
        elif kind == "date":
            row[name] = date.fromisoformat(value)
        elif kind == "float":
            row[name] = Decimal(str(value))
        else:
            row[name] = value
    return row


@pytest.mark.parametrize("key", sorted(SEEDS))
def test_seed_example_round_trips(key, capture_server, peak_connection):
    seed = SEEDS[key]
    body = seed["body"]
    app, prefix, suffix = APP_OF[body["solutionName"]]
    resource = key.split(".")[1]
    url = urlsplit(seed["url"])
    base_path = url.path.split("/api/v2/")[0]  # /ingestion-api, as in the seed's curl example
    conn_id = peak_connection(
        host=capture_server.url + base_path,
        password="seed-token-abc",
        solution_name=body["solutionName"],
        application=app,
        prefix=prefix,
        suffix=suffix,
    )
    hook = PeakHook(conn_id)
    rows = [driver_row(app, resource, r) for r in body["data"]]
    result = hook.upsert(resource, rows)

    assert result.rows_accepted == len(rows) and result.rows_rejected == 0
    (sent,) = capture_server.requests
    assert sent.method == "POST"
    assert sent.path == url.path
    assert sent.headers["Authorization"] == "seed-token-abc"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == body
    assert list(sent.json()) == ["solutionName", "data", "operationType"]


def test_object_names(peak_connection):
    inv = PeakHook(peak_connection(host="https://service.peak.ai/ingestion-api", prefix="INV_", suffix="_OOTB"))
    assert inv.object_name("products") == "INV_PRODUCTS_OOTB"
    assert inv.ingest_url("products") == "https://service.peak.ai/ingestion-api/api/v2/ingest/object/INV_PRODUCTS_OOTB"
    qp = PeakHook(
        peak_connection(
            "qp",
            host="https://ingestion.peak.ai",
            application="b2c_pricing",
            prefix="QP_",
            suffix="_OOTB",
            solution_name="QP_OOTB",
            ingest_path="/api/v2/objects/{object}",
        )
    )
    assert qp.object_name("sale") == "QP_SALE_OOTB"
    assert qp.ingest_url("SALE") == "https://ingestion.peak.ai/api/v2/objects/QP_SALE_OOTB"
    bare = PeakHook(peak_connection("bare", host="https://ingestion.peak.ai"))
    assert bare.object_name("customer_orders") == "CUSTOMER_ORDERS"
