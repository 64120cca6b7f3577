"""The DAG of the CeleryExecutor test (tests/dags/test_celery.py): mapped loads of one table's slices.

Each mapped task APPENDs its own slice of the ``products`` table (``WHERE slice = ?``, the slice number
bound through ``parameters``) into one Peak tenant; under APPEND a row sent twice is stored twice.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG
from peak_common import START_DATE

from peak_provider.operators.peak import SqlToPeakOperator

#: Mapped tasks, one per slice of the table.
SLICES = 8

with DAG(dag_id="peak_test_celery", schedule=None, start_date=START_DATE, is_paused_upon_creation=False) as celery_dag:
    SqlToPeakOperator.partial(
        task_id="load_slice",
        resource="products",
        application="inventory",
        operation="APPEND",
        sql="SELECT product_id, source_id, pack_size, updated_at FROM products WHERE slice = ?",
        sql_conn_id="celery_warehouse",
        peak_conn_id="peak_celery",
    ).expand(parameters=[[n] for n in range(SLICES)])
