"""Tiny hostile HTTP servers on loopback: a handler function decides every answer; every request is recorded.

``handler(method, path, headers, body)`` returns ``(status, headers, body)``. Tests start servers with the
``hostile`` fixture (``tests/reliability/conftest.py``), which stops each at the end of the test, failed or not.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.serving import serving_thread

Answer = tuple[int, Mapping[str, str], bytes]
Handler = Callable[[str, str, Mapping[str, str], bytes], Answer]


@dataclass(frozen=True)
class Request:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def json_answer(payload: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def html_answer(html: str, status: int = 200) -> Answer:
    return status, {"Content-Type": "text/html; charset=utf-8"}, html.encode()


class HostileServer:
    """A ``ThreadingHTTPServer`` on ``127.0.0.1:0`` answering every request with ``handler``."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._thread = serving_thread(self._httpd, f"hostile-{self.port}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._sockets.add(self.connection)

            def finish(self) -> None:
                with suppress(OSError):
                    super().finish()
                with server._lock:
                    server._sockets.discard(self.connection)

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(self.command, self.path, dict(self.headers), body)
                with server._lock:
                    server.requests.append(request)
                status, headers, out = server.handler(request.method, request.path, request.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        return _Handler

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut every open connection and wait for the serving thread."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=5)
