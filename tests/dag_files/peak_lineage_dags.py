"""DAGs for the parse-safety, asset-event, watermark carry-over and OpenLineage tests (tests/operators/)."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import DAG
from peak_common import DAILY, SQL_DIR, START_DATE

from peak_provider.hooks.peak import PeakHook  # noqa: F401  (importing the hook must not read a connection)
from peak_provider.operators.peak import SqlToPeakOperator
from peak_provider.task_groups import peak_load_group

PRODUCTS_SQL = "SELECT product_id, source_id, pack_size, updated_at FROM products"

# Every public entry point, none of whose connections exist where the DAG is parsed.
with DAG(
    dag_id="peak_test_entry_points",
    schedule=DAILY,
    start_date=START_DATE,
    catchup=False,
    template_searchpath=[SQL_DIR],
) as entry_points_dag:
    SqlToPeakOperator(
        task_id="with_application",
        resource="products",
        application="inventory",
        sql=PRODUCTS_SQL,
        sql_conn_id="nowhere_warehouse",
        peak_conn_id="nowhere_peak",
    )
    SqlToPeakOperator(
        task_id="any_application",
        resource="sale",
        sql="SELECT * FROM sale",
        sql_conn_id="nowhere_warehouse",
        peak_conn_id="nowhere_peak",
        incremental_column="updated_at",
        incremental_mode="watermark",
    )
    SqlToPeakOperator(
        task_id="pinned",
        resource="products",
        sql=PRODUCTS_SQL,
        sql_conn_id="nowhere_warehouse",
        peak_conn_id="nowhere_peak",
        asset_uri="peak://service.peak.ai/INV_OOTB/INV_PRODUCTS_OOTB",
    )
    peak_load_group(
        "grouped_with_application",
        loads={"products": "inventory/products.sql", "customer_orders": "inventory/customer_orders.sql"},
        sql_conn_id="{{ var.value.get('nowhere_warehouse_id', 'nowhere_warehouse') }}",
        peak_conn_id="nowhere_peak",
        application="inventory",
    )
    peak_load_group(
        "grouped_any_application",
        loads={"sale": "b2c_pricing/sale.sql", "product": "b2c_pricing/product.sql"},
        sql_conn_id="nowhere_warehouse",
        peak_conn_id="nowhere_peak",
    )

# A watermark load whose outlet is the alias; the tests seed a mark under an older key.
with DAG(dag_id="peak_test_watermark", schedule=None, start_date=START_DATE) as watermark_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql=PRODUCTS_SQL,
        sql_conn_id="wm_warehouse",
        peak_conn_id="peak_wm",
        incremental_column="updated_at",
        incremental_mode="watermark",
    )

# A load that reads two tables, for the OpenLineage events (the test adds an invalid row to make it fail).
with DAG(dag_id="peak_test_lineage", schedule=None, start_date=START_DATE) as lineage_dag:
    SqlToPeakOperator(
        task_id="products",
        resource="products",
        sql=(
            "SELECT p.product_id, p.source_id, p.pack_size, p.updated_at "
            "FROM products p JOIN suppliers s ON s.supplier_id = p.source_id"
        ),
        sql_conn_id="ol_warehouse",
        peak_conn_id="peak_ol",
        max_rejected_rows=0,
    )
