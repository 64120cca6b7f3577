"""The HTTP layer (keep-alive ``ThreadingHTTPServer``) and the :class:`Emulator` facade."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from peak_provider.emulator import errors
from peak_provider.emulator.api import EmulatorApp, Request
from peak_provider.emulator.catalog import Catalog
from peak_provider.emulator.config import DEFAULT_FAILED_ENTRIES, DEFAULT_SOLUTIONS, DEFAULT_UPSERT, Limits, Solution
from peak_provider.emulator.errors import ApiError
from peak_provider.emulator.faults import Faults
from peak_provider.emulator.stats import Recorder
from peak_provider.emulator.store import Store
from peak_provider.net import is_loopback, is_loopback_literal

#: Bodies over the byte limit are read and discarded up to this size (so the 413 reaches the
#: client); beyond it the connection is closed after the response.
_DRAIN_LIMIT = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, hands it to :class:`EmulatorApp`, writes the answer in one ``write``."""

    protocol_version = "HTTP/1.1"
    server_version = "PeakIngestionEmulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging (the optional access log is written by the recorder)."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _handle(self) -> None:
        app = self.server.app
        t = time.time()
        try:
            body, size, too_large = self._read_body(app.limits.max_request_bytes)
        except _BadRequest as exc:
            self.close_connection = True
            err = ApiError(400, errors.INVALID_BODY, "REQUEST", str(exc))
            self._send(err.status, json.dumps(err.body()).encode(), {})
            return
        except OSError:
            self.close_connection = True
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=split.path,
            query=split.query,
            authorization=self.headers.get("Authorization"),
            body=body,
            size=size,
            too_large=too_large,
            client_is_loopback=is_loopback_literal(self.client_address[0]),
            t=t,
        )
        outcome = app.handle(req)
        if outcome.status is None:
            self.close_connection = True
            return
        self._send(outcome.status, outcome.body, outcome.headers)

    def _read_body(self, limit: int | None) -> tuple[bytes, int, bool]:
        """``(body, size, too_large)``; an over-limit body is drained and not kept."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return b"", 0, False
        try:
            n = int(length)
        except ValueError:
            raise _BadRequest("Invalid Content-Length") from None
        if n < 0:
            raise _BadRequest("Invalid Content-Length")
        if limit and n > limit:
            if n > _DRAIN_LIMIT:
                self.close_connection = True
            else:
                left = n
                while left > 0:
                    got = self.rfile.read(min(left, _CHUNK))
                    if not got:
                        raise OSError("client went away")
                    left -= len(got)
            return b"", n, True
        data = self.rfile.read(n)
        if len(data) < n:
            raise OSError("client went away")
        return data, n, False

    def _read_chunked(self, limit: int | None) -> tuple[bytes, int, bool]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("Invalid chunk size") from None
            if n == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                break
            chunk = self.rfile.read(n)
            self.rfile.readline(8)
            if len(chunk) < n:
                raise OSError("client went away")
            size += n
            if size > _DRAIN_LIMIT:
                self.close_connection = True
                return b"", size, True
            if not limit or size <= limit:
                parts.append(chunk)
        too_large = bool(limit) and size > (limit or 0)
        return (b"" if too_large else b"".join(parts)), size, too_large

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """Thread per connection; tracks open connections so :meth:`close_connections` can end them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: EmulatorApp, family: socket.AddressFamily):
        self.address_family = family
        self.app = app
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Emulator:
    """A local, offline Peak ingestion API.

    :param tokens: accepted API tokens (the raw ``Authorization`` header value); one is generated
        when none is given.
    :param solutions: :class:`Solution` objects or ``NAME:APPLICATION:PREFIX:SUFFIX`` strings;
        defaults to ``INV_OOTB`` (inventory) and ``QP_OOTB`` (b2c_pricing).
    :param db: sqlite path, ``":memory:"`` by default.
    :param limits: request limits and how the rate limit is enforced (:class:`Limits`).
    :param upsert: ``"replace"`` (default) stores the sent row in place of the stored one with the same
        primary key; ``"merge"`` writes only the sent columns over it.
    :param failed_entries: how the answer's ``failed`` entries name their rows: ``"index+row"`` (default),
        ``"index"`` or ``"row"`` (see :data:`~peak_provider.emulator.config.FAILED_ENTRY_SHAPES`).
    :param faults: fault injection (:class:`Faults` or a dict of its fields); :meth:`reset` restores it.
    :param port: ``0`` picks a free port.
    :param base_paths: path prefixes the API is served under (``""`` is the root).
    :param allow_remote: needed to bind to a non-loopback address.
    :param access_log: a path or text stream for one line per API request (never headers).
    """

    def __init__(
        self,
        tokens: str | Iterable[str] | None = None,
        solutions: Iterable[Solution | str] | None = None,
        db: str = ":memory:",
        limits: Limits | None = None,
        faults: Faults | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        base_paths: Iterable[str] = ("", "/ingestion-api"),
        *,
        allow_remote: bool = False,
        access_log: str | IO[str] | None = None,
        request_log_size: int = 100_000,
        upsert: str = DEFAULT_UPSERT,
        failed_entries: str = DEFAULT_FAILED_ENTRIES,
    ):
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"Refusing to bind to non-loopback host {host!r}; pass allow_remote=True (--allow-remote) to do so"
            )
        if tokens is None:
            tokens = [secrets.token_urlsafe(24)]
        elif isinstance(tokens, str):
            tokens = [tokens]
        self.tokens = tuple(tokens)
        if not self.tokens or not all(self.tokens):
            raise ValueError("Tokens must be non-empty strings")
        self.solutions = tuple(Solution.parse(s) if isinstance(s, str) else s for s in (solutions or DEFAULT_SOLUTIONS))
        self.limits = limits or Limits()
        self.host = host
        self._requested_port = port
        self._port = port
        self._access_log_path = access_log if isinstance(access_log, str) else None
        self._log_file: IO[str] | None = None
        stream = None if isinstance(access_log, str) else access_log
        self.app = EmulatorApp(
            tokens=self.tokens,
            catalog=Catalog(self.solutions),
            store=Store(db, upsert),
            limits=self.limits,
            faults=_as_faults(faults),
            recorder=Recorder(request_log_size, stream),
            base_paths=base_paths,
            failed_entries=failed_entries,
        )
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Serve on a background thread; returns ``self``."""
        if self._server is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server = _HTTPServer((self.host, self._requested_port), self.app, family)
        if self._access_log_path is not None:
            self._log_file = open(self._access_log_path, "a", encoding="utf-8")  # noqa: SIM115
            self.app.recorder.access_log = self._log_file
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="peak-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections (stored rows stay readable)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log_file is not None:
            self.app.recorder.access_log = None
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a base path, e.g. ``http://127.0.0.1:8787``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def failed_entries(self) -> str:
        """How the answer's ``failed`` entries name their rows (``index+row``, ``index`` or ``row``)."""
        return self.app.failed_entries

    @property
    def upsert(self) -> str:
        """``"replace"`` or ``"merge"``: what an ``UPSERT`` does to a stored row with the same key."""
        return self.app.store.upsert

    @property
    def token(self) -> str:
        """The first configured token."""
        return self.tokens[0]

    # -- inspection and control --------------------------------------------------------------------

    def rows(self, object_name: str) -> list[dict[str, Any]]:
        """Rows stored for ``object_name`` (full name), in insertion order."""
        return self.app.store.rows(object_name)

    def failed_rows(self, object_name: str) -> list[dict[str, Any]]:
        """Rejected rows of ``object_name``: ``{"index", "row", "errors", "operationType"}``."""
        return self.app.store.failed_rows(object_name)

    def stats(self) -> dict[str, Any]:
        return self.app.recorder.snapshot()

    def request_log(self) -> list[dict[str, Any]]:
        """``{"t", "method", "path", "status", "rows", "bytes", "fault"}`` per API request."""
        return self.app.recorder.entries()

    def reset(self) -> None:
        """Clear stored and failed rows, stats, the request log, rate-limit state, custom attributes and
        fault state (the construction-time fault configuration is restored)."""
        self.app.reset()

    @property
    def faults(self) -> Faults:
        return self.app.injector.faults

    def set_faults(self, faults: Faults | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Replace the fault configuration (and re-seed): a :class:`Faults`, a dict, or keywords."""
        if faults is None:
            faults = dict(kwargs)
        elif kwargs:
            raise TypeError("Pass either a Faults/dict or keyword arguments, not both")
        self.app.injector.configure(_as_faults(faults))

    def solution(self, name: str | None = None) -> Solution:
        """The configured solution ``name`` (the first one by default)."""
        if name is None:
            return self.solutions[0]
        for s in self.solutions:
            if s.name == name:
                return s
        raise KeyError(f"No solution {name!r}; configured: {', '.join(s.name for s in self.solutions)}")

    def connection_extra(self, solution_name: str | None = None, **extra: Any) -> dict[str, Any]:
        s = self.solution(solution_name)
        out: dict[str, Any] = {
            "solution_name": s.name,
            "application": s.application,
            "prefix": s.prefix,
            "suffix": s.suffix,
        }
        if s.timestamp_format:
            out["timestamp_format"] = s.timestamp_format
        out.update(extra)
        return out

    def connection_json(self, solution_name: str | None = None, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_<ID>`` JSON value for a ``peak`` connection to this emulator."""
        return json.dumps(
            {
                "conn_type": "peak",
                "host": self.url,
                "password": self.token,
                "extra": self.connection_extra(solution_name, **extra),
            }
        )

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Emulator {self.url} {state} solutions={[s.name for s in self.solutions]}>"


def _as_faults(faults: Faults | Mapping[str, Any] | None) -> Faults:
    if faults is None:
        return Faults()
    if isinstance(faults, Faults):
        return faults
    return Faults.from_dict(faults)
