"""The preflight (issue 15): a query that cannot load fails once, before any row is sent, with one message
saying what to change; with ``schema_check`` the emulator's live schema is the only call made."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from peak_provider.exceptions import PeakPreflightError
from peak_provider.hooks.peak import PeakHook
from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.preflight import CheckedColumns, LiveColumn, check_columns, live_columns
from peak_provider.resources import get_application
from tests.context import outlet_events

PRODUCTS = get_application("inventory").resource("products")
OBJECT = "INV_PRODUCTS_OOTB"
BASE = ["product_id", "source_id", "pack_size", "updated_at"]


# --- the check itself ------------------------------------------------------------------------------


def test_matching_columns_pass_unchanged():
    checked = check_columns(PRODUCTS, OBJECT, ["PRODUCT_ID", "Source_Id", "pack_size", "updated_at"])
    assert checked.columns == ["PRODUCT_ID", "Source_Id", "pack_size", "updated_at"]
    assert checked.keep is None and checked.dropped == []
    rows = iter([("P1", "S1", 6, "2025-03-01 00:00:00")])
    assert checked.project(rows) is rows


def test_unknown_and_missing_columns_fail_with_one_message_naming_each_fix():
    with pytest.raises(PeakPreflightError) as failure:
        check_columns(PRODUCTS, OBJECT, ["product_id", "pack_size", "updated_at", "colour", "weight"])
    message = str(failure.value)
    assert "nothing was sent" in message
    assert "unknown columns 'colour', 'weight'" in message
    for fix in ("column_map={'colour': '<field>'}", "custom_attributes={'COLOUR': 'string'}", "unknown_columns='drop'"):
        assert fix in message
    assert "required fields missing from the query: source_id" in message


def test_column_map_and_declared_custom_attributes_are_known():
    checked = check_columns(
        PRODUCTS,
        OBJECT,
        ["sku", "source_id", "pack_size", "updated_at", "supplier_code"],
        column_map={"SKU": "product_id"},
        custom_attributes={"SUPPLIER_CODE": "string"},
    )
    assert checked.custom_attributes == {"SUPPLIER_CODE": "string"}


def test_two_columns_for_one_field_fail():
    with pytest.raises(PeakPreflightError, match="'sku' and 'product_id' both map to 'product_id'"):
        check_columns(PRODUCTS, OBJECT, ["sku", "product_id", *BASE[1:]], column_map={"sku": "product_id"})


def test_drop_sends_the_known_columns_only():
    checked = check_columns(PRODUCTS, OBJECT, ["colour", *BASE, "weight"], unknown_columns="drop")
    assert checked.dropped == ["colour", "weight"] and checked.columns == BASE
    rows = [("red", "P1", "S1", 6, "2025-03-01 00:00:00", 2.5)]
    assert list(checked.project(iter(rows))) == [("P1", "S1", 6, "2025-03-01 00:00:00")]
    one = CheckedColumns(columns=["product_id"], keep=[1], custom_attributes={}, dropped=["colour"])
    assert list(one.project(iter(rows))) == [("P1",)]  # one kept column is still a row, not a value


def test_drop_does_not_excuse_missing_required_fields():
    with pytest.raises(PeakPreflightError, match="required fields missing from the query: source_id"):
        check_columns(PRODUCTS, OBJECT, ["colour", "product_id", "pack_size"], unknown_columns="drop")


def live(*extra: LiveColumn) -> dict[str, LiveColumn]:
    columns = [LiveColumn(f.name, f.type, f.required, False) for f in PRODUCTS.fields] + list(extra)
    return {c.name.lower(): c for c in columns}


def test_live_custom_attributes_need_no_declaration():
    checked = check_columns(
        PRODUCTS, OBJECT, [*BASE, "supplier_code"], live=live(LiveColumn("SUPPLIER_CODE", "datetime", False, True))
    )
    assert checked.custom_attributes == {"SUPPLIER_CODE": "timestamp"}


def test_live_mismatches_each_fail():
    declared = {"SUPPLIER_CODE": "integer"}
    with pytest.raises(PeakPreflightError, match=r"not in the live schema of INV_PRODUCTS_OOTB: SUPPLIER_CODE"):
        check_columns(PRODUCTS, OBJECT, [*BASE, "supplier_code"], custom_attributes=declared, live=live())
    with pytest.raises(
        PeakPreflightError, match="SUPPLIER_CODE is integer in the custom_attributes but string in the live schema"
    ):
        check_columns(
            PRODUCTS,
            OBJECT,
            [*BASE, "supplier_code"],
            custom_attributes=declared,
            live=live(LiveColumn("SUPPLIER_CODE", "string", False, True)),
        )
    with pytest.raises(PeakPreflightError, match="required by the live schema but not selected: GRADE"):
        check_columns(PRODUCTS, OBJECT, BASE, live=live(LiveColumn("GRADE", "string", True, True)))
    with pytest.raises(PeakPreflightError, match="has the live type 'geography'"):
        check_columns(PRODUCTS, OBJECT, [*BASE, "area"], live=live(LiveColumn("AREA", "geography", False, True)))


def test_live_columns_reads_the_object_or_names_the_ones_there():
    schema = {"objects": [{"objectName": OBJECT, "columns": [{"name": "product_id", "dataType": "string"}]}]}
    assert live_columns(schema, OBJECT, "PRODUCTS") == {"product_id": LiveColumn("product_id", "string", False, False)}
    with pytest.raises(PeakPreflightError, match=r"object XX_PRODUCTS_OOTB is not in .*objects: INV_PRODUCTS_OOTB"):
        live_columns(schema, "XX_PRODUCTS_OOTB", "PRODUCTS")
    with pytest.raises(PeakPreflightError, match="no 'objects' list"):
        live_columns(["not", "a", "schema"], OBJECT, "PRODUCTS")


# --- the operator: nothing sent, no per-row rejections ---------------------------------------------


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "wh.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size, updated_at TEXT, supplier TEXT)")
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
        [(f"P{i:03d}", "S1", 6, f"2025-03-01 {i % 24:02d}:00:00", f"SUP-{i % 3}") for i in range(40)],
    )
    db.commit()
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_PREFLIGHT_WH", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "preflight_wh"


@pytest.fixture
def peak_conn(peak_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    return "peak_default"


def execute(sql: str, **kwargs: Any) -> dict[str, Any]:
    task = SqlToPeakOperator(task_id="load", resource="products", sql=sql, sql_conn_id="preflight_wh", **kwargs)
    context = {
        "data_interval_start": datetime(2025, 3, 1, tzinfo=UTC),
        "data_interval_end": datetime(2025, 3, 2, tzinfo=UTC),
        "outlet_events": outlet_events(),
    }
    return task.execute(context)  # type: ignore[arg-type]


def requests_made(emulator, since: int = 0) -> list[str]:
    return [f"{e['method']} {e['path']}" for e in emulator.request_log()[since:]]


def assert_nothing_sent(emulator, *calls: str, since: int = 0) -> None:
    assert requests_made(emulator, since) == list(calls)
    assert emulator.rows(OBJECT) == [] and emulator.failed_rows(OBJECT) == []  # no per-row rejections


def test_an_unknown_column_fails_before_anything_is_sent(warehouse, peak_conn, peak_emulator):
    with pytest.raises(PeakPreflightError, match="unknown columns 'supplier', 'colour'") as failure:
        execute("SELECT *, 'red' AS colour FROM products", max_rejected_rows=10_000)
    assert failure.value.result is None  # not a load's failure: nothing was read
    assert_nothing_sent(peak_emulator)


def test_a_missing_required_field_fails_before_anything_is_sent(warehouse, peak_conn, peak_emulator):
    with pytest.raises(PeakPreflightError, match="required fields missing from the query: source_id"):
        execute("SELECT product_id, pack_size, updated_at FROM products", max_rejected_rows=10_000)
    assert_nothing_sent(peak_emulator)


def test_unknown_columns_drop_loads_the_rest(warehouse, peak_conn, peak_emulator):
    summary = execute("SELECT *, 'red' AS colour FROM products", unknown_columns="drop")
    assert summary["dropped_columns"] == ["supplier", "colour"]
    assert (summary["rows_read"], summary["rows_accepted"], summary["rows_rejected"]) == (40, 40, 0)
    assert set(peak_emulator.rows(OBJECT)[0]) == {"product_id", "source_id", "pack_size", "updated_at"}


SELECT_SUPPLIER = "SELECT product_id, source_id, pack_size, updated_at, supplier AS supplier_code FROM products"


def add_supplier_code(emulator, data_type: str = "string") -> int:
    """Add the custom attribute SUPPLIER_CODE to the emulator's object; returns the request count after it."""
    hook = PeakHook("peak_default")
    try:
        hook.add_attribute("products", "supplier_code", data_type)
    finally:
        hook.close()
    return len(emulator.request_log())


def test_schema_check_match_accepts_live_custom_attributes_without_declaring(warehouse, peak_conn, peak_emulator):
    setup = add_supplier_code(peak_emulator)
    summary = execute(SELECT_SUPPLIER, schema_check=True)
    assert (summary["rows_read"], summary["rows_accepted"]) == (40, 40)
    calls = requests_made(peak_emulator, setup)
    assert calls[0] == "GET /api/v2/schema" and calls.count(calls[0]) == 1
    assert {r["SUPPLIER_CODE"] for r in peak_emulator.rows(OBJECT)} == {"SUP-0", "SUP-1", "SUP-2"}


def test_schema_check_a_column_the_live_object_lacks(warehouse, peak_conn, peak_emulator):
    with pytest.raises(PeakPreflightError, match="not in the live schema of INV_PRODUCTS_OOTB: SUPPLIER_CODE"):
        execute(SELECT_SUPPLIER, schema_check=True, custom_attributes={"SUPPLIER_CODE": "string"})
    assert_nothing_sent(peak_emulator, "GET /api/v2/schema")


def test_schema_check_a_type_conflict(warehouse, peak_conn, peak_emulator):
    setup = add_supplier_code(peak_emulator, "string")
    with pytest.raises(PeakPreflightError, match="SUPPLIER_CODE is integer in the custom_attributes but string"):
        execute(SELECT_SUPPLIER, schema_check=True, custom_attributes={"SUPPLIER_CODE": "integer"})
    assert_nothing_sent(peak_emulator, "GET /api/v2/schema", since=setup)


def test_schema_check_an_object_the_tenant_does_not_have(warehouse, peak_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB", prefix="XX_"))
    with pytest.raises(PeakPreflightError, match="object XX_PRODUCTS_OOTB is not in the solution's live schema"):
        execute("SELECT product_id, source_id, pack_size, updated_at FROM products", schema_check=True)
    assert requests_made(peak_emulator) == ["GET /api/v2/schema"]


def test_unknown_columns_is_checked_when_the_dag_is_parsed():
    from peak_provider.exceptions import PeakConfigError

    with pytest.raises(PeakConfigError, match="unknown_columns must be one of fail, drop"):
        SqlToPeakOperator(task_id="t", resource="products", sql="x", sql_conn_id="x", unknown_columns="ignore")
