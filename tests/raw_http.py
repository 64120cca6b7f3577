"""A tiny raw-socket HTTP server on loopback for hostile-network tests: it reads each request, then a test's
``answer`` writes whatever bytes it likes (a cut body, broken chunks, a trickle, nothing at all)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType


@dataclass
class RawRequest:
    """One request as the server read it; ``number`` counts requests from 1."""

    number: int
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


def response(status: int, body: bytes = b"", headers: dict[str, str] | None = None, reason: str = "X") -> bytes:
    """A whole HTTP/1.1 answer with ``Content-Length`` and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Answer = Callable[[socket.socket, RawRequest, threading.Event], None]


class RawServer:
    """Serve ``answer`` on ``127.0.0.1`` (one request per connection), in threads stopped on exit.

    ``answer(sock, request, stop)`` writes to the client socket; the server closes it afterwards. ``stop`` is
    set when the server shuts down, so a trickling answer ends with the test. With ``tls``, each accepted
    socket is wrapped server-side first (a failed handshake counts as a connection, not a request). With
    ``keep_alive``, the server reads and answers further requests on a connection until the client closes it
    (the answers must then not say ``Connection: close``).
    """

    def __init__(self, answer: Answer, *, tls: ssl.SSLContext | None = None, keep_alive: bool = False):
        self.answer = answer
        self.tls = tls
        self.keep_alive = keep_alive
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{self.port}"
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> RawServer:
        self._start(self._accept_loop)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop now, not at its next timeout
        self._threads[0].join(timeout=10)  # the accept loop: no connection starts after it
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads[1:]:
            thread.join(timeout=10)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"raw server threads still running: {alive}"

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"raw-http-{self.port}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(sock)
            self._start(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(10)
            if self.tls is not None:
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with self._lock:
                    self._sockets.append(sock)
            while (request := self._read(sock)) is not None:
                self.answer(sock, request, self.stop)
                if not self.keep_alive:
                    break
        except OSError:
            pass  # the client went away: what some answers provoke
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _read(self, sock: socket.socket) -> RawRequest | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
        method, path, _ = request_line.split(" ", 2)
        with self._lock:
            request = RawRequest(len(self.requests) + 1, method, path, headers, body)
            self.requests.append(request)
        return request


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
