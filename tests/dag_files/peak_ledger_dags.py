"""DAGs of the missed-window ledger tests (issue 15): daily interval loads of products, per policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG
from peak_common import DAILY, SQL_DIR, START_DATE

from peak_provider.operators.peak import SqlToPeakOperator

#: The scheduler creates no run of its own when a test unpauses these (catchup off, intervals long past).
END_DATE = datetime(2025, 3, 31, tzinfo=UTC)
DAILY_PAST: dict[str, Any] = {
    "schedule": DAILY,
    "start_date": START_DATE,
    "end_date": END_DATE,
    "catchup": False,
    "template_searchpath": [SQL_DIR],
}


def _products(task_id: str, peak_conn_id: str, sql_conn_id: str, sql: str, **kwargs: Any) -> SqlToPeakOperator:
    return SqlToPeakOperator(
        task_id=task_id,
        resource="products",
        sql=sql,
        sql_conn_id=sql_conn_id,
        peak_conn_id=peak_conn_id,
        incremental_column="updated_at",
        **kwargs,
    )


# The user path of the issue (`airflow dags test` on two dates, then `airflow backfill create`), one DAG per
# policy, each loading the demo warehouse's products into its own emulator.
DEMO: dict[str, Any] = {"sql_conn_id": "peak_warehouse", "sql": "inventory/products.sql", "max_rejected_rows": 25}
with DAG(dag_id="peak_test_missed_warn", **DAILY_PAST) as missed_warn_dag:
    _products("products", "peak_missed_warn", missed_windows="warn", **DEMO)
with DAG(dag_id="peak_test_missed_fill", **DAILY_PAST) as missed_fill_dag:
    _products("products", "peak_missed_fill", missed_windows="fill", **DEMO)
with DAG(dag_id="peak_test_missed_fail", **DAILY_PAST) as missed_fail_dag:
    _products("products", "peak_missed_fail", missed_windows="fail", **DEMO)

# dag.test() runs on a small warehouse of the test's own.
SMALL: dict[str, Any] = {
    "sql_conn_id": "ledger_warehouse",
    "sql": "SELECT product_id, source_id, pack_size, updated_at FROM products",
}

# Two tasks loading the same object: each has a ledger of its own.
with DAG(dag_id="peak_test_ledger_tasks", **DAILY_PAST) as ledger_tasks_dag:
    _products("first", "peak_ledger", **SMALL)
    _products("second", "peak_ledger", **SMALL)

# fill, with every run's first attempt failing at the warehouse (a table that does not exist), so each run
# succeeds on its retry.
with DAG(dag_id="peak_test_ledger_fill", **DAILY_PAST) as ledger_fill_dag:
    _products(
        "products",
        "peak_ledger",
        sql_conn_id="ledger_warehouse",
        sql="SELECT product_id, source_id, pack_size, updated_at FROM products{{ '' if ti.try_number > 1 else '_no' }}",
        missed_windows="fill",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

with DAG(dag_id="peak_test_ledger_fail", **DAILY_PAST) as ledger_fail_dag:
    _products("products", "peak_ledger", missed_windows="fail", retries=2, **SMALL)
