"""Issue #12, "retries of the Airflow task re-send or forget": APPEND across task attempts.

Real ``dag.test()`` runs (Airflow >= 3.3: the retry reads the checkpoint from the real ``task_state_store``)
of the DAGs in ``tests/dag_files/peak_integrity_dags.py``, against the emulator's seeded faults:

- lost answers over three attempts: no row is sent twice, so no id is stored twice, and every id is
  stored or reported in doubt in the sink;
- a first attempt that rejected rows and then failed mid-load: the retry's counts and the sink hold both
  attempts' rejections, and ``max_rejected_rows`` counts them all.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from peak_provider.exceptions import PeakHTTPError, PeakRejectedRowsError
from peak_provider.operators.peak import SqlToPeakOperator
from tests.context import MemoryTaskStateStore, outlet_events
from tests.dags.test_example_dags import load_dag

OBJECT = "INV_PRODUCTS_OOTB"
#: 5% lost answers (stored, then the connection closes). With this seed the emulator's draws lose the
#: 16th and the 27th answer and no other of the first 130: two attempts stop on a lost answer, the
#: third completes. (Checked against FaultInjector; if the emulator's draws change, pick a new seed.)
LOST = {"lost_response_rate": 0.05, "seed": 2394}
#: 5% 503s (before processing). With this seed the 5th request is the only failure of the first 60;
#: with one request in flight at a time, the first attempt fails there.
FAILS_ONCE = {"error_rate": 0.05, "error_statuses": [503], "seed": 23}


def make_warehouse(path: Path, rows: int, invalid_every: int = 0) -> list[str]:
    """A SQLite ``products`` table of ``rows`` unique ids, inserted in reverse (only the operator's
    ORDER BY gives the order); every ``invalid_every``-th row has no ``source_id`` (the client rejects
    it). Returns the ids of the invalid rows."""
    invalid = []
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size INTEGER, updated_at TEXT)")
        values = []
        for i in reversed(range(rows)):
            bad = bool(invalid_every) and i % invalid_every == invalid_every - 1
            if bad:
                invalid.append(f"P{i:06d}")
            values.append((f"P{i:06d}", None if bad else f"S{i % 13}", 1 + i % 7, "2025-03-01 10:00:00"))
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", values)
    return sorted(invalid)


def sink_lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in directory.rglob("*.jsonl") for line in path.read_text().splitlines()]


@pytest.fixture
def integrity(airflow_db, peak_emulator_factory, tmp_path, monkeypatch):
    """Connections for the integrity DAGs: the warehouse at ``tmp_path/wh.db``, an emulator with
    ``faults``, and the sink directory ``tmp_path/rejects``."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_INTEGRITY_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")})
    )
    monkeypatch.setenv("AIRFLOW_VAR_PEAK_REJECTS_DIR", str(tmp_path / "rejects"))

    def connect(faults: dict[str, Any], **extra: Any):
        emulator = peak_emulator_factory(faults=faults)
        monkeypatch.setenv("AIRFLOW_CONN_PEAK_INTEGRITY", emulator.connection_json("INV_OOTB", **extra))
        return emulator

    return connect


def task_summary(run) -> tuple[Any, dict[str, Any]]:
    (ti,) = run.get_task_instances()
    return ti, ti.xcom_pull(task_ids="products")


@pytest.mark.airflow3
@pytest.mark.slow
def test_append_with_lost_answers_over_three_attempts_stores_no_id_twice(integrity, tmp_path):
    rows = 30_000
    make_warehouse(tmp_path / "wh.db", rows)
    emulator = integrity(LOST, max_in_flight=4)

    run = load_dag("peak_integrity_dags", "peak_test_append_retries").test()

    ti, summary = task_summary(run)
    assert run.state == "success", f"{ti.state} after {ti.try_number} attempts"
    assert ti.try_number == 3  # two attempts stopped on a lost answer
    assert summary["attempts"] == 3 and summary["rows_resumed"] > 0
    stored = [r["product_id"] for r in emulator.rows(OBJECT)]
    assert len(stored) == len(set(stored)), "an id was stored twice"
    assert sum(e["rows"] for e in emulator.request_log()) == rows, "a row was sent twice"
    lines = sink_lines(tmp_path / "rejects")
    in_doubt = [line["key"]["product_id"] for line in lines]
    assert {line["outcome"] for line in lines} == {"in_doubt"} and len(in_doubt) == len(set(in_doubt))
    assert set(stored) | set(in_doubt) == {f"P{i:06d}" for i in range(rows)}, "an id is neither stored nor in doubt"
    assert set(in_doubt) <= set(stored)  # the emulator stored them before losing the answer
    # the summary of the last attempt covers every attempt
    assert summary["rows_read"] == rows and summary["rows_in_doubt"] == len(in_doubt) > 0
    assert summary["rows_accepted"] == len(set(stored) - set(in_doubt))
    assert summary["rows_rejected"] == summary["rows_unsent"] == 0
    print(f"\n3 attempts: {len(stored)} stored once each, {len(in_doubt)} in doubt, {summary['rows_resumed']} resumed")


@pytest.mark.airflow3
@pytest.mark.slow
def test_retry_after_rejections_keeps_both_attempts_rejections(integrity, tmp_path):
    from peak_integrity_dags import INVALID_ROWS

    rows = 5_000
    invalid = make_warehouse(tmp_path / "wh.db", rows, invalid_every=rows // INVALID_ROWS)
    assert len(invalid) == INVALID_ROWS
    emulator = integrity(FAILS_ONCE, max_in_flight=1)

    run = load_dag("peak_integrity_dags", "peak_test_resume_rejections").test()

    ti, summary = task_summary(run)
    assert run.state == "success", f"{ti.state} after {ti.try_number} attempts"
    assert ti.try_number == 2 and summary["attempts"] == 2
    lines = sink_lines(tmp_path / "rejects")
    rejected = [line["key"]["product_id"] for line in lines if line["outcome"] == "rejected"]
    in_doubt = [line["key"]["product_id"] for line in lines if line["outcome"] == "in_doubt"]
    assert sorted(rejected) == invalid  # each once: the first attempt's lines kept, none written twice
    assert invalid[0] == "P000099" and invalid[-1] == f"P{rows - 1:06d}"  # read by attempt 1, and by attempt 2 only
    assert len(in_doubt) == 500  # the batch the 503 answered (APPEND: not re-sent)
    stored = {r["product_id"] for r in emulator.rows(OBJECT)}
    assert not stored & set(in_doubt)  # the emulator's 503 comes before processing
    assert summary["rows_read"] == rows
    assert summary["rows_rejected"] == INVALID_ROWS and summary["rows_in_doubt"] == 500
    assert summary["rows_accepted"] == len(stored) == rows - INVALID_ROWS - 500


def test_max_rejected_rows_counts_across_attempts(peak_emulator, tmp_path, monkeypatch):
    rows = 5_000
    invalid = make_warehouse(tmp_path / "wh.db", rows, invalid_every=100)
    monkeypatch.setenv("AIRFLOW_CONN_WH", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    monkeypatch.setenv("AIRFLOW_CONN_PEAK_DEFAULT", peak_emulator.connection_json("INV_OOTB", max_in_flight=1))
    sink = tmp_path / "rejects.jsonl"
    store = MemoryTaskStateStore()
    task = SqlToPeakOperator(
        task_id="load",
        resource="products",
        operation="APPEND",
        sql="SELECT * FROM products",
        sql_conn_id="wh",
        rejected_rows_path=str(sink),
        max_rejected_rows=len(invalid) - 1,  # the second attempt alone rejects fewer: only the total exceeds it
        max_in_doubt_rows=500,
    )

    def context() -> Any:
        return {"task_state_store": store, "outlet_events": outlet_events()}

    peak_emulator.set_faults(**FAILS_ONCE)
    with pytest.raises(PeakHTTPError, match="HTTP 503"):
        task.execute(context())
    first = [json.loads(line) for line in sink.read_text().splitlines()]
    first_rejected = sum(line["outcome"] == "rejected" for line in first)
    assert 1 < first_rejected < len(invalid) and store.data["peak_checkpoint"]["ranges"]

    peak_emulator.set_faults()
    with pytest.raises(PeakRejectedRowsError, match=f"{len(invalid)} rows rejected") as failure:
        task.execute(context())
    summary = failure.value.summary
    assert summary["rows_rejected"] == len(invalid) and summary["rows_in_doubt"] == 500
    assert summary["rows_read"] == rows and summary["attempts"] == 2
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert lines[: len(first)] == first  # appended to, never truncated
    assert sorted(line["key"]["product_id"] for line in lines if line["outcome"] == "rejected") == invalid
