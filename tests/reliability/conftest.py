"""Fixtures of the reliability tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.hostile import Handler, HostileServer


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], HostileServer]]:
    """Start tiny hostile servers: ``hostile(handler)``; each is stopped at the end of the test."""
    started: list[HostileServer] = []

    def start(handler: Handler) -> HostileServer:
        server = HostileServer(handler).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
