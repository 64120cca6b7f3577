"""pytest fixtures for the emulator (registered through the ``pytest11`` entry point).

``peak_emulator``: one emulator per session (solutions INV_OOTB/inventory and QP_OOTB/b2c_pricing,
a random token, default limits), reset before each test.
``peak_emulator_factory``: ``factory(**Emulator kwargs)`` starts another emulator (custom limits,
faults, solutions…), stopped at the end of the test.

Options (command line, or the ini key with ``-`` as ``_``): ``--peak-emulator-rate-limit-scope``
(``tenant``/``token``), ``--peak-emulator-rate-limit-mode`` (``token-bucket``/``fixed-window``),
``--peak-emulator-upsert`` (``replace``/``merge``) and ``--peak-emulator-failed-entries``
(``index+row``/``index``/``row``) set the session emulator's behaviour, and the factory's wherever a call
passes no ``limits`` / ``upsert`` / ``failed_entries`` of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from peak_provider.emulator.config import FAILED_ENTRY_SHAPES, RATE_LIMIT_MODES, RATE_LIMIT_SCOPES, UPSERT_MODES

if TYPE_CHECKING:
    from peak_provider.emulator.server import Emulator

_OPTIONS = {
    "peak_emulator_rate_limit_scope": (RATE_LIMIT_SCOPES, "budget of the emulator's rate limit: one per"),
    "peak_emulator_rate_limit_mode": (RATE_LIMIT_MODES, "how the emulator's rate limit refuses requests:"),
    "peak_emulator_upsert": (UPSERT_MODES, "what the emulator's UPSERT does to a stored row:"),
    "peak_emulator_failed_entries": (FAILED_ENTRY_SHAPES, "what each of the emulator's failed entries carries:"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("peak_emulator", "Peak ingestion API emulator")
    for name, (choices, text) in _OPTIONS.items():
        helptext = f"{text} {' or '.join(choices)} (default {choices[0]})"
        group.addoption("--" + name.replace("_", "-"), dest=name, choices=choices, default=None, help=helptext)
        parser.addini(name, helptext, default=choices[0])


def _option(config: pytest.Config, name: str) -> str:
    value = config.getoption(name) or config.getini(name)
    choices = _OPTIONS[name][0]
    if value not in choices:
        raise pytest.UsageError(f"{name} = {value!r}; expected one of {', '.join(choices)}")
    return str(value)


def _defaults(config: pytest.Config) -> dict[str, Any]:
    """``Emulator`` keyword arguments the options set."""
    from peak_provider.emulator.config import Limits

    return {
        "limits": Limits(
            rate_limit_mode=_option(config, "peak_emulator_rate_limit_mode"),
            rate_limit_scope=_option(config, "peak_emulator_rate_limit_scope"),
        ),
        "upsert": _option(config, "peak_emulator_upsert"),
        "failed_entries": _option(config, "peak_emulator_failed_entries"),
    }


@pytest.fixture(scope="session")
def _peak_emulator_session(pytestconfig: pytest.Config) -> Iterator[Emulator]:
    from peak_provider.emulator.server import Emulator

    emulator = Emulator(**_defaults(pytestconfig)).start()
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
def peak_emulator_factory(pytestconfig: pytest.Config) -> Iterator[Callable[..., Emulator]]:
    """Start emulators with custom settings: ``peak_emulator_factory(limits=Limits(...), faults=...)``."""
    from peak_provider.emulator.server import Emulator

    defaults = _defaults(pytestconfig)
    started: list[Emulator] = []

    def factory(**kwargs: Any) -> Emulator:
        emulator = Emulator(**{**defaults, **kwargs}).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in started:
        emulator.stop()
