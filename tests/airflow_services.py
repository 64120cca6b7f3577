"""Run a real Airflow 3 deployment for a test: `airflow standalone` in a throwaway AIRFLOW_HOME.

The metadata DB is a fresh PostgreSQL database (SQLite locks up under a scheduler plus CLI commands);
connections come through the environment, which the scheduler's task processes inherit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.pg import free_port
from tests.processes import stop_tree

AIRFLOW = str(Path(sys.executable).parent / "airflow")
REPO = Path(__file__).resolve().parents[1]


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@contextmanager
def admin_cursor(postgres: dict[str, Any]) -> Iterator[Any]:
    """An autocommit cursor on the test server's ``postgres`` database (for CREATE/DROP DATABASE, roles)."""
    import psycopg2

    conn = psycopg2.connect(host=postgres["host"], port=postgres["port"], user=postgres["user"], dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def fresh_database(postgres: dict[str, Any], name: str) -> str:
    """Create (or re-create) database ``name`` on the test server; return its SQLAlchemy URL."""
    with admin_cursor(postgres) as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://{postgres['user']}@{postgres['host']}:{postgres['port']}/{name}"


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until an Airflow api-server at ``url`` answers its health check (or fail with its log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"Airflow at {url} did not come up: " + log.read_text()[-3000:])
        time.sleep(0.5)


def wait_for(check: Callable[[], Any], what: str, timeout: float, logs: Path) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the tails of the ``*.log`` files in ``logs``.

    ``requests`` errors, ``ValueError`` and ``KeyError`` count as "not yet"; any other exception ends the wait.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def stop_process_group(*procs: subprocess.Popen) -> None:
    """Stop processes started with ``start_new_session=True``: their groups and every descendant get
    SIGTERM, then SIGKILL after 30 s even if the leader has exited (:func:`tests.processes.stop_tree`)."""
    stop_tree(procs, grace=30)


def run_captured(command: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Run ``command`` in its own session; return its exit code and output (stdout + stderr). It and every
    process it started are stopped when it returns or overruns."""
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop_tree([proc], grace=30)
    return proc.returncode, out


@dataclass
class Airflow:
    env: dict[str, str]
    dsn: str  # libpq DSN of the metadata DB, for polling
    log: Path
    url: str
    pid: int = 0  # the standalone process; its descendants are this deployment's processes

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode:
            raise AssertionError(f"airflow {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done

    def assert_never_logged(self, secret: str) -> None:
        """The secret is in no task log file, not in the deployment's output, and in no metadata-DB row."""
        texts = {
            str(p): p.read_text(errors="replace")
            for p in (self.log.parent / "airflow" / "logs").rglob("*")
            if p.is_file()
        }
        assert any("Peak ingest:" in t for t in texts.values()), "no task log files to search"
        texts[str(self.log)] = self.log.read_text(errors="replace")
        for table in ("xcom", "rendered_task_instance_fields", "task_instance", "log", "dag_run"):
            texts[f"metadata table {table}"] = repr(query(self.dsn, f"SELECT * FROM {table}"))
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"the token appears in: {leaks}"

    def task_logs(self, tail: int = 3000) -> str:
        """The tails of this deployment's task log files, failed attempts first: the reason a run failed."""
        files = sorted(
            (p for p in (self.log.parent / "airflow" / "logs").rglob("*") if p.is_file()),
            key=lambda p: ('"level":"error"' not in p.read_text(errors="replace"), str(p)),
        )
        return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-tail:]}" for p in files[:3])

    def runs(self, dag_id: str) -> dict[str, str]:
        return dict(query(self.dsn, "SELECT run_id, state FROM dag_run WHERE dag_id = %s", (dag_id,)))

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 300) -> dict[str, str]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            runs = self.runs(dag_id)
            if len(runs) >= count and all(s in ("success", "failed") for s in runs.values()):
                return runs
            time.sleep(1)
        raise AssertionError(
            f"runs of {dag_id} did not finish: {self.runs(dag_id)}; log: {self.log.read_text()[-3000:]}"
        )


@contextmanager
def standalone(
    tmp_path: Path, metadata_db: str, env: dict[str, str], unpause: tuple[str, ...] = ()
) -> Iterator[Airflow]:
    """Start `airflow standalone` (api-server, scheduler, dag-processor, triggerer) and wait for health."""
    port = free_port()
    full_env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        # test-bundle DAGs import dags/peak_common.py (Airflow puts only [core] dags_folder on the path)
        "PYTHONPATH": os.pathsep.join([str(REPO / "dags"), str(REPO / "tests" / "dag_files")]),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "peak-test-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789ab",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        **env,
    }
    airflow = Airflow(
        full_env, metadata_db.replace("+psycopg", ""), tmp_path / "standalone.log", f"http://127.0.0.1:{port}"
    )
    airflow.cli("db", "migrate")
    airflow.cli("dags", "reserialize")
    for dag_id in unpause:
        airflow.cli("dags", "unpause", dag_id)
    with airflow.log.open("w") as log:
        proc = subprocess.Popen(
            [AIRFLOW, "standalone"], env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        airflow.pid = proc.pid
        try:
            wait_healthy(airflow.url, proc, airflow.log)
            yield airflow
        finally:
            stop_process_group(proc)
