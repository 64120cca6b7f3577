"""Airflow 3 backfill for real: `airflow backfill create`, executed by a running scheduler.

Starts `airflow standalone` (api-server, scheduler, dag-processor, triggerer) in a throwaway
AIRFLOW_HOME, with the connections in its environment, then backfills three daily intervals, checks
the emulator holds exactly those intervals' rows, and backfills the same window again: the store is
unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from peak_provider.demo import warehouse

AIRFLOW = str(Path(sys.executable).parent / "airflow")
REPO = Path(__file__).resolve().parents[2]
WINDOW = ("2025-02-28", "2025-03-02")  # logical dates; intervals 02-28, 03-01 and 03-02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metadata_db(postgres) -> str:
    """A fresh PostgreSQL metadata database (SQLite locks up under a scheduler plus CLI commands)."""
    import psycopg2

    conn = psycopg2.connect(host=postgres["host"], port=postgres["port"], user=postgres["user"], dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS airflow_backfill")
        cur.execute("CREATE DATABASE airflow_backfill")
    conn.close()
    return f"postgresql+psycopg://{postgres['user']}@{postgres['host']}:{postgres['port']}/airflow_backfill"


@pytest.fixture
def standalone(peak_emulator, metadata_db, tmp_path) -> Iterator[dict]:
    wh = warehouse.build(tmp_path / "warehouse.db")
    port = free_port()
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        # the test bundle's DAGs import dags/peak_common.py (Airflow puts only [core] dags_folder on the path)
        "PYTHONPATH": os.pathsep.join([str(REPO / "dags"), str(REPO / "tests" / "dag_files")]),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "peak-test-jwt-secret-0123456789abcdef",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_CONN_PEAK_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(wh)}),
        "AIRFLOW_CONN_PEAK_INVENTORY": peak_emulator.connection_json("INV_OOTB"),
    }
    for step in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", "peak_test_backfill"]):
        subprocess.run([AIRFLOW, *step], env=env, check=True, capture_output=True)
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [AIRFLOW, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("airflow standalone did not come up: " + (tmp_path / "standalone.log").read_text()[-3000:])
            time.sleep(1)
        yield {
            "env": env,
            "db": metadata_db.replace("+psycopg", ""),
            "warehouse": wh,
            "log": tmp_path / "standalone.log",
        }
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def backfill(services: dict, *extra: str) -> set[str]:
    before = backfill_runs(services["db"])
    done = subprocess.run(
        [
            AIRFLOW,
            "backfill",
            "create",
            "--dag-id",
            "peak_test_backfill",
            "--from-date",
            WINDOW[0],
            "--to-date",
            WINDOW[1],
            *extra,
        ],
        env=services["env"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = backfill_runs(services["db"])
        new = {k: v for k, v in runs.items() if before.get(k) != v or k not in before}
        if (
            len(runs) >= 3
            and all(state in ("success", "failed") for state in runs.values())
            and backfills_done(services["db"])
        ):
            assert set(runs.values()) == {"success"}, runs
            return set(new)
        time.sleep(2)
    pytest.fail(f"backfill did not finish: {backfill_runs(services['db'])}; log: {services['log'].read_text()[-3000:]}")


def query(db: str, sql: str) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def backfills_done(db: str) -> bool:
    """The scheduler marks a backfill completed once all its runs finished; a new one waits for that."""
    return all(done is not None for (done,) in query(db, "SELECT completed_at FROM backfill"))


def backfill_runs(db: str) -> dict[str, str]:
    sql = "SELECT run_id, state FROM dag_run WHERE dag_id = 'peak_test_backfill' AND run_type = 'backfill'"
    return dict(query(db, sql))


def test_backfill_create_is_run_by_the_scheduler_and_is_idempotent(standalone, peak_emulator):
    backfill(standalone)
    with sqlite3.connect(standalone["warehouse"]) as db:
        in_window = db.execute(
            "SELECT product_id, updated_at FROM products WHERE updated_at >= '2025-02-28 00:00:00' "
            "AND updated_at < '2025-03-03 00:00:00' AND pack_size IS NOT NULL"
        ).fetchall()
    stored = {(r["product_id"], r["updated_at"]) for r in peak_emulator.rows("INV_PRODUCTS_OOTB")}
    assert stored == set(in_window) and len(stored) > 50
    snapshot = {
        obj: sorted(map(json.dumps, peak_emulator.rows(obj)))
        for obj in ("INV_PRODUCTS_OOTB", "INV_CUSTOMER_ORDERS_OOTB")
    }

    sent_first = sum(e["rows"] for e in peak_emulator.request_log())

    backfill(standalone, "--reprocess-behavior", "completed")
    assert sum(e["rows"] for e in peak_emulator.request_log()) == 2 * sent_first  # the window was re-sent …
    assert snapshot == {obj: sorted(map(json.dumps, peak_emulator.rows(obj))) for obj in snapshot}  # … changing nothing
