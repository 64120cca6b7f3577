"""A canary Personal Access Token never leaks: run a DAG that succeeds, hits 401, hits 500s and raises
validation errors (with `airflow dags test`, as a user would), then search every task log, the
command output, every XCom, rendered template field and other metadata-DB row, the rejected-rows files
and the emulator's access log. TLS verification is on by default."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from peak_provider.connection import PeakSettings
from tests.airflow_services import AIRFLOW, REPO

CANARY = "canary-PAT-5f0c1d2e3a4b5c6d7e8f90123456789abcdef"


def run_dag(env: dict[str, str], day: int) -> str:
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "peak_test_secrets", f"2025-03-{day:02d}"],  # one date each: runs keep their XComs
        env=env,
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


def test_canary_token_never_leaks(peak_emulator_factory, tmp_path):
    home = tmp_path / "airflow"
    warehouse = tmp_path / "wh.db"
    with sqlite3.connect(warehouse) as db:
        db.execute("CREATE TABLE products (product_id TEXT, source_id TEXT, pack_size, updated_at TEXT)")
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?)", [(f"P{i}", "S", 1, "2025-03-01 00:00:00") for i in range(50)]
        )
    access_log = tmp_path / "emulator-access.log"
    accepting = peak_emulator_factory(tokens=[CANARY], access_log=str(access_log))
    refusing = peak_emulator_factory(tokens=["another-token-entirely"], access_log=str(access_log))
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "tests" / "dag_files"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "dags"), str(REPO / "tests" / "dag_files")]),
        "AIRFLOW_CONN_SECRETS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        "AIRFLOW_VAR_PEAK_REJECTS_DIR": str(tmp_path / "rejects"),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=base_env, check=True, capture_output=True)

    def env_for(emulator):
        extra = emulator.connection_extra("INV_OOTB", max_retries=1, retry_backoff=0.01)
        conn = {"conn_type": "peak", "host": emulator.url, "password": CANARY, "extra": extra}
        return {**base_env, "AIRFLOW_CONN_PEAK_SECRETS": json.dumps(conn)}

    outputs = {"success": run_dag(env_for(accepting), 1)}
    assert len(accepting.rows("INV_PRODUCTS_OOTB")) == 50, outputs["success"][-3000:]
    outputs["401"] = run_dag(env_for(refusing), 2)
    assert "PeakAuthError" in outputs["401"] and "HTTP 401" in outputs["401"]
    accepting.set_faults(error_rate=1.0, error_statuses=[500])
    outputs["500"] = run_dag(env_for(accepting), 3)
    assert "HTTP 500" in outputs["500"]
    accepting.set_faults(error_rate=0.0)
    with sqlite3.connect(warehouse) as db:
        db.execute("UPDATE products SET pack_size = 'lots', source_id = NULL WHERE product_id IN ('P1', 'P2')")
    outputs["validation"] = run_dag(env_for(accepting), 4)
    assert "PeakRejectedRowsError" in outputs["validation"] and "2 rows rejected" in outputs["validation"]

    searched: dict[str, str] = {f"`airflow dags test` output ({k})": v for k, v in outputs.items()}
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".txt", "") and "logs" in path.parts:
            searched[str(path)] = path.read_text(errors="replace")
    with sqlite3.connect(home / "airflow.db") as db:
        searched["metadata DB (xcom, rendered fields, task instances, audit log, …)"] = "\n".join(db.iterdump())
        xcoms = db.execute("SELECT value FROM xcom").fetchall()
        rendered = db.execute("SELECT rendered_fields FROM rendered_task_instance_fields").fetchall()
    assert xcoms and rendered  # there is something to search
    for path in (tmp_path / "rejects").glob("*.jsonl"):
        searched[str(path)] = path.read_text()
    searched["emulator access log"] = access_log.read_text()
    assert "POST /api/v2/ingest/object/INV_PRODUCTS_OOTB 401" in searched["emulator access log"]
    # `airflow dags test` runs tasks in-process: their logs are in its output (the scheduler-run tests
    # check the log files a real deployment writes, see tests/airflow_services.py)
    assert "Peak ingest: products -> INV_PRODUCTS_OOTB" in outputs["success"]

    leaks = [name for name, text in searched.items() if CANARY in text]
    assert not leaks, f"the canary token appears in: {leaks}"


def test_tls_verification_is_on_by_default():
    settings = PeakSettings.from_parts("c", "https://ingestion.peak.ai", None, {"solution_name": "S"})
    assert settings.verify is True


@pytest.mark.parametrize("verify", [True, False])
def test_tls_failure_is_reported_not_retried(verify, monkeypatch, tmp_path):
    """A self-signed HTTPS server: with verify on, the connection test and ingest fail with a TLS error."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from tests.tls import self_signed_cert

    cert, key = self_signed_cert(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b'{"solutions": [{"solutionName": "INV_OOTB"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = {
            "conn_type": "peak",
            "host": f"https://localhost:{server.server_address[1]}",
            "password": CANARY,
            "extra": {"solution_name": "INV_OOTB", "verify": verify},
        }
        monkeypatch.setenv("AIRFLOW_CONN_PEAK_TLS", json.dumps(conn))
        from peak_provider.hooks.peak import PeakHook

        ok, reason = PeakHook("peak_tls").test_connection()
        if verify:
            assert not ok and reason.startswith("TLS error") and CANARY not in reason
        else:
            assert ok, reason
    finally:
        server.shutdown()
