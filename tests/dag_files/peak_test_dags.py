"""DAGs used only by the test suite (a bundle of their own; see tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.common.compat.sdk import DAG
from peak_common import DAILY, SQL_DIR, START_DATE

from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.task_groups import peak_load_group

#: Daily intervals without catchup, so unpausing a DAG schedules no history.
DAILY_NO_CATCHUP = {"schedule": DAILY, "start_date": START_DATE, "catchup": False, "template_searchpath": [SQL_DIR]}
#: Two inventory loads from the example SQL, interval-incremental on updated_at.
INVENTORY_LOADS = {
    "loads": {"products": "inventory/products.sql", "customer_orders": "inventory/customer_orders.sql"},
    "sql_conn_id": "peak_warehouse",
    "peak_conn_id": "peak_inventory",
    "application": "inventory",
    "incremental_column": "updated_at",
}

# A cron preset: in Airflow 3 its runs have an empty data interval, which the operator refuses.
with DAG(
    dag_id="peak_test_daily_preset",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    template_searchpath=[SQL_DIR],
) as daily_preset_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql="inventory/products.sql",
        sql_conn_id="peak_warehouse",
        peak_conn_id="peak_inventory",
        incremental_column="updated_at",
    )

# The example inventory load with no tolerance for rejected rows.
with DAG(dag_id="peak_test_strict", **DAILY_NO_CATCHUP) as strict_dag:
    peak_load_group(
        "inventory",
        **INVENTORY_LOADS,
        max_rejected_rows=0,
        rejected_rows_path="{{ var.value.peak_rejects_dir }}/strict/{{ ds }}/{{ task.resource }}.jsonl",
        retries=2,  # not used: rejected rows fail the task for good
        retry_delay=timedelta(seconds=1),
    )

# The example inventory load without catchup, so unpausing it for a backfill schedules no history.
with DAG(dag_id="peak_test_backfill", **DAILY_NO_CATCHUP) as backfill_dag:
    peak_load_group("inventory", **INVENTORY_LOADS, max_rejected_rows=25)

# One resumable load that a test kills mid-way (kill -9 of the task process); the retry resumes.
with DAG(dag_id="peak_test_crash", schedule=None, start_date=START_DATE) as crash_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql="SELECT product_id, source_id, pack_size, updated_at FROM products",
        sql_conn_id="crash_warehouse",
        peak_conn_id="peak_inventory",
        resumable=True,
        retries=1,
        retry_delay=timedelta(seconds=1),
    )

# A 50,000-row load that tests run against an emulator injecting faults.
with DAG(dag_id="peak_test_faults", schedule=None, start_date=START_DATE) as faults_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql="SELECT product_id, product_name, source_id, pack_size, updated_at FROM products",
        sql_conn_id="faults_warehouse",
        peak_conn_id="peak_faults",
    )

# The canary-token test runs this DAG in success, 401, 500 and validation-error scenarios.
with DAG(dag_id="peak_test_secrets", schedule=None, start_date=START_DATE) as secrets_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql="SELECT * FROM products -- run {{ run_id }}",
        sql_conn_id="secrets_warehouse",
        peak_conn_id="peak_secrets",
        rejected_rows_path="{{ var.value.peak_rejects_dir }}/{{ run_id }}.jsonl",
    )
