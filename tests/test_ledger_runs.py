"""The missed-window ledger in real Airflow runs (dag.test(), Airflow 3): fill with retries, fail, per task.

The DAGs are in tests/dag_files/peak_ledger_dags.py. dag.test(logical_date=D) runs the interval ending at
D, [D-1, D). The alias's asset is not active without a scheduler, so these runs keep the ledger in the
Airflow Variable (the asset_state_store path runs under a scheduler in tests/dags/test_missed_windows.py).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

DAYS = 8  # the warehouse holds 3 product versions per day, March 1..8


def date(n: int) -> datetime:
    return datetime(2025, 3, 1, tzinfo=UTC) + timedelta(days=n - 1)


def interval(a: int, b: int) -> list[str]:
    return [date(a).isoformat(), date(b).isoformat()]


@pytest.fixture
def ledger_env(airflow_db, peak_emulator, tmp_path, monkeypatch):
    """The DAGs' warehouse and Peak connection; the ledger Variables of earlier tests are removed."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    path = tmp_path / "wh.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size, updated_at TEXT)")
    db.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(f"P{d}{i}", "S1", 6, f"2025-03-0{d} 0{i}:00:00") for d in range(1, DAYS + 1) for i in range(3)],
    )
    db.commit()
    db.close()
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_LEDGER", peak_emulator.connection_json("INV_OOTB"))
    with create_session() as session:
        session.query(Variable).filter(Variable.key.like("peak_ledger__peak_test_ledger%")).delete(
            synchronize_session=False
        )
    return path


def dag(dag_id: str) -> Any:
    import importlib

    module = importlib.reload(importlib.import_module("peak_ledger_dags"))
    return next(d for d in vars(module).values() if getattr(d, "dag_id", None) == dag_id)


def run(dag_id: str, day: int, **kwargs: Any) -> Any:
    return dag(dag_id).test(logical_date=date(day), **kwargs)


def tis(dag_run: Any) -> dict[str, Any]:
    return {ti.task_id: ti for ti in dag_run.get_task_instances()}


def summary(dag_run: Any, task_id: str = "products") -> dict[str, Any]:
    return tis(dag_run)[task_id].xcom_pull(task_ids=task_id)


def stored_days(emulator) -> list[int]:
    return sorted({int(r["updated_at"][8:10]) for r in emulator.rows("INV_PRODUCTS_OOTB")})


def test_fill_with_retries_loads_each_window_once_and_records_it(ledger_env, peak_emulator):
    first = run("peak_test_ledger_fill", 2)  # [1, 2): the first attempt fails at the warehouse, the retry loads
    assert first.state == "success" and tis(first)["products"].try_number == 2
    assert summary(first)["missing_intervals"] == []

    filled = run("peak_test_ledger_fill", 5)  # [4, 5): [2, 4) was never loaded
    assert filled.state == "success" and tis(filled)["products"].try_number == 2
    assert summary(filled)["filled_intervals"] == [interval(2, 4)]
    assert stored_days(peak_emulator) == [1, 2, 3, 4]
    assert sum(e["rows"] for e in peak_emulator.request_log()) == 12  # each version sent once

    after = run("peak_test_ledger_fill", 6)
    assert summary(after)["missing_intervals"] == []  # the retries recorded what they loaded, once


def test_fail_fails_the_run_before_any_request_and_is_not_retried(ledger_env, peak_emulator):
    assert run("peak_test_ledger_fail", 2).state == "success"
    sent = len(peak_emulator.request_log())
    failed = run("peak_test_ledger_fail", 4)  # [3, 4): [2, 3) was never loaded
    assert failed.state == "failed"
    assert tis(failed)["products"].try_number == 1  # retries=2, but no attempt can change the answer
    assert len(peak_emulator.request_log()) == sent
    assert stored_days(peak_emulator) == [1]


def test_each_task_has_its_own_ledger(ledger_env, peak_emulator):
    assert run("peak_test_ledger_tasks", 2).state == "success"
    assert run("peak_test_ledger_tasks", 3, mark_success_pattern="second").state == "success"  # second: not run
    last = run("peak_test_ledger_tasks", 4)
    assert summary(last, "first")["missing_intervals"] == []
    assert summary(last, "second")["missing_intervals"] == [interval(2, 3)]
