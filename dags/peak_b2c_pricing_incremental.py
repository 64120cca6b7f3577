"""Daily incremental load of the B2C pricing application: product and location, then purchase orders and sales."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG
from peak_common import DAILY, DEFAULT_ARGS, LOAD_ARGS, SQL_DIR, START_DATE, WAREHOUSE_CONN_ID

from peak_provider.task_groups import peak_load_group

with DAG(
    dag_id="peak_b2c_pricing_incremental",
    description="Rows changed in each day's interval -> Peak B2C pricing objects (QP_…)",
    schedule=DAILY,
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    template_searchpath=[SQL_DIR],
    tags=["peak", "b2c_pricing"],
) as dag:
    peak_load_group(
        "b2c_pricing",
        loads={
            "product": "b2c_pricing/product.sql",
            "location": "b2c_pricing/location.sql",
            "purchase_order": "b2c_pricing/purchase_order.sql",
            "sale": "b2c_pricing/sale.sql",
        },
        sql_conn_id=WAREHOUSE_CONN_ID,
        peak_conn_id="peak_b2c_pricing",
        application="b2c_pricing",
        **LOAD_ARGS,
    )

if __name__ == "__main__":
    dag.test()
