"""Daily incremental load of the inventory application: products and locations, then orders."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG
from peak_common import DAILY, DEFAULT_ARGS, LOAD_ARGS, SQL_DIR, START_DATE, WAREHOUSE_CONN_ID

from peak_provider.task_groups import peak_load_group

with DAG(
    dag_id="peak_inventory_incremental",
    description="Rows changed in each day's interval -> Peak inventory objects (INV_…)",
    schedule=DAILY,
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    template_searchpath=[SQL_DIR],
    tags=["peak", "inventory"],
) as dag:
    peak_load_group(
        "inventory",
        loads={
            "products": "inventory/products.sql",
            "locations": "inventory/locations.sql",
            "customer_orders": "inventory/customer_orders.sql",
            "manufacturing_orders": "inventory/manufacturing_orders.sql",
        },
        sql_conn_id=WAREHOUSE_CONN_ID,
        peak_conn_id="peak_inventory",
        application="inventory",
        **LOAD_ARGS,
    )

if __name__ == "__main__":
    dag.test()
