"""Issue 15's user path for real: `airflow dags test` on two dates, then `airflow backfill create` run by the
scheduler of `airflow standalone`.

`dags test D` runs the interval ending at D; the backfill's run for D the one starting at D, and it skips
logical dates that already have a run. So after `dags test` 02-20 and 02-21 ([02-19, 02-21) loaded), the
backfill 02-19..02-23 runs 02-19, 02-22 and 02-23, and [02-21, 02-22) is never loaded by any run. One DAG
per policy (tests/dag_files/peak_ledger_dags.py), each with its own emulator:

- warn: the runs after the gap report exactly that window (summary and asset event);
- fill: the emulator's store is that of one full load of [02-19, 02-24);
- fail: the runs after the gap fail without a request.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from typing import Any

import pytest

from peak_provider.demo import warehouse
from tests.airflow_services import AIRFLOW, Airflow, fresh_database, query, standalone
from tests.processes import stop_tree

pytestmark = [pytest.mark.airflow3, pytest.mark.slow]

POLICIES = ("warn", "fill", "fail")
DAGS_TEST_DATES = ("2025-02-20", "2025-02-21")
BACKFILL = ("2025-02-19", "2025-02-23")
GAP = ["2025-02-21T00:00:00+00:00", "2025-02-22T00:00:00+00:00"]


@pytest.fixture
def emulators(peak_emulator_factory) -> dict[str, Any]:
    return {policy: peak_emulator_factory() for policy in POLICIES}


@pytest.fixture
def airflow(emulators, postgres, tmp_path):
    wh = warehouse.build(tmp_path / "warehouse.db")
    env = {"AIRFLOW_CONN_PEAK_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(wh)})}
    for policy, emulator in emulators.items():
        env[f"AIRFLOW_CONN_PEAK_MISSED_{policy.upper()}"] = emulator.connection_json("INV_OOTB")
    # Paused while `airflow dags test` runs: the scheduler also runs the tasks of any running run of an
    # unpaused DAG, and it raced `dags test` for one ("Task instance … is already running"). The backfill
    # unpauses them.
    with standalone(tmp_path, fresh_database(postgres, "airflow_missed"), env) as services:
        yield services


def dags_test_each_dag_on_two_dates(airflow: Airflow) -> None:
    """The three DAGs side by side, each one's dates in order (one process per DAG)."""
    script = " && ".join(f"{AIRFLOW} dags test {{dag}} {d}" for d in DAGS_TEST_DATES)
    procs = {
        policy: subprocess.Popen(
            ["sh", "-c", script.format(dag=f"peak_test_missed_{policy}")],
            env=airflow.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for policy in POLICIES
    }
    try:
        outputs = {policy: proc.communicate(timeout=600)[0] for policy, proc in procs.items()}
    finally:
        stop_tree(list(procs.values()), grace=10)
    for policy, proc in procs.items():
        assert proc.returncode == 0, outputs[policy][-3000:]


def backfill_and_wait(airflow: Airflow) -> dict[str, dict[str, str]]:
    """Backfill every DAG (one run at a time each, as the README says); the runs' states by logical date."""
    for policy in POLICIES:
        airflow.cli("dags", "unpause", f"peak_test_missed_{policy}")  # a paused DAG runs no backfill
        airflow.cli(
            "backfill", "create", "--dag-id", f"peak_test_missed_{policy}", "--from-date", BACKFILL[0],
            "--to-date", BACKFILL[1], "--max-active-runs", "1",
        )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline:
        rows = query(
            airflow.dsn,
            "SELECT dag_id, logical_date, state FROM dag_run WHERE run_type = 'backfill' AND dag_id LIKE %s",
            ("peak_test_missed_%",),
        )
        done = all(c is not None for (c,) in query(airflow.dsn, "SELECT completed_at FROM backfill"))
        if len(rows) == 3 * len(POLICIES) and done and all(s in ("success", "failed") for *_, s in rows):
            states: dict[str, dict[str, str]] = {p: {} for p in POLICIES}
            for dag_id, logical_date, state in rows:
                states[dag_id.rsplit("_", 1)[1]][logical_date.strftime("%Y-%m-%d")] = state
            return states
        time.sleep(2)
    pytest.fail(f"the backfills did not finish; log: {airflow.log.read_text()[-3000:]}")


def event_extras(airflow: Airflow, policy: str) -> dict[str, dict[str, Any]]:
    """The asset event extra of each backfill run of a DAG, by logical date."""
    rows = query(
        airflow.dsn,
        "SELECT r.logical_date, e.extra FROM asset_event e JOIN dag_run r ON r.dag_id = e.source_dag_id "
        "AND r.run_id = e.source_run_id WHERE r.dag_id = %s AND r.run_type = 'backfill'",
        (f"peak_test_missed_{policy}",),
    )
    return {d.strftime("%Y-%m-%d"): extra if isinstance(extra, dict) else json.loads(extra) for d, extra in rows}


def rows_between(wh, start: str, end: str) -> set[tuple[str, str]]:
    with sqlite3.connect(wh) as db:
        return set(
            db.execute(
                "SELECT product_id, updated_at FROM products WHERE updated_at >= ? AND updated_at < ? "
                "AND pack_size IS NOT NULL",
                (f"{start} 00:00:00", f"{end} 00:00:00"),
            ).fetchall()
        )


def test_dags_test_then_backfill_the_gap_is_reported_filled_or_refused(airflow, emulators, tmp_path):
    dags_test_each_dag_on_two_dates(airflow)
    sent_before = {p: sum(e["rows"] for e in emulators[p].request_log()) for p in POLICIES}
    states = backfill_and_wait(airflow)
    assert states["warn"] == states["fill"] == dict.fromkeys(("2025-02-19", "2025-02-22", "2025-02-23"), "success")
    assert states["fail"] == {"2025-02-19": "success", "2025-02-22": "failed", "2025-02-23": "failed"}

    warned = event_extras(airflow, "warn")
    assert warned["2025-02-19"]["missing_intervals"] == []
    assert warned["2025-02-22"]["missing_intervals"] == [GAP]
    assert warned["2025-02-23"]["missing_intervals"] == [GAP]  # still never loaded

    filled = event_extras(airflow, "fill")
    assert filled["2025-02-22"]["filled_intervals"] == [GAP]
    assert filled["2025-02-23"]["missing_intervals"] == []
    wh = tmp_path / "warehouse.db"
    stored = {(r["product_id"], r["updated_at"]) for r in emulators["fill"].rows("INV_PRODUCTS_OOTB")}
    assert stored == rows_between(wh, "2025-02-19", "2025-02-24") and len(stored) > 100  # one full load

    # the failed runs sent nothing: the backfill sent only run 02-19's window again
    sent = sum(e["rows"] for e in emulators["fail"].request_log()) - sent_before["fail"]
    with sqlite3.connect(wh) as db:
        (in_0219,) = db.execute(
            "SELECT count(*) FROM products WHERE updated_at >= '2025-02-19 00:00:00' AND updated_at < "
            "'2025-02-20 00:00:00'"
        ).fetchone()
    assert sent == in_0219
    log = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "airflow" / "logs").rglob("*") if p.is_file())
    assert "missed_windows='fail' for peak_test_missed_fail.products" in log
    assert "Never loaded: [2025-02-21 00:00:00, 2025-02-22 00:00:00) UTC" in log
    for emulator in emulators.values():
        airflow.assert_never_logged(emulator.token)
