"""The measurement harness: a warehouse, emulator processes, and one fresh probe process per load."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from benchmarks.common import (
    PEAK_CONN_ID,
    PROBE_MARKER,
    REPO,
    WAREHOUSE_CONN_ID,
    env_var,
    machine_busy,
    peak_conn_json,
)
from benchmarks.emulator_proc import EmulatorProcess
from benchmarks.warehouse import connect
from tests.pg import postgres_conn_json


@dataclass
class Run:
    """One measured load (one probe process) and what the emulator saw of it."""

    variant: str
    table_rows: int
    rows: int
    seconds: float
    requests: int
    status_429: int
    bytes_received: int
    cpu: dict[str, float]
    rss_before_mb: float
    peak_rss_mb: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def client_rows_per_cpu_s(self) -> float:
        return self.rows / max(self.cpu["client"], 1e-9)

    def cpu_us_per_row(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / max(self.rows, 1) * 1e6

    def cores(self, name: str) -> float:
        """Average cores a process used during the load (``other``: everything else on the machine)."""
        if name == "other":
            ours = sum(v for k, v in self.cpu.items() if k != "machine")
            return max(0.0, self.cpu["machine"] - ours) / self.seconds
        return self.cpu.get(name, 0.0) / self.seconds


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children and its reaped children (PostgreSQL backends)."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in root.children():
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


@dataclass
class Quiet:
    """Wait for an idle machine before each load: other work on a small box skews every figure.

    :param max_wait: longest wait before one load, in seconds (0 never waits).
    :param budget: longest total wait over the whole benchmark, so a busy machine cannot stretch it.
    :param threshold: cores busy (over ``window`` seconds) below which the machine counts as idle.
    """

    max_wait: float = 0.0
    budget: float = 150.0
    threshold: float = 0.25
    window: float = 2.0
    waited: float = 0.0
    gave_up: int = 0

    def wait(self) -> None:
        started = time.monotonic()
        limit = min(self.max_wait, max(0.0, self.budget - self.waited))
        idle = not self.max_wait
        while not idle and time.monotonic() - started < limit:
            busy0 = machine_busy()
            time.sleep(self.window)
            idle = (machine_busy() - busy0) / self.window < self.threshold
        self.gave_up += not idle
        self.waited += time.monotonic() - started


def postmaster_pid(params: dict[str, Any]) -> int:
    """The PostgreSQL server process (parent of a backend), to account for its CPU."""
    with connect(params) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return psutil.Process(int(row[0])).ppid()


@dataclass
class Bench:
    """Everything a scenario needs: the warehouse, the probe environment and the run count."""

    pg: dict[str, Any]
    runs: int
    airflow_home: str  # a scratch AIRFLOW_HOME for the probes
    quiet: Quiet = field(default_factory=Quiet)

    def __post_init__(self) -> None:
        self.pg_pid = postmaster_pid(self.pg)

    def probe_env(self, emulator: EmulatorProcess, extra: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ, AIRFLOW_HOME=self.airflow_home, AIRFLOW__CORE__LOAD_EXAMPLES="False")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env[env_var(WAREHOUSE_CONN_ID)] = postgres_conn_json(self.pg)
        env[env_var(PEAK_CONN_ID)] = peak_conn_json(emulator.url, **extra)
        return env

    def measure(
        self,
        emulator: EmulatorProcess,
        mode: str,
        table: tuple[str, int],
        conn_extra: dict[str, Any],
        prefix: list[str] | None = None,
        label: str | None = None,
        **spec_extra: Any,
    ) -> Run:
        """Reset the emulator, run one load in a fresh process, and read the emulator's counters.

        The emulator's and PostgreSQL's CPU is read around the whole probe process: both are idle while
        it imports, so that is their CPU for the load.
        """
        emulator.reset()
        self.quiet.wait()
        spec = {"mode": mode, "table": table[0], "ingest_url": emulator.ingest_url, **spec_extra}
        servers = {"emulator": emulator.pid, "postgres": self.pg_pid}
        before = {name: tree_cpu(pid) for name, pid in servers.items()}
        result = run_probe(spec, self.probe_env(emulator, conn_extra), prefix or [])
        stats = emulator.stats()  # also lets PostgreSQL reap the probe's backend before it is read
        cpu = {**result["cpu"], **{name: tree_cpu(pid) - before[name] for name, pid in servers.items()}}
        return Run(
            variant=label or mode,
            table_rows=table[1],
            rows=int(result["rows_accepted"]),
            seconds=float(result["seconds"]),
            requests=int(result["requests"]),
            status_429=int(stats["requests_by_status"].get("429", 0)),
            bytes_received=int(stats["bytes_received"]),
            cpu=cpu,
            rss_before_mb=float(result["rss_before_mb"]),
            peak_rss_mb=float(result["peak_rss_mb"]),
        )


PROBE_TIMEOUT = 900  # seconds; the slowest full-size load takes about one minute


def run_probe(spec: dict[str, Any], env: dict[str, str], prefix: list[str]) -> dict[str, Any]:
    """``python -m benchmarks.probe SPEC`` (optionally under ``prefix``, e.g. a profiler); its result."""
    cmd = [*prefix, sys.executable, "-m", "benchmarks.probe", json.dumps(spec)]
    try:
        done = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"probe {spec['mode']} on {spec['table']} took over {PROBE_TIMEOUT} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(PROBE_MARKER)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout)[-4000:]
        raise RuntimeError(f"probe {spec['mode']} on {spec['table']} failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1][len(PROBE_MARKER) :])
    if result["rows_accepted"] != result["rows_read"]:
        raise RuntimeError(f"probe {spec['mode']}: {result['rows_read']} rows read, {result['rows_accepted']} accepted")
    return result
