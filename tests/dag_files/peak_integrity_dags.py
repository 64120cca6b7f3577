"""DAGs of the integrity tests (issue #12): APPEND loads that Airflow retries, each retry resuming from
the checkpoint the earlier attempts left in ``task_state_store``."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.common.compat.sdk import DAG
from peak_common import START_DATE

from peak_provider.operators.peak import SqlToPeakOperator

#: Rows of the test's warehouse that the client rejects in the resume test: all of them are allowed.
INVALID_ROWS = 50
#: The sink of rejected and in-doubt rows: one file per run, shared by the run's attempts.
REJECTS = "{{ var.value.peak_rejects_dir }}/{{ run_id }}/products.jsonl"

# 30,000 rows appended under lost answers: three attempts, each continuing after what the earlier settled.
# The test reads the summary, so the in-doubt rows (reported in the sink) do not fail the task here.
with DAG(dag_id="peak_test_append_retries", schedule=None, start_date=START_DATE) as append_retries_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        operation="APPEND",
        sql="SELECT product_id, source_id, pack_size, updated_at FROM products",
        sql_conn_id="integrity_warehouse",
        peak_conn_id="peak_integrity",
        rejected_rows_path=REJECTS,
        max_in_doubt_rows=30_000,
        retries=2,
        retry_delay=timedelta(0),
    )

# An APPEND load with invalid rows whose first attempt fails mid-load: the retry's counts, its
# max_rejected_rows check and the sink cover both attempts.
with DAG(dag_id="peak_test_resume_rejections", schedule=None, start_date=START_DATE) as resume_rejections_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        operation="APPEND",
        sql="SELECT product_id, source_id, pack_size, updated_at FROM products",
        sql_conn_id="integrity_warehouse",
        peak_conn_id="peak_integrity",
        rejected_rows_path=REJECTS,
        max_rejected_rows=INVALID_ROWS,
        max_in_doubt_rows=500,
        retries=1,
        retry_delay=timedelta(0),
    )
