"""Constants and small helpers shared by the harness (``run.py``) and the load probes (``probe.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from peak_provider.emulator.config import DEFAULT_SOLUTIONS
from peak_provider.resources import get_application

REPO = Path(__file__).resolve().parents[1]

TOKEN = "benchmark-token"
QP = DEFAULT_SOLUTIONS[1]  # the emulator's QP_OOTB solution (b2c_pricing)
SOLUTION = QP.name
SOLUTION_SPEC = f"{QP.name}:{QP.application}:{QP.prefix}:{QP.suffix}"  # the emulator's --solution value
RESOURCE = "sale"
OBJECT = QP.object_name(get_application(QP.application).resource(RESOURCE).object)
WAREHOUSE_CONN_ID = "bench_warehouse"
PEAK_CONN_ID = "peak_bench"
PROBE_MARKER = "PROBE_RESULT "  # prefixes the probe's one line of JSON on stdout

#: Every field of the b2c_pricing ``sale`` resource, in catalogue (and table) order.
SALE_COLUMNS = tuple(f.name for f in get_application(QP.application).resource(RESOURCE).fields)


def select_sql(table: str) -> str:
    """The warehouse query both the provider and the naive loop run."""
    return f"SELECT {', '.join(SALE_COLUMNS)} FROM {table}"


def env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def peak_conn_json(url: str, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value for a ``peak`` connection to the emulator's QP_OOTB solution."""
    base = {"solution_name": QP.name, "application": QP.application, "prefix": QP.prefix, "suffix": QP.suffix}
    return json.dumps({"conn_type": "peak", "host": url, "password": TOKEN, "extra": {**base, **extra}})


def machine_busy() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)
