"""The PostgreSQL warehouse: realistic b2c ``sale`` tables generated server-side with ``generate_series``."""

from __future__ import annotations

from typing import Any

import psycopg

#: Rows of every table are spread over this many days of ``sold_at``.
DAYS = 90

_DDL = """
CREATE TABLE {table} (
    location_id text NOT NULL,
    product_id text NOT NULL,
    sold_at timestamptz NOT NULL,
    customer_id text,
    sale_id text,
    demand_units numeric(12, 3),
    demand_value numeric(14, 2),
    return_units integer,
    return_value numeric(14, 2),
    sales_units integer,
    sales_value numeric(14, 2),
    created_at timestamptz,
    updated_at timestamptz,
    returned_at timestamptz,
    shipped_at timestamptz
)
"""

# One row per i: 250 stores, 25,000 products, 20% anonymous customers (NULL), skewed unit counts,
# 10% lost demand, 5% returns (NULL returned_at/return_value otherwise), 10% not shipped yet (NULL).
_FILL = """
INSERT INTO {table}
SELECT
    'LOC-' || lpad(loc::text, 4, '0'),
    'PROD-' || lpad(prod::text, 6, '0'),
    sold_at,
    CASE WHEN r_cust < 0.2 THEN NULL ELSE 'CUST-' || lpad(cust::text, 7, '0') END,
    'SALE-' || lpad(i::text, 10, '0'),
    (units + lost)::numeric(12, 3),
    round((units + lost) * price, 2),
    returns,
    CASE WHEN returns > 0 THEN round(returns * price, 2) END,
    units,
    round(units * price, 2),
    sold_at - interval '3 minutes',
    sold_at + (r_upd * 36)::int * interval '1 hour',
    CASE WHEN returns > 0 THEN sold_at + (1 + r_upd * 20)::int * interval '1 day' END,
    CASE WHEN r_ship < 0.1 THEN NULL ELSE sold_at + (2 + r_ship * 70)::int * interval '1 hour' END
FROM (
    SELECT
        i,
        timestamptz '2025-01-01 00:00:00+00' + i * {step} * interval '1 second' AS sold_at,
        1 + (random() * 249)::int AS loc,
        1 + (random() * 24999)::int AS prod,
        1 + (random() * 499999)::int AS cust,
        1 + (random() ^ 3 * 11)::int AS units,
        CASE WHEN random() < 0.1 THEN 1 ELSE 0 END AS lost,
        CASE WHEN random() < 0.05 THEN 1 ELSE 0 END AS returns,
        round((1.99 + random() * 248)::numeric, 2) AS price,
        random() AS r_cust,
        random() AS r_upd,
        random() AS r_ship
    FROM generate_series(1, {rows}) AS i
) AS s
"""


def connect(params: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"], dbname=params["dbname"], autocommit=True
    )


def create_sale_table(params: dict[str, Any], table: str, rows: int) -> None:
    """(Re)create ``table`` with ``rows`` sales, unique on (location_id, product_id, sold_at), then VACUUM it."""
    step = max(1, DAYS * 86_400 // max(rows, 1))
    with connect(params) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(_DDL.format(table=table))
        conn.execute("SELECT setseed(0.42)")
        conn.execute(_FILL.format(table=table, step=step, rows=int(rows)))
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")  # hint bits set now, not during the first timed read


def server_version(params: dict[str, Any]) -> str:
    with connect(params) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"
