"""pytest fixtures for the emulator (registered through the ``pytest11`` entry point).

``peak_emulator``: one emulator per session (solutions INV_OOTB/inventory and QP_OOTB/b2c_pricing,
a random token, default limits), reset before each test.
``peak_emulator_factory``: ``factory(**Emulator kwargs)`` starts another emulator (custom limits,
faults, solutions…), stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from peak_provider.emulator.server import Emulator


@pytest.fixture(scope="session")
def _peak_emulator_session() -> Iterator[Emulator]:
    from peak_provider.emulator.server import Emulator

    emulator = Emulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def peak_emulator(_peak_emulator_session: Emulator) -> Emulator:
    """The session's emulator, reset (no rows, stats, faults or custom attributes) for this test."""
    _peak_emulator_session.reset()
    return _peak_emulator_session


@pytest.fixture
def peak_emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with custom settings: ``peak_emulator_factory(limits=Limits(...), faults=...)``."""
    from peak_provider.emulator.server import Emulator

    started: list[Emulator] = []

    def factory(**kwargs: Any) -> Emulator:
        emulator = Emulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in started:
        emulator.stop()
