"""One measured load in a fresh process: ``python -m benchmarks.probe '<spec JSON>'``.

Runs either ``SqlToPeakOperator`` (``"mode": "provider"``) or the naive loop (``"mode": "naive"``) once
and prints one line ``PROBE_RESULT {json}``: rows, wall seconds, peak RSS (``ru_maxrss``) after the
imports and at the end, and the CPU seconds this process and the whole machine spent during the load.
Connections come from the ``AIRFLOW_CONN_*`` environment the harness sets.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from benchmarks.common import (
    PEAK_CONN_ID,
    PROBE_MARKER,
    RESOURCE,
    SALE_COLUMNS,
    SOLUTION,
    TOKEN,
    WAREHOUSE_CONN_ID,
    machine_busy,
    select_sql,
)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_snapshot() -> dict[str, float]:
    return {"client": _own_cpu(), "machine": machine_busy()}


def run_provider(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute the operator outside a DAG with a hand-built context, as the operator tests do."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from peak_provider.operators.peak import SqlToPeakOperator

    task = SqlToPeakOperator(
        task_id="bench_load",
        resource=RESOURCE,
        sql=select_sql(spec["table"]),
        sql_conn_id=WAREHOUSE_CONN_ID,
        peak_conn_id=PEAK_CONN_ID,
        dry_run=spec.get("dry_run", False),
    )
    summary = task.execute({"outlet_events": OutletEventAccessors()})
    return {k: summary[k] for k in ("rows_read", "rows_accepted", "requests")}


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """``DbApiHook.get_records`` + the sequential POST loop of :mod:`benchmarks.naive`."""
    from airflow.providers.common.compat.sdk import BaseHook

    from benchmarks.naive import naive_load

    records = BaseHook.get_connection(WAREHOUSE_CONN_ID).get_hook().get_records(select_sql(spec["table"]))
    accepted, requests_sent = naive_load(
        records,
        SALE_COLUMNS,
        url=spec["ingest_url"],
        token=TOKEN,
        solution=SOLUTION,
        batch_rows=spec["batch_rows"],
        dry_run=spec.get("dry_run", False),
    )
    return {"rows_read": len(records), "rows_accepted": accepted, "requests": requests_sent}


def _warm_imports() -> None:
    """Import what either load needs before measuring, so both modes start from the same footing."""
    import requests  # noqa: F401
    from airflow.providers.common.compat.sdk import BaseHook
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
    from airflow.sdk.execution_time.context import OutletEventAccessors  # noqa: F401

    from peak_provider.operators.peak import SqlToPeakOperator  # noqa: F401

    BaseHook.get_connection(WAREHOUSE_CONN_ID)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load of ``spec`` once and measure it."""
    _warm_imports()
    rss_before = _maxrss_mb()
    cpu0, t0 = cpu_snapshot(), time.perf_counter()
    run = run_provider if spec["mode"] == "provider" else run_naive
    counts = run(spec)
    seconds = time.perf_counter() - t0
    cpu1 = cpu_snapshot()
    return {
        **counts,
        "seconds": seconds,
        "cpu": {name: cpu1[name] - cpu0[name] for name in cpu0},
        "rss_before_mb": rss_before,
        "peak_rss_mb": _maxrss_mb(),
    }


def main() -> None:
    result = measure(json.loads(sys.argv[1]))
    print(PROBE_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
