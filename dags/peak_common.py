"""Settings shared by the example DAGs (this file defines no DAG)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.timetables.interval import CronDataIntervalTimetable

SQL_DIR = str(Path(__file__).parent / "sql")

#: The warehouse connection id comes from one Airflow Variable, so the same DAGs run on the demo's
#: SQLite warehouse and on PostgreSQL (or Snowflake, …): set ``peak_warehouse_conn_id``.
WAREHOUSE_CONN_ID = "{{ var.value.get('peak_warehouse_conn_id', 'peak_warehouse') }}"

#: Rejected rows land here as JSON Lines, one file per task and run.
REJECTED_ROWS_PATH = (
    "{{ var.value.get('peak_rejects_dir', '/tmp/peak-rejects') }}/{{ dag.dag_id }}/{{ ds }}/{{ task.resource }}.jsonl"
)

#: Daily runs that each cover the previous day: [data_interval_start, data_interval_end).
#: (Airflow 3's "@daily" would give empty intervals; see the README.)
DAILY = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")

START_DATE = datetime(2025, 2, 1, tzinfo=UTC)

DEFAULT_ARGS = {
    "pool": "peak_api",  # caps concurrent Peak loads; the tenant rate is shared by pacing (README: Many tasks, one tenant)
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
}

#: Operator arguments shared by every load task.
LOAD_ARGS = {
    "incremental_column": "updated_at",
    "max_rejected_rows": 25,  # tolerate a few bad rows; every one is written to REJECTED_ROWS_PATH
    "rejected_rows_path": REJECTED_ROWS_PATH,
}
