"""The example DAGs run for real with dag.test() against the demo warehouse and the bundled emulator."""

from __future__ import annotations

import importlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from peak_provider.demo import warehouse

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

DAY = timedelta(days=1)
RUN_DATES = [datetime(2025, 3, d, tzinfo=UTC) for d in (1, 2, 3)]  # intervals: Feb 28, Mar 1, Mar 2


@pytest.fixture
def demo_env(airflow_db, peak_emulator, tmp_path, monkeypatch):
    """Demo warehouse + emulator connections for the example DAGs; returns (warehouse path, rejects dir)."""
    wh = warehouse.build(tmp_path / "warehouse.db")
    rejects = tmp_path / "rejects"
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(wh)}))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_INVENTORY", peak_emulator.connection_json("INV_OOTB"))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_B2C_PRICING", peak_emulator.connection_json("QP_OOTB"))
    monkeypatch.setenv("AIRFLOW_VAR_PEAK_REJECTS_DIR", str(rejects))
    return wh, rejects


def load_dag(module: str, dag_id: str | None = None):
    mod = importlib.reload(importlib.import_module(module))
    return mod.dag if dag_id is None else next(d for d in vars(mod).values() if getattr(d, "dag_id", None) == dag_id)


def store_snapshot(emulator, objects) -> dict[str, list[str]]:
    """The emulator's stored rows of each object, as sorted JSON (to compare the store before and after)."""
    return {obj: sorted(map(json.dumps, emulator.rows(obj))) for obj in objects}


def summaries(dag_run) -> dict[str, dict]:
    return {ti.task_id.split(".")[-1]: ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()}


def warehouse_rows(wh, table: str, start: datetime, end: datetime) -> list[tuple]:
    fmt = "%Y-%m-%d %H:%M:%S"
    with sqlite3.connect(wh) as db:
        return db.execute(
            f"SELECT * FROM {table} WHERE updated_at >= ? AND updated_at < ?", (start.strftime(fmt), end.strftime(fmt))
        ).fetchall()


def test_dependency_order_within_a_run(demo_env):
    dag = load_dag("peak_b2c_pricing_incremental")
    assert dag.get_task("b2c_pricing.sale").upstream_task_ids == {"b2c_pricing.product", "b2c_pricing.location"}
    assert dag.get_task("b2c_pricing.purchase_order").upstream_task_ids == {
        "b2c_pricing.product",
        "b2c_pricing.location",
    }
    run = dag.test(logical_date=RUN_DATES[0])
    assert run.state == "success"
    tis = {ti.task_id.split(".")[-1]: ti for ti in run.get_task_instances()}
    for first in ("product", "location"):
        for then in ("purchase_order", "sale"):
            assert tis[first].end_date <= tis[then].start_date, (first, then)


def test_three_intervals_each_row_once_and_rerun_is_idempotent(demo_env, peak_emulator):
    wh, _ = demo_env
    dag = load_dag("peak_inventory_incremental")
    products_obj = "INV_PRODUCTS_OOTB"
    seen: set[tuple] = set()
    for logical_date in RUN_DATES:
        before = {(r["product_id"], r["updated_at"]) for r in peak_emulator.rows(products_obj)}
        run = dag.test(logical_date=logical_date)
        assert run.state == "success"
        start, end = run.data_interval_start, run.data_interval_end
        assert (start, end) == (logical_date - DAY, logical_date)
        results = summaries(run)
        for resource, table in (("products", "products"), ("customer_orders", "customer_orders")):
            assert results[resource]["rows_read"] == len(warehouse_rows(wh, table, start, end)), resource
            assert (
                results[resource]["rows_read"]
                == results[resource]["rows_accepted"] + results[resource]["rows_rejected"]
            )
        # every product version stored by this run changed inside this run's interval, and is new
        new = {(r["product_id"], r["updated_at"]) for r in peak_emulator.rows(products_obj)} - before
        assert len(new) == results["products"]["rows_accepted"]
        for _, updated_at in new:
            assert start.strftime("%Y-%m-%d %H:%M:%S") <= updated_at < end.strftime("%Y-%m-%d %H:%M:%S")
        assert not new & seen
        seen |= new
    # sent exactly once: the emulator saw one POST per row (no duplicates across runs)
    sent = sum(e["rows"] for e in peak_emulator.request_log() if "PRODUCTS" in e["path"])
    assert sent == len(seen) == len(peak_emulator.rows(products_obj))

    # re-running a run leaves the store identical
    objects = ("INV_PRODUCTS_OOTB", "INV_LOCATIONS_OOTB", "INV_CUSTOMER_ORDERS_OOTB", "INV_MANUFACTURING_ORDERS_OOTB")
    snapshot = store_snapshot(peak_emulator, objects)
    assert dag.test(logical_date=RUN_DATES[1]).state == "success"
    assert snapshot == store_snapshot(peak_emulator, objects)


def test_rejected_rows_land_in_the_sink_and_the_threshold_decides(demo_env):
    _, rejects = demo_env
    tolerant = load_dag("peak_inventory_incremental").test(logical_date=RUN_DATES[2])
    assert tolerant.state == "success"
    (sink,) = rejects.glob("peak_inventory_incremental/*/products.jsonl")
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    assert {r["key"]["product_id"] for r in records} == {"PROD-0007", "PROD-0011"}
    assert all(r["field"] == "pack_size" and "null is not allowed" in r["reason"] for r in records)

    strict = load_dag("peak_test_dags", "peak_test_strict").test(logical_date=RUN_DATES[2])
    assert strict.state == "failed"
    tis = {ti.task_id.split(".")[-1]: ti for ti in strict.get_task_instances()}
    assert {name: ti.state for name, ti in tis.items()} == {"products": "failed", "customer_orders": "upstream_failed"}
    assert tis["products"].try_number == 1  # rejected rows are not retried: they would be rejected again
    assert len(list(rejects.glob("strict/*/products.jsonl"))) == 1


def test_empty_interval_guard_fires_for_a_cron_preset(demo_env):
    run = load_dag("peak_test_dags", "peak_test_daily_preset").test(logical_date=RUN_DATES[0])
    assert run.data_interval_start == run.data_interval_end
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.state == "failed" and ti.try_number == 1  # AirflowFailException: no pointless retries
