"""A failed load resumes from its checkpoint: rows re-sent are at most the batches that were in flight."""

from __future__ import annotations

import json
import sqlite3

import pytest

from peak_provider.exceptions import PeakHTTPError, PeakSourceError
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


def test_an_attempt_stopped_while_skipping_keeps_every_earlier_range(peak_emulator, monkeypatch):
    """Earlier attempts settled rows 0-9 and 20-29 (10-19 were unsent). This attempt sends 10-19, then its
    source fails while it re-reads 20-24. Every checkpoint it saves keeps 20-29 with its counts, its result
    counts only the rows it walked, and the next attempt appends nothing twice. (A checkpoint of the prefix
    alone, or one claiming 20-24 with no counts, made that attempt append 25-29 or 20-29 again.)"""
    from peak_provider.exceptions import PeakSourceError
    from peak_provider.ingest import Progress
    from tests.hooks.test_peak import hook_for, products

    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=5)
    hook.append("products", [*products(10), *products(10, start=20)])  # what the earlier attempts stored
    earlier = Progress(ranges=[[0, 10, 10, 0, 0], [20, 30, 10, 0, 0]], keys={})

    def source():
        yield from products(25)
        raise RuntimeError("warehouse connection lost")

    saved: list[Progress] = []
    with pytest.raises(PeakSourceError) as failure:
        hook.append("products", source(), resume_from=earlier, on_progress=saved.append)
    result = failure.value.result
    assert result is not None and result.reconciled, result
    # 0-9 carried, 10-14 sent, 15-19 still in the open batch when the source failed; 20-24 not walked
    assert (result.rows_read, result.rows_accepted, result.rows_unsent) == (20, 15, 5)
    assert saved and all([20, 30, 10, 0, 0] in p.ranges for p in saved), saved
    assert saved[-1].ranges == [[0, 15, 15, 0, 0], [20, 30, 10, 0, 0]]

    again = hook.append("products", products(30), resume_from=saved[-1])
    assert (again.rows_read, again.rows_accepted, again.rows_sent) == (30, 30, 5)
    stored = [row["product_id"] for row in peak_emulator.rows("INV_PRODUCTS_OOTB")]
    assert sorted(stored) == sorted({row["product_id"] for row in products(30)})  # each once
    hook.close()


def test_every_checkpoint_keeps_an_earlier_range_walked_ahead_of_the_prefix(peak_emulator, monkeypatch):
    """Earlier attempts settled 0-9 and 20-29. With one batch in flight, this attempt walks 20-29 while 10-19
    are still unanswered: checkpoints saved then (the last one a hard kill would leave) must still hold 20-29,
    or the next attempt appends all of it again."""
    from peak_provider.ingest import Progress
    from tests.hooks.test_peak import hook_for, products

    peak_emulator.set_faults(latency_ms=50)
    hook = hook_for(peak_emulator, monkeypatch, max_rows_per_request=5, max_in_flight=1)
    hook.append("products", [*products(10), *products(10, start=20)])
    saved: list[Progress] = []
    result = hook.append(
        "products",
        products(40),
        resume_from=Progress(ranges=[[0, 10, 10, 0, 0], [20, 30, 10, 0, 0]], keys={}),
        on_progress=saved.append,
    )
    hook.close()
    assert (result.rows_read, result.rows_accepted, result.rows_sent) == (40, 40, 20)
    holds = [any(r[0] <= 20 and r[1] >= 30 for r in p.ranges) for p in saved]
    assert saved and all(holds), [p.ranges for p in saved]
    assert saved[-1].ranges == [[0, 40, 40, 0, 0]]


def test_a_retried_watermark_load_does_not_move_its_mark_past_a_row_it_skipped(peak_emulator, monkeypatch, tmp_path):
    """Attempt 1 fails after checkpointing 15 rows; P00010, one of them, is then updated in place (a newer
    updated_at) and the retry skips it, as its key and position did not change. The new version was never
    sent, so the mark must stay below it (the retry takes the earlier attempts' mark from the checkpoint and
    counts only the rows it reads itself): the next run sends it. (The mark moved to the skipped row's new
    value, and that version was never sent.)"""
    from tests.context import MemoryAssetStateStore

    path = tmp_path / "wm.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
        db.execute("CREATE INDEX streamed ON products (product_id, updated_at)")  # ORDER BY streams, unsorted
        db.execute("CREATE TABLE ctl (fail INTEGER)")
        db.execute("INSERT INTO ctl VALUES (1)")
        db.executemany(
            "INSERT INTO products VALUES (?, 'S1', 1, ?)",
            [(f"P{i:05d}", f"2025-03-01 {i:02d}:00:00") for i in range(24)],
        )
    monkeypatch.setenv("AIRFLOW_CONN_WM", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB", max_rows_per_request=5, max_in_flight=1)
    )
    sql = (  # fails (integer overflow) on reaching P00022 while ctl.fail is 1: a warehouse error mid-load
        "SELECT product_id, source_id, pack_size, updated_at FROM products WHERE (CASE WHEN product_id = 'P00022' "
        "AND (SELECT fail FROM ctl) = 1 THEN abs(-9223372036854775808) ELSE 1 END) = 1"
    )
    task = SqlToPeakOperator(
        task_id="load",
        resource="products",
        sql=sql,
        sql_conn_id="wm",
        incremental_column="updated_at",
        incremental_mode="watermark",
        resumable=True,
        fetch_size=5,
    )
    assets, states = MemoryAssetStateStore(), MemoryTaskStateStore()

    def run() -> dict:
        return task.execute(task_context(asset_state_store=assets, task_state_store=states))

    with pytest.raises(PeakSourceError):
        run()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE products SET updated_at = '2025-03-05 12:00:00' WHERE product_id = 'P00010'")
        db.execute("UPDATE ctl SET fail = 0")
    assert run()["rows_resumed"] == 15  # 15-19 were in the open batch when the warehouse failed
    (mark,) = [values["peak_watermark"] for values in assets.values.values()]
    assert mark == "2025-03-01 23:00:00"  # the latest row read, P00023; not the skipped row's new value
    assert run()["rows_read"] == 1  # the next run: the new version of P00010
    versions = [r["updated_at"] for r in peak_emulator.rows("INV_PRODUCTS_OOTB") if r["product_id"] == "P00010"]
    assert versions == ["2025-03-01 10:00:00", "2025-03-05 12:00:00"]
