"""K worker processes loading into one tenant at once: ``python -m benchmarks.fleet '<spec JSON>'``.

The parent imports Airflow and the provider once, then forks ``workers`` processes, as Celery's prefork
pool and Airflow's LocalExecutor do, so that 16 workers do not spend the first half minute importing
Airflow on 2 cores. Each worker runs ``SqlToPeakOperator`` (APPEND) on its own slice of ``sale_id``s
of the table. It builds its hook and rate control after the fork, so nothing is shared but the tenant (and
Redis, for the shared budget). A barrier releases all workers at once. The parent prints one line
``PROBE_RESULT {json}``. The line gives each worker's summary or error, and when it started and finished
(wall clock, which the emulator's request log also uses). It also gives the CPU seconds of the workers and
of the whole machine from the release to the last worker's exit, and how long that took.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

from benchmarks.common import PEAK_CONN_ID, PROBE_MARKER, RESOURCE, WAREHOUSE_CONN_ID, machine_busy, select_sql

#: Summary fields each worker reports.
SUMMARY = ("rows_read", "rows_accepted", "requests", "retries", "throttled", "throttle_wait_seconds")
BARRIER_TIMEOUT = 120.0  # seconds for every worker to be forked and ready


def slice_sql(table: str, rows: int, workers: int, index: int) -> str:
    """The query of worker ``index``: its contiguous share of rows 1..``rows`` by ``sale_id``."""
    low, high = rows * index // workers, rows * (index + 1) // workers
    return f"{select_sql(table)} WHERE sale_id > 'SALE-{low:010d}' AND sale_id <= 'SALE-{high:010d}'"


def _load(sql: str) -> dict[str, Any]:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from peak_provider.operators.peak import SqlToPeakOperator

    task = SqlToPeakOperator(
        task_id="bench_tenant_load",
        resource=RESOURCE,
        sql=sql,
        sql_conn_id=WAREHOUSE_CONN_ID,
        peak_conn_id=PEAK_CONN_ID,
        operation="APPEND",
    )
    summary = task.execute({"outlet_events": OutletEventAccessors()})
    return {k: summary[k] for k in SUMMARY}


def _worker(sql: str, barrier: Barrier, out: Connection) -> None:
    """One worker process: wait for the others, load its slice, send back what happened."""
    report: dict[str, Any] = {"error": None}
    try:
        barrier.wait(BARRIER_TIMEOUT)
        report["started"] = time.time()
        report.update(_load(sql))
    except BaseException as exc:  # reported, not raised: the parent counts failed workers
        report["error"] = f"{type(exc).__name__}: {exc}"[:500]
    report["ended"] = time.time()
    out.send(report)
    out.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _warm_imports() -> None:
    """Import, before the fork, what every worker would otherwise import on its own at the start of its load.

    A Celery prefork worker has these loaded after its first task. Otherwise 16 workers pay ~0.15 s of CPU
    each on 2 cores just as they start sending.
    """
    import netrc  # noqa: F401  (requests reads ~/.netrc per session)

    import airflow.providers.common.compat.assets  # the asset event of the load
    import airflow.sdk.lineage  # noqa: F401  (hook lineage)

    from benchmarks import probe

    probe._warm_imports()


def run_fleet(spec: dict[str, Any]) -> dict[str, Any]:
    """Fork ``spec["workers"]`` workers, release them together, and collect their reports."""
    _warm_imports()
    workers = int(spec["workers"])
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers + 1)
    pipes, procs = [], []
    for index in range(workers):
        receive, send = ctx.Pipe(duplex=False)
        sql = slice_sql(spec["table"], int(spec["rows"]), workers, index)
        proc = ctx.Process(target=_worker, args=(sql, barrier, send), name=f"bench-worker-{index}")
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    barrier.wait(BARRIER_TIMEOUT)
    cpu0, busy0, t0 = _children_cpu(), machine_busy(), time.monotonic()
    reports = []
    for index, (receive, proc) in enumerate(zip(pipes, procs, strict=True)):
        try:
            report = receive.recv()
        except EOFError:
            report = {"error": f"worker {index} died without a report", "ended": time.time()}
        proc.join()
        if proc.exitcode and not report.get("error"):
            report["error"] = f"worker {index} exited with {proc.exitcode}"
        reports.append(report)
    cpu = {"workers": _children_cpu() - cpu0, "machine": machine_busy() - busy0}
    return {"workers": reports, "cpu": cpu, "seconds": time.monotonic() - t0}


def main() -> None:
    result = run_fleet(json.loads(sys.argv[1]))
    print(PROBE_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
