"""``python -m peak_provider.emulator`` / ``peak-emulator``: start, print, answer, stop on SIGTERM."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import requests

from peak_provider.emulator import cli


def _start(*args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "peak_provider.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Press Ctrl+C"):
            break
    text = "".join(lines)
    m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
    assert m, text + (proc.stderr.read() if proc.stderr else "")
    return proc, m.group(1), lines


def test_module_starts_prints_connections_answers_and_stops_on_sigterm(tmp_path):
    log = tmp_path / "access.log"
    proc, url, lines = _start(
        "--port",
        "0",
        "--token",
        "cli-token",
        "--solution",
        "INV_OOTB:inventory:INV_:_OOTB",
        "--solution",
        "QP_OOTB:b2c_pricing:QP_:_OOTB",
        "--rps",
        "5",
        "--access-log",
        str(log),
    )
    try:
        conns = [json.loads(line.split("=", 1)[1].strip().strip("'")) for line in lines if "AIRFLOW_CONN_" in line]
        assert conns == [
            {
                "conn_type": "peak",
                "host": url,
                "password": "cli-token",
                "extra": {"solution_name": "INV_OOTB", "application": "inventory", "prefix": "INV_", "suffix": "_OOTB"},
            },
            {
                "conn_type": "peak",
                "host": url,
                "password": "cli-token",
                "extra": {"solution_name": "QP_OOTB", "application": "b2c_pricing", "prefix": "QP_", "suffix": "_OOTB"},
            },
        ]
        body = {"solutionName": "INV_OOTB", "operationType": "UPSERT", "data": []}
        r = requests.post(
            url + "/ingestion-api/api/v2/ingest/object/INV_PRODUCTS_OOTB",
            json=body,
            headers={"Authorization": "cli-token"},
            timeout=5,
        )
        assert r.status_code == 200 and r.json()["status"] == "SUCCESS"
        assert requests.get(url + "/_emulator/stats", timeout=5).json()["requests_total"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "stopped" in out
    assert "cli-token" not in log.read_text()
    assert "POST /ingestion-api/api/v2/ingest/object/INV_PRODUCTS_OOTB 200 rows=0" in log.read_text()


def test_rate_limit_upsert_and_failed_entries_flags_reach_the_emulator():
    proc, url, lines = _start(
        "--port", "0", "--token", "t", "--rps", "5", "--rate-limit-mode", "fixed-window",
        "--rate-limit-scope", "token", "--upsert", "merge", "--failed-entries", "row",
    )  # fmt: skip
    try:
        banner = "".join(lines)
        assert "5 requests/s per token (fixed-window)" in banner
        assert "UPSERT: the sent columns overwrite the stored row's" in banner
        row = {"product_id": "P1", "source_id": "S1", "pack_size": 12, "updated_at": "2025-01-15 08:00:00"}
        answers = []
        for sent in ({**row, "product_name": "Widget"}, row, {**row, "pack_size": "x"}):
            body = {"solutionName": "INV_OOTB", "operationType": "UPSERT", "data": [sent]}
            r = requests.post(
                url + "/api/v2/ingest/object/INV_PRODUCTS_OOTB", json=body, headers={"Authorization": "t"}, timeout=5
            )
            assert r.status_code == 200
            answers.append(r.json())
        (entry,) = answers[-1]["failed"]  # the row only, no index
        assert "index" not in entry and entry["row"]["pack_size"] == "x"
        stored = requests.get(url + "/_emulator/objects/INV_PRODUCTS_OOTB", timeout=5).json()["rows"]
        assert stored == [{**row, "product_name": "Widget"}]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_defaults_are_one_tenant_token_bucket_replace():
    args = cli.build_parser().parse_args([])
    assert (args.rate_limit_mode, args.rate_limit_scope, args.upsert, args.failed_entries) == (
        "token-bucket",
        "tenant",
        "replace",
        "index+row",
    )


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "peak-emulator"
    exe = str(script) if script.exists() else shutil.which("peak-emulator")
    assert exe, "the peak-emulator console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    assert "--lost-response-rate" in out and "--base-path" in out


def test_refuses_a_remote_bind_without_allow_remote(capsys):
    assert cli.main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_rejects_a_bad_solution(capsys):
    assert cli.main(["--port", "0", "--solution", "X:nope"]) == 2
    assert "Unknown application" in capsys.readouterr().err
