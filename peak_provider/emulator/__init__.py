"""A local, offline stand-in for the Peak ingestion API (like moto for AWS).

Start one from Python (``Emulator(...).start()``), from the shell (``peak-emulator``) or in tests
(the ``peak_emulator`` pytest fixture). See ``docs/emulator.md``.
"""

from peak_provider.emulator.config import DEFAULT_SOLUTIONS, Limits, Solution
from peak_provider.emulator.faults import Faults
from peak_provider.emulator.server import Emulator

__all__ = ["DEFAULT_SOLUTIONS", "Emulator", "Faults", "Limits", "Solution"]
