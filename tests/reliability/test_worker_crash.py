"""kill -9 of the task process mid-load, under a real scheduler: the retry resumes from the checkpoint.

The store ends up equal to the source, and the rows sent twice are at most the batches in flight
when the worker died (here 2 x 500).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time

import psutil
import pytest

from tests.airflow_services import fresh_database, query, standalone

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

ROWS = 30_000
IN_FLIGHT = 2
TASK_PROCESS = re.compile(r"^airflow worker -- [0-9a-f-]{36}$")  # the task runner's process title


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "crash.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            [(f"P{i:06d}", f"S{i % 13}", 1 + i % 7, "2025-03-01 10:00:00") for i in range(ROWS)],
        )
    return path


def task_processes(standalone_pid: int) -> list[psutil.Process]:
    """Task runner processes of this test's Airflow: descendants of its standalone process whose
    (space-padded) title is the task runner's. Other Airflow deployments may run on the machine."""
    found = []
    for proc in psutil.Process(standalone_pid).children(recursive=True):
        try:
            if TASK_PROCESS.match(" ".join(proc.cmdline()).strip()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_kill_9_mid_load_then_retry_resumes(peak_emulator_factory, postgres, warehouse, tmp_path):
    emulator = peak_emulator_factory(faults={"latency_ms": 150})
    env = {
        "AIRFLOW_CONN_CRASH_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        "AIRFLOW_CONN_PEAK_INVENTORY": emulator.connection_json("INV_OOTB", max_in_flight=IN_FLIGHT),
    }
    with standalone(tmp_path, fresh_database(postgres, "airflow_crash"), env, unpause=("peak_test_crash",)) as airflow:
        airflow.cli("dags", "trigger", "peak_test_crash")
        deadline = time.time() + 120
        while sum(e["rows"] for e in emulator.request_log() if e["status"] == 200) < ROWS // 3:
            assert time.time() < deadline, "the load did not get going: " + airflow.log.read_text()[-3000:]
            time.sleep(0.05)
        (victim,) = task_processes(airflow.pid)
        victim.kill()  # SIGKILL: no cleanup, no exception handler runs
        before_kill = sum(e["rows"] for e in emulator.request_log() if e["status"] == 200)

        runs = airflow.wait_for_runs("peak_test_crash", 1)
        assert set(runs.values()) == {"success"}, airflow.log.read_text()[-3000:]
        tries = query(airflow.dsn, "SELECT try_number, state FROM task_instance WHERE dag_id = 'peak_test_crash'")
        assert tries == [(2, "success")]
        airflow.assert_never_logged(emulator.token)
        (summary,) = query(
            airflow.dsn, "SELECT value FROM xcom WHERE dag_id = 'peak_test_crash' AND key = 'return_value'"
        )
    result = summary[0] if isinstance(summary[0], dict) else json.loads(summary[0])
    stored = {r["product_id"] for r in emulator.rows("INV_PRODUCTS_OOTB")}
    assert stored == {f"P{i:06d}" for i in range(ROWS)}
    accepted_total = sum(e["rows"] for e in emulator.request_log() if e["status"] == 200)
    resent = accepted_total - ROWS
    assert result["rows_resumed"] > 0 and result["attempts"] == 2
    assert result["rows_read"] == result["rows_accepted"] == ROWS  # the summary covers both attempts
    assert 0 <= resent <= IN_FLIGHT * 500, f"re-sent {resent} rows"
    print(
        f"\nkill -9 after {before_kill} rows acknowledged; retry resumed at row {result['rows_resumed']}; "
        f"rows sent twice: {resent} (bound: {IN_FLIGHT} in-flight batches = {IN_FLIGHT * 500})"
    )
