"""A failed load resumes from its checkpoint: rows re-sent are at most the batches that were in flight."""

from __future__ import annotations

import json
import sqlite3

import pytest

from peak_provider.exceptions import PeakHTTPError
from peak_provider.hooks.peak import PeakHook
from peak_provider.incremental import IncrementalLoad
from peak_provider.operators.peak import SqlToPeakOperator
from tests.context import MemoryTaskStateStore, task_context


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "wh.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
        # inserted in reverse so only the operator's ORDER BY gives a stable primary-key order
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            [(f"P{i:06d}", "S1", 1 + i % 5, "2025-03-01 00:00:00") for i in reversed(range(20_000))],
        )
    monkeypatch.setenv("AIRFLOW_CONN_WH", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "wh"


def test_retry_resumes_after_the_last_settled_batch(warehouse, peak_emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_DEFAULT",
        peak_emulator.connection_json("INV_OOTB", max_retries=0, requests_per_second=1000, max_in_flight=4),
    )
    store = MemoryTaskStateStore()
    task = SqlToPeakOperator(
        task_id="load", resource="products", sql="SELECT * FROM products", sql_conn_id=warehouse, resumable=True
    )

    # attempt 1 dies part-way: from some request on, the API answers 503 and retries are off
    peak_emulator.set_faults(error_rate=0.15, error_statuses=[503], seed=4)
    with pytest.raises(PeakHTTPError):
        task.execute(task_context(task_state_store=store))
    first_attempt_rows = sum(e["rows"] for e in peak_emulator.request_log() if e["status"] == 200)
    checkpoint = store.data["peak_checkpoint"]["ranges"][0][1]  # the settled prefix (UPSERT: no ranges past it)
    assert len(store.data["peak_checkpoint"]["ranges"]) == 1
    assert 0 < checkpoint < 20_000 and checkpoint <= first_attempt_rows

    # attempt 2 (the retry): healthy API; resumes from the checkpoint
    peak_emulator.set_faults(error_rate=0.0)
    summary = task.execute(task_context(task_state_store=store))
    assert summary["rows_resumed"] == checkpoint and summary["attempts"] == 2
    assert summary["rows_read"] == summary["rows_accepted"] == 20_000  # counts cover both attempts
    stored = {r["product_id"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB")}
    assert stored == {f"P{i:06d}" for i in range(20_000)}  # nothing lost
    accepted_total = sum(e["rows"] for e in peak_emulator.request_log() if e["status"] == 200)
    resent = accepted_total - 20_000
    assert 0 <= resent <= 4 * 500, f"{resent} rows re-sent; at most the 4 in-flight batches may be"
    assert "peak_checkpoint" not in store.data  # cleared after success: a later re-run starts fresh
    print(f"checkpoint {checkpoint} rows; re-sent after resume: {resent} rows")


def test_resumable_orders_by_primary_key_in_source_names(warehouse, peak_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB"))
    task = SqlToPeakOperator(
        task_id="load",
        resource="products",
        sql="SELECT product_id AS sku FROM products",
        sql_conn_id=warehouse,
        resumable=True,
        column_map={"sku": "product_id"},
    )
    sql, _ = task._query(IncrementalLoad(), PeakHook(), True)("sqlite3")
    assert sql.endswith("ORDER BY peak_src.sku, peak_src.updated_at")
