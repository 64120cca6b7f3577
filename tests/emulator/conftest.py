"""Fixtures for the emulator tests.

The emulator fixtures themselves (``peak_emulator``, ``peak_emulator_factory``) come from the
package's pytest plugin (``peak_provider.emulator.pytest_plugin``, a ``pytest11`` entry point).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from peak_provider.emulator import Emulator
from tests.emulator.helpers import Api


@pytest.fixture
def api(peak_emulator: Emulator) -> Iterator[Api]:
    client = Api(peak_emulator)
    yield client
    client.close()


@pytest.fixture
def make_api() -> Iterator[Callable[[Emulator], Api]]:
    clients: list[Api] = []

    def make(emulator: Emulator) -> Api:
        clients.append(Api(emulator))
        return clients[-1]

    yield make
    for c in clients:
        c.close()
