"""Sampling profiles with py-spy (optional: ``pip install py-spy``): where the CPU time of a load goes.

py-spy samples a process from outside, every thread, without instrumenting it. With ``--gil`` only
samples of the thread holding the GIL count, so the shares below are shares of Python CPU time.
Samples are attributed to the innermost Python frame (its *self* time) and grouped into stages.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: py-spy samples per second.
PROFILE_RATE = 250

#: (stage, substrings of an innermost frame that put a sample in it), first match wins.
CLIENT_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fetch: psycopg server-side cursor", ("psycopg",)),
    ("encode: timestamps", ("_timestamp_converter", "_as_datetime (")),
    ("encode: numbers", ("_float (", "_integer (")),
    ("encode: strings", ("_string (",)),
    ("encode: json.dumps (json-typed values)", ("json/encoder.py",)),
    ("encode: RowEncoder loop (null checks, JSON text)", ("wire.py",)),
    ("send: requests / urllib3 / http.client", ("requests/", "urllib3/", "http/client.py", "socket.py", "email/")),
    ("send: response JSON", ("json/decoder.py", "json/__init__.py")),
    ("hook: ingest loop, batching, rate limiter", ("hooks/peak.py", "transport.py")),
    ("threads: executor hand-off", ("concurrent/futures", "threading.py", "queue.py")),
    ("operator and SQL stream", ("operators/peak.py", "sql_source.py")),
    ("one-off: Airflow / SQLAlchemy set-up", ("airflow/", "sqlalchemy/", "importlib", "pydantic")),
)
EMULATOR_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("store: SQLite UPSERT + json.dumps per row", ("emulator/store.py",)),
    ("validate rows", ("emulator/validation.py",)),
    ("parse request JSON", ("json/decoder.py", "json/__init__.py")),
    ("HTTP server", ("http/server.py", "socketserver.py", "socket.py", "emulator/server.py", "email/")),
    ("API dispatch, stats", ("emulator/api.py", "emulator/stats.py", "emulator/faults.py")),
    ("threads", ("threading.py",)),
)


@dataclass
class Profile:
    """Aggregated samples: self samples per function and per stage."""

    samples: int = 0
    functions: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, count / self.samples) for name, count in counter.most_common(n)] if self.samples else []


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record_command(out: Path, target: Sequence[str] = (), pid: int | None = None) -> list[str]:
    """``py-spy record`` of a command (``target``) or of a running process (``pid``)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    cmd = [
        exe,
        "record",
        "--gil",
        "--nonblocking",
        "--rate",
        str(PROFILE_RATE),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return [*cmd, "--pid", str(pid)] if pid is not None else [*cmd, "--", *target]


def stop_recorder(proc: subprocess.Popen[bytes]) -> None:
    """End a ``py-spy record --pid`` run; it writes its output on SIGINT."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (path/to/file.py)``: functions, not lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _stage(frame: str, stages: Iterable[tuple[str, tuple[str, ...]]]) -> str:
    return next((stage for stage, keys in stages if any(k in frame for k in keys)), "other")


def aggregate(
    raw_lines: Iterable[str],
    stages: Iterable[tuple[str, tuple[str, ...]]],
    keep: Callable[[list[str]], bool] = lambda frames: True,
) -> Profile:
    """Fold py-spy ``--format raw`` lines (``root;...;leaf count``) into a :class:`Profile`."""
    stages = tuple(stages)
    profile = Profile()
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not keep(frames):
            continue
        n = int(count)
        profile.samples += n
        profile.functions[_frame_name(frames[-1])] += n
        profile.stages[_stage(frames[-1], stages)] += n
    return profile


def in_client_load(frames: list[str]) -> bool:
    """Samples of the measured load: the probe's load function or an ingest worker thread."""
    return any("run_provider (" in f or "_worker (" in f for f in frames)
