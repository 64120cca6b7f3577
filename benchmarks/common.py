"""Constants and small helpers shared by the harness (``run.py``) and the load probes (``probe.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]

TOKEN = "benchmark-token"
SOLUTION_SPEC = "QP_OOTB:b2c_pricing:QP_:_OOTB"
SOLUTION = "QP_OOTB"
RESOURCE = "sale"
OBJECT = "QP_SALE_OOTB"
WAREHOUSE_CONN_ID = "bench_warehouse"
PEAK_CONN_ID = "peak_bench"
PROBE_MARKER = "PROBE_RESULT "  # prefixes the probe's one line of JSON on stdout

#: Every field of the b2c_pricing ``sale`` resource, in table order.
SALE_COLUMNS = (
    "location_id",
    "product_id",
    "sold_at",
    "customer_id",
    "sale_id",
    "demand_units",
    "demand_value",
    "return_units",
    "return_value",
    "sales_units",
    "sales_value",
    "created_at",
    "updated_at",
    "returned_at",
    "shipped_at",
)


def select_sql(table: str) -> str:
    """The warehouse query both the provider and the naive loop run."""
    return f"SELECT {', '.join(SALE_COLUMNS)} FROM {table}"


def env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def postgres_conn_json(params: dict[str, Any]) -> str:
    """An ``AIRFLOW_CONN_*`` value for the throwaway server of ``tests.pg.postgres_server``."""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": params["host"],
            "port": params["port"],
            "login": params["user"],
            "schema": params["dbname"],
        }
    )


def peak_conn_json(url: str, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value for a ``peak`` connection to the emulator's QP_OOTB solution."""
    base = {"solution_name": SOLUTION, "application": "b2c_pricing", "prefix": "QP_", "suffix": "_OOTB"}
    return json.dumps({"conn_type": "peak", "host": url, "password": TOKEN, "extra": {**base, **extra}})


def machine_busy() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)
