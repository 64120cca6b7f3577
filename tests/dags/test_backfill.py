"""Airflow 3 backfill for real: `airflow backfill create`, executed by a running scheduler.

A test-only DAG without catchup (so unpausing it schedules no history) backfills three daily
intervals; the emulator then holds exactly those intervals' rows. The same window backfilled again
(`--reprocess-behavior completed`) is re-sent and changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from peak_provider.demo import warehouse
from tests.airflow_services import Airflow, fresh_database, query, standalone
from tests.dags.test_example_dags import store_snapshot

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

WINDOW = ("2025-02-28", "2025-03-02")  # logical dates; intervals 02-28, 03-01 and 03-02
DAG_ID = "peak_test_backfill"


@pytest.fixture
def airflow(peak_emulator, postgres, tmp_path):
    wh = warehouse.build(tmp_path / "warehouse.db")
    env = {
        "AIRFLOW_CONN_PEAK_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(wh)}),
        "AIRFLOW_CONN_PEAK_INVENTORY": peak_emulator.connection_json("INV_OOTB"),
    }
    with standalone(tmp_path, fresh_database(postgres, "airflow_backfill"), env, unpause=(DAG_ID,)) as services:
        # Unpausing started the DAG's own schedule: one run, of the latest interval. Its tasks create the
        # targets' assets (first emitted through the AssetAlias), and a backfill run doing that at the same
        # moment would race in Airflow (README, *Backfill*), so backfills start once it has finished.
        first = services.wait_for_runs(DAG_ID, 1)
        assert set(first.values()) == {"success"}, f"{first}\ntask logs:\n{services.task_logs()}"
        yield services


def backfill(airflow: Airflow, *extra: str) -> None:
    # --max-active-runs 1: the README's step (Airflow races creating an alias's new asset in parallel runs)
    airflow.cli(
        "backfill",
        "create",
        "--dag-id",
        DAG_ID,
        "--from-date",
        WINDOW[0],
        "--to-date",
        WINDOW[1],
        "--max-active-runs",
        "1",
        *extra,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = dict(
            query(
                airflow.dsn, "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_type = 'backfill'", (DAG_ID,)
            )
        )
        # the scheduler marks a backfill completed once all its runs finished
        done = all(c is not None for (c,) in query(airflow.dsn, "SELECT completed_at FROM backfill"))
        if len(runs) >= 3 and done and all(s in ("success", "failed") for s in runs.values()):
            assert set(runs.values()) == {"success"}, f"{runs}\ntask logs:\n{airflow.task_logs()}"
            return
        time.sleep(2)
    pytest.fail(f"backfill did not finish; log: {airflow.log.read_text()[-3000:]}")


def test_backfill_create_is_run_by_the_scheduler_and_is_idempotent(airflow, peak_emulator, tmp_path):
    backfill(airflow)
    with sqlite3.connect(tmp_path / "warehouse.db") as db:
        in_window = db.execute(
            "SELECT product_id, updated_at FROM products WHERE updated_at >= '2025-02-28 00:00:00' "
            "AND updated_at < '2025-03-03 00:00:00' AND pack_size IS NOT NULL"
        ).fetchall()
    stored = {(r["product_id"], r["updated_at"]) for r in peak_emulator.rows("INV_PRODUCTS_OOTB")}
    assert stored == set(in_window) and len(stored) > 50
    objects = ("INV_PRODUCTS_OOTB", "INV_CUSTOMER_ORDERS_OOTB")
    snapshot = store_snapshot(peak_emulator, objects)
    sent_first = sum(e["rows"] for e in peak_emulator.request_log())

    backfill(airflow, "--reprocess-behavior", "completed")
    assert sum(e["rows"] for e in peak_emulator.request_log()) == 2 * sent_first  # the window was re-sent …
    assert snapshot == store_snapshot(peak_emulator, objects)  # … changing nothing
    airflow.assert_never_logged(peak_emulator.token)
