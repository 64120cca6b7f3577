"""Shared fixtures: an isolated AIRFLOW_HOME, ``peak`` connections from env vars, a capturing HTTP server."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="peak-test-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
