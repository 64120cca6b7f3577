"""Serve a ``socketserver`` server (e.g. an ``http.server`` one) from a daemon thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer
from typing import TypeVar

#: How soon ``serve_forever`` notices ``shutdown()``: its default, 0.5 s, would add up to that to every stop.
POLL_INTERVAL = 0.01

Server = TypeVar("Server", bound=BaseServer)


def serving_thread(server: BaseServer, name: str) -> threading.Thread:
    """A daemon thread, not yet started, that serves ``server`` until ``server.shutdown()``."""
    return threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, name=name, daemon=True
    )


@contextmanager
def serving(server: Server, name: str = "test-server") -> Iterator[Server]:
    """Serve ``server`` for the ``with`` block; then stop it, close its socket and wait for the thread."""
    thread = serving_thread(server, name)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
