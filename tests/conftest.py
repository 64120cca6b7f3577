"""Shared fixtures: an isolated AIRFLOW_HOME, ``peak`` connections from env vars, a capturing HTTP server;
and the session's end: a check that no process started by the tests outlives them, and the removal of
what the session wrote outside pytest's own temporary directories."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import processes
from tests.serving import serving

REPO = Path(__file__).resolve().parents[1]

# Before Airflow is imported: a throwaway AIRFLOW_HOME, and two DAG bundles, the example DAGs and the
# test-only DAGs (dag.test() runs only DAGs that live in a configured bundle).
SESSION_STARTED = time.time()
AIRFLOW_HOME = os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="peak-test-airflow-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path)},
        }
        for name, path in (("peak_dags", REPO / "dags"), ("peak_test_dags", REPO / "tests" / "dag_files"))
    ]
)
sys.path[:0] = [str(REPO / "dags"), str(REPO / "tests" / "dag_files")]


LEFTOVER_GRACE = 5.0  # seconds processes get to finish exiting at the session's end before they count as leaked

# Airflow's deprecations of its user-facing API fail the run wherever Airflow attributes them (its stacklevel
# may point inside Airflow although our code made the call); pyproject.toml fails any deprecation raised from
# our own modules. Named here, not in pyproject.toml, so Airflow is first imported after the environment above.
AIRFLOW_DEPRECATIONS = (
    ("airflow.exceptions", "RemovedInAirflow4Warning"),
    ("airflow.exceptions", "AirflowProviderDeprecationWarning"),
    ("airflow.sdk.exceptions", "RemovedInAirflow4Warning"),
)


def pytest_configure(config: pytest.Config) -> None:
    processes.become_subreaper()  # orphans of the processes tests start stay below pytest, where the check sees them
    for module, name in AIRFLOW_DEPRECATIONS:
        try:
            if hasattr(importlib.import_module(module), name):  # not every category exists on Airflow 2
                config.addinivalue_line("filterwarnings", f"error::{module}.{name}")
        except ImportError:
            continue
    config.addinivalue_line(
        "markers",
        "airflow3: needs Airflow 3 (dag bundles and dag.test() on the Execution API, airflow standalone's "
        "api-server, backfill create, task_state_store / asset_state_store, the React connection form)",
    )


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from airflow import __version__

    for item in items:
        if "airflow_db" in getattr(item, "fixturenames", ()):  # it runs `airflow db migrate`
            item.add_marker(pytest.mark.slow)
    if int(__version__.split(".")[0]) >= 3:
        return
    skip = pytest.mark.skip(reason=f"needs Airflow 3 features; this is Airflow {__version__}")
    for item in items:
        if "airflow3" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        _check_no_process_left(session)
    finally:
        _remove_session_files()


def _check_no_process_left(session: pytest.Session) -> None:
    """Fail the run if a process started by the tests is still alive (after a short grace); kill it."""
    deadline = time.monotonic() + LEFTOVER_GRACE
    while (leftovers := processes.live_descendants()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not leftovers:
        return
    lines = [processes.describe(p) for p in leftovers]
    processes.stop_tree(others=leftovers, grace=5)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "processes started by the tests were still running at the end (now killed):\n  " + "\n  ".join(lines)
    if reporter is not None:
        reporter.write("\n")  # after the progress line
        reporter.write_sep("=", "leaked processes", red=True)
        reporter.write_line(message)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _remove_session_files() -> None:
    """Remove the throwaway AIRFLOW_HOME (its metadata DB, logs) and the host request budgets the session
    drew from: each emulator listens on a new port, so each is a new tenant with its own file (a file
    removed under a live load is created again at its next draw, see ``HostSlots``)."""
    from peak_provider.ratecontrol import host_budget_dir

    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
    try:
        budgets = list(host_budget_dir().iterdir())
    except OSError:
        return
    for path in budgets:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= SESSION_STARTED:
                path.unlink()


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated metadata DB (SQLite in the throwaway AIRFLOW_HOME), for dag.test() runs."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict[str, Any]]:
    """A real PostgreSQL server for the whole session (started from the Debian binaries)."""
    from tests.pg import postgres_server

    with postgres_server() as params:
        yield params


@pytest.fixture
def postgres_conn_id(postgres: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow ``postgres`` connection (env var) to the session's server."""
    from tests.pg import postgres_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_PG_WAREHOUSE", postgres_conn_json(postgres))
    return "pg_warehouse"


@pytest.fixture
def peak_connection(monkeypatch: pytest.MonkeyPatch):
    """Define a ``peak`` connection through ``AIRFLOW_CONN_<ID>``; returns the conn id."""

    def make(
        conn_id: str = "peak_test",
        *,
        host: str,
        password: str | None = "test-token-123",
        **extra: Any,
    ) -> str:
        extra.setdefault("solution_name", "INV_OOTB")
        conn: dict[str, Any] = {"conn_type": "peak", "host": host, "extra": extra}
        if password is not None:
            conn["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CaptureServer:
    """A loopback server that records every request and answers 200 with an empty ``failed`` array."""

    url: str
    requests: list[Captured] = field(default_factory=list)


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    server_state: CaptureServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            server_state.requests.append(Captured(self.command, self.path, dict(self.headers), body))
            out = json.dumps({"status": "SUCCESS", "failed": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = _answer
        do_GET = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state = CaptureServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    with serving(httpd, "capture-server"):
        yield server_state
