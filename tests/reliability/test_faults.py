"""A 50,000-row load through SqlToPeakOperator in real dag.test() runs, against an emulator injecting
503s, 429 bursts with Retry-After, dropped connections, responses slower than the client timeout and
accepted-but-lost responses: the store equals the source exactly, and retries are reported."""

from __future__ import annotations

import json
import sqlite3

import pytest

from peak_provider.extras import EXTRAS
from tests.dags.test_example_dags import load_dag

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

ROWS = 50_000
FAULTS = {
    "error_rate": 0.20,
    "error_statuses": [503],
    "throttle_rate": 0.02,
    "throttle_burst": 3,
    "retry_after_seconds": 1,
    "drop_rate": 0.05,
    "slow_rate": 0.02,
    "slow_seconds": 1.5,
    "lost_response_rate": 0.03,
    "seed": 2024,
}


def source_rows() -> list[tuple]:
    return [
        (f"P{i:06d}", f"Product {i} “ü” 🚀", f"S{i % 17}", 1 + i % 11, f"2025-03-{1 + i % 28:02d} {i % 24:02d}:15:00")
        for i in range(ROWS)
    ]


@pytest.fixture
def faulty(airflow_db, peak_emulator_factory, tmp_path, monkeypatch):
    path = tmp_path / "wh.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE products (product_id TEXT, product_name TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)"
        )
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", source_rows())
    monkeypatch.setenv("AIRFLOW_CONN_FAULTS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    emulator = peak_emulator_factory(faults=FAULTS)

    def connect(**extra):
        settings = {"timeout": 1.0, "retry_backoff": 0.05, "retry_backoff_max": 0.5, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_PEAK_FAULTS", emulator.connection_json("INV_OOTB", **settings))

    return emulator, connect


def test_load_survives_faults_and_the_store_equals_the_source(faulty):
    emulator, connect = faulty
    connect(max_retries=10)
    run = load_dag("peak_test_dags", "peak_test_faults").test()
    assert run.state == "success"
    (ti,) = run.get_task_instances()
    summary = ti.xcom_pull(task_ids="products")
    assert summary["rows_read"] == summary["rows_accepted"] == ROWS and summary["rows_rejected"] == 0
    faults = emulator.stats()["faults"]
    assert {"error", "throttle", "drop", "slow", "lost_response"} <= set(faults), faults
    assert summary["retries"] > 0 and summary["throttled"] > 0
    assert summary["requests"] == summary["retries"] + summary["throttled"] + ROWS // 500  # throttles use no retry
    expected = set(source_rows())
    stored = [
        (r["product_id"], r["product_name"], r["source_id"], r["pack_size"], r["updated_at"])
        for r in emulator.rows("INV_PRODUCTS_OOTB")
    ]
    assert len(stored) == ROWS  # no duplicates under UPSERT, although lost responses made us re-send
    assert set(stored) == expected  # same keys, same values
    print(f"\n50,000 rows under faults {faults}: {summary['requests']} requests, {summary['retries']} retries")


def test_load_fails_cleanly_when_retries_run_out(faulty):
    emulator, connect = faulty
    emulator.set_faults(error_rate=1.0, error_statuses=[503])
    connect(max_retries=2)
    run = load_dag("peak_test_dags", "peak_test_faults").test()
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.state == "failed"
    assert emulator.rows("INV_PRODUCTS_OOTB") == []
    statuses = [e["status"] for e in emulator.request_log()]
    in_flight = EXTRAS["max_in_flight"].default
    assert set(statuses) == {503} and len(statuses) <= in_flight * 3  # in-flight batches x (1 + 2 retries)
