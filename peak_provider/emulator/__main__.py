"""``python -m peak_provider.emulator``: the same as the ``peak-emulator`` command."""

from peak_provider.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
